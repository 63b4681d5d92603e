"""Vocabulary at UTS scale: after each single decision, replay + ranking + coverage for every K.

Uses the corpus written by bench/ingest_scale.py (360,678 clips, ~3.6M tag rows, 20,000 raw tags): copies its
database, records 30 decisions (merges of random pairs, prunes, undos), and times, for each, the replay of the
log plus compute_vocabulary (ranking + coverage for all K, per domain and per source). Target (issue 3):
p50 <= 150 ms. Also prints the one-off cost of loading the tag matrix.

    .venv/bin/python bench/vocab_scale.py [--workdir /tmp/uts_bench]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from ingest_scale import copy_of_bench_database  # noqa: E402 (bench/ is on sys.path when run as a script)

from curation import store  # noqa: E402
from curation.vocabulary.decisions import Decision, list_decisions, record_decision, replay  # noqa: E402
from curation.vocabulary.ranking import compute_vocabulary, load_tag_matrix  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/uts_bench")
    parser.add_argument("--decisions", type=int, default=30)
    args = parser.parse_args()
    workdir = Path(args.workdir)
    db = copy_of_bench_database(workdir, "vocab_bench.duckdb")
    con = store.connect(db)
    t0 = time.perf_counter()
    matrix = load_tag_matrix(con)
    load_s = time.perf_counter() - t0
    tags = [t for t in matrix.tag_texts if t]
    rng = np.random.default_rng(0)
    timings_ms = []
    for i in range(args.decisions):
        kind = i % 3
        if kind == 0:
            a, b = rng.choice(len(tags), size=2, replace=False)
            decision = Decision.merge([tags[a], tags[b]], into=tags[a])
        elif kind == 1:
            decision = Decision.prune([tags[int(rng.integers(0, len(tags)))]])
        else:
            decision = Decision.undo(i)  # undo the prune just made
        try:
            record_decision(con, decision, by="bench")
        except Exception as exc:  # noqa: BLE001 - a refused random decision is simply not timed
            print(f"skipped: {exc}")
            continue
        t0 = time.perf_counter()
        view = compute_vocabulary(matrix, replay(list_decisions(con)))
        timings_ms.append((time.perf_counter() - t0) * 1000)
    timings = sorted(timings_ms)
    print(json.dumps({
        "clips": matrix.n_clips, "raw_tags": len(tags), "tag_slots": list(matrix.slots.shape),
        "load_matrix_s": round(load_s, 2), "decisions_timed": len(timings),
        "p50_ms": round(statistics.median(timings), 1), "p95_ms": round(timings[int(0.95 * (len(timings) - 1))], 1),
        "max_ms": round(timings[-1], 1), "vocabulary_size": len(view.ranking),
        "machine": platform.platform()}))
    con.close()
    db.unlink()


if __name__ == "__main__":
    main()
