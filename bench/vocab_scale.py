"""Vocabulary at UTS scale: after each single decision, replay + ranking + coverage for every K.

Uses the corpus written by bench/ingest_scale.py (360,678 clips, ~3.6M tag rows, 20,000 raw tags): copies its
database, records decisions (merges of random pairs, prunes, undos, tags added to clips), and times, for each,
reading and replaying the log plus the vocabulary (ranking + coverage for all K, per domain and per source) two
ways: computed from scratch (compute_vocabulary) and updated from the previous state (VocabularyTracker, what
the app and the API use). Targets: p50 <= 150 ms (issue 3), p95 <= 200 ms through the API (issue 16).

``--synthetic N`` skips the database: a tag matrix of N clips x 10 tags from a Zipf vocabulary of 100,000 raw
tags (issue 17: 4,000,000 clips = 40M tag rows, p50 <= 300 ms, p95 <= 500 ms), decisions replayed in memory.
``--db PATH`` uses that database itself (not a copy; the decisions are recorded in it), e.g. the 4M-clip
database of bench/scale_4m.py.

    .venv/bin/python bench/vocab_scale.py [--workdir /tmp/uts_bench] [--synthetic 4000000 | --db PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from ingest_scale import copy_of_bench_database

from curation import store
from curation.vocabulary.decisions import Decision, DecisionRecord, list_decisions, record_decision, replay
from curation.vocabulary.ranking import VocabularyTracker, compute_vocabulary, load_tag_matrix, tag_matrix_from_inputs


def synthetic_matrix(n_clips: int, n_tags: int = 100_000, per_clip: int = 10, seed: int = 0):
    """n_clips x per_clip tags drawn from a Zipf(1) vocabulary (distinct per clip), 3 domains, 5 sources."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_tags + 1)
    ids = rng.choice(n_tags, size=(n_clips, per_clip), p=weights / weights.sum()).astype(np.int32) + 1
    ids.sort(axis=1)
    keep = np.ones_like(ids, dtype=bool)
    keep[:, 1:] = ids[:, 1:] != ids[:, :-1]
    clip_of_pair = np.broadcast_to(np.arange(n_clips)[:, None], ids.shape)[keep]
    return tag_matrix_from_inputs({
        "clips": {"clip_key": np.arange(n_clips), "clip_id": np.char.add("clip", np.arange(n_clips).astype(str)),
                  "domain": np.array(["music", "speech", "sound"])[rng.integers(0, 3, n_clips)],
                  "source": np.array(["a", "b", "c", "d", "e"])[rng.integers(0, 5, n_clips)]},
        "pairs": {"clip_key": clip_of_pair, "tag_id": ids[keep], "extractor_mask": np.ones(int(keep.sum()))},
        "tags": {"tag_id": np.arange(1, n_tags + 1), "tag": np.char.add("tag", np.arange(1, n_tags + 1).astype(str))},
        "extractors": ["llm"], "version": (0,)})


class MemoryLog:
    """The decision log kept in memory (the synthetic corpus has no database)."""

    def __init__(self):
        self.records: list[DecisionRecord] = []

    def record(self, decision: Decision) -> None:
        self.records.append(DecisionRecord(len(self.records) + 1, datetime.now(UTC), "bench",
                                           decision.action, decision.payload, None))

    def read(self) -> list[DecisionRecord]:
        return list(self.records)


class DatabaseLog:
    def __init__(self, con):
        self.con = con

    def record(self, decision: Decision) -> None:
        record_decision(self.con, decision, by="bench")

    def read(self) -> list[DecisionRecord]:
        return list_decisions(self.con)


def decisions(matrix, count: int, seed: int = 0):
    """A curator's mix: merges (half of them into a tag drawn by df, so common tags are merged into too), prunes,
    undos of the prune just made, and tags added to single clips."""
    tags = [t for t in matrix.tag_texts if t]
    df = np.bincount(matrix.slots[matrix.slots >= 0], minlength=len(matrix.tag_texts))[1:].astype(np.float64)
    rng = np.random.default_rng(seed)
    for i in range(count):
        kind = i % 4
        if kind == 0:
            a, b = rng.choice(len(tags), size=2, replace=False)
            if i % 8 == 0:
                a = int(rng.choice(len(tags), p=df / df.sum()))
            yield Decision.merge([tags[a], tags[b]], into=tags[a]) if a != b else Decision.prune([tags[b]])
        elif kind == 1:
            yield Decision.prune([tags[int(rng.integers(0, len(tags)))]])
        elif kind == 2:
            yield "undo-last"
        else:
            clip = matrix.clip_ids[int(rng.integers(0, matrix.n_clips))]
            yield Decision.clip_add(clip, tags[int(rng.choice(len(tags), p=df / df.sum()))])


def percentiles(timings: list[float]) -> dict:
    timings = sorted(timings)
    return {"p50_ms": round(statistics.median(timings), 1), "p95_ms": round(timings[int(0.95 * (len(timings) - 1))], 1),
            "max_ms": round(timings[-1], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/uts_bench")
    parser.add_argument("--decisions", type=int, default=40)
    parser.add_argument("--synthetic", type=int, default=0, help="clips of a synthetic corpus (no database)")
    parser.add_argument("--db", help="time on this database itself (its decision log grows by --decisions)")
    parser.add_argument("--no-full", action="store_true", help="time only the update (the full recomputation is "
                                                                 "slow at 4M clips)")
    args = parser.parse_args()
    db = con = None
    t0 = time.perf_counter()
    if args.synthetic:
        matrix = synthetic_matrix(args.synthetic)
        log = MemoryLog()
    else:
        db = Path(args.db) if args.db else copy_of_bench_database(Path(args.workdir), "vocab_bench.duckdb")
        con = store.connect(db)
        matrix = load_tag_matrix(con)
        log = DatabaseLog(con)
    load_s = time.perf_counter() - t0
    tracker = VocabularyTracker(matrix)
    t0 = time.perf_counter()
    tracker.view(replay(log.read()))
    first_s = time.perf_counter() - t0
    full_ms, update_ms = [], []
    last_id = 0
    for decision in decisions(matrix, args.decisions):
        if decision == "undo-last":
            decision = Decision.undo(last_id)
        try:
            log.record(decision)
        except Exception as exc:  # noqa: BLE001 - a refused random decision is simply not timed
            print(f"skipped: {exc}")
            continue
        last_id = max(r.decision_id for r in log.read()) if con is not None else len(log.records)
        t0 = time.perf_counter()
        view = tracker.view(replay(log.read()))
        update_ms.append((time.perf_counter() - t0) * 1000)
        if not args.no_full:
            t0 = time.perf_counter()
            full = compute_vocabulary(matrix, replay(log.read()))
            full_ms.append((time.perf_counter() - t0) * 1000)
            assert full.ranking["tag"].tolist() == view.ranking["tag"].tolist()  # the bench checks as it goes
            assert full.coverage.equals(view.coverage)
    print(json.dumps({
        "clips": matrix.n_clips, "tag_rows": int((matrix.slots >= 0).sum()), "raw_tags": len(matrix.tag_texts) - 1,
        "tag_slots": list(matrix.slots.shape), "load_matrix_s": round(load_s, 2),
        "first_view_s (full + index)": round(first_s, 2), "decisions_timed": len(update_ms),
        "updated": {**percentiles(update_ms), "updates": tracker.updates},
        "full": percentiles(full_ms) if full_ms else None,
        "vocabulary_size": len(view.ranking), "load_average": os.getloadavg(), "machine": platform.platform()}))
    if con is not None:
        con.close()
        if not args.db:
            db.unlink()


if __name__ == "__main__":
    main()
