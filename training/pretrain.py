"""CLI: pre-train an encoder on an export and write a run directory (its layout: training/rundir.py).

Example: ``python -m training.pretrain --export exports/v800 --out runs/r1 --objective mtc --size tiny
--steps 200 --device cpu --set lr=2e-3 --set max_batch_s=80``
Under torchrun (``torchrun --nproc_per_node=N -m training.pretrain ...``) it runs DDP; rerunning the same
command with the same --out resumes from checkpoints/last.pt.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from curation.errors import UtsError
from training.config import OBJECTIVES, SIZES, build_config


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.pretrain", description=__doc__.splitlines()[0])
    parser.add_argument("--export", required=True, type=Path, help="export folder (label_K.json, cuts.jsonl.gz)")
    parser.add_argument("--out", required=True, type=Path, help="run directory (created; resumed if it has last.pt)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="mtc")
    parser.add_argument("--size", choices=SIZES, default="tiny")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default: TrainConfig.steps)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any TrainConfig field (repeatable); unknown keys list the valid ones")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        flags: dict[str, object] = {"objective": args.objective}
        if args.steps is not None:
            flags["steps"] = args.steps
        cfg = build_config(args.size, flags, args.overrides)
        from training.trainer import run_training

        return run_training(cfg, args.export, args.out, args.device, argv)
    except UtsError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
