"""CaptionStew scale on one machine (issue 17): a synthetic UTS-layout manifest of 4,000,000 cuts, then ingest,
browse and export timed on the database it gives.

Corpus: Lhotse MonoCuts in the UTS layout (the cut of bench/ingest_scale.py), captions of ~2,500 characters made
of sentences drawn from a pool (words w0..w4999, Zipf-distributed as words of real text are), 10 distinct tags
per cut from a Zipf vocabulary of 100,000 raw tags (tag0 most frequent), one original caption each; the source
names a dataset (audioset / vggsound / mls), as in the release. Written by worker processes as gzip members
(level 1) of one .jsonl.gz.

    .venv/bin/python bench/scale_4m.py generate [--cuts 4000000] [--workdir /tmp/uts_scale]
    .venv/bin/python bench/scale_4m.py ingest   [--workdir /tmp/uts_scale] [--chunk-rows N]
    .venv/bin/python bench/scale_4m.py browse   [--workdir /tmp/uts_scale]
    .venv/bin/python bench/scale_4m.py export   [--workdir /tmp/uts_scale] [--k 3000]

``ingest`` runs ``python -m curation ingest MANIFEST --no-probe --json`` (caption index on, as always) in a child
process into WORKDIR/scale.duckdb (replaced), sampling every 0.5 s the resident memory of the child and its
descendants and the disk used by the database, its WAL and DuckDB's spill folder; it prints wall time, peak RSS
and the sizes. ``browse`` times ~50 browse pages with mixed filters (the scenarios of bench/browse_scale.py) after
a merge, a prune and 300 audited clips; ``export`` exports the vocabulary at K in a child process (wall time,
peak RSS). Targets (issue 17): ingest <= 20 min and peak RSS <= 4 GB; browse p95 <= 200 ms; export <= 3 min.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
WORDS = 5_000
SENTENCES = 100_000  # the caption pool: ~12 words each
SENTENCES_PER_CAPTION = 49  # ~570 words, ~2,500 characters
RAW_TAGS = 100_000
TAGS_PER_CUT = 10
BLOCK = 50_000  # cuts per gzip member (one worker task)
SOURCES = ("audioset", "vggsound", "mls")


def _zipf(n: int, s: float = 1.0) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** s
    return np.cumsum(p / p.sum())


def _sentence_pool(seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(WORDS)] + ["the", "a", "sound", "of", "with", "and", "in", "music",
                                                         "voice"])
    # Zipf over the w-words (w0 commonest); function words sprinkled in as real captions have them.
    cdf = _zipf(WORDS)
    lengths = rng.integers(8, 16, size=SENTENCES)
    pool = []
    for length in lengths.tolist():
        ids = np.searchsorted(cdf, rng.random(length))
        ids[rng.random(length) < 0.25] = WORDS + rng.integers(0, 9)
        sentence = " ".join(words[ids].tolist())
        pool.append(sentence[:1].upper() + sentence[1:] + ".")
    return pool


_POOL: list[str] = []
_TAG_CDF: np.ndarray | None = None


def _init_worker(seed: int) -> None:
    global _POOL, _TAG_CDF
    _POOL = _sentence_pool(seed)
    _TAG_CDF = _zipf(RAW_TAGS)


def _block(args: tuple[int, int, int, int]) -> bytes:
    """Cuts [start, start + n) as one gzip member (deterministic per block)."""
    start, n, seed, level = args
    rng = np.random.default_rng([seed, start])
    sentence_ids = rng.integers(0, len(_POOL), size=(n, SENTENCES_PER_CAPTION)).tolist()
    draws = np.searchsorted(_TAG_CDF, rng.random((n, 16))).tolist()
    fill = rng.integers(0, RAW_TAGS, size=(n, TAGS_PER_CUT)).tolist()
    durations = np.round(rng.uniform(2.0, 10.0, size=n), 3).tolist()
    pool = _POOL
    lines = []
    for row in range(n):
        index = start + row
        tags = list(dict.fromkeys(draws[row]))[:TAGS_PER_CUT]
        for extra in fill[row]:  # Zipf draws repeat the head: top up to 10 distinct
            if len(tags) == TAGS_PER_CUT:
                break
            if extra not in tags:
                tags.append(extra)
        caption = " ".join([pool[j] for j in sentence_ids[row]]) + " In summary, a synthetic clip."
        cut_id = f"scale-{index:08d}"
        duration = durations[row]
        samples = int(duration * 16000)
        tag_json = ", ".join(f'"tag{t}"' for t in tags)
        lines.append(
            f'{{"id": "{cut_id}", "start": 0.0, "duration": {duration}, "channel": 0, "supervisions": [{{"id": '
            f'"{cut_id}", "recording_id": "{cut_id}", "start": 0.0, "duration": {duration}, "channel": 0, '
            f'"custom": {{"audio_tag": [{tag_json}], "caption": "{caption}", "original_caption": '
            f'["a short human caption {index % 1000}"]}}}}], "recording": {{"id": "{cut_id}", "sources": '
            f'[{{"type": "file", "channels": [0], "source": "{SOURCES[index % 3]}"}}], "sampling_rate": 16000, '
            f'"num_samples": {samples}, "duration": {duration}, "channel_ids": [0]}}, "type": "MonoCut"}}\n')
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress("".join(lines).encode()) + compressor.flush()


def generate(path: Path, cuts: int, seed: int, workers: int, level: int) -> None:
    tmp = path.with_name(path.name + ".part")
    tasks = [(start, min(BLOCK, cuts - start), seed, level) for start in range(0, cuts, BLOCK)]
    started = time.perf_counter()
    with open(tmp, "wb") as out, multiprocessing.Pool(workers, _init_worker, (seed,)) as pool:
        for done, member in enumerate(pool.imap(_block, tasks), start=1):
            out.write(member)
            if done % 10 == 0 or done == len(tasks):
                print(f"  {min(done * BLOCK, cuts):,} cuts, {out.tell() / 1e9:.2f} GB, "
                      f"{time.perf_counter() - started:.0f} s", flush=True)
    tmp.rename(path)


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (from /proc)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            with open(f"/proc/{current}/task/{current}/children") as children:
                stack += [int(c) for c in children.read().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def _disk_bytes(db: Path) -> int:
    total = 0
    for item in (db, db.with_name(db.name + ".wal")):
        if item.exists():
            total += item.stat().st_size
    spill = db.with_name(db.name + ".tmp")
    if spill.is_dir():
        for file in spill.rglob("*"):
            try:
                total += file.stat().st_size
            except FileNotFoundError:
                pass
    return total


def run_measured(command: list[str], db: Path | None = None) -> dict:
    """Run a child; sample its process tree's RSS and the database's disk use every 0.5 s."""
    peak = {"rss": 0, "disk": 0}
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def sample() -> None:
        while child.poll() is None:
            peak["rss"] = max(peak["rss"], _tree_rss(child.pid))
            if db is not None:
                peak["disk"] = max(peak["disk"], _disk_bytes(db))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = child.communicate()
    wall = time.perf_counter() - started
    sampler.join()
    if child.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({child.returncode}):\n{err[-4000:]}")
    import resource

    return {"wall_s": round(wall, 1), "peak_rss_gb": round(peak["rss"] / 1e9, 2),
            "peak_rss_single_process_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6, 2),
            "peak_disk_gb": round(peak["disk"] / 1e9, 2), "stdout": out}


def _machine() -> dict:
    return {"cpus": os.cpu_count(), "machine": platform.platform(), "load_avg": [round(x, 2) for x in os.getloadavg()]}


def cmd_generate(args) -> None:
    path = Path(args.workdir) / f"cuts_{args.cuts}.jsonl.gz"
    if path.exists() and not args.force:
        print(f"{path} exists ({path.stat().st_size / 1e9:.2f} GB); --force to write it again")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    generate(path, args.cuts, args.seed, args.workers, args.level)
    print(json.dumps({"manifest": str(path), "cuts": args.cuts, "gz_gb": round(path.stat().st_size / 1e9, 2),
                      "seconds": round(time.perf_counter() - started, 1), **_machine()}))


def cmd_ingest(args) -> None:
    workdir = Path(args.workdir)
    manifest = Path(args.manifest) if args.manifest else workdir / f"cuts_{args.cuts}.jsonl.gz"
    db = Path(args.db) if args.db else workdir / "scale.duckdb"
    for leftover in (db, db.with_name(db.name + ".wal")):
        leftover.unlink(missing_ok=True)
    command = [sys.executable, "-m", "curation", "ingest", str(manifest), "--db", str(db), "--no-probe", "--json"]
    if args.chunk_rows:
        command += ["--chunk-rows", str(args.chunk_rows)]
    load_before = os.getloadavg()
    measured = run_measured(command, db)
    summary = json.loads(measured.pop("stdout"))
    print(json.dumps({"cuts": summary["clips"], **measured, "ingest_seconds": round(summary["seconds"], 1),
                      "db_gb": round(_disk_bytes(db) / 1e9, 2), "tag_rows": summary["tag_rows"],
                      "captions": summary["captions"], "distinct_tags": summary["distinct_tags"],
                      "fast_path": summary["fast_path"], "phases_s": summary.get("phases"), "manifest_gb": round(manifest.stat().st_size / 1e9, 2),
                      "load_before": [round(x, 2) for x in load_before], **_machine()}))


def cmd_browse(args) -> None:
    sys.path.insert(0, str(PROJECT))
    sys.path.insert(0, str(PROJECT / "bench"))
    from browse_scale import add_light_curation, time_pages

    from curation import store
    from curation.vocabulary.decisions import list_decisions, replay
    from curation.vocabulary.ranking import compute_vocabulary, load_tag_matrix

    db = Path(args.db) if args.db else Path(args.workdir) / "scale.duckdb"
    con = store.connect(db)
    t0 = time.perf_counter()
    matrix = load_tag_matrix(con)
    matrix_s = time.perf_counter() - t0
    if not list_decisions(con):  # the same light curation and audit state as bench/browse_scale.py, once
        add_light_curation(con, [t for t in matrix.tag_texts if t],
                           con.execute("SELECT count(*) FROM clips").fetchall()[0][0])
        matrix = load_tag_matrix(con)
    t0 = time.perf_counter()
    state = replay(list_decisions(con))
    view = compute_vocabulary(matrix, state)
    view_s = time.perf_counter() - t0
    timings = time_pages(con, view, state)
    ms = sorted(t[1] for t in timings)
    print(json.dumps({"pages": len(ms), "p50_ms": round(statistics.median(ms), 1),
                      "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1), "max_ms": ms[-1],
                      "slowest": sorted(timings, key=lambda t: -t[1])[:8], "tag_matrix_load_s": round(matrix_s, 1),
                      "vocabulary_view_s": round(view_s, 2), **_machine()}))


def cmd_export(args) -> None:
    workdir = Path(args.workdir)
    db = Path(args.db) if args.db else workdir / "scale.duckdb"
    out = workdir / f"export_k{args.k}"
    command = [sys.executable, "-m", "curation", "export", "--db", str(db), "--k", str(args.k), "--out", str(out),
               "--by", "bench"]
    measured = run_measured(command)
    stdout = measured.pop("stdout")
    cuts = out / "cuts.jsonl.gz"
    print(json.dumps({"k": args.k, **measured, "export_cuts_gb": round(cuts.stat().st_size / 1e9, 2)
                      if cuts.exists() else None, "report_tail": stdout[-600:], **_machine()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/uts_scale")
    parser.add_argument("--cuts", type=int, default=4_000_000)
    parser.add_argument("--db", help="database file (default: WORKDIR/scale.duckdb)")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="write the synthetic manifest")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--workers", type=int, default=2)
    gen.add_argument("--level", type=int, default=1, help="gzip level (1: fast)")
    gen.add_argument("--force", action="store_true")
    ing = commands.add_parser("ingest", help="time the ingest (audio probing off, caption index on)")
    ing.add_argument("--manifest", help="default: WORKDIR/cuts_<cuts>.jsonl.gz")
    ing.add_argument("--chunk-rows", type=int)
    commands.add_parser("browse", help="time ~50 browse pages with mixed filters")
    exp = commands.add_parser("export", help="time the export at K")
    exp.add_argument("--k", type=int, default=3000)
    args = parser.parse_args()
    {"generate": cmd_generate, "ingest": cmd_ingest, "browse": cmd_browse, "export": cmd_export}[args.command](args)


if __name__ == "__main__":
    main()
