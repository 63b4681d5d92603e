"""A tagging job at UTS scale: planning (which of 360,678 clips still need tags) and the offline extractor over
every caption, on a copy of the ingest benchmark's database (bench/ingest_scale.py builds it), then a rerun
that must skip everything. Peak memory matters: the captions alone are ~1 GB, so they are read per batch.

    .venv/bin/python bench/extract_scale.py [--workdir /tmp/uts_bench]
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest_scale import copy_of_bench_database  # noqa: E402
from curation import store  # noqa: E402
from curation.extraction.backends import OfflineTagBackend  # noqa: E402
from curation.extraction.jobs import run_job  # noqa: E402
from curation.store import extraction as store_extraction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/uts_bench", help="where bench/ingest_scale.py keeps its files")
    args = parser.parse_args()
    db = copy_of_bench_database(Path(args.workdir), "extract_scale.duckdb")
    try:
        con = store.connect(db)
        started = time.perf_counter()
        plan = store_extraction.plan_items(con, task="tags", producer="offline:lexicon-v1",
                                           prompt_hash=OfflineTagBackend().prompt_hash, limit=None, force=False)
        print(f"plan: {len(plan.clip_keys):,} clips to tag in {time.perf_counter() - started:.2f} s")
        report = run_job(con, OfflineTagBackend(), task="tags", batch_size=2048)
        print(f"offline job: done {report.done:,}, failed {report.failed:,}, {report.tags_per_clip:.2f} tags/clip, "
              f"{report.seconds:.1f} s ({report.per_second:,.0f} clips/s)")
        started = time.perf_counter()
        again = run_job(con, OfflineTagBackend(), task="tags")
        print(f"rerun: planned {again.planned}, skipped {again.skipped:,} in {time.perf_counter() - started:.2f} s")
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")
        con.close()
    finally:
        db.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
