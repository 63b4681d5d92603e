"""Vocabulary: replayed decisions -> canonical tags per clip -> TF-IDF ranking -> coverage for every K.

Place in the flow: decide -> vocabulary (this module) -> export. The paper's score is
s(t) = df(t) * log((N+1) / (df(t)+1)), df = clips whose canonical tag set contains t, N = clips; ties are
broken by df, then tag text. ``rank_by="df"`` ranks by document frequency alone.

Speed: the corpus is loaded once into a padded clip x tag-slot matrix of integer ids (``TagMatrix``); after a
decision only numpy gathers, row sorts and bincounts run (no SQL, no Python loop over clips), which keeps
replay + ranking + coverage for every K interactive at 360k clips.

Example::

    matrix = load_tag_matrix(con)
    view = compute_vocabulary(matrix, replay(list_decisions(con)))
    view.ranking.head(), view.coverage.loc[view.coverage.k == 1000]
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import duckdb
import numpy as np
import pandas as pd

from curation.store import vocabulary as store_vocabulary
from curation.vocabulary.decisions import CurationState

K_MARKS = (800, 1000, 1500, 2000, 3000)
RANKINGS = ("tfidf", "df")


@dataclass(frozen=True)
class TagMatrix:
    """The corpus's distinct (clip, raw tag) pairs as a padded matrix of tag ids (-1 = empty slot)."""

    clip_ids: np.ndarray  # object array, row order
    domain_index: np.ndarray  # int per row, into domains
    domains: tuple[str, ...]
    source_index: np.ndarray
    sources: tuple[str, ...]
    slots: np.ndarray  # int32 (n_clips, max tags per clip)
    tag_texts: tuple[str, ...]  # index = tag_id (ids are dense from 1; index 0 unused)
    text_rank: np.ndarray  # per tag id: position of its text in sorted order (tie-break of the ranking)
    version: tuple
    # Per slot: bit mask of the extractors that produced the pair (bit i = extractors[i]); None: not known.
    slot_extractors: np.ndarray | None = None
    extractors: tuple[str, ...] = ()

    @property
    def n_clips(self) -> int:
        return len(self.clip_ids)

    @cached_property
    def row_of_clip(self) -> dict[str, int]:
        """clip_id -> row, built once per matrix (81 ms at 360k clips: too much to redo after every decision)."""
        return {clip_id: i for i, clip_id in enumerate(self.clip_ids.tolist())}


MEDIAN_DEPTH = 64  # median tags per clip is counted up to this many (the ingest cap, MAX_TAGS_PER_CLIP)


def load_tag_matrix(con: duckdb.DuckDBPyConnection) -> TagMatrix:
    data = store_vocabulary.tag_matrix_inputs(con)
    clip_keys = data["clips"]["clip_key"].astype(np.int64)
    pair_clip = data["pairs"]["clip_key"].astype(np.int64)
    pair_tag = data["pairs"]["tag_id"].astype(np.int32)
    row = np.searchsorted(clip_keys, pair_clip)
    # Slot of each pair inside its clip's row: pairs are sorted by clip, so subtract the clip's first index.
    starts = np.r_[0, np.flatnonzero(np.diff(row)) + 1] if len(row) else np.array([], dtype=np.int64)
    first_of_pair = np.repeat(starts, np.diff(np.r_[starts, len(row)])) if len(row) else row
    slot = np.arange(len(row)) - first_of_pair
    width = int(slot.max()) + 1 if len(slot) else 1
    slots = np.full((len(clip_keys), width), -1, dtype=np.int32)
    slots[row, slot] = pair_tag
    slot_extractors = np.zeros((len(clip_keys), width), dtype=np.int64)
    slot_extractors[row, slot] = data["pairs"]["extractor_mask"].astype(np.int64)
    max_id = int(data["tags"]["tag_id"].max()) if len(data["tags"]["tag_id"]) else 0
    texts = [""] * (max_id + 1)
    for tag_id, text in zip(data["tags"]["tag_id"].tolist(), data["tags"]["tag"].tolist()):
        texts[tag_id] = text
    text_rank = _text_ranks(texts)
    domains, domain_index = np.unique(data["clips"]["domain"].astype(str), return_inverse=True)
    sources, source_index = np.unique(data["clips"]["source"].astype(str), return_inverse=True)
    return TagMatrix(clip_ids=np.asarray(data["clips"]["clip_id"], dtype=object), domain_index=domain_index,
                     domains=tuple(domains.tolist()), source_index=source_index, sources=tuple(sources.tolist()),
                     slots=slots, tag_texts=tuple(texts), text_rank=text_rank, version=data["version"],
                     slot_extractors=slot_extractors, extractors=tuple(data["extractors"]))


def used_slots(matrix: TagMatrix, state: CurationState) -> np.ndarray:
    """The matrix's slots with the pairs of extractors the state does not use blanked out (-1): a
    use_extractors decision decides whose tag rows feed the vocabulary; none in effect means all of them."""
    if state.extractors is None or matrix.slot_extractors is None:
        return matrix.slots
    allowed = 0
    for bit, name in enumerate(matrix.extractors):
        if name in state.extractors:
            allowed |= 1 << bit
    return np.where((matrix.slot_extractors & allowed) != 0, matrix.slots, -1).astype(matrix.slots.dtype)


def _text_ranks(texts: list[str]) -> np.ndarray:
    order = np.argsort(np.array(texts, dtype=str), kind="stable")
    ranks = np.empty(len(texts), dtype=np.int64)
    ranks[order] = np.arange(len(texts))
    return ranks


@dataclass(frozen=True)
class VocabularyView:
    ranking: pd.DataFrame  # rank, tag, tag_id, df, score, merged (how many tags were merged into it)
    members: dict  # canonical tag -> the tags merged into it
    coverage: pd.DataFrame  # k, clips_kept, share_kept, mean_tags, median_tags, df_at_k
    coverage_by_domain: pd.DataFrame  # k x domain share kept (columns = domains)
    coverage_by_source: pd.DataFrame  # k x source share kept
    pruned: tuple[str, ...]
    best_rank: np.ndarray  # per clip row: rank of its best canonical tag (n_tags + 1 when it has none)
    canonical_rows: np.ndarray  # per clip row: canonical tag ids sorted by rank (-1 padded)
    clip_ids: np.ndarray
    rank_by: str
    last_decision_id: int
    n_clips: int

    def top_k(self, k: int) -> list[str]:
        return self.ranking["tag"].iloc[:k].tolist()

    def tags_entering(self, k_small: int, k_large: int) -> list[str]:
        return self.ranking["tag"].iloc[k_small:k_large].tolist()

    def clips_lost(self, k_small: int, k_large: int) -> list[str]:
        """Clips kept at k_large that keep no tag at k_small."""
        lost = (self.best_rank > k_small) & (self.best_rank <= k_large)
        return self.clip_ids[lost].tolist()

    def clip_tags_at(self, k: int) -> dict[str, list[str]]:
        """clip_id -> its canonical in-vocabulary tags (best rank first) for the top k; clips with none left out."""
        tags = self.ranking["tag"].tolist()
        rank_of = {tag_id: r for r, tag_id in enumerate(self.ranking["tag_id"].tolist(), start=1)}
        out: dict[str, list[str]] = {}
        for clip_id, row, best in zip(self.clip_ids, self.canonical_rows, self.best_rank):
            if best > k:
                continue
            out[clip_id] = [tags[rank_of[t] - 1] for t in row if t >= 0 and rank_of[t] <= k]
        return out


def _canonical_ids(matrix: TagMatrix, state: CurationState) -> tuple[np.ndarray, list[str]]:
    """raw tag id -> canonical tag id (-1 when pruned); new canonical names get ids past the matrix's texts."""
    texts = list(matrix.tag_texts)
    id_of = {text: i for i, text in enumerate(texts) if i > 0}
    mapping = np.arange(len(texts), dtype=np.int32)
    for text, _parent in state.parent.items():
        canon = state.canonical(text)
        if canon not in id_of:
            id_of[canon] = len(texts)
            texts.append(canon)
            mapping = np.r_[mapping, len(texts) - 1].astype(np.int32)
        if text in id_of and id_of[text] < len(matrix.tag_texts):
            mapping[id_of[text]] = id_of[canon]
    for canon in state.pruned:
        if canon in id_of:
            mapping[mapping == id_of[canon]] = -1
    return mapping, texts


def compute_vocabulary(matrix: TagMatrix, state: CurationState, rank_by: str = "tfidf") -> VocabularyView:
    if rank_by not in RANKINGS:
        raise ValueError(f"rank_by={rank_by!r}: expected one of {RANKINGS}")
    mapping, texts = _canonical_ids(matrix, state)
    id_of = {text: i for i, text in enumerate(texts) if i > 0}
    raw = used_slots(matrix, state)
    canon = np.where(raw >= 0, mapping[np.maximum(raw, 0)], -1)
    canon = _apply_clip_edits(canon, matrix, state, id_of, texts, mapping)
    canon = np.sort(canon, axis=1)
    duplicate = np.zeros_like(canon, dtype=bool)
    duplicate[:, 1:] = canon[:, 1:] == canon[:, :-1]  # two raw tags merged into one canonical tag
    canon[duplicate] = -1
    n_ids = len(texts)
    df = np.bincount(canon[canon >= 0], minlength=n_ids)
    n_clips = matrix.n_clips
    candidates = np.flatnonzero(df > 0)
    candidate_df = df[candidates]
    # Python floats for the score (one per distinct df) so that it equals the reference formula bit for bit.
    distinct_df, df_index = np.unique(candidate_df, return_inverse=True)
    scores = np.array([d * math.log((n_clips + 1) / (d + 1)) for d in distinct_df.tolist()],
                      dtype=np.float64)[df_index]
    text_rank = matrix.text_rank if n_ids == len(matrix.tag_texts) else _text_ranks(texts)
    if rank_by == "tfidf":
        order = np.lexsort((text_rank[candidates], -candidate_df, -scores))
    else:
        order = np.lexsort((text_rank[candidates], -candidate_df))
    ranked_ids = candidates[order]
    n_ranked = len(ranked_ids)
    none = n_ranked + 1
    rank_of_id = np.full(n_ids, none, dtype=np.int64)
    rank_of_id[ranked_ids] = np.arange(1, n_ranked + 1)
    ranks_sorted = np.sort(np.where(canon >= 0, rank_of_id[np.maximum(canon, 0)], none), axis=1)
    # Canonical ids in rank order per clip, recovered from the sorted ranks (no per-row argsort needed).
    id_at_rank = np.r_[-1, ranked_ids, -1].astype(np.int64)
    canonical_rows = id_at_rank[ranks_sorted]
    best_rank = ranks_sorted[:, 0] if ranks_sorted.shape[1] else np.full(n_clips, none)

    # at_least[j][k]: clips with at least j+1 canonical tags of rank <= k (k = 0..n_ranked).
    # Memory stays bounded whatever the input: at most MEDIAN_DEPTH rows of n_ranked counts (a clip with thousands
    # of tags would otherwise cost its tag count x distinct tags); the mean uses exact totals.
    depth = min(ranks_sorted.shape[1], MEDIAN_DEPTH)
    at_least = np.stack([np.cumsum(np.bincount(ranks_sorted[:, j], minlength=n_ranked + 2)[: n_ranked + 1])
                         for j in range(depth)]) if n_ranked and depth else np.zeros((1, n_ranked + 1), dtype=np.int64)
    kept = at_least[0]
    ranked_pairs = ranks_sorted[ranks_sorted <= n_ranked]
    total_tags = np.cumsum(np.bincount(ranked_pairs, minlength=n_ranked + 1)[: n_ranked + 1])
    lower_middle = np.maximum(kept - 1, 0) // 2  # index of the lower median among kept clips' counts
    median = (at_least >= (kept - lower_middle)[None, :]).sum(axis=0)
    ks = np.arange(1, n_ranked + 1)
    mean_tags = np.where(kept[1:] > 0, total_tags[1:] / np.maximum(kept[1:], 1), 0.0)
    coverage = pd.DataFrame({
        "k": ks, "clips_kept": kept[1:], "share_kept": kept[1:] / max(n_clips, 1), "mean_tags": mean_tags,
        "median_tags": np.where(kept[1:] > 0, median[1:], 0), "df_at_k": df[ranked_ids]})
    members = state.members()
    tag_names = np.array(texts, dtype=object)[ranked_ids]
    merged_count = np.zeros(n_ranked, dtype=np.int64)
    if members:
        position = pd.Series(np.arange(n_ranked), index=tag_names)
        for canonical_tag, merged in members.items():
            if canonical_tag in position.index:
                merged_count[position[canonical_tag]] = len(merged)
    ranking = pd.DataFrame({"rank": ks, "tag": tag_names, "tag_id": ranked_ids, "df": df[ranked_ids],
                            "score": scores[order], "merged": merged_count})
    return VocabularyView(
        ranking=ranking, members=members, coverage=coverage,
        coverage_by_domain=_grouped_coverage(best_rank, matrix.domain_index, matrix.domains, n_ranked),
        coverage_by_source=_grouped_coverage(best_rank, matrix.source_index, matrix.sources, n_ranked),
        pruned=tuple(sorted(state.pruned)), best_rank=best_rank, canonical_rows=canonical_rows,
        clip_ids=matrix.clip_ids, rank_by=rank_by, last_decision_id=state.last_decision_id, n_clips=n_clips)


def _grouped_coverage(best_rank: np.ndarray, group_index: np.ndarray, names: tuple[str, ...],
                      n_ranked: int) -> pd.DataFrame:
    width = n_ranked + 2
    counts = np.bincount(group_index * width + best_rank, minlength=len(names) * width).reshape(len(names), width)
    kept = np.cumsum(counts, axis=1)[:, 1: n_ranked + 1]
    totals = np.bincount(group_index, minlength=len(names))
    share = kept / np.maximum(totals, 1)[:, None]
    frame = pd.DataFrame(share.T, columns=list(names))
    frame.insert(0, "k", np.arange(1, n_ranked + 1))
    return frame


def _apply_clip_edits(canon: np.ndarray, matrix: TagMatrix, state: CurationState, id_of: dict[str, int],
                      texts: list[str], mapping: np.ndarray) -> np.ndarray:
    if not state.clip_adds and not state.clip_removes:
        return canon
    row_of = matrix.row_of_clip
    canon = canon.copy()
    for clip_id, tag in state.clip_removes:
        if clip_id in row_of and tag in id_of:
            row = canon[row_of[clip_id]]
            row[row == id_of[tag]] = -1
    adds = [(row_of[c], t) for c, t in state.clip_adds if c in row_of]
    if adds:
        per_row: dict[int, list[int]] = {}
        for row, tag in adds:
            if tag not in id_of:
                id_of[tag] = len(texts)
                texts.append(tag)
            tag_id = id_of[tag]
            if tag in state.pruned:
                continue
            per_row.setdefault(row, []).append(tag_id)
        extra = np.full((canon.shape[0], max((len(v) for v in per_row.values()), default=0)), -1, dtype=canon.dtype)
        for row, tag_ids in per_row.items():
            extra[row, : len(tag_ids)] = tag_ids
        canon = np.hstack([canon, extra])
    return canon


def domain_mix(view: VocabularyView, matrix: TagMatrix) -> pd.DataFrame:
    """Per ranked canonical tag: the share of its clips in each domain (rows follow view.ranking)."""
    rows = view.canonical_rows
    present = rows >= 0
    n_domains = len(matrix.domains)
    ids = view.ranking["tag_id"].to_numpy()
    if not len(ids) or not n_domains:
        return pd.DataFrame(index=view.ranking["tag"])
    size = int(max(ids.max(), rows.max()) + 1)
    pair_domain = np.broadcast_to(matrix.domain_index[:, None], rows.shape)[present]
    counts = np.bincount(rows[present].astype(np.int64) * n_domains + pair_domain,
                         minlength=size * n_domains).reshape(size, n_domains)[ids]
    share = counts / np.maximum(counts.sum(axis=1), 1)[:, None]
    return pd.DataFrame(share, columns=list(matrix.domains), index=view.ranking["tag"])


def ranking_table(view: VocabularyView, matrix: TagMatrix, k: int, query: str = "") -> pd.DataFrame:
    """The Vocabulary page's table: rank, tag, score, df, in top K, merged members, domain mix; filtered by a
    case-insensitive substring of the tag or of a member."""
    table = view.ranking[["rank", "tag", "score", "df"]].copy()
    table["in_top_k"] = table["rank"] <= k
    table["members"] = [", ".join(view.members.get(tag, [])) for tag in table["tag"]]
    table["domain_mix"] = describe_domain_mix(domain_mix(view, matrix))
    if query:
        table = table[table["tag"].str.contains(query, case=False, regex=False)
                      | table["members"].str.contains(query, case=False, regex=False)]
    return table


def describe_domain_mix(shares: pd.DataFrame) -> list[str]:
    return [", ".join(f"{domain} {share:.0%}" for domain, share in row.items() if share > 0)
            for _, row in shares.iterrows()]


def tag_source_table(con: duckdb.DuckDBPyConnection, state: CurationState) -> pd.DataFrame:
    """Per extractor of the corpus: tag rows, clips, distinct tags and whether its rows feed the vocabulary
    (every extractor does until a use_extractors decision chooses)."""
    table = store_vocabulary.extractor_summary(con)
    table["feeds_vocabulary"] = [state.extractors is None or name in state.extractors for name in table["extractor"]]
    return table


def vocabulary_sources(con: duckdb.DuckDBPyConnection, state: CurationState) -> list[str]:
    """The extractors whose tag rows feed the vocabulary now (all of the corpus's when none was chosen)."""
    present = sorted(store_vocabulary.extractor_summary(con)["extractor"])
    return present if state.extractors is None else sorted(state.extractors)
