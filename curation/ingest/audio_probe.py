"""Reading what an audio file holds from its header: sample rate, channels, frames, format; many files in parallel.

Place in the flow: ingest (every clip whose audio file is found) and ``python -m curation probe-audio`` (an existing
database) -> (this module) -> clips.sample_rate_hz / num_channels / num_frames / duration_s. What a manifest
declares is compared with the header; the file wins and every difference is counted (``reconcile``).

soundfile (libsndfile) reads WAV, FLAC, OGG/Vorbis, Opus and MP3 headers without decoding the audio; its calls
release the GIL, so a thread pool overlaps the file-system waits of thousands of files.

Example::

    headers = probe_files(["/data/a.flac", "/data/b.wav"])
    headers[0].sample_rate_hz, headers[0].channels, headers[0].duration_s
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from curation.errors import UsageError
from curation.ingest.manifest import AUDIO_SUFFIXES

# A clip whose declared length differs from the file's by less than this is not reported: lhotse itself tolerates
# 25 ms between declared and loaded audio, and MP3 headers round to a frame of 1,152 samples.
DURATION_TOLERANCE_S = 0.025


# Where the audio of a clip whose source names a dataset is looked for, in order ({ext}: each AUDIO_SUFFIXES).
DEFAULT_AUDIO_PATTERNS = ("{root}/{source}/{id}{ext}", "{root}/{id}{ext}")
PATTERN_FIELDS = ("root", "source", "id", "ext")

def check_audio_pattern(pattern: str) -> None:
    import string

    try:
        names = {name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None}
    except ValueError as exc:
        raise UsageError(f"--audio-pattern {pattern!r}: {exc}; expected a template such as "
                         "'{root}/{source}/{id}.wav'") from None
    unknown = sorted(names - set(PATTERN_FIELDS))
    if unknown or "id" not in names:
        raise UsageError(f"--audio-pattern {pattern!r}: expected a template using {{id}} and any of "
                         f"{{root}}, {{source}}, {{ext}}" + (f"; unknown field(s) {unknown}" if unknown else ""))


def pattern_candidates(patterns: Sequence[str], root: Path, source: str, clip_id: str) -> list[str]:
    out = []
    for pattern in patterns:
        exts = AUDIO_SUFFIXES if "{ext}" in pattern else ("",)
        for ext in exts:
            out.append(pattern.format(root=root, source=source, id=clip_id, ext=ext))
    return out


def find_by_pattern(patterns: Sequence[str], root: Path, source: str, clip_id: str) -> tuple[str | None, list[str]]:
    """The first existing file among the pattern candidates (None when none exists) and every path tried."""
    tried = pattern_candidates(patterns, root, source, clip_id)
    return next((candidate for candidate in tried if os.path.isfile(candidate)), None), tried


@dataclass(frozen=True)
class AudioHeader:
    sample_rate_hz: int
    channels: int
    frames: int
    format: str  # e.g. "WAV/PCM_16", "FLAC/PCM_24", "OGG/VORBIS", "MP3/MPEG_LAYER_III"

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate_hz


def probe_file(path: str) -> AudioHeader | str:
    """The file's header, or why it cannot be read (a reason, not an exception: one bad file never stops a batch)."""
    import soundfile

    try:
        info = soundfile.info(path)
    except (RuntimeError, soundfile.LibsndfileError, OSError) as exc:
        if not os.path.isfile(path):  # checked only on failure: one stat less per file on the common path
            return "no such file"
        return f"unreadable audio: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    if not info.samplerate or info.frames <= 0:
        return f"unreadable audio: the header declares {info.frames} frames at {info.samplerate} Hz"
    return AudioHeader(sample_rate_hz=int(info.samplerate), channels=int(info.channels), frames=int(info.frames),
                       format=f"{info.format}/{info.subtype}")


def probe_files(paths: Sequence[str], *, workers: int | None = None) -> list[AudioHeader | str]:
    """Headers (or reasons) in the order of ``paths``, read by a thread pool."""
    if not paths:
        return []
    # 2 threads per core: measured best on a cold page cache on 2 cores (bench/probe_audio_speed.py).
    workers = workers or min(16, 2 * (os.cpu_count() or 1))
    if len(paths) < 64 or workers == 1:
        return [probe_file(p) for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(probe_file, paths, chunksize=64))


@dataclass(frozen=True)
class Declared:
    """What a manifest says of a clip's audio (None: not said)."""
    duration_s: float | None
    sample_rate_hz: int | None
    channels: int | None
    samples: int | None
    start_s: float
    cut_channels: tuple[int, ...] | None


@dataclass(frozen=True)
class Reconciled:
    duration_s: float | None
    cut_channels: tuple[int, ...] | None
    differences: tuple[str, ...]  # what the manifest declared that the file contradicts (the file won)
    duration_from_file: bool  # the manifest gave no duration; the file's was used


def reconcile(declared: Declared, header: AudioHeader) -> Reconciled:
    """The clip as the file holds it. A cut covering its whole recording takes the file's length; a segment keeps
    its own length, cut to the file's end; channels the file lacks are dropped from the cut. Each change is named."""
    differences = []
    if declared.sample_rate_hz is not None and declared.sample_rate_hz != header.sample_rate_hz:
        differences.append(f"sample rate {declared.sample_rate_hz} Hz declared, the file has {header.sample_rate_hz} Hz")
    if declared.channels is not None and declared.channels != header.channels:
        differences.append(f"{declared.channels} channel(s) declared, the file has {header.channels}")
    file_s = header.duration_s
    if declared.samples is not None and declared.sample_rate_hz is not None:
        declared_recording_s = declared.samples / declared.sample_rate_hz
        if abs(declared_recording_s - file_s) > DURATION_TOLERANCE_S:
            differences.append(f"{declared.samples:,} samples declared ({declared_recording_s:.3f} s), the file holds "
                               f"{header.frames:,} ({file_s:.3f} s)")
    duration = declared.duration_s
    from_file = duration is None
    whole_file = declared.start_s == 0 and (
        duration is None or declared.samples is None or declared.sample_rate_hz is None
        or abs(duration - declared.samples / declared.sample_rate_hz) <= DURATION_TOLERANCE_S)
    if whole_file:
        if duration is not None and abs(duration - file_s) > DURATION_TOLERANCE_S:
            differences.append(f"duration {duration:.3f} s declared, the file lasts {file_s:.3f} s")
        duration = file_s
    elif declared.start_s + duration > file_s + DURATION_TOLERANCE_S:
        differences.append(f"the cut [{declared.start_s:.3f} s, {declared.start_s + duration:.3f} s] runs past the "
                           f"file's end ({file_s:.3f} s); cut to the end")
        duration = max(file_s - declared.start_s, 0.0) or None
    channels = declared.cut_channels
    if channels is not None and max(channels) >= header.channels:
        kept = tuple(c for c in channels if c < header.channels) or (0,)
        differences.append(f"the cut uses channel(s) {list(channels)}, the file has {header.channels}; uses {list(kept)}")
        channels = kept
    return Reconciled(duration_s=duration, cut_channels=channels, differences=tuple(differences),
                      duration_from_file=from_file)


_CLIP_AUDIO_SCHEMA = (
    ("clip_id", "string"), ("audio_path", "string"), ("audio_ok", "bool"), ("duration_s", "float64"),
    ("sample_rate_hz", "int32"), ("num_channels", "int32"), ("num_frames", "int64"), ("audio_format", "string"),
    ("probed", "bool"), ("cut_channels", "list<int32>"))


class ClipAudioColumns:
    """Each clip's audio as the store keeps it (ingest and probe-audio write the same columns): the file's header
    reconciled with what was declared where the file was read, the declared values where it was not."""

    def __init__(self, *extra: tuple[str, str]) -> None:
        self.schema = _CLIP_AUDIO_SCHEMA + extra
        self.columns: dict[str, list] = {name: [] for name, _ in self.schema}

    def add(self, clip_id: str, audio_path: str | None, ok: bool, declared: Declared,
            header: AudioHeader | None, **extra) -> Reconciled | None:
        """One clip; returns the reconciliation when the header was read (for the caller's counts)."""
        result = None
        duration, rate, channels = declared.duration_s, declared.sample_rate_hz, declared.cut_channels
        n_channels = frames = audio_format = None
        if header is not None:
            result = reconcile(declared, header)
            duration, rate, channels = result.duration_s, header.sample_rate_hz, result.cut_channels
            n_channels, frames, audio_format = header.channels, header.frames, header.format
        values = {"clip_id": clip_id, "audio_path": audio_path, "audio_ok": ok, "duration_s": duration,
                  "sample_rate_hz": rate, "num_channels": n_channels, "num_frames": frames,
                  "audio_format": audio_format, "probed": header is not None,
                  "cut_channels": list(channels) if channels is not None else None, **extra}
        for name, column in self.columns.items():
            column.append(values[name])
        return result

    def table(self):
        import pyarrow as pa

        types = {"string": pa.string(), "bool": pa.bool_(), "float64": pa.float64(), "int32": pa.int32(),
                 "int64": pa.int64(), "list<int32>": pa.list_(pa.int32())}
        return pa.table(self.columns, schema=pa.schema([(name, types[kind]) for name, kind in self.schema]))


@dataclass(frozen=True)
class ProbeSummary:
    clips: int
    read: int
    seconds: float
    unreadable: tuple[tuple[str, str | None, str], ...]  # (clip, path, why), every one
    differences: int
    difference_examples: tuple[str, ...]
    durations_filled: int
    multi_channel: int

    def as_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)

    def as_text(self) -> str:
        rate = self.read / self.seconds if self.seconds > 0 else 0.0
        lines = [f"read {self.read:,} of {self.clips:,} clips' audio headers in {self.seconds:.1f} s "
                 f"({rate:,.0f} files/s): {self.durations_filled:,} durations filled from the files, "
                 f"{self.differences:,} clips whose stored values differed from the file (the file's are now "
                 f"stored), {self.multi_channel:,} multi-channel, {len(self.unreadable):,} missing or unreadable"]
        lines += [f"  differs: {text}" for text in self.difference_examples]
        lines += [f"  unreadable: {clip}: {path} ({why})" for clip, path, why in self.unreadable[:20]]
        if len(self.unreadable) > 20:
            lines.append(f"  ... and {len(self.unreadable) - 20:,} more (probe-audio --json lists all)")
        return "\n".join(lines)


def probe_stored_audio(con, *, all_clips: bool = False, audio_root: str | None = None,
                       audio_pattern: str | None = None, workers: int | None = None) -> ProbeSummary:
    """Read the audio headers of a database's clips (those not read yet, or all) and store what the files hold.

    With ``audio_root``, clips without an audio path whose source names a dataset are looked up by the audio
    patterns (as at ingest). One transaction: a failure leaves the clips as they were.
    """
    import time

    from curation.store import ingest as store_ingest
    from curation.store.schema import transaction

    started = time.perf_counter()
    rows = store_ingest.clips_to_probe(con, all_clips=all_clips, with_sources=audio_root is not None)
    patterns = (audio_pattern,) if audio_pattern else DEFAULT_AUDIO_PATTERNS
    paths: list[str | None] = []
    unreadable: list[tuple[str, str | None, str]] = []
    for row in rows:
        path = row["audio_path"]
        if path is None and audio_root is not None:
            path, tried = find_by_pattern(patterns, Path(audio_root).resolve(), row["source"], row["clip_id"])
            if path is None:
                unreadable.append((row["clip_id"], tried[0], f"no file found: tried {', '.join(tried[:3])}"))
        paths.append(path)
    found = [i for i, p in enumerate(paths) if p is not None]
    headers = dict(zip(found, probe_files([paths[i] for i in found], workers=workers)))
    columns = ClipAudioColumns()
    differences, examples, filled, multi, read = 0, [], 0, 0, 0
    for index, row in enumerate(rows):
        header = headers.get(index)
        if isinstance(header, str):
            unreadable.append((row["clip_id"], paths[index], header))
            header = None
        channels = row["cut_channels"]
        declared = Declared(duration_s=row["duration_s"], sample_rate_hz=row["sample_rate_hz"], channels=None,
                            samples=None, start_s=row["start_s"] or 0.0,
                            cut_channels=tuple(channels) if channels is not None else None)
        result = columns.add(row["clip_id"], paths[index] if paths[index] is not None else row["audio_path"],
                             header is not None, declared, header)
        if result is not None:
            read += 1
            if result.differences:
                differences += 1
                if len(examples) < 20:
                    examples.append(f"{row['clip_id']}: {'; '.join(result.differences)}")
            filled += result.duration_from_file
            multi += header.channels > 1
    table = columns.table()
    with transaction(con):
        store_ingest.update_probed_clips(con, table)
    return ProbeSummary(clips=len(rows), read=read, seconds=time.perf_counter() - started,
                        unreadable=tuple(unreadable), differences=differences,
                        difference_examples=tuple(examples), durations_filled=filled, multi_channel=multi)
