"""training.pretrain end to end on a tiny export written by the test (real WAV files, label json, cuts.jsonl.gz):
the run-dir contract, --set parsing, typed errors, resume after a kill, a 2-process gloo DDP run under torchrun."""
from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import PROJECT

from training.errors import ConfigKeyError, ExportError, UnknownTagError
from training.pretrain import main

FAST = ["--set", "max_clip_s=2", "--set", "max_batch_s=6", "--set", "num_workers=0", "--set", "log_every=1",
        "--set", "val_fraction=0.25"]


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_three_steps_of_tiny_write_the_run_dir_contract(tiny_export, tmp_path):
    run = tmp_path / "run1"
    argv = ["--export", str(tiny_export), "--out", str(run), "--objective", "mtc+par", "--size", "tiny",
            "--steps", "3", "--device", "cpu", *FAST, "--set", "val_every=3", "--set", "lr=3e-3"]
    assert main(argv) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["run_id"] == "run1"
    assert config["config"]["objective"] == "mtc+par" and config["config"]["steps"] == 3
    assert config["config"]["lr"] == 3e-3 and config["config"]["max_clip_s"] == 2.0  # typed --set values
    from training.config import field_names

    assert set(config["config"]) == set(field_names())
    assert config["export"]["export_id"] == 1 and config["export"]["dir"] == str(tiny_export.resolve())
    assert config["world_size"] == 1 and config["device"] == "cpu" and config["argv"] == argv
    assert 0 < config["n_parameters"] < 1_000_000
    assert "git_commit" in config and "created_at" in config
    metrics = read_metrics(run)
    train = [m for m in metrics if m["kind"] == "train"]
    assert [m["step"] for m in train] == [1, 2, 3]
    for m in train:
        assert {"time_s", "loss", "loss_mtc", "loss_par", "lr", "audio_s_per_s", "grad_norm"} <= set(m)
        assert m["audio_s_per_s"] > 0 and m["loss"] > 0
    val = [m for m in metrics if m["kind"] == "val"]
    assert len(val) == 1 and val[0]["step"] == 3 and 0.0 <= val[0]["val_map"] <= 1.0
    per_tag = json.loads((run / "per_tag_ap.json").read_text())
    assert per_tag["step"] == 3 and set(per_tag["ap"]) == {"tone", "low", "high", "noise"}
    positives = per_tag["positives"]  # every held-out clip is a tone and either low or high
    assert positives["tone"] == positives["low"] + positives["high"] > 0
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "checkpoints" / "step_3.pt").is_file()
    assert json.loads((run / "finished.json").read_text())["step"] == 3


def test_set_with_an_unknown_key_lists_the_valid_keys(tiny_export, tmp_path, capsys):
    argv = ["--export", str(tiny_export), "--out", str(tmp_path / "r"), "--steps", "1", "--set", "learning_rate=1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'learning_rate'" in err and "lr" in err and "max_batch_s" in err
    assert not (tmp_path / "r").exists()
    from training.config import parse_overrides

    with pytest.raises(ConfigKeyError):
        parse_overrides(["nope=1"])
    assert main(["--export", str(tiny_export), "--out", str(tmp_path / "r"), "--set", "steps=many"]) == 2
    assert "expected a value of type int, found 'many'" in capsys.readouterr().err


def test_a_clip_with_a_tag_outside_the_label_map_is_named(tmp_path):
    from conftest import write_export

    export = write_export(tmp_path, n_clips=6, extra_tag="violin")
    from training.data import load_export

    with pytest.raises(UnknownTagError) as info:
        load_export(export, max_clip_s=2.0)
    assert info.value.clip_id == "clip-5" and "violin" in str(info.value) and "cuts.jsonl.gz:6" in str(info.value)
    assert main(["--export", str(export), "--out", str(tmp_path / "r"), "--steps", "1"]) == 2


def test_missing_export_files_are_typed_errors(tiny_export, tmp_path, capsys):
    from training.data import load_export

    (tiny_export / "cuts.jsonl.gz").unlink()
    with pytest.raises(ExportError, match="cuts.jsonl.gz"):
        load_export(tiny_export, max_clip_s=2.0)
    (tiny_export / "export.json").unlink()
    assert main(["--export", str(tiny_export), "--out", str(tmp_path / "r"), "--steps", "1"]) == 2
    assert "export.json" in capsys.readouterr().err
    assert main(["--export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r"), "--steps", "1"]) == 2


def _pretrain_cmd(export: Path, run: Path, steps: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "training.pretrain", "--export", str(export), "--out", str(run), "--objective",
            "mtc", "--size", "tiny", "--steps", str(steps), "--device", "cpu", *FAST, "--set", "val_every=1000",
            "--set", "ckpt_every=4", *extra]


def test_a_killed_run_resumes_from_last_pt_and_matches_an_uninterrupted_run(tiny_export, tmp_path):
    steps = 16
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    reference = tmp_path / "reference"
    subprocess.run(_pretrain_cmd(tiny_export, reference, steps), cwd=PROJECT, env=env, check=True,
                   capture_output=True, timeout=120)
    run = tmp_path / "killed"
    proc = subprocess.Popen(_pretrain_cmd(tiny_export, run, steps), cwd=PROJECT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    last = run / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 60
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # polling for the checkpoint file, the condition we wait on
    proc.kill()
    proc.wait(timeout=30)
    assert last.exists(), proc.stdout.read().decode()[-2000:]
    assert not (run / "finished.json").exists(), "the run ended before it could be killed"
    killed_at = max(m["step"] for m in read_metrics(run))
    assert killed_at < steps
    result = subprocess.run(_pretrain_cmd(tiny_export, run, steps), cwd=PROJECT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((run / "finished.json").read_text())["step"] == steps
    lines = [m for m in read_metrics(run) if m["kind"] == "train"]
    assert [m["step"] for m in lines[:killed_at]] == list(range(1, killed_at + 1))  # the killed run's lines stay
    resumed_at = int(re.search(r"resuming from .* at step (\d+)", result.stdout).group(1))
    assert resumed_at % 4 == 0 and resumed_at <= killed_at  # a checkpoint step (ckpt_every=4)
    assert lines[killed_at]["step"] == resumed_at + 1  # appended after the killed run's lines
    last_per_step = {m["step"]: m for m in lines}  # append-only: readers keep the last line per step
    metrics = [last_per_step[s] for s in sorted(last_per_step)]
    assert [m["step"] for m in metrics] == list(range(1, steps + 1))  # continued to the end, no gap
    expected = [m for m in read_metrics(reference) if m["kind"] == "train"]
    # Same batches, crops, SpecAugment draws and optimiser state after the resume: the same losses.
    assert [round(m["loss"], 4) for m in metrics] == [round(m["loss"], 4) for m in expected]


def test_two_process_gloo_ddp_under_torchrun(tiny_export, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip(f"{torchrun} is absent")
    run = tmp_path / "ddp"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "training.pretrain", "--export",
           str(tiny_export), "--out", str(run), "--objective", "par", "--size", "tiny", "--steps", "3", "--device",
           "cpu", *FAST, "--set", "val_every=3"]
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((run / "config.json").read_text())
    assert config["world_size"] == 2
    train = [m for m in read_metrics(run) if m["kind"] == "train"]
    assert [m["step"] for m in train] == [1, 2, 3] and all("loss_par" in m for m in train)
    assert json.loads((run / "finished.json").read_text())["step"] == 3


def test_cuts_are_read_with_lhotse_and_relative_sources_resolve_against_the_export(tiny_export):
    from training.data import load_export

    export = load_export(tiny_export, max_clip_s=1.0)
    clip = export.clips["clip-0"]
    assert Path(clip.audio_path) == (tiny_export / "audio" / "c0.wav").resolve()
    assert clip.tag_ids == (0, 1, 3)  # tone, low, noise in label-id order
    assert max(c.duration for c in export.cuts) <= 1.0  # the sampler sees the cropped duration
    with gzip.open(tiny_export / "cuts.jsonl.gz", "rt") as handle:
        assert sum(1 for _ in handle) == len(export.clips) == 24
