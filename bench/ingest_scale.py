"""Ingest at UTS scale: write a synthetic Lhotse manifest (360,678 cuts, ~2,500-character captions, 10 tags each
from a Zipf-distributed vocabulary of ~20,000 raw tags), ingest it into a fresh DuckDB file in a child process,
and print wall seconds and peak RSS of that process. Target (issue 2): <= 90 s and <= 6 GB on 2 cores.

    .venv/bin/python bench/ingest_scale.py [--cuts 360678] [--workdir /tmp/uts_bench] [--db PATH]

The manifest is reused from --workdir when it already exists (writing it is not what is measured). --db names
the database to (re)create (default: WORKDIR/bench.duckdb, which other benchmarks copy); give another path to
measure without replacing that one.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent


def write_manifest(path: Path, n_cuts: int, n_tags: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(5000)] + ["the", "a", "sound", "of", "with", "and", "in", "music", "voice"]
    tag_names = [f"tag{i}" for i in range(n_tags)]
    ranks = np.arange(1, n_tags + 1)
    zipf_p = 1.0 / ranks
    zipf_p /= zipf_p.sum()
    word_ids = rng.integers(0, len(words), size=(n_cuts, 420))  # ~420 short words ~ 2,500 characters
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt", compresslevel=1, encoding="utf-8") as out:
        for i in range(n_cuts):
            tags = list(dict.fromkeys(rng.choice(n_tags, size=14, p=zipf_p).tolist()))[:10]
            caption = " ".join(words[j] for j in word_ids[i]) + ". In summary, a synthetic clip."
            cut_id = f"bench-{i:07d}"
            duration = float(round(rng.uniform(2.0, 10.0), 3))
            record = {
                "id": cut_id, "start": 0.0, "duration": duration, "channel": 0,
                "supervisions": [{"id": cut_id, "recording_id": cut_id, "start": 0.0, "duration": duration,
                                  "channel": 0, "custom": {"audio_tag": [tag_names[t] for t in tags],
                                                           "caption": caption,
                                                           "original_caption": ["a short human caption"]}}],
                "recording": {"id": cut_id, "sources": [{"type": "file", "channels": [0],
                                                         "source": ["audioset", "vggsound", "mls"][i % 3]}],
                              "sampling_rate": 16000, "num_samples": int(duration * 16000), "duration": duration,
                              "channel_ids": [0]},
                "type": "MonoCut"}
            out.write(json.dumps(record) + "\n")
    tmp.rename(path)


def copy_of_bench_database(workdir: Path, name: str) -> Path:
    """A fresh copy of this benchmark's ingested database (built first if missing), for benchmarks that write."""
    import shutil

    source_db = workdir / "bench.duckdb"
    if not source_db.exists():
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--workdir", str(workdir)], check=True)
    copy = workdir / name
    shutil.copy(source_db, copy)
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuts", type=int, default=360_678)
    parser.add_argument("--tags", type=int, default=20_000)
    parser.add_argument("--workdir", default="/tmp/uts_bench")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--db", help="database file to (re)create (default: WORKDIR/bench.duckdb)")
    parser.add_argument("--chunk-rows", type=int, help="rows per ingest chunk (default: the ingest's own)")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    manifest = workdir / f"cuts_{args.cuts}.jsonl.gz"
    if not manifest.exists():
        t0 = time.perf_counter()
        write_manifest(manifest, args.cuts, args.tags, args.seed)
        print(f"wrote {manifest} ({manifest.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s")
    db = Path(args.db) if args.db else workdir / "bench.duckdb"
    db.parent.mkdir(parents=True, exist_ok=True)
    for leftover in (db, db.with_suffix(".duckdb.wal")):
        leftover.unlink(missing_ok=True)
    t0 = time.perf_counter()
    command = [sys.executable, "-m", "curation", "ingest", str(manifest), "--db", str(db), "--json"]
    if args.chunk_rows:
        command += ["--chunk-rows", str(args.chunk_rows)]
    child = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True)
    wall_s = time.perf_counter() - t0
    if child.returncode != 0:
        sys.exit(f"ingest failed:\n{child.stderr}")
    summary = json.loads(child.stdout)
    peak_rss_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6  # KiB on Linux
    print(json.dumps({"cuts": args.cuts, "wall_s": round(wall_s, 1), "ingest_seconds": round(summary["seconds"], 1),
                      "peak_rss_gb": round(peak_rss_gb, 2), "clips": summary["clips"],
                      "tag_rows": summary["tag_rows"], "distinct_tags": summary["distinct_tags"],
                      "fast_path": summary["fast_path"], "db_mb": round(db.stat().st_size / 1e6),
                      "cpus": os.cpu_count(), "machine": platform.platform()}))


if __name__ == "__main__":
    main()
