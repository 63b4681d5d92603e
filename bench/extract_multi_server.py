"""Tag-extraction throughput over several model servers vs one, with one server dying mid-job (issue 17, "Beyond
one machine").

Each server is tests/chat_server.py in its own process, answering after a fixed latency (a stand-in for a vLLM
node: ``--concurrency`` requests in flight per server, each taking the latency); the dying one exits (its process
ends, its sockets close) after ``--die-after`` answers. The job is the real command, ``python -m curation
extract-tags --backend openai``, as a subprocess on a fresh DuckDB file of ``--clips`` captions:

1. one server (``--latency-ms``), model name ``bench-one``;
2. three servers: ``--latency-ms``, twice that, and ``--latency-ms`` dying after ``--die-after`` answers, model
   name ``bench-multi`` (a separate producer, so the same clips are tagged again).

Then it checks what the store holds for each run: one successful attempt per clip and no tag row twice.

    .venv/bin/python bench/extract_multi_server.py [--clips 3000] [--latency-ms 100] [--concurrency 8] [--die-after 300]
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
sys.path.insert(0, str(PROJECT))


def start_server(latency_ms: float, die_after: int | None = None) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, str(PROJECT / "tests" / "chat_server.py"), "--latency-ms", str(latency_ms)]
    if die_after is not None:
        command += ["--die-after", str(die_after)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    return process, f"http://127.0.0.1:{int(process.stdout.readline())}/v1"


def run_job(db: Path, model: str, urls: list[str], concurrency: int) -> tuple[dict, float]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    command = [sys.executable, "-m", "curation", "extract-tags", "--db", str(db), "--backend", "openai", "--model",
               model, "--concurrency", str(concurrency), "--json", "--no-progress"]
    for url in urls:
        command += ["--base-url", url]
    started = time.perf_counter()
    job = subprocess.run(command, check=False, env=env, cwd=PROJECT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if job.returncode != 0:
        raise SystemExit(f"the job failed ({job.returncode}): {job.stderr[-2000:]}")
    return json.loads(job.stdout), wall


def check_store(db: Path, producer: str, clips: int) -> str:
    from curation import store

    con = store.connect(db, read_only=True)
    try:
        attempts, ok, distinct = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE ok), count(DISTINCT clip_key) FROM extraction_attempts "
            "WHERE producer = ?", [producer]).fetchall()[0]
        rows, distinct_rows = con.execute(
            "SELECT count(*), count(DISTINCT (clip_key, tag_id)) FROM clip_tags WHERE extractor = ?",
            [producer]).fetchall()[0]
    finally:
        con.close()
    verdict = "OK" if attempts == ok == distinct == clips and rows == distinct_rows else "MISMATCH"
    return (f"{verdict}: {attempts} attempts ({ok} ok, {distinct} distinct clips of {clips}), {rows} tag rows "
            f"({distinct_rows} distinct)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=3000)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight per server")
    parser.add_argument("--die-after", type=int, default=300, help="answers before the third server dies")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="uts_multi_server_bench_"))
    manifest = work / "captions.jsonl"
    with manifest.open("w") as handle:
        for i in range(args.clips):
            caption = (f"A dog barks {i % 97} times near a busy street while a man speaks calmly; rain falls on a "
                       f"metal roof and a car passes by. In summary, an outdoor urban scene number {i}.")
            handle.write(json.dumps({"id": f"clip-{i:06d}", "audio_path": f"audio/clip-{i:06d}.wav",
                                     "caption": caption}) + "\n")
    db = work / "bench.duckdb"
    subprocess.run([sys.executable, "-m", "curation", "ingest", str(manifest), "--db", str(db)], check=True,
                   env={**os.environ, "PYTHONPATH": str(PROJECT)}, cwd=PROJECT, stdout=subprocess.DEVNULL)
    ceiling_one = args.concurrency / (args.latency_ms / 1000)
    print(f"{args.clips} captions, {args.concurrency} in flight per server, server latency {args.latency_ms:g} ms "
          f"(one server's ceiling {ceiling_one:.0f} captions/s)")

    processes = []
    try:
        one, one_url = start_server(args.latency_ms)
        processes.append(one)
        report, wall = run_job(db, "bench-one", [one_url], args.concurrency)
        single = report["per_second"]
        print(f"one server:    done {report['done']}, failed {report['failed']}, {report['seconds']:.1f} s in the job "
              f"-> {single:.1f} captions/s (whole command {wall:.1f} s)")
        print(f"  store: {check_store(db, 'openai:bench-one', args.clips)}")

        servers = [start_server(args.latency_ms), start_server(2 * args.latency_ms),
                   start_server(args.latency_ms, die_after=args.die_after)]
        processes += [p for p, _ in servers]
        report, wall = run_job(db, "bench-multi", [url for _, url in servers], args.concurrency)
        multi = report["per_second"]
        print(f"three servers: done {report['done']}, failed {report['failed']}, {report['seconds']:.1f} s in the "
              f"job -> {multi:.1f} captions/s = {multi / single:.2f}x one server (whole command {wall:.1f} s)")
        for (label, server) in zip((f"{args.latency_ms:g} ms", f"{2 * args.latency_ms:g} ms",
                                    f"{args.latency_ms:g} ms, dies after {args.die_after}"), report["servers"]):
            print(f"  {label}: {server['state']}, answered {server['answered']}, {server['errors']} failed requests, "
                  f"mean {server['mean_ms']} ms" + (f"; dropped: {server['reason']}" if server["drops"] else ""))
        print(f"  store: {check_store(db, 'openai:bench-multi', args.clips)}")
        print(f"  ceiling with all three alive: {ceiling_one * 2.5:.0f} captions/s; after the death: "
              f"{ceiling_one * 1.5:.0f} captions/s")
    finally:
        for process in processes:
            process.kill()


if __name__ == "__main__":
    main()
