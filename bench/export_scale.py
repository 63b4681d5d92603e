"""Export at UTS scale: time and peak memory of ``export_vocabulary`` at K = 3,000.

Uses a copy of the corpus written by bench/ingest_scale.py (360,678 clips with ~2,500-character captions; built
first if missing), or ``--db`` (e.g. the 4M-clip database of bench/scale_4m.py; issue 17's target there: <= 3 min
in bounded memory). Prints wall time, peak RSS of this process, cuts kept and the size of cuts.jsonl.gz.

    .venv/bin/python bench/export_scale.py [--workdir /tmp/uts_bench] [--db DB] [--k 3000]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from ingest_scale import copy_of_bench_database

from curation import store
from curation.vocabulary.export import export_vocabulary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/uts_bench")
    parser.add_argument("--db", help="export from this database (opened as it is: the export adds one row)")
    parser.add_argument("--k", type=int, default=3000)
    args = parser.parse_args()
    db = Path(args.db) if args.db else copy_of_bench_database(Path(args.workdir), "export_bench.duckdb")
    con = store.connect(db)
    out = Path(tempfile.mkdtemp(prefix="uts_export_bench_"))
    shutil.rmtree(out)
    t0 = time.perf_counter()
    record = export_vocabulary(con, k=args.k, out_dir=out, by="bench")
    seconds = time.perf_counter() - t0
    print(json.dumps({
        "clips": record.clips_kept + record.clips_dropped, "k": args.k, "clips_kept": record.clips_kept,
        "seconds": round(seconds, 1), "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "cuts_gz_mb": round((out / "cuts.jsonl.gz").stat().st_size / 2**20, 1), "load_average": os.getloadavg(),
        "machine": platform.platform()}))
    con.close()
    shutil.rmtree(out)
    if not args.db:
        db.unlink()


if __name__ == "__main__":
    main()
