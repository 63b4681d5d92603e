"""The vocabulary after a decision, updated in place (VocabularyTracker), equals the full recomputation
(compute_vocabulary) on hypothesis-generated corpora and decision logs, state after state, including undo,
per-clip edits, prunes of added tags, merges into new names and a change of the extractors in use."""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curation.vocabulary.decisions import DecisionRecord, replay
from curation.vocabulary import ranking
from curation.vocabulary.ranking import VocabularyTracker, compute_vocabulary, tag_matrix_from_inputs

WORDS = ["drum", "drums", "rain", "rainfall", "male", "female", "speech", "music", "x", "hi-hat"]
NEW_NAMES = ["percussion", "aa", "zz", "voice"]
EXTRACTORS = ("llm", "offline")


def matrix_of(clips: list[list[tuple[str, int]]], domains: list[int]):
    """A tag matrix as load_tag_matrix builds it, from (tag, extractor mask) lists per clip."""
    texts = sorted({tag for clip in clips for tag, _mask in clip})
    tag_id = {tag: i + 1 for i, tag in enumerate(texts)}
    pairs = sorted((row, tag_id[tag], mask) for row, clip in enumerate(clips) for tag, mask in dict(clip).items())
    return tag_matrix_from_inputs({
        "clips": {"clip_key": np.arange(len(clips)), "clip_id": np.array([f"c{i}" for i in range(len(clips))]),
                  "domain": np.array([["music", "speech", "sound"][d] for d in domains]),
                  "source": np.array([["a", "b"][i % 2] for i in range(len(clips))])},
        "pairs": {"clip_key": np.array([p[0] for p in pairs], dtype=np.int64),
                  "tag_id": np.array([p[1] for p in pairs], dtype=np.int32),
                  "extractor_mask": np.array([p[2] for p in pairs], dtype=np.int64)},
        "tags": {"tag_id": np.array(list(tag_id.values()), dtype=np.int64), "tag": np.array(list(tag_id))},
        "extractors": list(EXTRACTORS), "version": (1, len(pairs), len(texts))})


def record(decision_id: int, action: str, payload: dict) -> DecisionRecord:
    return DecisionRecord(decision_id, datetime(2026, 12, 1, tzinfo=timezone.utc), "prop", action, payload, None)


def decision_of(op, number: int, n_clips: int) -> tuple[str, dict]:
    action, tags, target = op
    clip = f"c{number % n_clips}"
    return {
        "merge": ("merge", {"tags": tags, "into": target}),
        "rename": ("rename", {"tags": tags[:1], "into": target}),
        "prune": ("prune", {"tags": tags}),
        "restore": ("restore", {"tags": tags}),
        "add": ("clip_add", {"clip_id": clip, "tag": target}),
        "remove": ("clip_remove", {"clip_id": clip, "tag": tags[0]}),
        "undo": ("undo", {"decision_id": number}),
        "extractors": ("use_extractors", {"extractors": [EXTRACTORS[number % 2]]}),
    }[action]


def same_view(got, want) -> None:
    pd.testing.assert_frame_equal(got.ranking.drop(columns="tag_id"), want.ranking.drop(columns="tag_id"))
    pd.testing.assert_frame_equal(got.coverage, want.coverage)
    pd.testing.assert_frame_equal(got.coverage_by_domain, want.coverage_by_domain)
    pd.testing.assert_frame_equal(got.coverage_by_source, want.coverage_by_source)
    assert got.best_rank.tolist() == want.best_rank.tolist()
    assert got.members == want.members and got.pruned == want.pruned
    # The clips' tags best first, by name (ids of names interned by decisions may differ between the two).
    assert got.clip_tags_at(len(want.ranking)) == want.clip_tags_at(len(want.ranking))


TAG = st.sampled_from(WORDS)
OPS = st.tuples(st.sampled_from(["merge", "rename", "prune", "restore", "add", "remove", "undo", "extractors"]),
                st.lists(TAG, min_size=1, max_size=3), st.sampled_from(WORDS + NEW_NAMES))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clips=st.lists(st.lists(st.tuples(TAG, st.sampled_from([1, 2, 3])), min_size=0, max_size=6),
                      min_size=1, max_size=30),
       domains=st.lists(st.integers(0, 2), min_size=30, max_size=30),
       ops=st.lists(st.tuples(OPS, st.integers(0, 40)), min_size=1, max_size=14),
       rank_by=st.sampled_from(["tfidf", "df"]))
def test_updated_vocabulary_equals_the_full_recomputation_after_every_decision(clips, domains, ops, rank_by):
    matrix = matrix_of(clips, domains[: len(clips)])
    tracker = VocabularyTracker(matrix, update_limit=1.0)  # always update (tiny corpora touch many clips)
    records: list[DecisionRecord] = []
    same_view(tracker.view(replay(records), rank_by), compute_vocabulary(matrix, replay(records), rank_by))
    for decision_id, (op, number) in enumerate(ops, start=1):
        action, payload = decision_of(op, number, len(clips))
        records.append(record(decision_id, action, payload))
        state = replay(records)
        same_view(tracker.view(state, rank_by), compute_vocabulary(matrix, state, rank_by))
    changed_extractors = sum(1 for r in records if r.action == "use_extractors")
    assert tracker.updates >= len(ops) - 2 * changed_extractors  # updated, not recomputed, but where it must


def test_a_merge_redoes_only_the_clips_it_touches():
    """The point of the tracker: after a merge of two rare tags, the common tag's clips are not redone (their rows
    are the very same objects' values, and the update does not fall back to a full computation)."""
    clips = [[("music", 1)] for _ in range(200)] + [[("music", 1), ("drum", 1)], [("drums", 1)]]
    matrix = matrix_of(clips, [0] * len(clips))
    tracker = VocabularyTracker(matrix)
    tracker.view(replay([]))
    before = tracker._latest["tfidf"]
    state = replay([record(1, "merge", {"tags": ["drums"], "into": "drum"})])
    view = tracker.view(state)
    assert tracker.updates == 1
    after = tracker._latest["tfidf"]
    assert after.depth_counts is not before.depth_counts and after.rows is not before.rows  # old view intact
    assert dict(zip(view.ranking.tag, view.ranking.df)) == {"music": 201, "drum": 2}
    same_view(view, compute_vocabulary(matrix, state))
    # Only the clip of "drums" was redone (clip 200 holds "drum" too, but "drum" passed no tag of that clip);
    # the 200 "music" clips and the base rows are shared, not copied.
    assert after.rows.base is before.rows.base and after.rows.rows.tolist() == [201]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clips=st.lists(st.lists(st.tuples(st.sampled_from(WORDS), st.just(1)), max_size=6), min_size=1, max_size=30),
       merge=st.booleans(), wanted=st.lists(st.sampled_from(WORDS), min_size=1, max_size=10),
       mode=st.sampled_from(["any", "all"]))
def test_rows_with_tags_matches_each_clips_canonical_set(clips, merge, wanted, mode):
    """Browse's canonical-tag filter (rows_with_tags): the comparison path (<= 8 tags) and the gather path (more)
    both give the rows whose canonical set holds any / all of the tags, merges applied."""
    matrix = matrix_of(clips, [0] * len(clips))
    log = [record(1, "merge", {"tags": ["drum", "drums"], "into": "drums"})] if merge else []
    state = replay(log)
    view = compute_vocabulary(matrix, state)
    tag_ids = dict(zip(view.ranking["tag"], view.ranking["tag_id"]))
    names = sorted({state.canonical(tag) for tag in wanted} & set(tag_ids))
    if not names:
        return
    ids = np.array([tag_ids[name] for name in names])
    compared = view.rows_with_tags(ids, mode)
    gathered = compute_vocabulary(matrix, state)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ranking, "_COMPARED_TAGS", 0)  # every tag set through the gather
        gathered = gathered.rows_with_tags(ids, mode)
    for row, clip in enumerate(clips):
        held = {state.canonical(tag) for tag, _mask in clip}
        expected = bool(held & set(names)) if mode == "any" else set(names) <= held
        assert bool(compared[row]) == expected == bool(gathered[row]), (row, clip, names, mode)
