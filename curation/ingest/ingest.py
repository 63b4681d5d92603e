"""Ingest: any supported manifest or audio folder -> clips, captions, interned tags and clip-tag rows in DuckDB.

Place in the flow: manifest -> ingest (this module) -> extract/caption, decide, vocabulary, export.
One file is one transaction: with ``on_bad_row="raise"`` (default) the first bad row aborts the ingest and
nothing from the file is written; with ``"skip"`` every bad row is left out, counted and stored with its
reason. Missing or unreadable audio never stops an ingest; it is counted and listed.

Example::

    con = store.connect("data/uts.duckdb")
    summary = ingest_path(con, Path("cuts.jsonl.gz"), audio_root=Path("/data/audio"))
    print(summary.as_text())
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import duckdb
import pyarrow as pa

from curation import store
from curation.errors import ManifestError, UsageError
from curation.ingest import audio_probe, manifest, text_index
from curation.ingest.audio_probe import DEFAULT_AUDIO_PATTERNS, check_audio_pattern, find_by_pattern
from curation.ingest.manifest import ClipRecord
from curation.ingest.tag_text import MAX_TAGS_PER_CLIP, normalize_tag, tag_text_problem
from curation.store import ingest as store_ingest

DEFAULT_EXTRACTOR = "manifest"  # provenance of tags that arrive inside a manifest
DEFAULT_CAPTIONER = "manifest"  # captioner name when a manifest does not say which model wrote its captions
ON_BAD_ROW_CHOICES = ("raise", "skip")
MAX_LISTED_MISSING_AUDIO = 20


@dataclass(frozen=True)
class IngestSummary:
    ingest_id: int
    path: str
    format: str
    clips: int
    captions: int
    tag_rows: int
    distinct_tags: int
    skipped_rows: int
    missing_audio: int
    seconds: float
    fast_path: bool
    missing_audio_examples: tuple[str, ...] = field(default=())
    skipped_examples: tuple[str, ...] = field(default=())
    # Everything the ingest changed or decided by policy: kind -> {"n", "message", "examples"} (see IngestNotes).
    notes: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def as_text(self) -> str:
        lines = [f"ingested {self.path} ({self.format}) in {self.seconds:.1f} s: {self.clips:,} clips, "
                 f"{self.captions:,} captions, {self.tag_rows:,} tag rows, {self.distinct_tags:,} distinct tags, "
                 f"{self.skipped_rows:,} bad rows skipped, {self.missing_audio:,} clips with missing or "
                 f"unreadable audio"]
        for note in self.notes.values():
            lines.append(f"  {note['message']}")
            lines += [f"    e.g. {example}" for example in note["examples"][:3]]
        lines += [f"  skipped: {text}" for text in self.skipped_examples]
        lines += [f"  missing audio: {text}" for text in self.missing_audio_examples]
        if self.missing_audio > len(self.missing_audio_examples):
            lines.append(f"  ... and {self.missing_audio - len(self.missing_audio_examples):,} more clips with "
                         f"missing audio (table ingest_missing_audio, ingest_id={self.ingest_id})")
        return "\n".join(lines)


def ingest_path(con: duckdb.DuckDBPyConnection, path: Path | str, *, audio_root: Path | str | None = None,
                on_bad_row: str = "raise", extractor: str = DEFAULT_EXTRACTOR,
                captioner: str = DEFAULT_CAPTIONER, audio_pattern: str | None = None,
                probe_audio: bool = True) -> IngestSummary:
    """Ingest one manifest file or audio folder in one transaction; see the module docstring.

    ``audio_pattern`` finds the audio of clips whose source names a dataset (the UTS release writes "audioset"
    where a path belongs): a template with {root}, {source}, {id} and optionally {ext}; by default
    DEFAULT_AUDIO_PATTERNS are tried. ``probe_audio`` reads every found file's header (the file's duration,
    rate and channels win over the manifest's; differences are counted).
    """
    if on_bad_row not in ON_BAD_ROW_CHOICES:
        raise UsageError(f"on_bad_row={on_bad_row!r}: expected one of {ON_BAD_ROW_CHOICES}")
    if audio_pattern is not None:
        check_audio_pattern(audio_pattern)
    path = Path(path).resolve()
    audio_root = Path(audio_root).resolve() if audio_root else None
    started = time.perf_counter()
    fmt = manifest.detect_format(path)
    bad_rows: list[ManifestError] = []
    fast_path = False
    notes = IngestNotes()
    try:
        # Staging lives in temp tables outside the transaction: a failed fast read must not abort the write.
        if fmt == "lhotse":
            fast_path = _stage_lhotse_fast(con, path)
        if not fast_path:
            records = _records_for(con, path, fmt, notes)
            store_ingest.stage_rows(con, _records_to_arrow(_checked(path, records, on_bad_row, bad_rows), notes))
        _normalise_staged_tags(con, notes)
        # A folder's paths are relative to the folder itself; a manifest's to its folder or --audio-root.
        base = path if fmt == "audio_folder" else (audio_root or path.parent)
        audio_table, missing = _resolve_audio(store_ingest.staged_audio_rows(con), base,
                                              audio_root=audio_root, audio_pattern=audio_pattern,
                                              probe_audio=probe_audio, notes=notes)
        with store.transaction(con):
            ingest_id = store_ingest.begin_ingest(con, str(path), fmt, on_bad_row, audio_root=str(base))
            counts = store_ingest.write_staging(con, ingest_id, audio_table, extractor, captioner)
            text_index.index_ingest(con, ingest_id)  # searchable as soon as ingested, in the same transaction
            store_ingest.record_bad_rows(con, ingest_id, [(err.line, err.field, err.reason) for err in bad_rows])
            store_ingest.record_missing_audio(con, ingest_id, pa.table({
                "clip_id": pa.array([m[0] for m in missing], pa.string()),
                "audio_path": pa.array([m[1] for m in missing], pa.string()),
                "reason": pa.array([m[2] for m in missing], pa.string())}))
            store_ingest.record_notes(con, ingest_id, notes.rows())
            seconds = time.perf_counter() - started
            store_ingest.finish_ingest(con, ingest_id, counts, len(bad_rows), len(missing), seconds)
    finally:
        store_ingest.drop_staging(con)
    return IngestSummary(
        ingest_id=ingest_id, path=str(path), format=fmt, clips=counts.clips, captions=counts.captions,
        tag_rows=counts.tag_rows, distinct_tags=counts.distinct_tags, skipped_rows=len(bad_rows),
        missing_audio=len(missing), seconds=seconds, fast_path=fast_path,
        missing_audio_examples=tuple(f"{m[0]}: {m[1]} ({m[2]})" for m in missing[:MAX_LISTED_MISSING_AUDIO]),
        skipped_examples=tuple(str(err) for err in bad_rows[:MAX_LISTED_MISSING_AUDIO]), notes=notes.as_dict())


def _records_for(con, path: Path, fmt: str,
                 notes: IngestNotes) -> Iterator[tuple[int, ClipRecord | ManifestError]]:
    if fmt == "lhotse":
        return manifest.iter_lhotse_records(path)
    if fmt == "flat_jsonl":
        return manifest.iter_flat_json_records(path)
    if fmt == "csv":
        return manifest.iter_csv_records(path)
    if fmt == "parquet":
        return manifest.iter_parquet_records(path, store_ingest.read_parquet_rows(con, path))
    if fmt == "audio_folder":
        return _iter_audio_folder(path, notes)
    raise UsageError(f"{path}: unsupported format {fmt!r}")


def _checked(path: Path, records: Iterable[tuple[int, ClipRecord | ManifestError]], on_bad_row: str,
             bad_rows: list[ManifestError]) -> Iterator[tuple[int, ClipRecord]]:
    """Apply the bad-row policy, including duplicate ids inside one file (the first one wins in skip mode)."""
    first_line_of: dict[str, int] = {}
    for line, item in records:
        if isinstance(item, ClipRecord):
            if item.clip_id in first_line_of:
                item = ManifestError(
                    path, line, "id", found=item.clip_id,
                    expected=f"an id not used before in this file (line {first_line_of[item.clip_id]} has it)")
            else:
                first_line_of[item.clip_id] = line
                yield line, item
                continue
        if on_bad_row == "raise":
            raise item
        bad_rows.append(item)


def _records_to_arrow(records: Iterable[tuple[int, ClipRecord]], notes: IngestNotes) -> pa.Table:
    columns: dict[str, list] = {name: [] for name, _ in store_ingest.STAGING_COLUMNS}
    for line, rec in records:
        columns["line"].append(line)
        columns["clip_id"].append(rec.clip_id)
        columns["source"].append(rec.source)
        columns["domain"].append(rec.domain)
        columns["audio_ref"].append(rec.audio_ref)
        columns["duration_s"].append(rec.duration_s)
        columns["sample_rate_hz"].append(rec.sample_rate_hz)
        columns["caption"].append(rec.caption)
        columns["captioner"].append(rec.captioner)
        columns["original_captions"].append(list(rec.original_captions))
        columns["tags"].append(list(rec.tags))
        columns["start_s"].append(rec.start_s)
        columns["cut_channels"].append(list(rec.cut_channels) if rec.cut_channels is not None else None)
        columns["declared_channels"].append(rec.declared_channels)
        columns["declared_samples"].append(rec.declared_samples)
        columns["more_captions"].append(list(rec.more_captions))
        if rec.supervisions > 1:
            notes.add("several_supervisions", f"{rec.clip_id}: {rec.supervisions} supervisions")
        if rec.sources > 1:
            notes.add("several_sources", f"{rec.clip_id}: {rec.sources} audio sources, kept {rec.audio_ref}")
        if rec.tags_from_string:
            notes.add("tag_strings_split", f"{rec.clip_id}: {';'.join(rec.tags)[:80]}")
        if rec.cut_channels is not None and len(rec.cut_channels) > 1:
            notes.add("multi_channel_cuts", f"{rec.clip_id}: channels {list(rec.cut_channels)}")
    schema = pa.schema([
        ("line", pa.int32()), ("clip_id", pa.string()), ("source", pa.string()), ("domain", pa.string()),
        ("audio_ref", pa.string()), ("duration_s", pa.float64()), ("sample_rate_hz", pa.int32()),
        ("caption", pa.string()), ("captioner", pa.string()), ("original_captions", pa.list_(pa.string())),
        ("tags", pa.list_(pa.string())), ("start_s", pa.float64()), ("cut_channels", pa.list_(pa.int32())),
        ("declared_channels", pa.int32()), ("declared_samples", pa.int64()), ("more_captions", pa.list_(pa.string()))])
    return pa.table(columns, schema=schema)


MAX_NOTE_EXAMPLES = 10

_NOTE_MESSAGES = {
    "tags_respelled": "{n:,} tag spellings normalised (NFC, invisible characters, whitespace, case)",
    "tag_rows_folded": "{n:,} tag rows folded into another tag of the same clip once normalised",
    "tag_strings_split": "{n:,} clips gave audio_tag as one ';'-joined string (split into tags)",
    "several_supervisions": "{n:,} cuts had several supervisions: their tags and captions are unioned per clip",
    "several_sources": "{n:,} recordings had several audio sources: the first is the clip's audio, others not kept",
    "multi_channel_cuts": "{n:,} multi-channel cuts (MultiCut) kept with their channels",
    "multi_channel_audio": "{n:,} clips have multi-channel audio files (stored as they are; the export's "
                           "--channels policy decides what training sees)",
    "declared_audio_differs": "{n:,} clips declare audio that differs from the file (the file's values are used)",
    "durations_from_files": "{n:,} clips without a duration in the manifest took it from the audio file",
    "audio_found_by_pattern": "{n:,} clips whose source names a dataset were found by the audio pattern",
    "folder_files_skipped": "{n:,} files in the folder are not audio of a readable kind "
                            f"({', '.join(manifest.AUDIO_SUFFIXES)}) and were skipped",
    "not_probed": "{n:,} clips' audio headers were not read (--no-probe): durations are as declared",
    "no_duration": "{n:,} clips have no duration (no readable audio and none declared): export skips them "
                   "until `probe-audio` reads their files",
}


class IngestNotes:
    """Counted changes and policy decisions of one ingest, each with a few examples (stored in ingest_notes)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}

    def add(self, kind: str, example: str | None = None, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n
        if example is not None and len(self.examples.setdefault(kind, [])) < MAX_NOTE_EXAMPLES:
            self.examples[kind].append(example)

    def as_dict(self) -> dict:
        return {kind: {"n": n, "message": _NOTE_MESSAGES[kind].format(n=n), "examples": self.examples.get(kind, [])}
                for kind, n in self.counts.items() if n}

    def rows(self) -> list[tuple[str, int, str, list[str]]]:
        return [(kind, note["n"], note["message"], note["examples"]) for kind, note in self.as_dict().items()]


def _normalise_staged_tags(con: duckdb.DuckDBPyConnection, notes: IngestNotes) -> None:
    """Respell every staged tag by the product's one rule (normalize_tag) and fold duplicates inside a clip."""
    raw = store_ingest.staged_distinct_tags(con)
    respelled = {tag: normalize_tag(tag) for tag in raw}
    respelled = {tag: new for tag, new in respelled.items() if new != tag}
    for tag, new in sorted(respelled.items())[:MAX_NOTE_EXAMPLES]:
        notes.add("tags_respelled", f"{tag!r} -> {new!r}", n=0)
    notes.add("tags_respelled", n=len(respelled))
    folded = store_ingest.respell_staged_tags(con, respelled)
    if folded:
        notes.add("tag_rows_folded", n=folded)


def _stage_lhotse_fast(con: duckdb.DuckDBPyConnection, path: Path) -> bool:
    """True when DuckDB's reader staged the whole file and found nothing to report."""
    try:
        problems = store_ingest.stage_lhotse_fast(con, path, manifest.MAX_CAPTION_CHARS, manifest.MAX_TAG_CHARS,
                                                  MAX_TAGS_PER_CLIP)
        if problems == 0:
            # Tags that normalise to nothing or hold a reserved character: the exact reader names line and field.
            problems = sum(tag_text_problem(normalize_tag(tag)) is not None
                           for tag in store_ingest.staged_distinct_tags(con))
    except (duckdb.Error, UnicodeDecodeError):
        # Broken JSON, bad UTF-8 or a wrong type: the exact reader will say where. (DuckDB can cut its own error
        # message inside a multi-byte character, which then surfaces as UnicodeDecodeError; found by fuzzing.)
        problems = -1
    if problems != 0:
        store_ingest.drop_staging(con)
        return False
    return True


def _looks_like_dataset_name(ref: str) -> bool:
    # The UTS release stores the source dataset's name (e.g. "audioset") where a path belongs.
    return "/" not in ref and "\\" not in ref and not ref.lower().endswith(manifest.AUDIO_SUFFIXES)


def _resolve_audio(rows: list[dict], base: Path, *, audio_root: Path | None, audio_pattern: str | None,
                   probe_audio: bool, notes: IngestNotes):
    """Resolve each clip's audio, read the found files' headers and reconcile them with the manifest.

    Returns (arrow table for the store, missing [(clip, path, reason)]).
    """
    patterns = (audio_pattern,) if audio_pattern else DEFAULT_AUDIO_PATTERNS
    resolved_paths: list[str | None] = []  # the file found, else None
    stored_paths: list[str | None] = []  # what the clip keeps as its audio path (a missing file's path too)
    missing: list[tuple[str, str | None, str]] = []
    for row in rows:
        clip_id, ref = row["clip_id"], row["audio_ref"]
        resolved = stored = None
        if ref is None:
            missing.append((clip_id, None, "the manifest gives no audio path"))
        elif _looks_like_dataset_name(ref):
            row["source"] = row["source"] or ref
            if audio_root is None:
                missing.append((clip_id, ref, f"{ref!r} names a dataset, not a file: give --audio-root (looked up "
                                              f"as {DEFAULT_AUDIO_PATTERNS[0]}) or --audio-pattern"))
            else:
                resolved, tried = find_by_pattern(patterns, audio_root, ref, clip_id)
                if resolved is None:
                    shown = ", ".join(tried[:3]) + (f" (+{len(tried) - 3} more)" if len(tried) > 3 else "")
                    missing.append((clip_id, tried[0], f"{ref!r} names a dataset; no file found: tried {shown}"))
                else:
                    notes.add("audio_found_by_pattern", f"{clip_id}: {resolved}")
            stored = resolved
        else:
            candidate = Path(ref)
            resolved = stored = str(candidate if candidate.is_absolute() else base / candidate)
            if not os.path.isfile(resolved):
                missing.append((clip_id, resolved, "no such file"))
                resolved = None
            elif not os.access(resolved, os.R_OK):
                missing.append((clip_id, resolved, "not readable"))
                resolved = None
        resolved_paths.append(resolved)
        stored_paths.append(stored)
    found = [i for i, p in enumerate(resolved_paths) if p is not None]
    headers = audio_probe.probe_files([resolved_paths[i] for i in found]) if probe_audio else []
    header_of = dict(zip(found, headers))
    if not probe_audio and found:
        notes.add("not_probed", n=len(found))
    columns = audio_probe.ClipAudioColumns(("source", "string"))
    for index, row in enumerate(rows):
        clip_id, header = row["clip_id"], header_of.get(index)
        ok = resolved_paths[index] is not None
        if isinstance(header, str):  # the file is there but cannot be read as audio
            missing.append((clip_id, resolved_paths[index], header))
            header, ok = None, False
        channels = row["cut_channels"]
        declared = audio_probe.Declared(duration_s=row["duration_s"], sample_rate_hz=row["sample_rate_hz"],
                                        channels=row["declared_channels"], samples=row["declared_samples"],
                                        start_s=row["start_s"] or 0.0,
                                        cut_channels=tuple(channels) if channels is not None else None)
        result = columns.add(clip_id, stored_paths[index], ok, declared, header, source=row["source"])
        if result is not None:
            if result.differences:
                notes.add("declared_audio_differs", f"{clip_id}: {'; '.join(result.differences)}")
            if result.duration_from_file:
                notes.add("durations_from_files")
            if header.channels > 1:
                notes.add("multi_channel_audio", f"{clip_id}: {header.channels} channels, {header.format}")
        if columns.columns["duration_s"][-1] is None:
            notes.add("no_duration", clip_id)
    return columns.table(), missing


def _iter_audio_folder(folder: Path, notes: IngestNotes) -> Iterator[tuple[int, ClipRecord | ManifestError]]:
    """Every audio file under ``folder`` becomes a clip awaiting captions and tags (id = relative path without
    suffix); durations, rates and channels come from the headers read after staging (audio_probe). Files of
    other kinds are counted by suffix, never skipped silently."""
    everything = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    files = [p for p in everything if p.suffix.lower() in manifest.AUDIO_SUFFIXES]
    skipped: dict[str, int] = {}
    for other in everything:
        if other.suffix.lower() not in manifest.AUDIO_SUFFIXES:
            skipped[other.suffix.lower() or "(no suffix)"] = skipped.get(other.suffix.lower() or "(no suffix)", 0) + 1
    for suffix, n in sorted(skipped.items(), key=lambda item: -item[1]):
        notes.add("folder_files_skipped", f"{n:,} {suffix} file(s)", n=n)
    if not files:
        raise ManifestError(folder, None, None, found="no audio files", found_is_description=True,
                            expected=f"a folder holding audio files ({', '.join(manifest.AUDIO_SUFFIXES)})")
    for index, file in enumerate(files, start=1):
        relative = file.relative_to(folder)
        yield index, ClipRecord(clip_id=str(relative.with_suffix("")), audio_ref=str(relative), duration_s=None,
                                source=folder.name)
