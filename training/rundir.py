"""Writing the run directory: atomic JSON files, metrics lines, checkpoints. Its layout below is the contract
between training and the importer of the Runs page (curation/runs/importer.py).

Place in the flow: the trainer writes config.json before step 0, appends metrics.jsonl, replaces per_tag_ap.json
at each validation, saves checkpoints/step_N.pt + last.pt, and writes finished.json at the end; the probe appends
results.jsonl. Every whole-file write goes to a temporary name first and is renamed, so a concurrent reader (the
Runs page) never sees half a file.
Example: ``write_json_atomic(run_dir / "config.json", {...})``
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def write_json_atomic(path: Path, data: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()


def git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                                timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def save_checkpoint(run_dir: Path, step: int, payload: dict, keep: int) -> Path:
    import shutil

    import torch

    ckpt_dir = run_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    target = ckpt_dir / f"step_{step}.pt"
    tmp = ckpt_dir / f"step_{step}.pt.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, target)
    last_tmp = ckpt_dir / "last.pt.tmp"
    shutil.copyfile(target, last_tmp)
    os.replace(last_tmp, ckpt_dir / "last.pt")
    steps = sorted(int(m.group(1)) for p in ckpt_dir.glob("step_*.pt") if (m := re.fullmatch(r"step_(\d+)\.pt", p.name)))
    for old in steps[:-keep] if keep > 0 else []:
        (ckpt_dir / f"step_{old}.pt").unlink(missing_ok=True)
    return target
