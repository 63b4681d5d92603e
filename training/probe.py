"""Frozen-encoder probing: mean pooling + linear and multi-head attention pooling + linear, with baselines.

Place in the flow: after ``training.pretrain``; ``python -m training.probe --checkpoint RUN_DIR_or_FILE
--task TASK.csv --out DIR [--pooling mean|attention|both]`` appends one line per (task, encoder, pooling) to
DIR/results.jsonl (layout: training/rundir.py). Encoders: the pre-trained one, a randomly initialised encoder
of the same config (seed 1000 + config seed), and mean fbank features (80-dim frames, averaged over 4 frames to the
encoder's 40 ms rate). Frame features are extracted once per (checkpoint bytes, task file bytes, encoder, clip cap)
and cached under DIR/probe_cache/. Task files: CSV or JSONL with audio_path,label[,group][,split]; labels joined by
';' make a multi-label task (metric mAP), otherwise single-label (accuracy). Without a split column: k-fold CV,
StratifiedGroupKFold / GroupKFold when a group column is given; relative audio paths resolve against the task
file's folder. Probes are trained with fixed hyper-parameters (no tuning on the test fold).
Example: ``python -m training.probe --checkpoint runs/r1 --task tasks/esc50.csv --out runs/r1 --pooling both``
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curation.errors import UtsError
from training.errors import CheckpointError, TaskFileError, UsageError

ENCODERS = ("pretrained", "random_init", "fbank")
CACHE_VERSION = "1"
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Task:
    path: Path
    name: str
    audio_paths: list[str]
    labels: list[list[str]]      # one list per clip (length 1 for single-label tasks)
    groups: list[str] | None
    splits: list[str] | None
    multi_label: bool
    classes: list[str]

    @property
    def metric(self) -> str:
        return "map" if self.multi_label else "accuracy"


def read_task(path: Path) -> Task:
    path = Path(path).resolve()
    if not path.is_file():
        raise TaskFileError(path, None, "no such file", "a CSV or JSONL task file (audio_path,label[,group][,split])",
                            "check the --task path")
    rows: list[tuple[int, dict]] = []
    if path.suffix.lower() in (".jsonl", ".json"):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskFileError(path, n, f"invalid JSON ({exc.msg})", "one JSON object per line",
                                    "fix the line") from None
            if not isinstance(record, dict):
                raise TaskFileError(path, n, type(record).__name__, "a JSON object", "fix the line")
            rows.append((n, record))
    else:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            for required in ("audio_path", "label"):
                if required not in header:
                    raise TaskFileError(path, 1, f"columns {header}", f"a '{required}' column",
                                        "write a header line audio_path,label[,group][,split]")
            rows = [(n, record) for n, record in enumerate(reader, start=2)]
    if not rows:
        raise TaskFileError(path, None, "no rows", "at least two labelled clips", "add rows to the task file")
    audio, labels, groups, splits, raw_labels = [], [], [], [], []
    has_group = all(r.get("group") not in (None, "") for _, r in rows)
    has_split = all(r.get("split") not in (None, "") for _, r in rows)
    for n, record in rows:
        audio_path = record.get("audio_path")
        label = record.get("label")
        if isinstance(label, list):
            label = ";".join(str(x) for x in label)
        if not audio_path:
            raise TaskFileError(path, n, "an empty audio_path", "a path to an audio file", "fill the column")
        if label in (None, "") or not str(label).strip(";").strip():
            raise TaskFileError(path, n, "an empty label", "a label (or ';'-joined labels)", "fill the column")
        resolved = Path(str(audio_path))
        if not resolved.is_absolute():
            resolved = path.parent / resolved
        if not resolved.is_file():
            raise TaskFileError(path, n, f"audio_path '{audio_path}' (no such file: {resolved})",
                                "an existing audio file (relative paths resolve against the task file's folder)",
                                "fix the path")
        audio.append(str(resolved))
        raw_labels.append(str(label))
        labels.append([part.strip() for part in str(label).split(";") if part.strip()])
        if has_group:
            groups.append(str(record["group"]))
        if has_split:
            split = str(record["split"]).strip().lower()
            if split not in SPLITS:
                raise TaskFileError(path, n, f"split '{record['split']}'", "train or test", "fix the split column")
            splits.append(split)
    multi = any(";" in raw for raw in raw_labels)
    classes = sorted({c for ls in labels for c in ls})
    if len(classes) < 2:
        raise TaskFileError(path, None, f"one class {classes}", "at least two classes", "add clips of another class")
    if has_split and (splits.count("train") == 0 or splits.count("test") == 0):
        raise TaskFileError(path, None, "a split column without both train and test rows", "train and test rows",
                            "fix the split column or drop it for cross-validation")
    return Task(path, path.stem, audio, labels, groups if has_group else None, splits if has_split else None,
                multi, classes)


def resolve_checkpoint(path: Path) -> Path:
    path = Path(path).resolve()
    if path.is_dir():
        candidate = path / "checkpoints" / "last.pt"
        if not candidate.is_file():
            raise CheckpointError(path, "a folder without checkpoints/last.pt", "a run directory or a .pt file",
                                  "train first (python -m training.pretrain) or name a checkpoint file")
        return candidate
    if not path.is_file():
        raise CheckpointError(path, "no such file", "a run directory or a checkpoint .pt file", "check the path")
    return path


def load_checkpoint(path: Path) -> dict:
    import pickle

    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:
        raise CheckpointError(path, f"an unreadable file ({type(exc).__name__})", "a checkpoint written by "
                              "training.pretrain", "point --checkpoint at a run directory or its last.pt") from None
    if not isinstance(ckpt, dict) or not {"model", "config", "labels", "n_slots"} <= set(ckpt):
        raise CheckpointError(path, "a file without model/config/labels", "a checkpoint written by training.pretrain",
                              "point --checkpoint at a run directory or its last.pt")
    return ckpt


def file_sha256(path: Path) -> str:
    """The file's SHA-256, read in 1 MiB blocks (checkpoints are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _duration_s(path: str) -> float:
    import soundfile as sf

    from training.errors import AudioError

    try:
        info = sf.info(path)
    except (sf.LibsndfileError, OSError, RuntimeError) as exc:
        raise AudioError(path, Path(path).name, str(exc)) from None
    return info.frames / info.samplerate


def extract_features(task: Task, ckpt: dict, encoder_kind: str, *, max_clip_s: float, device: str,
                     batch_s: float = 120.0) -> list:
    """One (frames, dim) float32 tensor per clip, in task order."""
    import torch

    from training.config import config_from_dict
    from training.features import Frontend, read_audio
    from training.model import Encoder

    dev = torch.device(device)
    frontend = Frontend().to(dev)
    encoder = None
    if encoder_kind != "fbank":
        cfg = config_from_dict(ckpt["config"])
        torch.manual_seed(1000 + cfg.seed)
        encoder = Encoder(cfg)
        if encoder_kind == "pretrained":
            state = {k[len("encoder."):]: v for k, v in ckpt["model"].items() if k.startswith("encoder.")}
            encoder.load_state_dict(state)
        encoder.eval().to(dev)
    # Durations from the file headers; audio is read one batch at a time (a large task never sits in memory whole).
    durations = [min(_duration_s(p), max_clip_s) for p in task.audio_paths]
    order = np.argsort(durations, kind="stable")
    feats: list = [None] * len(durations)
    start = 0
    with torch.no_grad():
        while start < len(order):
            end = start
            while end < len(order) and (end == start or (end - start + 1) * durations[order[end]] <= batch_s):
                end += 1
            idx = order[start:end]
            waves = {i: read_audio(task.audio_paths[i], Path(task.audio_paths[i]).name, duration_s=max_clip_s)
                     for i in idx}
            lens = [max(len(waves[i]), 400) for i in idx]
            audio = torch.zeros(len(idx), max(lens))
            for row, i in enumerate(idx):
                audio[row, : len(waves[i])] = torch.from_numpy(waves[i])
            audio_lens = torch.tensor(lens)
            fb, n_frames = frontend(audio.to(dev), audio_lens.to(dev))
            if encoder is None:
                pooled = torch.nn.functional.avg_pool1d(fb.transpose(1, 2), 4, 4, ceil_mode=True).transpose(1, 2)
                out_lens = torch.div(n_frames + 3, 4, rounding_mode="floor")
                frames = pooled
            else:
                frames, mask = encoder(fb, n_frames)
                out_lens = mask.sum(1)
            for row, i in enumerate(idx):
                feats[i] = frames[row, : int(out_lens[row])].float().cpu().clone()
            start = end
    return feats


def cached_features(task: Task, ckpt_path: Path, ckpt: dict, encoder_kind: str, out: Path, *, max_clip_s: float,
                    device: str) -> list:
    import torch

    key_parts = [CACHE_VERSION, encoder_kind, file_sha256(task.path), f"{max_clip_s:g}"]
    if encoder_kind != "fbank":
        key_parts.append(file_sha256(ckpt_path))
    key = hashlib.sha256("|".join(key_parts).encode()).hexdigest()[:24]
    cache = out / "probe_cache" / f"{task.name}-{encoder_kind}-{key}.pt"
    if cache.is_file():
        return torch.load(cache, weights_only=True)
    feats = extract_features(task, ckpt, encoder_kind, max_clip_s=max_clip_s, device=device)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".tmp")
    torch.save(feats, tmp)
    tmp.replace(cache)
    return feats


def fold_indices(task: Task, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs: the split column, else (grouped/stratified) k-fold."""
    import warnings

    with warnings.catch_warnings():
        # Small tasks have classes with fewer members than folds; sklearn still splits, and says so each time.
        warnings.filterwarnings("ignore", message="The least populated class")
        return _fold_indices(task, n_folds, seed)


def _fold_indices(task: Task, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    n = len(task.audio_paths)
    if task.splits is not None:
        split = np.array(task.splits)
        return [(np.nonzero(split == "train")[0], np.nonzero(split == "test")[0])]
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    x = np.zeros(n)
    y = np.array([ls[0] for ls in task.labels])
    if task.groups is not None:
        groups = np.array(task.groups)
        k = min(n_folds, len(set(task.groups)))
        if k < 2:
            raise TaskFileError(task.path, None, "one group", "at least two groups for grouped cross-validation",
                                "add clips from other groups or drop the group column")
        if task.multi_label:
            return list(GroupKFold(n_splits=k).split(x, groups=groups))
        return list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(x, y, groups))
    k = min(n_folds, n)
    if task.multi_label:
        return list(KFold(n_splits=k, shuffle=True, random_state=seed).split(x))
    smallest = min(np.unique(y, return_counts=True)[1])
    if smallest < 2:
        raise TaskFileError(task.path, None, "a class with a single clip",
                            "at least 2 clips per class for stratified cross-validation",
                            "add clips, drop that class, or give a split column")
    return list(StratifiedKFold(n_splits=min(k, smallest), shuffle=True, random_state=seed).split(x, y))


def _attention_probe_module(dim: int, n_out: int, n_heads: int):
    import torch
    import torch.nn.functional as F
    from torch import nn

    class AttentionPool(nn.Module):
        """Multi-head attention pooling: a learned query per head attends over the frames (padding masked)."""

        def __init__(self) -> None:
            super().__init__()
            heads = n_heads if dim % n_heads == 0 else 1
            self.heads = heads
            self.query = nn.Parameter(torch.randn(heads, dim // heads) * 0.02)
            self.key = nn.Linear(dim, dim)
            self.value = nn.Linear(dim, dim)
            self.head = nn.Linear(dim, n_out)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            b, t, d = x.shape
            h = self.heads
            k = self.key(x).view(b, t, h, d // h).transpose(1, 2)
            v = self.value(x).view(b, t, h, d // h).transpose(1, 2)
            q = self.query[None, :, None, :].expand(b, -1, -1, -1)
            pooled = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
            return self.head(pooled.reshape(b, d))

    return AttentionPool()


def pad_frames(feats: list, idx: np.ndarray):
    import torch

    lens = torch.tensor([feats[i].shape[0] for i in idx])
    x = torch.zeros(len(idx), int(lens.max()), feats[idx[0]].shape[1])
    for row, i in enumerate(idx):
        x[row, : lens[row]] = feats[i]
    mask = torch.arange(x.shape[1])[None, :] < lens[:, None]
    return x, mask


def fit_and_score(feats: list, y: np.ndarray, train: np.ndarray, test: np.ndarray, *, pooling: str,
                  multi_label: bool, seed: int) -> float:
    """Train a probe on ``train`` and return accuracy (single-label) or mAP (multi-label) on ``test``.
    Runs on one CPU thread: these matrices are small, and on a busy machine spinning OpenMP threads made the
    same fit 5-10x slower (measured on the shared 2-core machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit_and_score(feats, y, train, test, pooling=pooling, multi_label=multi_label, seed=seed)
    finally:
        torch.set_num_threads(threads)


def _fit_and_score(feats: list, y: np.ndarray, train: np.ndarray, test: np.ndarray, *, pooling: str,
                   multi_label: bool, seed: int) -> float:
    import torch
    import torch.nn.functional as F

    from training.metrics import mean_average_precision

    torch.manual_seed(seed)
    n_out = y.shape[1] if multi_label else int(y.max()) + 1
    frames_train = torch.cat([feats[i] for i in train])
    mu, sd = frames_train.mean(0), frames_train.std(0).clamp(min=1e-5)
    norm = [(f - mu) / sd for f in feats]
    target = torch.from_numpy(y).float() if multi_label else torch.from_numpy(y).long()
    if pooling == "mean":
        pooled = torch.stack([f.mean(0) for f in norm])
        model = torch.nn.Linear(pooled.shape[1], n_out)
        steps, lr = 300, 1e-2

        def forward(idx):
            return model(pooled[idx])
    else:
        model = _attention_probe_module(norm[0].shape[1], n_out, n_heads=4)
        x_all, m_all = pad_frames(norm, np.arange(len(norm)))
        steps, lr = 120, 5e-3

        def forward(idx):
            xb, mb = x_all[idx], m_all[idx]
            return model(xb[:, : int(mb.sum(1).max())], mb[:, : int(mb.sum(1).max())])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-3)
    tr = torch.from_numpy(train)
    for _ in range(steps):
        logits = forward(tr)
        loss = (F.binary_cross_entropy_with_logits(logits, target[tr]) if multi_label
                else F.cross_entropy(logits, target[tr]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        logits = forward(torch.from_numpy(test))
    if multi_label:
        value, _ = mean_average_precision(torch.sigmoid(logits).numpy(), y[test])
        return float("nan") if value is None else value
    return float((logits.argmax(1).numpy() == y[test]).mean())


def run_probe(task: Task, ckpt_path: Path, out: Path, *, poolings: list[str], encoders: list[str], n_folds: int,
              max_clip_s: float, device: str, seed: int) -> list[dict]:
    from training.rundir import append_jsonl, now_iso

    ckpt = load_checkpoint(ckpt_path)
    out.mkdir(parents=True, exist_ok=True)
    class_id = {c: i for i, c in enumerate(task.classes)}
    if task.multi_label:
        y = np.zeros((len(task.labels), len(task.classes)), dtype=np.float32)
        for row, ls in enumerate(task.labels):
            y[row, [class_id[c] for c in ls]] = 1.0
    else:
        y = np.array([class_id[ls[0]] for ls in task.labels])
    folds = fold_indices(task, n_folds, seed)
    results = []
    for encoder_kind in encoders:
        feats = cached_features(task, ckpt_path, ckpt, encoder_kind, out, max_clip_s=max_clip_s, device=device)
        for pooling in poolings:
            scores = [fit_and_score(feats, y, tr, te, pooling=pooling, multi_label=task.multi_label, seed=seed + f)
                      for f, (tr, te) in enumerate(folds)]
            record = {"task": task.name, "task_file": str(task.path), "metric": task.metric, "encoder": encoder_kind,
                      "pooling": pooling, "mean": float(np.nanmean(scores)), "std": float(np.nanstd(scores)),
                      "folds": [float(s) for s in scores], "n_clips": len(task.audio_paths),
                      "n_classes": len(task.classes), "checkpoint": str(ckpt_path), "created_at": now_iso()}
            append_jsonl(out / "results.jsonl", record)
            results.append(record)
            print(f"{task.name} {encoder_kind:11s} {pooling:9s} {task.metric} {record['mean']:.4f} "
                  f"+- {record['std']:.4f} over {len(scores)} folds", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.probe", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help="run directory (uses last.pt) or a .pt file")
    parser.add_argument("--task", required=True, type=Path, help="task CSV/JSONL: audio_path,label[,group][,split]")
    parser.add_argument("--out", required=True, type=Path, help="folder for results.jsonl and the feature cache")
    parser.add_argument("--pooling", choices=("mean", "attention", "both"), default="both")
    parser.add_argument("--encoders", default=",".join(ENCODERS),
                        help=f"comma-separated subset of {','.join(ENCODERS)} (default: all)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds when there is no split column")
    parser.add_argument("--max-clip-s", type=float, default=10.0, help="seconds read from the start of each clip")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
        bad = [e for e in encoders if e not in ENCODERS]
        if bad or not encoders:
            raise UsageError(f"--encoders {args.encoders}: unknown {bad}; expected a subset of {', '.join(ENCODERS)}")
        if args.folds < 2:
            raise UsageError(f"--folds {args.folds}: expected at least 2")
        ckpt_path = resolve_checkpoint(args.checkpoint)
        task = read_task(args.task)
        poolings = ["mean", "attention"] if args.pooling == "both" else [args.pooling]
        run_probe(task, ckpt_path, Path(args.out).resolve(), poolings=poolings, encoders=encoders,
                  n_folds=args.folds, max_clip_s=args.max_clip_s, device=args.device, seed=args.seed)
    except UtsError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
