"""Tag-extraction client throughput against a loopback chat server that answers in 50 ms (issue target:
>= 200 captions/s with 32 requests in flight on a 2-core machine).

The server runs in its own process (tests/chat_server.py), the job is the real one: a flat JSONL of
``id, audio_path, caption`` ingested into a fresh DuckDB file, then ``python -m curation extract-tags
--backend openai`` as a subprocess (planning, requests, parsing, batched writes, attempts, job log).

    .venv/bin/python bench/extract_throughput.py [--clips 6000] [--concurrency 32] [--latency-ms 50]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="uts_extract_bench_"))
    manifest = work / "captions.jsonl"
    with manifest.open("w") as handle:
        for i in range(args.clips):
            caption = (f"A dog barks {i % 97} times near a busy street while a man speaks calmly; rain falls on a "
                       f"metal roof and a car passes by. In summary, an outdoor urban scene number {i}.")
            handle.write(json.dumps({"id": f"clip-{i:06d}", "audio_path": f"audio/clip-{i:06d}.wav",
                                     "caption": caption}) + "\n")
    db = work / "bench.duckdb"
    python = sys.executable
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    subprocess.run([python, "-m", "curation", "ingest", str(manifest), "--db", str(db)], check=True, env=env,
                   cwd=PROJECT, stdout=subprocess.DEVNULL)
    server = subprocess.Popen([python, str(PROJECT / "tests" / "chat_server.py"), "--latency-ms",
                               str(args.latency_ms)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        started = time.perf_counter()
        job = subprocess.run(
            [python, "-m", "curation", "extract-tags", "--db", str(db), "--backend", "openai", "--base-url",
             f"http://127.0.0.1:{port}/v1", "--model", "bench", "--concurrency", str(args.concurrency), "--json",
             "--no-progress"], check=True, env=env, cwd=PROJECT, capture_output=True, text=True)
        wall = time.perf_counter() - started
    finally:
        server.kill()
    report = json.loads(job.stdout)
    print(f"{args.clips} captions, {args.concurrency} in flight, server latency {args.latency_ms:g} ms")
    print(f"job: done {report['done']}, failed {report['failed']}, {report['tags_per_clip']} tags/clip, "
          f"{report['seconds']:.2f} s in the job -> {report['per_second']:.1f} captions/s")
    print(f"whole command (start-up, planning included): {wall:.2f} s -> {args.clips / wall:.1f} captions/s")
    print(f"ceiling at this latency and concurrency: {args.concurrency / (args.latency_ms / 1000):.0f} captions/s")


if __name__ == "__main__":
    main()
