"""The tag map: UMAP computed once and cached in DuckDB; decisions only change how points are drawn."""
from __future__ import annotations

from helpers import make_cut, write_jsonl

from curation.ingest.ingest import ingest_path
from curation.vocabulary.decisions import Decision, list_decisions, record_decision, replay
from curation.vocabulary.ranking import compute_vocabulary, load_tag_matrix
from curation.vocabulary.tagmap import cached_tag_projection, neighbours_on_map, tag_map_frame, tag_projection

WORDS = ["drum", "drums", "snare", "kick", "guitar", "piano", "violin", "rain", "wind", "thunder", "dog", "bark",
         "cat", "bird", "chirp", "speech", "male", "female", "child", "laugh", "engine", "car", "siren", "alarm",
         "reverb", "echo", "studio", "outdoor", "indoor", "music"]


def test_projection_is_cached_and_survives_decisions(con, tmp_path):
    cuts = [make_cut(f"c{i}", tags=(WORDS[i], WORDS[(i + 1) % len(WORDS)], WORDS[(i * 7) % len(WORDS)]),
                     domain=("music", "speech", "environment")[i % 3]) for i in range(len(WORDS))]
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
    assert cached_tag_projection(con) == (None, len(WORDS))  # nothing computed yet: the page says so first
    first = tag_projection(con)
    assert first.computed_now and sorted(first.tags.tolist()) == sorted(WORDS)
    read, n_raw = cached_tag_projection(con)
    assert n_raw == len(WORDS) and read.key == first.key and not read.computed_now and (read.x == first.x).all()
    record_decision(con, Decision.merge(["drums"], into="drum"), by="ana")
    record_decision(con, Decision.prune(["studio"]), by="ana")
    second = tag_projection(con)
    assert not second.computed_now and second.key == first.key
    assert (second.x == first.x).all() and (second.y == first.y).all()
    state = replay(list_decisions(con))
    matrix = load_tag_matrix(con)
    frame = tag_map_frame(second, matrix, compute_vocabulary(matrix, state), state, k=5).set_index("tag")
    assert frame.loc["drums", "canonical"] == "drum" and frame.loc["drums", "state"] == "merged"
    assert frame.loc["studio", "state"] == "pruned"
    assert frame["in_top_k"].sum() >= 5  # merged raw tags count with their canonical tag
    assert set(frame.loc["drum", "domain_mix"].split(", ")) <= {f"{d} {s}" for d in ("music", "speech", "environment")
                                                             for s in ("100%", "50%", "33%", "67%")}
    near = neighbours_on_map(frame.reset_index(), "rain", n=3)
    assert near[0] == "rain" and len(near) == 4
    # A new raw tag changes the tag set, so a new projection is made (and cached under another key).
    ingest_path(con, write_jsonl(tmp_path / "more.jsonl", [make_cut("new", tags=("trumpet",))]))
    third = tag_projection(con)
    assert third.computed_now and third.key != first.key


def test_a_new_tag_set_keeps_the_old_layout_and_merge_targets_skip_pruned_tags(con, tmp_path):
    import numpy as np

    from curation.vocabulary.tagmap import merge_targets

    cuts = [make_cut(f"c{i}", tags=(WORDS[i], WORDS[(i + 1) % len(WORDS)], "music"))
            for i in range(len(WORDS))]
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
    first = tag_projection(con)
    ingest_path(con, write_jsonl(tmp_path / "more.jsonl", [make_cut("new", tags=("trumpet", "drum"))]))
    second = tag_projection(con)
    assert second.computed_now and "trumpet" in second.tags.tolist()
    old = dict(zip(first.tags.tolist(), zip(first.x, first.y)))
    moved = [np.hypot(x - old[t][0], y - old[t][1]) for t, x, y in zip(second.tags.tolist(), second.x, second.y)
             if t in old]
    spread = np.ptp(first.x) + np.ptp(first.y)
    assert np.median(moved) < 0.25 * spread  # seeded from the old map: the layout does not start over

    # "music" is on every clip: the most frequent tag, and pruned here; it is never offered as the target.
    record_decision(con, Decision.prune(["music"]), by="ana")
    state = replay(list_decisions(con))
    matrix = load_tag_matrix(con)
    view = compute_vocabulary(matrix, state)
    frame = tag_map_frame(second, matrix, view, state, k=10)
    targets = merge_targets(frame, ["music", "drum", "rain", "trumpet"])
    assert "music" not in targets and targets[0] == "drum"  # drum: on two clips and in the top K
    assert merge_targets(frame, ["music"]) == []


def test_a_large_map_takes_the_screened_neighbours_and_the_capped_spectral_start(monkeypatch):
    """Above LARGE_MAP_POINTS the projection screens its neighbours and starts UMAP from 'tswspectral' with fewer
    epochs; the map it draws still keeps two groups of unrelated tags apart (lowered limit: 400 points here)."""
    import numpy as np

    from curation.vocabulary import embeddings, tagmap

    calls = []
    real = embeddings.nearest_neighbours
    monkeypatch.setattr(tagmap, "nearest_neighbours", lambda v, k, exact=None: calls.append(exact) or real(v, k, exact=exact))
    monkeypatch.setattr(tagmap, "LARGE_MAP_POINTS", 100)
    monkeypatch.setattr(embeddings, "SCREEN_DIMS", 8)
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(2, 32)) * 3
    vectors = (centres[np.repeat([0, 1], 200)] + rng.normal(size=(400, 32))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    xy = tagmap._project(vectors, dict(tagmap.UMAP_PARAMS))
    assert calls == [False] and xy.shape == (400, 2) and np.isfinite(xy).all()
    first, second = xy[:200].mean(axis=0), xy[200:].mean(axis=0)
    spread = max(xy[:200].std(axis=0).max(), xy[200:].std(axis=0).max())
    assert np.hypot(*(first - second)) > 2 * spread  # the two groups land apart
