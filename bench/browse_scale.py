"""Browse at UTS scale: caption index build time and size, then browse-page latency with mixed filters.

Uses the corpus written by bench/ingest_scale.py (360,678 clips, ~2,500-character captions of words
w0..w4999, 10 tags each from 20,000 raw tags): copies its database, (re)builds the caption text index in full
(seconds, database growth), reindexes 1,000 clips as a re-ingest would, then times ~50 ``browse_page`` calls
mixing free text (common, rare and absent words, phrases, AND of 2-3 words), source/domain, canonical and
raw tags, "keeps no tag at K", audited, and following pages (keyset). Target: p95 <= 150 ms per page.

    .venv/bin/python bench/browse_scale.py [--workdir /tmp/uts_bench]
"""
from __future__ import annotations

import argparse
import json
import os
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
from curation.explore.browse import BrowseFilters, browse_page  # noqa: E402
from curation.ingest import text_index
from curation.store import browse as store_browse
from curation.vocabulary.decisions import Decision, list_decisions, record_decision, replay  # noqa: E402
from curation.vocabulary.ranking import compute_vocabulary, load_tag_matrix  # noqa: E402


def _db_mb(path: Path) -> float:
    wal = path.with_suffix(path.suffix + ".wal")
    return round((path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)) / 1e6, 1)


def scenarios(view) -> list[tuple[str, BrowseFilters, int | None]]:
    """(label, filters, after_clip_key); after=-1 means 'the page after the previous scenario's page'."""
    top, mid, rare = (view.ranking["tag"].iloc[i] for i in (0, 400, min(15_000, len(view.ranking) - 1)))
    # K values at which ~1% and ~10% of clips keep no tag (with Zipf tags nearly every clip keeps one at 800).
    k_few, k_many = (int(np.quantile(view.best_rank, q)) for q in (0.99, 0.9))
    deep = 300_000
    return [
        ("all clips", BrowseFilters(), None),
        ("all clips, deep page", BrowseFilters(), deep),
        ("source", BrowseFilters(sources=("vggsound",)), None),
        ("source, next page", BrowseFilters(sources=("vggsound",)), -1),
        ("domain unknown + duration", BrowseFilters(domains=("unknown",), min_duration_s=9.5), None),
        ("duration range, deep", BrowseFilters(min_duration_s=3.0, max_duration_s=3.2), deep),
        ("text: common word", BrowseFilters(text="w17"), None),
        ("text: common word, next page", BrowseFilters(text="w17"), -1),
        ("text: common word, deep", BrowseFilters(text="w4242"), deep),
        ("text: 2 words", BrowseFilters(text="w17 w923"), None),
        ("text: 2 words, next page", BrowseFilters(text="w17 w923"), -1),
        ("text: 3 words (rare combination)", BrowseFilters(text="w5 w6 w7"), None),
        ("text: word in every clip", BrowseFilters(text="synthetic"), None),
        ("text: absent word", BrowseFilters(text="zebra"), None),
        ("text: phrase in every clip", BrowseFilters(text='"In summary, a synthetic clip"'), None),
        ("text: phrase, deep", BrowseFilters(text='"synthetic clip"'), deep),
        ("text: rare phrase", BrowseFilters(text='"w1 w2"'), None),
        ("text: word + literal", BrowseFilters(text="w99 clip."), None),
        ("text + source", BrowseFilters(text="w300", sources=("mls",)), None),
        ("text + source, next page", BrowseFilters(text="w300", sources=("mls",)), -1),
        ("text 2 words + source + duration", BrowseFilters(text="w12 w34", sources=("audioset",), max_duration_s=6.0), None),
        ("canonical top tag", BrowseFilters(canonical_tags=(top,)), None),
        ("canonical top tag, next page", BrowseFilters(canonical_tags=(top,)), -1),
        ("canonical mid tag", BrowseFilters(canonical_tags=(mid,)), None),
        ("canonical rare tag", BrowseFilters(canonical_tags=(rare,)), None),
        ("canonical any of 3", BrowseFilters(canonical_tags=(top, mid, rare), tag_mode="any"), None),
        ("canonical all of 2", BrowseFilters(canonical_tags=(top, mid), tag_mode="all"), None),
        ("canonical + text", BrowseFilters(canonical_tags=(top,), text="w42"), None),
        ("canonical + text + source", BrowseFilters(canonical_tags=(mid,), text="w8", sources=("mls",)), None),
        ("raw tag", BrowseFilters(raw_tag="tag3"), None),
        ("raw tag, next page", BrowseFilters(raw_tag="tag3"), -1),
        ("raw rare tag", BrowseFilters(raw_tag="tag12345"), None),
        ("raw tag + text", BrowseFilters(raw_tag="tag1", text="w2024"), None),
        ("no tag at K (1% of clips)", BrowseFilters(no_tag_at_k=k_few), None),
        ("no tag at K (1%), next page", BrowseFilters(no_tag_at_k=k_few), -1),
        ("no tag at K (10%) + source", BrowseFilters(no_tag_at_k=k_many, sources=("audioset",)), None),
        ("no tag at K (10%) + text", BrowseFilters(no_tag_at_k=k_many, text="w77"), None),
        ("audited", BrowseFilters(audited=True), None),
        ("audited, next page", BrowseFilters(audited=True), -1),
        ("not audited + text", BrowseFilters(audited=False, text="w555"), None),
        ("audited + canonical", BrowseFilters(audited=True, canonical_tags=(top,)), None),
        ("everything", BrowseFilters(canonical_tags=(top, mid), text="w3 w4", sources=("audioset", "mls"),
                                     min_duration_s=2.5, audited=False, no_tag_at_k=k_many), None),
        ("text: 3 common words + domain", BrowseFilters(text="w10 w20 w30", domains=("unknown",)), None),
        ("text: stop words only", BrowseFilters(text="the of a"), None),
        ("text: punctuation literal", BrowseFilters(text="summary,"), None),
        ("text: literal, next page", BrowseFilters(text="summary,"), -1),
        ("source + duration, deep", BrowseFilters(sources=("mls",), min_duration_s=9.0), deep),
        ("canonical mid, deep", BrowseFilters(canonical_tags=(mid,)), 200_000),
        ("text: 2 common words, deep", BrowseFilters(text="w1 w2"), deep),
        ("all filters off, page 2", BrowseFilters(), -1),
    ]


def add_light_curation(con, tags: list[str], n_clips: int) -> None:
    """A merge, a prune and 300 audited clips, so that the canonical and audited filters have something to chew on
    (the same state for bench/scale_4m.py's browse)."""
    record_decision(con, Decision.merge([tags[1], tags[2]], into=tags[1]), by="bench")
    record_decision(con, Decision.prune([tags[5]]), by="bench")
    rng = np.random.default_rng(0)
    for i, clip_key in enumerate(sorted(rng.choice(np.arange(1, n_clips), size=300, replace=False).tolist())):
        store_browse.add_submitted_audit_slot(con, campaign_id=1, clip_key=clip_key, annotator=f"a{i % 3}")


def time_pages(con, view, state) -> list[tuple[str, float, int]]:
    """(scenario, milliseconds, rows) for each page of ``scenarios``, after one warm-up page."""
    browse_page(con, BrowseFilters(text="w1"), view=view, state=state)  # warm-up: imports, first plans
    timings, previous = [], None
    for label, filters, after in scenarios(view):
        if after == -1:
            after = previous.next_after if previous is not None and previous.has_more else None
        t0 = time.perf_counter()
        page = browse_page(con, filters, view=view, state=state, after_clip_key=after, limit=25)
        timings.append((label, round((time.perf_counter() - t0) * 1000, 1), len(page.rows)))
        previous = page
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/uts_bench")
    parser.add_argument("--keep", action="store_true", help="keep the copied database")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    db = copy_of_bench_database(workdir, "browse_bench.duckdb")
    con = store.connect(db)
    con.close()
    mb_before = _db_mb(db)
    con = store.connect(db)
    had_postings = store_browse.index_status(con)["postings"] > 0

    report = text_index.index_captions(con)
    status = store_browse.index_status(con)
    con.close()  # the size on disk after the final checkpoint
    mb_after = _db_mb(db)
    con = store.connect(db)

    t0 = time.perf_counter()
    reindex = text_index.index_captions(con, np.arange(5_000, 6_000))
    reindex_s = time.perf_counter() - t0

    add_light_curation(con, [t for t in load_tag_matrix(con).tag_texts if t], 360_000)
    t0 = time.perf_counter()
    state = replay(list_decisions(con))
    view = compute_vocabulary(load_tag_matrix(con), state)
    view_s = time.perf_counter() - t0

    timings = time_pages(con, view, state)
    ms = [t[1] for t in timings]
    ms_sorted = sorted(ms)
    print(json.dumps({
        "clips": view.n_clips,
        "index": {"rebuild_of_existing_index": had_postings, "build_s": round(report.seconds, 1),
                  "terms": status["terms"], "postings": status["postings"], "db_mb_before": mb_before,
                  "db_mb_after": mb_after, "db_growth_mb": round(mb_after - mb_before, 1),
                  "reindex_1000_clips_s": round(reindex_s, 2), "reindex_postings": reindex.postings},
        "view_s": round(view_s, 2),
        "pages": len(ms), "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(ms_sorted[max(0, int(np.ceil(0.95 * len(ms))) - 1)], 1), "max_ms": max(ms),
        "cpus": os.cpu_count(), "machine": platform.platform(), "python": platform.python_version(),
    }))
    for label, elapsed_ms, n_rows in timings:
        print(f"{elapsed_ms:8.1f} ms  {n_rows:3d} rows  {label}")
    con.close()
    if not args.keep:
        for path in (db, db.with_suffix(".duckdb.wal")):
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
