"""The tag map: a 2-D UMAP of the tag embeddings, computed once over all raw tags and cached in DuckDB.

Place in the flow: embeddings -> projection (this module, cached by model, tag set and parameters) -> the Tag
map page. Decisions never trigger a recomputation: a merge or prune only changes how the cached points are
drawn (``tag_map_frame`` joins the projection with the current vocabulary).

Example::

    points = tag_projection(con)                 # tag, x, y (computed once, then read from DuckDB)
    frame = tag_map_frame(points, matrix, view, state, k=1000)
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from curation import store
from curation.store import vocabulary as store_vocabulary
from curation.vocabulary.decisions import CurationState
from curation.vocabulary.embeddings import embed_tags, model_name, nearest_neighbours
from curation.vocabulary.ranking import TagMatrix, VocabularyView, used_slots

UMAP_PARAMS = {"n_neighbors": 15, "min_dist": 0.1, "metric": "cosine", "random_state": 0}
# Below this many points UMAP's exact path is slow and its neighbour graph degenerate: use PCA instead.
MIN_POINTS_FOR_UMAP = 20
LARGE_MAP_POINTS = 30_000  # above: screened neighbours (embeddings.nearest_neighbours), a capped spectral start
LARGE_MAP_EPOCHS = 100  # ... and half UMAP's default 200 optimisation epochs


@dataclass(frozen=True)
class TagPoints:
    key: str
    tags: np.ndarray
    x: np.ndarray
    y: np.ndarray
    computed_now: bool  # False when read from the cache


def projection_key(model: str, tags: list[str], params: dict) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"model": model, "params": params}, sort_keys=True).encode())
    for tag in tags:
        digest.update(tag.encode() + b"\0")
    return digest.hexdigest()[:32]


# Measured on 2 shared cores at load ~3 (bench/RESULTS.md): ~700 tags/s to embed the 1-4 word tags of a
# 100,000-tag corpus in float32 workers, ~1,000/s where the model runs in bfloat16 (700 a compromise); UMAP pays
# a ~25 s numba JIT once per process, then ~0.4 s per 1,000 points up to LARGE_MAP_POINTS and ~0.6 s per 1,000
# beyond (neighbour search included). Used only to tell a person how long the first visit takes.
EMBED_TAGS_PER_S = 700
UMAP_JIT_S = 25.0
UMAP_S_PER_POINT = 0.0004
UMAP_S_PER_LARGE_POINT = 0.0006


def projection_estimate_s(n_tags: int) -> tuple[float, float]:
    """(embedding, projection) seconds a first computation of ``n_tags`` points takes, roughly."""
    per_point = UMAP_S_PER_POINT if n_tags <= LARGE_MAP_POINTS else UMAP_S_PER_LARGE_POINT
    project_s = 0.5 if n_tags < MIN_POINTS_FOR_UMAP else UMAP_JIT_S + per_point * n_tags
    return n_tags / EMBED_TAGS_PER_S + 3.0, project_s  # + model load


def projection_is_cached(con: duckdb.DuckDBPyConnection, *, model_path: str | None = None,
                         params: dict | None = None) -> tuple[bool, int]:
    """Whether the projection of the current tag set is in the database, and how many tags it has."""
    params = dict(UMAP_PARAMS if params is None else params)
    tags = sorted(store_vocabulary.raw_tag_texts(con))
    return store_vocabulary.projection(con, projection_key(model_name(model_path), tags, params)) is not None, len(tags)


def cached_tag_projection(con: duckdb.DuckDBPyConnection, *, model_path: str | None = None,
                          params: dict | None = None) -> tuple[TagPoints | None, int]:
    """(the current tag set's points when they are in the database, else None; how many raw tags there are):
    one read of the tag set where a page would otherwise ask ``projection_is_cached`` then ``tag_projection``."""
    params = dict(UMAP_PARAMS if params is None else params)
    tags = sorted(store_vocabulary.raw_tag_texts(con))
    key = projection_key(model_name(model_path), tags, params)
    cached = store_vocabulary.projection(con, key)
    return (TagPoints(key, *cached, computed_now=False) if cached is not None else None), len(tags)


def tag_projection(con: duckdb.DuckDBPyConnection, *, model_path: str | None = None,
                   params: dict | None = None, on_stage=None) -> TagPoints:
    """The 2-D points of every raw tag, from the cache or computed (then stored). ``on_stage(name, n_tags)`` is
    called before each stage of a computation ("embedding", "projecting") so that a page can say where it is."""
    params = dict(UMAP_PARAMS if params is None else params)
    tags = sorted(store_vocabulary.raw_tag_texts(con))
    model = model_name(model_path)
    key = projection_key(model, tags, params)
    cached = store_vocabulary.projection(con, key)
    if cached is not None:
        return TagPoints(key, *cached, computed_now=False)
    started = time.perf_counter()
    if on_stage:
        on_stage("embedding", len(tags))
    vectors = embed_tags(con, tags, model_path=model_path)
    if on_stage:
        on_stage("projecting", len(tags))
    previous = store_vocabulary.latest_projection(con, model)
    init = _layout_seed(previous, tags, vectors)
    xy = _project(vectors, params, init=init)
    if init is not None:
        xy = _aligned(xy, tags, previous)
    with store.transaction(con):
        store_vocabulary.store_projection(con, key, model, params, tags, xy[:, 0], xy[:, 1], time.perf_counter() - started)
    tags_sorted, xs, ys = store_vocabulary.projection(con, key)
    return TagPoints(key, tags_sorted, xs, ys, computed_now=True)


def _layout_seed(previous, tags: list[str], vectors: np.ndarray) -> np.ndarray | None:
    """Start positions from the previous map: a tag already on it keeps its place, a new tag starts at the mean
    place of its 5 most similar old tags. UMAP then moves points only as far as the new neighbourhoods require,
    so a job that adds tags does not reshuffle the whole map."""
    if previous is None or len(tags) < MIN_POINTS_FOR_UMAP:
        return None
    old_tags, old_x, old_y = previous
    place = {tag: (x, y) for tag, x, y in zip(old_tags.tolist(), old_x.tolist(), old_y.tolist())}
    known = np.array([tag in place for tag in tags])
    if known.sum() < MIN_POINTS_FOR_UMAP:
        return None
    seed = np.zeros((len(tags), 2))
    seed[known] = [place[tag] for tag, hit in zip(tags, known) if hit]
    if (~known).any():
        sims = vectors[~known] @ vectors[known].T
        nearest = np.argsort(-sims, axis=1)[:, :5]
        seed[~known] = seed[known][nearest].mean(axis=1)
    return seed


def _aligned(xy: np.ndarray, tags: list[str], previous) -> np.ndarray:
    """``xy`` moved onto the previous map by the rotation, scale and shift that best fit the shared tags (UMAP
    rescales its start positions, so a seeded layout comes out in its own frame)."""
    old_tags, old_x, old_y = previous
    place = {tag: (x, y) for tag, x, y in zip(old_tags.tolist(), old_x.tolist(), old_y.tolist())}
    shared = [i for i, tag in enumerate(tags) if tag in place]
    source = xy[shared]
    target = np.array([place[tags[i]] for i in shared])
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    a, b = source - source_mean, target - target_mean
    u, sing, vt = np.linalg.svd(a.T @ b)
    rotation = u @ vt
    scale = sing.sum() / max(float((a ** 2).sum()), 1e-12)
    return (xy - source_mean) @ rotation * scale + target_mean


def _project(vectors: np.ndarray, params: dict, init: np.ndarray | None = None) -> np.ndarray:
    n = len(vectors)
    if n == 0:
        return np.zeros((0, 2))
    if n < MIN_POINTS_FOR_UMAP:
        centred = vectors - vectors.mean(axis=0)
        _, _, components = np.linalg.svd(centred, full_matrices=False)
        return centred @ components[:2].T if n > 1 else np.zeros((1, 2))
    import umap  # heavy (numba): imported only when a projection is really computed

    n_neighbors = min(params["n_neighbors"], n - 1)
    # Cosine neighbours by blocked matrix products (exact up to LARGE_MAP_POINTS, screened beyond): faster than
    # UMAP's own NN-descent here, and it spares numba's JIT of pynndescent (~30 s of a ~45 s first call).
    knn_indices, knn_distances = nearest_neighbours(vectors, n_neighbors, exact=n <= LARGE_MAP_POINTS)
    # Large maps: UMAP's full spectral start (ARPACK on a 100,000-node graph) and its 200 epochs are most of
    # the cost on 2 cores; the capped spectral start and 100 epochs keep a first map within minutes. Smaller
    # maps are made exactly as before.
    large = n > LARGE_MAP_POINTS
    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=params["min_dist"],
                        metric=params["metric"], random_state=params["random_state"], n_jobs=1,
                        precomputed_knn=(knn_indices, knn_distances, None),
                        n_epochs=LARGE_MAP_EPOCHS if large else None,
                        init=init if init is not None else ("tswspectral" if large else "spectral"))
    return reducer.fit_transform(vectors)


def tag_map_frame(points: TagPoints, matrix: TagMatrix, view: VocabularyView, state: CurationState,
                  k: int) -> pd.DataFrame:
    """One row per raw tag: position, raw df, its canonical tag, that tag's rank, in/out of top K, merged,
    pruned, and the domain mix of its clips."""
    id_of = {text: i for i, text in enumerate(matrix.tag_texts) if i > 0}
    ids = np.array([id_of.get(tag, 0) for tag in points.tags], dtype=np.int64)
    slots = used_slots(matrix, state)  # tag rows of extractors the vocabulary does not use count for nothing
    present = slots >= 0
    n_domains = len(matrix.domains)
    pair_tag = slots[present].astype(np.int64)
    pair_domain = np.broadcast_to(matrix.domain_index[:, None], slots.shape)[present]
    counts = np.bincount(pair_tag * n_domains + pair_domain,
                         minlength=len(matrix.tag_texts) * n_domains).reshape(len(matrix.tag_texts), n_domains)
    per_tag = counts[ids]
    raw_df = per_tag.sum(axis=1)
    share = per_tag / np.maximum(raw_df, 1)[:, None]
    canonical = [state.canonical(tag) for tag in points.tags]
    rank_of = dict(zip(view.ranking["tag"], view.ranking["rank"]))
    ranks = np.array([rank_of.get(c, 0) for c in canonical], dtype=np.int64)
    frame = pd.DataFrame({
        "tag": points.tags, "x": points.x, "y": points.y, "df": raw_df, "canonical": canonical,
        "rank": ranks, "in_top_k": (ranks > 0) & (ranks <= k),
        "merged": [c != t for c, t in zip(canonical, points.tags)],
        "pruned": [c in state.pruned for c in canonical],
        "main_domain": np.array(matrix.domains, dtype=object)[share.argmax(axis=1)] if n_domains else "unknown",
        "domain_mix": [", ".join(f"{d} {s:.0%}" for d, s in zip(matrix.domains, row) if s > 0) for row in share],
    })
    canonical_df = dict(zip(view.ranking["tag"], view.ranking["df"]))
    frame["canonical_df"] = [int(canonical_df.get(c, 0)) for c in canonical]
    frame["state"] = np.select([frame.pruned, frame.merged, frame.in_top_k], ["pruned", "merged", "in top K"],
                               "outside top K")
    return frame


def merge_targets(frame: pd.DataFrame, selected: list[str]) -> list[str]:
    """The canonical tags a map selection may be merged into, best first: never a pruned one (merging into it
    would drop every merged tag from the vocabulary); tags in the top K before the others; then the most
    frequent (clips carrying the canonical tag), then alphabetical. The first is the page's default target."""
    rows = frame[frame["tag"].isin(selected) & ~frame["pruned"]]
    if rows.empty:
        return []
    candidates = rows.drop_duplicates("canonical")[["canonical", "in_top_k", "canonical_df"]]
    ordered = candidates.sort_values(["in_top_k", "canonical_df", "canonical"], ascending=[False, False, True])
    return ordered["canonical"].tolist()


def neighbours_on_map(frame: pd.DataFrame, tag: str, n: int = 10) -> list[str]:
    """The tag and its n nearest points on the map (what a search highlights)."""
    match = frame.index[frame["tag"] == tag]
    if len(match) == 0:
        return []
    origin = frame.loc[match[0], ["x", "y"]].to_numpy(dtype=float)
    distance = np.hypot(frame["x"].to_numpy() - origin[0], frame["y"].to_numpy() - origin[1])
    return frame["tag"].to_numpy()[np.argsort(distance)[: n + 1]].tolist()
