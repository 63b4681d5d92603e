"""Reading an export and batching its clips: label map, cuts, multi-hot and PAR slot targets, bucketed batches.

Place in the flow: ``training.trainer`` calls ``load_export`` then ``make_train_loader`` / ``make_val_loader``.
Batches come from lhotse's ``DynamicBucketingSampler`` (total audio seconds per batch, duration buckets, seeded
shuffle, rank-aware under DDP: every rank walks the same batch order and keeps its share, so ranks stop together).
The position inside an epoch is a batch count: resuming skips that many sampler batches (cheap: no audio is
read for skipped batches), which is exact even with prefetching workers.
Example: ``export = load_export(Path("exports/v800"), max_clip_s=10.0)``
"""
from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.errors import ExportError, UnknownTagError
from training.features import SAMPLE_RATE_HZ, read_audio
from training.model import IGNORE_INDEX

EXPORT_FIELDS = ("export_id", "k", "vocabulary_size", "label_file", "cuts_file")


@dataclass(frozen=True)
class ClipRecord:
    clip_id: str
    audio_path: str        # absolute path (relative sources resolve against the export dir, then the cwd)
    duration_s: float      # the cut's duration (a cut may be a segment of its recording)
    tag_ids: tuple[int, ...]  # ascending label ids (vocabulary rank order)
    start_s: float = 0.0   # the cut's offset in its recording
    channels: tuple[int, ...] | None = None  # the channels the cut uses (downmixed to mono); None: all


@dataclass
class Export:
    dir: Path
    record: dict                      # export.json
    labels: list[str]                 # id -> tag
    clips: dict[str, ClipRecord]      # clip_id -> record
    cuts: object                      # lhotse CutSet, durations capped at max_clip_s (what the sampler sees)
    n_slots: int                      # PAR slots: min(max tags per clip, cap) + 1 ([EOS])

    @property
    def n_tags(self) -> int:
        return len(self.labels)


def _read_json(path: Path, what: str) -> object:
    if not path.is_file():
        raise ExportError(path, "no such file", what,
                          "point --export at a folder written by `python -m curation export`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ExportError(path, f"invalid JSON ({exc})", what, "re-export the vocabulary") from None


def _resolve_source(source: str, export_dir: Path) -> str:
    path = Path(source)
    if path.is_absolute():
        return str(path)
    beside = export_dir / path
    return str(beside.resolve() if beside.exists() else path.resolve())


def load_export(export_dir: Path, *, max_clip_s: float, par_max_slots: int = 16) -> Export:
    """Validate and load an export; a clip with a tag outside the label map raises UnknownTagError."""
    from lhotse import CutSet

    export_dir = Path(export_dir).resolve()
    if not export_dir.is_dir():
        raise ExportError(export_dir, "no such folder", "an export folder (export.json, label_K.json, cuts.jsonl.gz)",
                          "run `python -m curation export --db DB --k K --out DIR` first")
    record = _read_json(export_dir / "export.json", "the export record export.json")
    missing = [f for f in EXPORT_FIELDS if not isinstance(record, dict) or f not in record]
    if missing:
        raise ExportError(export_dir / "export.json", f"missing fields {missing}", f"fields {list(EXPORT_FIELDS)}",
                          "re-export the vocabulary")
    label_path = export_dir / record["label_file"]
    label_map = _read_json(label_path, 'an id-to-label JSON {"0": tag, ...}')
    if not isinstance(label_map, dict) or sorted(label_map, key=int) != [str(i) for i in range(len(label_map))]:
        raise ExportError(label_path, "keys that are not 0..K-1", 'an id-to-label JSON {"0": tag, ...}',
                          "re-export the vocabulary")
    labels = [label_map[str(i)] for i in range(len(label_map))]
    tag_id = {tag: i for i, tag in enumerate(labels)}
    cuts_path = export_dir / record["cuts_file"]
    if not cuts_path.is_file():
        raise ExportError(cuts_path, "no such file", "the filtered Lhotse cuts (cuts.jsonl.gz)", "re-export")
    try:
        cuts = CutSet.from_file(cuts_path).to_eager()
    except (ValueError, KeyError, OSError, EOFError) as exc:
        raise ExportError(cuts_path, f"unreadable cuts ({type(exc).__name__}: {exc})", "Lhotse MonoCut JSONL",
                          "re-export the vocabulary") from None
    clips: dict[str, ClipRecord] = {}
    capped = []
    max_tags = 1
    for line, cut in enumerate(cuts, start=1):
        sups = getattr(cut, "supervisions", None) or []
        custom = (sups[0].custom or {}) if sups else {}
        tags = custom.get("audio_tag")
        if not isinstance(tags, list) or not tags:
            raise ExportError(f"{cuts_path}:{line}", f"clip '{cut.id}' without supervisions[0].custom.audio_tag",
                              "a non-empty tag list per clip", "re-export the vocabulary")
        unknown = [t for t in tags if t not in tag_id]
        if unknown:
            raise UnknownTagError(cuts_path, line, cut.id, unknown, label_path)
        ids = tuple(sorted({tag_id[t] for t in tags}))
        max_tags = max(max_tags, len(ids))
        source = cut.recording.sources[0].source
        channel = cut.channel
        channels = tuple(channel) if isinstance(channel, (list, tuple)) else (int(channel),)
        clips[cut.id] = ClipRecord(cut.id, _resolve_source(str(source), export_dir), float(cut.duration), ids,
                                   start_s=float(cut.start), channels=channels)
        capped.append(cut.truncate(duration=max_clip_s, preserve_id=True) if cut.duration > max_clip_s else cut)
    if not clips:
        raise ExportError(cuts_path, "no cuts", "at least one clip", "re-export with a larger K")
    return Export(dir=export_dir, record=record, labels=labels, clips=clips, cuts=CutSet.from_cuts(capped),
                  n_slots=min(max_tags, par_max_slots) + 1)


def is_validation(clip_id: str, fraction: float) -> bool:
    """Stable split by hash of the clip id (the same clip is held out in every run of this export)."""
    digest = hashlib.sha1(clip_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < fraction


def split_cuts(export: Export, val_fraction: float, val_max_clips: int):
    """(train CutSet, val CutSet); with fewer than 2 clips nothing is held out."""
    val_ids = {c.id for c in export.cuts if is_validation(c.id, val_fraction)} if len(export.cuts) > 1 else set()
    val_ids = set(sorted(val_ids, key=lambda i: hashlib.sha1(i.encode()).hexdigest())[:val_max_clips])
    train = export.cuts.filter(lambda c: c.id not in val_ids).to_eager()
    val = export.cuts.filter(lambda c: c.id in val_ids).to_eager()
    return train, val


def slot_targets(tag_ids: tuple[int, ...], n_slots: int, n_tags: int) -> list[int]:
    """Tags in ascending id order in the first slots, [EOS]=n_tags after them, IGNORE_INDEX after that.
    A clip with more tags than n_slots - 1 keeps its n_slots - 1 best-ranked (lowest id) tags and gets no [EOS]."""
    keep = list(tag_ids[: n_slots - 1])
    out = keep + [n_tags]
    return out + [IGNORE_INDEX] * (n_slots - len(out))


class ClipBatches(torch.utils.data.Dataset):
    """Map-style dataset indexed by (epoch, CutSet) from the sampler: reads, crops, pads one batch."""

    def __init__(self, clips: dict[str, ClipRecord], n_tags: int, n_slots: int, max_clip_s: float, seed: int,
                 random_crop: bool) -> None:
        self.clips = clips
        self.n_tags = n_tags
        self.n_slots = n_slots
        self.max_clip_s = max_clip_s
        self.seed = seed
        self.random_crop = random_crop

    def __getitem__(self, item) -> dict:
        epoch, cuts = item
        waves, tag_rows, slot_rows, ids = [], [], [], []
        for cut in cuts:
            clip = self.clips[cut.id]
            offset = 0.0
            spare = clip.duration_s - self.max_clip_s
            if self.random_crop and spare > 0:
                # Keyed by (seed, epoch, clip): the same crop whichever worker reads it, and again after a resume.
                rng = np.random.default_rng([self.seed, epoch, zlib.crc32(cut.id.encode())])
                offset = float(rng.uniform(0.0, spare))
            wave = read_audio(clip.audio_path, clip.clip_id, offset_s=clip.start_s + offset,
                              duration_s=min(self.max_clip_s, clip.duration_s), channels=clip.channels)
            waves.append(wave[: int(self.max_clip_s * SAMPLE_RATE_HZ)])
            row = np.zeros(self.n_tags, dtype=np.float32)
            row[list(clip.tag_ids)] = 1.0
            tag_rows.append(row)
            slot_rows.append(slot_targets(clip.tag_ids, self.n_slots, self.n_tags))
            ids.append(cut.id)
        lens = [max(len(w), 1) for w in waves]
        audio = np.zeros((len(waves), max(lens)), dtype=np.float32)
        for i, w in enumerate(waves):
            audio[i, : len(w)] = w
        return {"audio": torch.from_numpy(audio), "audio_lens": torch.tensor(lens, dtype=torch.int64),
                "targets": torch.from_numpy(np.stack(tag_rows)), "slots": torch.tensor(slot_rows, dtype=torch.int64),
                "audio_s": float(sum(len(w) for w in waves)) / SAMPLE_RATE_HZ, "clip_ids": ids}


class EpochBatches(torch.utils.data.Sampler):
    """Yields (epoch, CutSet) from a lhotse sampler for one epoch, skipping the first ``skip`` batches."""

    def __init__(self, sampler, epoch: int, skip: int) -> None:
        self.sampler = sampler
        self.epoch = epoch
        self.skip = skip

    def __iter__(self):
        self.sampler.set_epoch(self.epoch)
        for i, cuts in enumerate(self.sampler):
            if i >= self.skip:
                yield self.epoch, cuts


def make_bucket_sampler(cuts, *, max_batch_s: float, num_buckets: int, seed: int, shuffle: bool,
                        world_size: int, rank: int):
    """Training batches: duration buckets; the cuts are eager because load_export validated every one of them."""
    import warnings

    from lhotse.dataset import DynamicBucketingSampler

    n_buckets = max(2, min(num_buckets, len(cuts) // 2))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are using DynamicBucketingSampler with an eagerly read")
        return DynamicBucketingSampler(cuts, max_duration=max_batch_s, num_buckets=n_buckets, shuffle=shuffle,
                                       drop_last=False, seed=seed, world_size=world_size, rank=rank,
                                       num_cuts_for_bins_estimate=min(10000, len(cuts)))


def make_ordered_sampler(cuts, *, max_batch_s: float):
    """Validation batches: file order, no shuffle, one process."""
    from lhotse.dataset import SimpleCutSampler

    return SimpleCutSampler(cuts, max_duration=max_batch_s, shuffle=False, world_size=1, rank=0)


def make_loader(dataset: ClipBatches, batches: EpochBatches, num_workers: int, pin_memory: bool):
    # Its own generator: a DataLoader iterator otherwise draws its worker seed from the global torch RNG, so a
    # resumed run (which opens a loader mid-epoch) would shift the SpecAugment/dropout draws of an unbroken run.
    generator = torch.Generator().manual_seed(dataset.seed * 1_000_003 + batches.epoch)
    return torch.utils.data.DataLoader(dataset, sampler=batches, batch_size=None, num_workers=num_workers,
                                       pin_memory=pin_memory, prefetch_factor=4 if num_workers else None,
                                       generator=generator)
