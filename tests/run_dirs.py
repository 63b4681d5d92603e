"""Run directories as the run directory contract (/work/notes/rundir.md) describes them, written by tests, and a
fake trainer package for the launcher tests (real processes, signals and files; the real trainer is exercised by
tests/app/test_runs_page.py)."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path


def write_config(run_dir: Path, *, export: dict | None = None, config: dict | None = None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    body = {"run_id": run_dir.name, "created_at": "2026-11-27T04:00:00+00:00",
            "config": {"objective": "mtc", "size": "tiny", "steps": 100, "lr": 1e-3, "max_batch_s": 160.0,
                       **(config or {})},
            "export": {"export_id": None, "k": 800, "dir": "/tmp/export", **(export or {})},
            "git_commit": "abc123", "argv": ["--out", str(run_dir)], "world_size": 1, "device": "cpu",
            "n_parameters": 123456}
    (run_dir / "config.json").write_text(json.dumps(body), encoding="utf-8")


def train_line(step: int, loss: float = 1.0, lr: float = 1e-3) -> dict:
    return {"kind": "train", "step": step, "time_s": step * 0.1, "loss": loss, "loss_mtc": loss, "lr": lr,
            "audio_s_per_s": 500.0, "grad_norm": 0.5}


def val_line(step: int, val_map: float) -> dict:
    return {"kind": "val", "step": step, "time_s": step * 0.1, "val_map": val_map, "val_loss": 0.7}


def append_lines(path: Path, records: list[dict], *, partial: str = "") -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in records) + partial)


def probe_line(task: str, pooling: str, mean: float, encoder: str = "pretrained", metric: str = "accuracy") -> dict:
    return {"task": task, "task_file": f"/tasks/{task}.csv", "metric": metric, "encoder": encoder,
            "pooling": pooling, "mean": mean, "std": 0.01, "folds": [mean] * 3, "n_clips": 30, "n_classes": 3,
            "checkpoint": "last.pt", "created_at": "2026-11-27T04:10:00+00:00"}


def write_tag_ap(run_dir: Path, step: int, ap: dict, positives: dict) -> None:
    tmp = run_dir / "per_tag_ap.json.tmp"
    tmp.write_text(json.dumps({"step": step, "ap": ap, "positives": positives}), encoding="utf-8")
    tmp.replace(run_dir / "per_tag_ap.json")


def finish(run_dir: Path, step: int, final_val_map: float | None) -> None:
    (run_dir / "finished.json").write_text(json.dumps({"step": step, "seconds": 1.0, "final_val_map": final_val_map}))


# A trainer that follows the contract and is steered by the test through the environment:
# FAKE_MODE=finish (write FAKE_STEPS steps and finished.json), wait (log, then wait for RUN_DIR/release, or to
# be killed), crash (print an error and exit 3). It records its own pid in RUN_DIR/trainer.pid.
FAKE_PRETRAIN = textwrap.dedent('''
    import json, os, sys, time
    from pathlib import Path

    def main(argv=None):
        argv = sys.argv[1:] if argv is None else argv
        out = Path(argv[argv.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "trainer.pid").write_text(str(os.getpid()))
        (out / "config.json").write_text(json.dumps({"run_id": out.name, "created_at": "now",
            "config": {"objective": "mtc", "size": "tiny", "steps": 5}, "export": {"k": 3},
            "git_commit": None, "argv": argv, "world_size": 1, "device": "cpu", "n_parameters": 10}))
        mode = os.environ.get("FAKE_MODE", "finish")
        print("fake trainer starting", mode, flush=True)
        if mode == "crash":
            print("RuntimeError: the fake trainer crashed on purpose", flush=True)
            return 3
        with open(out / "metrics.jsonl", "a") as metrics:
            for step in range(int(os.environ.get("FAKE_STEPS", "5"))):
                metrics.write(json.dumps({"kind": "train", "step": step, "time_s": step, "loss": 1.0 / (step + 1),
                                          "lr": 0.001, "audio_s_per_s": 100.0}) + "\\n")
                metrics.flush()
                print("step", step, flush=True)
        if mode == "wait":
            while not (out / "release").exists():
                time.sleep(0.05)
        (out / "finished.json").write_text(json.dumps({"step": 4, "seconds": 1.0, "final_val_map": None}))
        return 0

    if __name__ == "__main__":
        sys.exit(main())
''')

FAKE_PROBE = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    argv = sys.argv[1:]
    out = Path(argv[argv.index("--out") + 1])
    task = Path(argv[argv.index("--task") + 1])
    with open(out / "results.jsonl", "a") as handle:
        for pooling in ("mean", "attention"):
            handle.write(json.dumps({"task": task.stem, "task_file": str(task), "metric": "accuracy",
                "encoder": "pretrained", "pooling": pooling, "mean": 0.5, "std": 0.1, "folds": [0.5],
                "n_clips": 10, "n_classes": 2, "checkpoint": str(out), "created_at": "now"}) + "\\n")
''')


def fake_training_workdir(root: Path) -> Path:
    """A folder holding a ``training`` package with the fake pretrain and probe modules."""
    package = root / "training"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "pretrain.py").write_text(FAKE_PRETRAIN)
    (package / "probe.py").write_text(FAKE_PROBE)
    return root
