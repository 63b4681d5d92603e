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
from curation.ingest import manifest, text_index
from curation.ingest.manifest import ClipRecord
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

    def as_dict(self) -> dict:
        return asdict(self)

    def as_text(self) -> str:
        lines = [f"ingested {self.path} ({self.format}) in {self.seconds:.1f} s: {self.clips:,} clips, "
                 f"{self.captions:,} captions, {self.tag_rows:,} tag rows, {self.distinct_tags:,} distinct tags, "
                 f"{self.skipped_rows:,} bad rows skipped, {self.missing_audio:,} clips with missing or "
                 f"unreadable audio"]
        lines += [f"  skipped: {text}" for text in self.skipped_examples]
        lines += [f"  missing audio: {text}" for text in self.missing_audio_examples]
        if self.missing_audio > len(self.missing_audio_examples):
            lines.append(f"  ... and {self.missing_audio - len(self.missing_audio_examples):,} more clips with "
                         f"missing audio (table ingest_missing_audio, ingest_id={self.ingest_id})")
        return "\n".join(lines)


def ingest_path(con: duckdb.DuckDBPyConnection, path: Path | str, *, audio_root: Path | str | None = None,
                on_bad_row: str = "raise", extractor: str = DEFAULT_EXTRACTOR,
                captioner: str = DEFAULT_CAPTIONER) -> IngestSummary:
    """Ingest one manifest file or audio folder in one transaction; see the module docstring."""
    if on_bad_row not in ON_BAD_ROW_CHOICES:
        raise UsageError(f"on_bad_row={on_bad_row!r}: expected one of {ON_BAD_ROW_CHOICES}")
    path = Path(path).resolve()
    audio_root = Path(audio_root).resolve() if audio_root else None
    started = time.perf_counter()
    fmt = manifest.detect_format(path)
    bad_rows: list[ManifestError] = []
    fast_path = False
    unreadable_audio: dict[str, str] = {}  # clip_id -> why, filled while an audio folder is read
    try:
        # Staging lives in temp tables outside the transaction: a failed fast read must not abort the write.
        if fmt == "lhotse":
            fast_path = _stage_lhotse_fast(con, path)
        if not fast_path:
            records = _records_for(con, path, fmt, unreadable_audio)
            store_ingest.stage_rows(con, _records_to_arrow(_checked(path, records, on_bad_row, bad_rows)))
        # A folder's paths are relative to the folder itself; a manifest's to its folder or --audio-root.
        base = path if fmt == "audio_folder" else (audio_root or path.parent)
        audio_table, missing = _resolve_audio(store_ingest.staged_audio_refs(con), base, unreadable_audio)
        with store.transaction(con):
            ingest_id = store_ingest.begin_ingest(con, str(path), fmt, on_bad_row, audio_root=str(base))
            counts = store_ingest.write_staging(con, ingest_id, audio_table, extractor, captioner)
            text_index.index_ingest(con, ingest_id)  # searchable as soon as ingested, in the same transaction
            store_ingest.record_bad_rows(con, ingest_id, [(err.line, err.field, err.reason) for err in bad_rows])
            store_ingest.record_missing_audio(con, ingest_id, pa.table({
                "clip_id": pa.array([m[0] for m in missing], pa.string()),
                "audio_path": pa.array([m[1] for m in missing], pa.string()),
                "reason": pa.array([m[2] for m in missing], pa.string())}))
            seconds = time.perf_counter() - started
            store_ingest.finish_ingest(con, ingest_id, counts, len(bad_rows), len(missing), seconds)
    finally:
        store_ingest.drop_staging(con)
    return IngestSummary(
        ingest_id=ingest_id, path=str(path), format=fmt, clips=counts.clips, captions=counts.captions,
        tag_rows=counts.tag_rows, distinct_tags=counts.distinct_tags, skipped_rows=len(bad_rows),
        missing_audio=len(missing), seconds=seconds, fast_path=fast_path,
        missing_audio_examples=tuple(f"{m[0]}: {m[1]} ({m[2]})" for m in missing[:MAX_LISTED_MISSING_AUDIO]),
        skipped_examples=tuple(str(err) for err in bad_rows[:MAX_LISTED_MISSING_AUDIO]))


def _stage_lhotse_fast(con: duckdb.DuckDBPyConnection, path: Path) -> bool:
    """True when DuckDB's reader staged the whole file and found nothing to report."""
    try:
        problems = store_ingest.stage_lhotse_fast(con, path, manifest.MAX_CAPTION_CHARS, manifest.MAX_TAG_CHARS)
    except (duckdb.Error, UnicodeDecodeError):
        # Broken JSON, bad UTF-8 or a wrong type: the exact reader will say where. (DuckDB can cut its own error
        # message inside a multi-byte character, which then surfaces as UnicodeDecodeError; found by fuzzing.)
        problems = -1
    if problems != 0:
        store_ingest.drop_staging(con)
        return False
    return True


def _records_for(con, path: Path, fmt: str,
                 unreadable_audio: dict[str, str]) -> Iterator[tuple[int, ClipRecord | ManifestError]]:
    if fmt == "lhotse":
        return manifest.iter_lhotse_records(path)
    if fmt == "flat_jsonl":
        return manifest.iter_flat_json_records(path)
    if fmt == "csv":
        return manifest.iter_csv_records(path)
    if fmt == "parquet":
        return manifest.iter_parquet_records(path, store_ingest.read_parquet_rows(con, path))
    if fmt == "audio_folder":
        return _iter_audio_folder(path, unreadable_audio)
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


def _records_to_arrow(records: Iterable[tuple[int, ClipRecord]]) -> pa.Table:
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
    schema = pa.schema([
        ("line", pa.int32()), ("clip_id", pa.string()), ("source", pa.string()), ("domain", pa.string()),
        ("audio_ref", pa.string()), ("duration_s", pa.float64()), ("sample_rate_hz", pa.int32()),
        ("caption", pa.string()), ("captioner", pa.string()), ("original_captions", pa.list_(pa.string())),
        ("tags", pa.list_(pa.string()))])
    return pa.table(columns, schema=schema)


def _looks_like_dataset_name(ref: str) -> bool:
    # The UTS release stores the source dataset's name (e.g. "audioset") where a path belongs.
    return "/" not in ref and "\\" not in ref and not ref.lower().endswith(manifest.AUDIO_SUFFIXES)


def _resolve_audio(rows: list[tuple[str, str | None, str | None]], base: Path, unreadable: dict[str, str]):
    """Resolve each clip's audio reference; return (arrow table for the store, missing [(clip, path, reason)])."""
    clip_ids, paths, oks, sources, missing = [], [], [], [], []
    for clip_id, ref, source in rows:
        resolved: str | None = None
        ok = False
        if ref is None:
            missing.append((clip_id, None, "the manifest gives no audio path"))
        elif _looks_like_dataset_name(ref):
            source = source or ref
            missing.append((clip_id, ref, f"{ref!r} names a dataset, not a file: give the audio path "
                                          "(or use --audio-root)"))
        else:
            candidate = Path(ref)
            resolved = str(candidate if candidate.is_absolute() else base / candidate)
            if not os.path.isfile(resolved):
                missing.append((clip_id, resolved, "no such file"))
            elif not os.access(resolved, os.R_OK):
                missing.append((clip_id, resolved, "not readable"))
            elif clip_id in unreadable:
                missing.append((clip_id, resolved, unreadable[clip_id]))
            else:
                ok = True
        clip_ids.append(clip_id)
        paths.append(resolved)
        oks.append(ok)
        sources.append(source)
    table = pa.table({"clip_id": pa.array(clip_ids, pa.string()), "audio_path": pa.array(paths, pa.string()),
                      "audio_ok": pa.array(oks, pa.bool_()), "source": pa.array(sources, pa.string())})
    return table, missing


def _iter_audio_folder(folder: Path,
                       unreadable: dict[str, str]) -> Iterator[tuple[int, ClipRecord | ManifestError]]:
    """Every audio file under ``folder`` becomes a clip awaiting captions and tags (id = relative path)."""
    import soundfile  # a heavy import only where audio is actually opened

    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in manifest.AUDIO_SUFFIXES)
    if not files:
        raise ManifestError(folder, None, None, found="no audio files", found_is_description=True,
                            expected=f"a folder holding audio files ({', '.join(manifest.AUDIO_SUFFIXES)})")
    for index, file in enumerate(files, start=1):
        relative = file.relative_to(folder)
        clip_id = str(relative.with_suffix(""))
        try:
            info = soundfile.info(str(file))
            duration_s = info.frames / info.samplerate if info.samplerate else None
            sample_rate_hz = int(info.samplerate)
        except (RuntimeError, soundfile.LibsndfileError) as exc:
            # Unreadable audio is listed with the missing audio, not treated as a bad row.
            unreadable[clip_id] = f"unreadable audio: {str(exc).splitlines()[0]}"
            duration_s, sample_rate_hz = None, None
        yield index, ClipRecord(clip_id=clip_id, audio_ref=str(relative),
                                duration_s=duration_s or None, sample_rate_hz=sample_rate_hz,
                                source=folder.name)
