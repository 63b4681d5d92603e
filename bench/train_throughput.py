"""Pre-training throughput on this machine: audio seconds per second for the tiny and small encoders.

Place in the flow: a benchmark of training/ (never opens the database). It writes a synthetic export (10-s WAV
clips: tones + noise, 4 tags) in a temporary folder, runs ``training.pretrain.main`` for a few steps per size and
objective, and reports the median ``audio_s_per_s`` of the train lines after the first (warm-up) interval; it also
times the model step alone on a fixed in-memory batch (fbank + SpecAugment + forward + backward + AdamW) to show
whether data loading is the bottleneck. Figures go to bench/RESULTS.md.
Example: ``.venv/bin/python bench/train_throughput.py --threads 1``
"""
from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))


def write_synthetic_export(root: Path, n_clips: int = 48, seconds: float = 10.0) -> Path:
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    export = root / "export"
    (export / "audio").mkdir(parents=True)
    tags = ["tone", "low", "high", "noise"]
    with gzip.open(export / "cuts.jsonl.gz", "wt") as handle:
        for i in range(n_clips):
            t = np.arange(int(seconds * 16000)) / 16000
            kind = "low" if i % 2 else "high"
            wave = 0.3 * np.sin(2 * np.pi * (300 if i % 2 else 3000) * t) + 0.05 * rng.standard_normal(len(t))
            path = export / "audio" / f"c{i}.wav"
            sf.write(path, wave.astype(np.float32), 16000)
            cid = f"c{i}"
            handle.write(json.dumps({
                "id": cid, "start": 0.0, "duration": seconds, "channel": 0, "type": "MonoCut",
                "supervisions": [{"id": cid, "recording_id": cid, "start": 0.0, "duration": seconds, "channel": 0,
                                  "custom": {"audio_tag": ["tone", kind, "noise"]}}],
                "recording": {"id": cid, "sources": [{"type": "file", "channels": [0], "source": str(path)}],
                              "sampling_rate": 16000, "num_samples": len(t), "duration": seconds,
                              "channel_ids": [0]}}) + "\n")
    (export / "label_4.json").write_text(json.dumps({str(i): t for i, t in enumerate(tags)}))
    (export / "export.json").write_text(json.dumps({
        "export_id": 0, "k": 4, "vocabulary_size": 4, "rank_by": "df", "last_decision_id": None,
        "content_hash": None, "out_dir": str(export), "label_file": "label_4.json", "cuts_file": "cuts.jsonl.gz",
        "created_at": None, "created_by": "bench/train_throughput.py"}))
    return export


def model_step_rate(size: str, objective: str, batch_s: float, steps: int) -> float:
    """Audio seconds per second of the step alone (no data loading), fixed batch of 10-s clips."""
    import torch

    from training.config import build_config
    from training.features import Frontend, spec_augment
    from training.model import UtsModel
    from training.trainer import compute_losses

    cfg = build_config(size, {"objective": objective}, [])
    model = UtsModel(cfg, 4, 4)
    frontend = Frontend()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    n = int(batch_s // 10)
    batch = {"audio": torch.randn(n, 160000) * 0.1, "audio_lens": torch.full((n,), 160000),
             "targets": torch.zeros(n, 4), "slots": torch.tensor([[0, 1, 4, -100]] * n)}
    times = []
    for i in range(steps + 2):
        t = time.perf_counter()
        feats, n_frames = frontend(batch["audio"], batch["audio_lens"])
        feats = spec_augment(feats, n_frames, time_masks=2, time_width=40, freq_masks=2, freq_width=15)
        loss = compute_losses(model(feats, n_frames), batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return n * 10.0 / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers")
    parser.add_argument("--batch-s", type=float, default=80.0, help="audio seconds per batch")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from training.pretrain import main as pretrain_main

    plan = [("tiny", "mtc", 40), ("tiny", "par", 40), ("small", "mtc", 12), ("small", "mtc+par", 12)]
    print(f"torch threads={args.threads}, workers={args.workers}, batch {args.batch_s:g} s of 10-s clips")
    print("| size | objective | params | steps | train loop audio-s/s (median) | model step alone audio-s/s |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        export = write_synthetic_export(Path(tmp))
        for size, objective, steps in plan:
            run = Path(tmp) / f"run_{size}_{objective}"
            code = pretrain_main(["--export", str(export), "--out", str(run), "--objective", objective, "--size", size,
                                  "--steps", str(steps), "--set", "log_every=4", "--set", f"max_batch_s={args.batch_s}",
                                  "--set", "val_fraction=0", "--set", f"num_workers={args.workers}",
                                  "--set", "ckpt_every=100000"])
            if code:
                return code
            lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
            rates = [x["audio_s_per_s"] for x in lines if x["kind"] == "train"][1:]
            params = json.loads((run / "config.json").read_text())["n_parameters"]
            alone = model_step_rate(size, objective, args.batch_s, 4)
            print(f"| {size} | {objective} | {params:,} | {steps} | {statistics.median(rates):.0f} | {alone:.0f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
