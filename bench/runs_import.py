"""Benchmark: importing run directories and loading the Compare view.

1. One run directory with 100,000 metric lines (train lines every step, a validation line every 20 steps),
   20 probe results and per-tag AP over 2,000 tags: a cold import into a fresh database, an incremental import
   of 1,000 appended lines, and an import with nothing new (what every live-refresh tick costs).
2. 20 run directories of 5,000 metric lines each: the Compare view's data load for all 20 (metrics, settings
   diff, probe table) and the Vocabulary size view's grouping.

Usage: .venv/bin/python bench/runs_import.py [--lines 100000] [--runs 20]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curation import store  # noqa: E402
from curation.runs.compare import compare_runs, k_groups  # noqa: E402
from curation.runs.follow import refresh_runs
from curation.runs.importer import import_run_dir


def write_run(run_dir: Path, lines: int, *, k: int, lr: float, tags: int = 2000) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({
        "run_id": run_dir.name, "created_at": "2026-11-27T00:00:00+00:00",
        "config": {"objective": "mtc", "size": "small", "steps": lines, "lr": lr, "max_batch_s": 160.0},
        "export": {"export_id": None, "k": k}, "git_commit": "bench", "argv": [], "world_size": 8,
        "device": "cuda", "n_parameters": 7_000_000}))
    with open(run_dir / "metrics.jsonl", "w") as handle:
        written = step = 0
        while written < lines:
            handle.write(json.dumps({"kind": "train", "step": step, "time_s": step * 0.2, "loss": 1.0 / (1 + step),
                                     "loss_mtc": 1.0 / (1 + step), "lr": lr, "audio_s_per_s": 5000.0,
                                     "grad_norm": 0.7}) + "\n")
            written += 1
            if step % 20 == 19 and written < lines:
                handle.write(json.dumps({"kind": "val", "step": step, "time_s": step * 0.2,
                                         "val_map": step / (lines * 2), "val_loss": 0.5}) + "\n")
                written += 1
            step += 1
    with open(run_dir / "results.jsonl", "w") as handle:
        for task in range(5):
            for encoder in ("pretrained", "random_init"):
                for pooling in ("mean", "attention"):
                    handle.write(json.dumps({"task": f"task{task}", "task_file": f"/t/task{task}.csv",
                                             "metric": "accuracy", "encoder": encoder, "pooling": pooling,
                                             "mean": 0.5 + lr, "std": 0.01, "folds": [0.5] * 5, "n_clips": 1000,
                                             "n_classes": 10, "checkpoint": "last.pt", "created_at": "now"}) + "\n")
    (run_dir / "per_tag_ap.json").write_text(json.dumps({
        "step": lines, "ap": {f"tag{i}": 0.5 for i in range(tags)}, "positives": {f"tag{i}": 10 for i in range(tags)}}))
    (run_dir / "finished.json").write_text(json.dumps({"step": lines, "seconds": 1.0, "final_val_map": 0.4}))


def timed(fn, repeats: int = 1):
    times = []
    result = None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return result, times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--lines-per-run", type=int, default=5_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        con = store.connect(root / "bench.duckdb")
        big = root / "runs" / "big"
        started = time.perf_counter()
        write_run(big, args.lines, k=1000, lr=1e-3)
        size_mb = (big / "metrics.jsonl").stat().st_size / 1e6
        print(f"wrote {args.lines:,} metric lines ({size_mb:.1f} MB) in {time.perf_counter() - started:.1f} s")
        summary, [cold] = timed(lambda: import_run_dir(con, big))
        print(f"cold import: {cold:.2f} s ({summary.metric_lines:,} lines, {summary.probe_results} probe results, "
              f"{summary.tag_ap_rows:,} per-tag AP rows)")
        with open(big / "metrics.jsonl", "a") as handle:
            for step in range(args.lines, args.lines + 1000):
                handle.write(json.dumps({"kind": "train", "step": step, "loss": 0.1, "lr": 1e-4}) + "\n")
        summary, [incremental] = timed(lambda: import_run_dir(con, big))
        print(f"incremental import of {summary.metric_lines:,} appended lines: {incremental * 1000:.1f} ms")
        _, noop = timed(lambda: import_run_dir(con, big), repeats=20)
        print(f"import with nothing new: median {statistics.median(noop) * 1000:.1f} ms over 20")
        _, tick = timed(lambda: refresh_runs(con), repeats=20)
        print(f"refresh of every active run (none active): median {statistics.median(tick) * 1000:.1f} ms")

        ids = []
        started = time.perf_counter()
        for index in range(args.runs):
            run_dir = root / "runs" / f"r{index:02d}"
            write_run(run_dir, args.lines_per_run, k=(800, 1000, 1500, 2000, 3000)[index % 5],
                      lr=(1e-3, 3e-4, 1e-4, 3e-3)[index // 5 % 4])
            import_run_dir(con, run_dir)
            ids.append(run_dir.name)
        print(f"wrote and imported {args.runs} runs x {args.lines_per_run:,} lines in "
              f"{time.perf_counter() - started:.1f} s")
        comparison, compare_times = timed(lambda: compare_runs(con, ids), repeats=5)
        print(f"compare view data for {args.runs} runs ({len(comparison.metrics):,} metric rows, "
              f"{len(comparison.config_diff)} differing settings, probe table {comparison.probe_table.shape}): "
              f"median {statistics.median(compare_times) * 1000:.0f} ms, max {max(compare_times) * 1000:.0f} ms")
        refresh_runs(con)
        groups, group_times = timed(lambda: k_groups(con), repeats=5)
        print(f"K groups over {args.runs + 1} runs ({len(groups)} groups): median "
              f"{statistics.median(group_times) * 1000:.0f} ms")
        con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
