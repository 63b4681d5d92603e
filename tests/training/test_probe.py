"""training.probe on a tiny synthetic task (two clearly different tones): beats chance with every encoder and both
poolings, writes results.jsonl per the contract, reuses its feature cache; bad task files are typed errors."""
from __future__ import annotations

import csv
import json

import pytest

from training.errors import CheckpointError, TaskFileError
from training.pretrain import main as pretrain_main
from training.probe import main, read_task, resolve_checkpoint


@pytest.fixture(scope="module")
def probe_setup(tmp_path_factory):
    from conftest import write_export

    root = tmp_path_factory.mktemp("probe")
    export = write_export(root, n_clips=24, seed=5)
    run = root / "run"
    assert pretrain_main(["--export", str(export), "--out", str(run), "--objective", "mtc", "--size", "tiny",
                          "--steps", "2", "--set", "num_workers=0", "--set", "max_clip_s=2", "--set",
                          "max_batch_s=8", "--set", "val_fraction=0"]) == 0
    task = export / "tones.csv"
    with open(task, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["audio_path", "label", "group"])
        for i in range(24):  # relative paths: they resolve against the task file's folder
            writer.writerow([f"audio/c{i}.wav", "low" if i % 2 == 0 else "high", f"g{i // 2}"])
    return run, task


def test_probe_beats_chance_and_writes_results_per_the_contract(probe_setup):
    run, task = probe_setup
    assert main(["--checkpoint", str(run), "--task", str(task), "--out", str(run), "--folds", "3"]) == 0
    results = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert {(r["encoder"], r["pooling"]) for r in results} == {
        (e, p) for e in ("pretrained", "random_init", "fbank") for p in ("mean", "attention")}
    for r in results:
        assert r["task"] == "tones" and r["task_file"] == str(task.resolve()) and r["metric"] == "accuracy"
        assert r["n_clips"] == 24 and r["n_classes"] == 2 and len(r["folds"]) == 3
        assert r["checkpoint"] == str(run / "checkpoints" / "last.pt") and "created_at" in r
        assert r["mean"] >= 0.8, r  # chance is 0.5: a 300 Hz tone against a 3 kHz tone
        assert r["std"] >= 0.0
    cache = sorted((run / "probe_cache").glob("*.pt"))
    assert len(cache) == 3
    stamps = [p.stat().st_mtime_ns for p in cache]
    assert main(["--checkpoint", str(run / "checkpoints" / "last.pt"), "--task", str(task), "--out", str(run),
                 "--folds", "3", "--pooling", "mean", "--encoders", "fbank"]) == 0
    assert [p.stat().st_mtime_ns for p in sorted((run / "probe_cache").glob("*.pt"))] == stamps  # reused


def test_multi_label_task_with_a_split_column_reports_map(probe_setup, tmp_path):
    run, task = probe_setup
    rows = list(csv.DictReader(open(task)))
    jsonl = tmp_path / "multi.jsonl"
    with open(jsonl, "w") as handle:
        for i, row in enumerate(rows):
            labels = ["tone", row["label"]] + (["even4"] if i % 4 == 0 else [])
            handle.write(json.dumps({"audio_path": str(task.parent / row["audio_path"]), "label": ";".join(labels),
                                     "split": "test" if i >= 16 else "train"}) + "\n")
    out = tmp_path / "out"
    assert main(["--checkpoint", str(run), "--task", str(jsonl), "--out", str(out), "--pooling", "mean",
                 "--encoders", "fbank"]) == 0
    (result,) = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert result["metric"] == "map" and result["n_classes"] == 4 and len(result["folds"]) == 1
    assert 0.0 <= result["mean"] <= 1.0 and result["std"] == 0.0


def test_bad_task_files_and_checkpoints_are_typed_errors(probe_setup, tmp_path, capsys):
    run, task = probe_setup
    no_label = tmp_path / "nolabel.csv"
    no_label.write_text("audio_path,klass\na.wav,x\n")
    with pytest.raises(TaskFileError, match="'label' column"):
        read_task(no_label)
    missing_audio = tmp_path / "missing.csv"
    missing_audio.write_text("audio_path,label\nnowhere.wav,a\n")
    with pytest.raises(TaskFileError, match=r"missing.csv:2: .*nowhere.wav"):
        read_task(missing_audio)
    one_class = tmp_path / "one.csv"
    one_class.write_text(f"audio_path,label\n{task.parent}/audio/c0.wav,a\n{task.parent}/audio/c1.wav,a\n")
    with pytest.raises(TaskFileError, match="at least two classes"):
        read_task(one_class)
    with pytest.raises(CheckpointError):
        resolve_checkpoint(tmp_path)  # a folder without checkpoints/last.pt
    assert main(["--checkpoint", str(run), "--task", str(tmp_path / "absent.csv"), "--out", str(tmp_path)]) == 2
    assert "absent.csv" in capsys.readouterr().err
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wave file")
    broken = tmp_path / "broken.csv"
    broken.write_text(f"audio_path,label\nbroken.wav,a\n{task.parent}/audio/c0.wav,a\n"
                      f"{task.parent}/audio/c1.wav,b\n{task.parent}/audio/c3.wav,b\n")
    assert main(["--checkpoint", str(run), "--task", str(broken), "--out", str(tmp_path / "b"), "--folds", "2"]) == 2
    assert "broken.wav" in capsys.readouterr().err
    single = tmp_path / "single.csv"
    single.write_text(f"audio_path,label\n{task.parent}/audio/c0.wav,a\n{task.parent}/audio/c1.wav,b\n"
                      f"{task.parent}/audio/c3.wav,b\n")
    assert main(["--checkpoint", str(run), "--task", str(single), "--out", str(tmp_path / "s")]) == 2
    assert "a class with a single clip" in capsys.readouterr().err
    not_a_ckpt = tmp_path / "x.pt"
    not_a_ckpt.write_bytes(b"not a checkpoint")
    assert main(["--checkpoint", str(not_a_ckpt), "--task", str(task), "--out", str(tmp_path)]) == 2
    assert "a checkpoint written by training.pretrain" in capsys.readouterr().err
