"""Fixtures for training tests: a tiny export written with real WAV files, label json, cuts.jsonl.gz."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import make_cut

TAGS = ["tone", "low", "high", "noise"]


def synth_clip(kind: str, seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    freq = 300.0 if kind == "low" else 3000.0
    wave = 0.3 * np.sin(2 * np.pi * freq * rng.uniform(0.95, 1.05) * t)
    return (wave + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def write_export(root: Path, n_clips: int = 24, *, seed: int = 0, extra_tag: str | None = None,
                 rate: int = 16000) -> Path:
    """An export folder: audio/*.wav (relative sources), label_4.json, cuts.jsonl.gz, export.json."""
    rng = np.random.default_rng(seed)
    export = root / "export"
    (export / "audio").mkdir(parents=True)
    lines = []
    for i in range(n_clips):
        kind = "low" if i % 2 == 0 else "high"
        seconds = float(rng.uniform(0.6, 2.5))
        sf.write(export / "audio" / f"c{i}.wav", synth_clip(kind, seconds, rate, rng), rate)
        tags = ["tone", kind] + (["noise"] if i % 3 == 0 else [])
        if extra_tag and i == n_clips - 1:
            tags.append(extra_tag)
        cut = make_cut(f"clip-{i}", tags=tags, source=f"audio/c{i}.wav", duration=seconds)
        cut["recording"]["sampling_rate"] = rate
        cut["recording"]["num_samples"] = int(seconds * rate)
        cut["recording"]["duration"] = seconds
        cut["supervisions"][0]["duration"] = seconds
        lines.append(json.dumps(cut))
    with gzip.open(export / "cuts.jsonl.gz", "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    (export / "label_4.json").write_text(json.dumps({str(i): t for i, t in enumerate(TAGS)}))
    (export / "export.json").write_text(json.dumps({
        "export_id": 1, "k": 4, "vocabulary_size": 4, "rank_by": "tfidf", "last_decision_id": None,
        "content_hash": "test", "out_dir": str(export), "label_file": "label_4.json", "cuts_file": "cuts.jsonl.gz",
        "created_at": "2026-11-27T00:00:00+00:00", "created_by": "test"}))
    return export


@pytest.fixture
def tiny_export(tmp_path: Path) -> Path:
    return write_export(tmp_path)


@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch):
    """Tiny models on a 2-core machine shared with other jobs: spinning OpenMP threads made steps 2-5x slower than
    one thread (measured); subprocesses (resume, torchrun) inherit OMP_NUM_THREADS=1."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)
