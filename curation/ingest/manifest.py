"""Manifest reading and checking: Lhotse MonoCut JSONL(.gz) as the UTS release writes it, flat JSONL / CSV /
Parquet, and folders of audio files, each turned into the same ``ClipRecord``.

Place in the flow: manifest -> (this module) -> ClipRecord rows -> ingest writes them to DuckDB. This is the
exact reader: it names file, line and field for every problem. ``curation.ingest.ingest`` first tries DuckDB's
native JSON reader (fast) and comes here when that reader finds anything wrong.

Example::

    for line, record in iter_lhotse_records(Path("cuts.jsonl.gz")):
        print(line, record.clip_id, record.tags)
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from curation.errors import ManifestError

# The paper's captions average 388 words (~2.5k characters); 50k characters is far beyond any real caption
# and catches concatenated files or binary junk before it floods the store.
MAX_CAPTION_CHARS = 50_000
MAX_TAG_CHARS = 100
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")


@dataclass(frozen=True)
class ClipRecord:
    clip_id: str
    audio_ref: str | None  # as written in the manifest; resolved against the manifest folder or --audio-root
    duration_s: float | None
    sample_rate_hz: int | None = None
    caption: str | None = None
    captioner: str | None = None
    original_captions: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    source: str | None = None
    domain: str | None = None


def is_gzip_path(path: Path) -> bool:
    return path.name.endswith(".gz")


def open_manifest_bytes(path: Path) -> io.BufferedReader:
    """Open a manifest for reading bytes; a .gz that is not gzip is refused before any row is read."""
    if is_gzip_path(path):
        with open(path, "rb") as head:
            magic = head.read(2)
        if magic != b"\x1f\x8b":
            raise ManifestError(path, None, None, found=f"first bytes {magic!r}", found_is_description=True,
                                expected="a gzip file (first bytes b'\\x1f\\x8b') because the name ends in .gz",
                                hint="rename it without .gz if it is plain JSONL")
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def looks_like_lhotse(obj: dict) -> bool:
    return "supervisions" in obj or "recording" in obj


class _Checker:
    """Field checks for one row; every failure is a ManifestError naming path, line and field."""

    def __init__(self, path: Path, line: int | None) -> None:
        self.path, self.line = path, line

    def fail(self, field: str, found: object, expected: str) -> ManifestError:
        return ManifestError(self.path, self.line, field, found=found, expected=expected)

    def string(self, value: object, field: str, *, required: bool, max_chars: int | None = None) -> str | None:
        if value is None:
            if required:
                raise self.fail(field, value, "a non-empty string")
            return None
        if not isinstance(value, str):
            raise self.fail(field, value, "a string")
        if required and not value.strip():
            raise self.fail(field, value, "a non-empty string")
        if max_chars is not None and len(value) > max_chars:
            raise ManifestError(self.path, self.line, field, found=f"{len(value):,} characters",
                                found_is_description=True, expected=f"at most {max_chars:,} characters")
        return value

    def positive_number(self, value: object, field: str, *, required: bool) -> float | None:
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise self.fail(field, value, "a positive number of seconds")
        return float(value)

    def positive_int(self, value: object, field: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail(field, value, "a positive integer")
        return value

    def string_list(self, value: object, field: str, *, allow_single: bool, item_max: int | None) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str) and allow_single:
            value = [value]
        if not isinstance(value, list):
            raise self.fail(field, value, "a list of strings")
        out = []
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise self.fail(f"{field}[{index}]", item, "a string")
            if item_max is not None:
                item = item.strip()
                if not item:
                    raise self.fail(f"{field}[{index}]", item, "a non-empty tag")
                if len(item) > item_max:
                    raise self.fail(f"{field}[{index}]", item, f"a tag of at most {item_max} characters")
            out.append(item)
        return tuple(out)

    def caption_list(self, value: object, field: str) -> tuple[str, ...]:
        items = self.string_list(value, field, allow_single=True, item_max=None)
        for index, item in enumerate(items):
            self.string(item, f"{field}[{index}]", required=False, max_chars=MAX_CAPTION_CHARS)
        return items


def parse_lhotse_cut(obj: dict, path: Path, line: int | None) -> ClipRecord:
    """One MonoCut in the UTS layout: supervisions[0].custom = {audio_tag, caption, original_caption}."""
    check = _Checker(path, line)
    clip_id = check.string(obj.get("id"), "id", required=True)
    duration_s = check.positive_number(obj.get("duration"), "duration", required=True)
    supervisions = obj.get("supervisions")
    if not isinstance(supervisions, list) or not supervisions or not isinstance(supervisions[0], dict):
        raise check.fail("supervisions", supervisions, "a list whose first item is a supervision object")
    custom = supervisions[0].get("custom")
    if custom is None:
        custom = {}
    if not isinstance(custom, dict):
        raise check.fail("supervisions[0].custom", custom, "an object")
    recording = obj.get("recording")
    if not isinstance(recording, dict):
        raise check.fail("recording", recording, "an object with sources and sampling_rate")
    sources = recording.get("sources")
    if not isinstance(sources, list) or not sources or not isinstance(sources[0], dict):
        raise check.fail("recording.sources", sources, "a list whose first item is an audio source object")
    audio_ref = check.string(sources[0].get("source"), "recording.sources[0].source", required=True)
    prefix = "supervisions[0].custom"
    return ClipRecord(
        clip_id=clip_id.strip(),
        audio_ref=audio_ref,
        duration_s=duration_s,
        sample_rate_hz=check.positive_int(recording.get("sampling_rate"), "recording.sampling_rate"),
        caption=check.string(custom.get("caption"), f"{prefix}.caption", required=False,
                             max_chars=MAX_CAPTION_CHARS),
        captioner=check.string(custom.get("captioner"), f"{prefix}.captioner", required=False),
        original_captions=check.caption_list(custom.get("original_caption"), f"{prefix}.original_caption"),
        tags=check.string_list(custom.get("audio_tag"), f"{prefix}.audio_tag", allow_single=False,
                               item_max=MAX_TAG_CHARS),
        source=check.string(custom.get("source"), f"{prefix}.source", required=False),
        domain=check.string(custom.get("domain"), f"{prefix}.domain", required=False),
    )


def parse_flat_row(row: dict, path: Path, line: int | None, *, from_text: bool) -> ClipRecord:
    """A flat row: id, audio_path, caption, tags (list or ';'-joined), source, duration (CSV gives text)."""
    check = _Checker(path, line)
    if from_text:  # CSV: an empty cell means absent, numbers arrive as text
        row = {key: (None if value is None or value == "" else value) for key, value in row.items()}
        if row.get("duration") is not None:
            try:
                row["duration"] = float(row["duration"])
            except ValueError:
                raise check.fail("duration", row["duration"], "a positive number of seconds") from None
    unknown_missing = [column for column in ("id",) if column not in row]
    if unknown_missing:
        raise check.fail("id", None, "an 'id' column (flat manifests have id, audio_path, caption, tags, "
                                     "source, duration)")
    tags_value = row.get("tags")
    if isinstance(tags_value, str):
        tags_value = [part for part in tags_value.split(";") if part.strip()]
    elif tags_value is not None and not isinstance(tags_value, list):
        # Parquet list columns arrive as numpy arrays through some readers; accept any real sequence.
        if hasattr(tags_value, "tolist"):
            tags_value = tags_value.tolist()
    originals = row.get("original_caption", row.get("original_captions"))
    return ClipRecord(
        clip_id=check.string(row.get("id"), "id", required=True).strip(),
        audio_ref=check.string(row.get("audio_path"), "audio_path", required=False),
        duration_s=check.positive_number(row.get("duration"), "duration", required=False),
        caption=check.string(row.get("caption"), "caption", required=False, max_chars=MAX_CAPTION_CHARS),
        captioner=check.string(row.get("captioner"), "captioner", required=False),
        original_captions=check.caption_list(originals, "original_caption"),
        tags=check.string_list(tags_value, "tags", allow_single=False, item_max=MAX_TAG_CHARS),
        source=check.string(row.get("source"), "source", required=False),
        domain=check.string(row.get("domain"), "domain", required=False),
    )


def iter_lhotse_records(path: Path) -> Iterator[tuple[int, ClipRecord | ManifestError]]:
    """Every record, or the error of its line: raising is the caller's choice (raise vs skip)."""
    for line, obj in _iter_objects_or_errors(path):
        if isinstance(obj, ManifestError):
            yield line, obj
            continue
        try:
            yield line, parse_lhotse_cut(obj, path, line)
        except ManifestError as exc:
            yield line, exc


def iter_flat_json_records(path: Path) -> Iterator[tuple[int, ClipRecord | ManifestError]]:
    for line, obj in _iter_objects_or_errors(path):
        if isinstance(obj, ManifestError):
            yield line, obj
            continue
        try:
            yield line, parse_flat_row(obj, path, line, from_text=False)
        except ManifestError as exc:
            yield line, exc


def _iter_objects_or_errors(path: Path) -> Iterator[tuple[int, dict | ManifestError]]:
    """(line, object) for every non-blank line; a bad line is yielded as its error so that skip mode can go on."""
    any_record = False
    with open_manifest_bytes(path) as handle:
        line_no = 0
        while True:
            try:
                raw = handle.readline()
            except (OSError, EOFError, zlib.error) as exc:
                yield line_no + 1, ManifestError(path, line_no + 1, None, found=f"a damaged gzip stream ({exc})",
                                                 found_is_description=True, expected="a complete gzip file")
                return  # nothing after a broken stream can be trusted
            if not raw:
                break
            line_no += 1
            if not raw.strip():
                continue
            any_record = True
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield line_no, ManifestError(path, line_no, None, found=f"byte {raw[exc.start:exc.start + 1]!r} at "
                                             f"column {exc.start + 1}", found_is_description=True,
                                             expected="UTF-8 text")
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                yield line_no, ManifestError(path, line_no, None, found=f"invalid JSON ({exc.msg}, column "
                                             f"{exc.colno})", found_is_description=True,
                                             expected="one complete JSON object per line",
                                             hint="the line may be truncated")
                continue
            if not isinstance(obj, dict):
                yield line_no, ManifestError(path, line_no, None, found=obj, expected="a JSON object")
                continue
            yield line_no, obj
    if not any_record:
        raise ManifestError(path, None, None, found="no records", found_is_description=True,
                            expected="at least one record", hint="the file is empty")


def iter_csv_records(path: Path) -> Iterator[tuple[int, ClipRecord | ManifestError]]:
    try:
        with open(path, "r", encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None:
                raise ManifestError(path, None, None, found="no header", found_is_description=True,
                                    expected="a header row naming the columns id, audio_path, caption, tags, "
                                             "source, duration", hint="the file is empty")
            if "id" not in reader.fieldnames:
                raise ManifestError(path, 1, "id", found=f"columns {reader.fieldnames}", found_is_description=True,
                                    expected="a column named 'id'")
            any_record = False
            for row in reader:
                any_record = True
                line = reader.line_num
                if None in row:
                    yield line, ManifestError(path, line, None, found=f"{len(row[None]) + len(reader.fieldnames)} cells",
                                              found_is_description=True,
                                              expected=f"{len(reader.fieldnames)} cells as in the header")
                    continue
                try:
                    yield line, parse_flat_row(row, path, line, from_text=True)
                except ManifestError as exc:
                    yield line, exc
            if not any_record:
                raise ManifestError(path, None, None, found="a header and no rows", found_is_description=True,
                                    expected="at least one record")
    except UnicodeDecodeError as exc:
        raise ManifestError(path, None, None, found=f"byte {exc.object[exc.start:exc.start + 1]!r} at byte offset "
                            f"{exc.start}", found_is_description=True, expected="UTF-8 text") from None


def iter_parquet_records(path: Path, rows: list[dict]) -> Iterator[tuple[int, ClipRecord | ManifestError]]:
    """``rows`` come from the store's Parquet reader; 'line' is the 1-based row number."""
    if not rows:
        raise ManifestError(path, None, None, found="no rows", found_is_description=True,
                            expected="at least one record")
    for index, row in enumerate(rows, start=1):
        try:
            yield index, parse_flat_row(row, path, index, from_text=False)
        except ManifestError as exc:
            yield index, exc


def detect_format(path: Path) -> str:
    """'audio_folder', 'lhotse', 'flat_jsonl', 'csv' or 'parquet'."""
    if path.is_dir():
        return "audio_folder"
    if not path.exists():
        raise ManifestError(path, None, None, found="no such file", found_is_description=True,
                            expected="a manifest file or a folder of audio files")
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz")):
        for _line, obj in _iter_objects_or_errors(path):
            if isinstance(obj, dict):  # the first readable record decides; broken lines are reported later
                return "lhotse" if looks_like_lhotse(obj) else "flat_jsonl"
        return "lhotse"
    raise ManifestError(path, None, None, found=f"file name {path.name!r}", found_is_description=True,
                        expected="a .jsonl(.gz), .csv, .parquet manifest or a folder of audio files")
