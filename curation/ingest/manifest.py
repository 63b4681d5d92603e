"""Manifest reading and checking: Lhotse MonoCut JSONL(.gz) as the UTS release writes it, flat JSONL / CSV /
Parquet, and folders of audio files, each turned into the same ``ClipRecord``.

Place in the flow: manifest -> (this module) -> ClipRecord rows -> ingest writes them to DuckDB. This is the
exact reader: it names file, line and field for every problem. JSONL files are read in chunks of lines
(``iter_line_chunks``) so that no file is ever held whole; ``curation.ingest.ingest`` first gives each chunk to
DuckDB's JSON parser (fast) and comes here, for that chunk only, when the parser finds anything wrong.

Example::

    for line, record in iter_lhotse_records(Path("cuts.jsonl.gz")):
        print(line, record.clip_id, record.tags)
    for chunk in iter_line_chunks(Path("cuts.jsonl.gz"), chunk_rows=50_000):
        for line, record in parse_line_chunk(Path("cuts.jsonl.gz"), chunk, parse_lhotse_cut):
            ...
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from curation.errors import ManifestError
from curation.ingest.tag_text import MAX_TAG_CHARS, MAX_TAGS_PER_CLIP, normalize_tag, tag_text_problem

# The paper's captions average 388 words (~2.5k characters); 50k characters is far beyond any real caption
# and catches concatenated files or binary junk before it floods the store.
MAX_CAPTION_CHARS = 50_000
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")
# Rows per ingest chunk: ~135 MB of UTS-layout lines (2.7 KB each), which keeps an ingest's peak memory near
# 2-3 GB whatever the file size. MAX_CHUNK_BYTES bounds a chunk of unusually long lines.
DEFAULT_CHUNK_ROWS = 50_000
MAX_CHUNK_BYTES = 256 * 2**20


@dataclass(frozen=True)
class ClipRecord:
    clip_id: str
    audio_ref: str | None  # as written in the manifest; resolved against the manifest folder or --audio-root
    duration_s: float | None  # the cut's duration (a Lhotse cut may be a segment of its recording)
    sample_rate_hz: int | None = None  # as declared; the audio file's header wins when the file is read
    caption: str | None = None
    captioner: str | None = None
    original_captions: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    source: str | None = None
    domain: str | None = None
    # What a Lhotse cut declares beyond the UTS fields, kept so that an export writes the same cut back:
    start_s: float = 0.0  # the cut's offset inside its recording
    cut_channels: tuple[int, ...] | None = None  # MonoCut: (channel,), MultiCut: its channels; None: whole file
    declared_channels: int | None = None  # channels the recording declares (len(channel_ids))
    declared_samples: int | None = None  # recording.num_samples
    more_captions: tuple[str, ...] = ()  # captions of the 2nd, 3rd ... supervision (policy: all are kept)
    supervisions: int = 1  # how many supervisions the cut had (tags and captions of all are unioned)
    sources: int = 1  # how many audio sources the recording had (the first is kept; the rest are counted)
    tags_from_string: bool = False  # audio_tag came as one ';'-joined string and was split


def split_tag_string(value: str) -> list[str]:
    """``"dog;bark; barking"`` -> ``["dog", "bark", " barking"]``: the UTS recipe's own joined form, split back."""
    return [part for part in value.split(";") if part.strip()]


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


_COMPRESSED_READ = 4 * 2**20  # compressed bytes read at a time
_MAX_PIECE = 64 * 2**20  # decompressed bytes per piece, whatever the compression ratio


def iter_manifest_bytes(path: Path) -> Iterator[bytes]:
    """The manifest's (decompressed) bytes as a stream of pieces, read in large blocks.

    A damaged gzip stream raises, as ``gzip`` does (EOFError when it ends early, zlib.error or BadGzipFile when
    its data is corrupt), after every byte that could be decoded before the damage has been yielded (zlib is
    driven directly for that: a GzipFile read that meets the damage loses all it had decoded).
    """
    with open_manifest_bytes(path):  # the .gz magic check
        pass
    with open(path, "rb") as handle:
        if not is_gzip_path(path):
            while block := handle.read(_COMPRESSED_READ):
                yield block
            return
        decompressor = zlib.decompressobj(wbits=31)  # gzip framing; zlib checks each member's CRC and size
        while block := handle.read(_COMPRESSED_READ):
            data = block
            while data:
                if decompressor.eof:  # a member ended: zero padding, another member, or junk may follow
                    data = data.lstrip(b"\0")
                    if not data:
                        break
                    if not b"\x1f\x8b".startswith(data[:2]):
                        raise gzip.BadGzipFile(f"Not a gzipped file ({data[:2]!r})")
                    decompressor = zlib.decompressobj(wbits=31)
                before = decompressor.copy()
                try:
                    piece = decompressor.decompress(data, _MAX_PIECE)
                except zlib.error:
                    yield from _decodable_before_damage(before, data)
                    raise
                if piece:
                    yield piece
                if decompressor.eof:
                    data = decompressor.unused_data
                elif decompressor.unconsumed_tail or len(piece) == _MAX_PIECE:
                    data = decompressor.unconsumed_tail or b""
                    if not data:  # output was cut at _MAX_PIECE with all input consumed: drain what is left
                        while tail := decompressor.decompress(b"", _MAX_PIECE):
                            yield tail
                else:
                    data = b""
        if not decompressor.eof:
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")


def _decodable_before_damage(decompressor, data: bytes) -> Iterator[bytes]:
    """What ``decompressor`` yields from ``data`` fed in small steps, up to the step where the damage is."""
    for start in range(0, len(data), 256):
        try:
            piece = decompressor.decompress(data[start:start + 256])
        except zlib.error:
            return
        if piece:
            yield piece


def looks_like_lhotse(obj: dict) -> bool:
    """A Lhotse cut, or a line of a recipe's RecordingSet / SupervisionSet manifest."""
    return ("supervisions" in obj or "recording" in obj or is_lhotse_recording(obj)
            or ("recording_id" in obj and "start" in obj and "duration" in obj))


def is_lhotse_recording(obj: dict) -> bool:
    return "sources" in obj and "sampling_rate" in obj and "supervisions" not in obj


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
        if item_max is not None and len(value) > MAX_TAGS_PER_CLIP:
            raise ManifestError(self.path, self.line, field, found=f"{len(value):,} tags", found_is_description=True,
                                expected=f"at most {MAX_TAGS_PER_CLIP} tags per clip (the paper's prompt asks for "
                                         "at most 10)")
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
                if (problem := tag_text_problem(normalize_tag(item))) is not None:
                    raise self.fail(f"{field}[{index}]", item, problem)
            out.append(item)
        return tuple(out)

    def caption_list(self, value: object, field: str) -> tuple[str, ...]:
        items = self.string_list(value, field, allow_single=True, item_max=None)
        for index, item in enumerate(items):
            self.string(item, f"{field}[{index}]", required=False, max_chars=MAX_CAPTION_CHARS)
        return items


def _channel_list(check: _Checker, value: object, field: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(items, list) or not items or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in items):
        raise check.fail(field, value, "a channel index (MonoCut) or a non-empty list of channel indices (MultiCut)")
    return tuple(items)


def parse_lhotse_cut(obj: dict, path: Path, line: int | None) -> ClipRecord:
    """One Lhotse cut (MonoCut or MultiCut) in the UTS layout: supervisions[*].custom = {audio_tag, caption,
    original_caption, source, domain, captioner}.

    Policy for several supervisions (documented in the README): tags and original captions of all supervisions
    are unioned for the clip, the first supervision's caption is the clip's generated caption and the others are
    kept as further generated captions. Several audio sources: the first is the clip's audio, the others are
    counted (``sources``). ``audio_tag`` may be a list or one ';'-joined string (the recipe's own joined form).
    """
    check = _Checker(path, line)
    if is_lhotse_recording(obj):
        # A recipe's RecordingSet (e.g. MUSAN's): each recording is a clip awaiting captions and tags.
        obj = {"id": obj.get("id"), "start": 0.0, "duration": obj.get("duration"), "channel": obj.get("channel_ids"),
               "supervisions": [{}], "recording": obj}
    elif "recording_id" in obj and "recording" not in obj and "supervisions" not in obj:
        raise ManifestError(path, line, None, found="a SupervisionSet line (it names a recording_id, not audio)",
                            found_is_description=True, expected="Lhotse cuts or recordings",
                            hint="join it with its RecordingSet first: lhotse cut simple -r recordings.jsonl.gz "
                                 "-s supervisions.jsonl.gz cuts.jsonl.gz")
    cut_type = obj.get("type")
    if cut_type is not None and cut_type not in ("MonoCut", "MultiCut"):
        raise check.fail("type", cut_type, "a MonoCut or MultiCut (a cut with one recording); turn mixed or padded "
                                           "cuts into plain ones first, e.g. CutSet.to_mono() or without padding")
    clip_id = check.string(obj.get("id"), "id", required=True)
    duration_s = check.positive_number(obj.get("duration"), "duration", required=True)
    start_s = obj.get("start", 0.0)
    if start_s is None:
        start_s = 0.0
    if isinstance(start_s, bool) or not isinstance(start_s, (int, float)) or start_s < 0:
        raise check.fail("start", start_s, "a number of seconds >= 0 (the cut's offset in its recording)")
    supervisions = obj.get("supervisions")
    if (not isinstance(supervisions, list) or not supervisions
            or not all(isinstance(sup, dict) for sup in supervisions)):
        raise check.fail("supervisions", supervisions, "a list of supervision objects (at least one)")
    tags: list[str] = []
    captions: list[str] = []
    originals: list[str] = []
    captioner = source = domain = None
    from_string = False
    for index, supervision in enumerate(supervisions):
        custom = supervision.get("custom")
        if isinstance(custom, str):  # Parquet conversions may carry the custom dict as JSON text
            try:
                custom = json.loads(custom)
            except json.JSONDecodeError:
                raise check.fail(f"supervisions[{index}].custom", custom, "an object (or its JSON text)") from None
        if custom is None:
            custom = {}
        if not isinstance(custom, dict):
            raise check.fail(f"supervisions[{index}].custom", custom, "an object")
        prefix = f"supervisions[{index}].custom"
        raw_tags = custom.get("audio_tag")
        if isinstance(raw_tags, str):
            raw_tags, from_string = split_tag_string(raw_tags), True
        elif raw_tags is not None and not isinstance(raw_tags, list) and hasattr(raw_tags, "tolist"):
            raw_tags = raw_tags.tolist()  # numpy arrays from some Parquet readers
        for tag in check.string_list(raw_tags, f"{prefix}.audio_tag", allow_single=False, item_max=MAX_TAG_CHARS):
            if tag not in tags:
                tags.append(tag)
        caption = check.string(custom.get("caption"), f"{prefix}.caption", required=False,
                               max_chars=MAX_CAPTION_CHARS)
        if caption is not None and caption.strip():
            captions.append(caption)
        raw_originals = custom.get("original_caption")
        if raw_originals is not None and not isinstance(raw_originals, (list, str)) and hasattr(raw_originals, "tolist"):
            raw_originals = raw_originals.tolist()
        # A recipe's supervision text (a transcript, a description) is the human text written for this audio.
        text = check.string(supervision.get("text"), f"supervisions[{index}].text", required=False,
                            max_chars=MAX_CAPTION_CHARS)
        for original in (*check.caption_list(raw_originals, f"{prefix}.original_caption"), *([text] if text else [])):
            if original.strip() and original not in originals:
                originals.append(original)
        captioner = captioner or check.string(custom.get("captioner"), f"{prefix}.captioner", required=False)
        source = source or check.string(custom.get("source"), f"{prefix}.source", required=False)
        domain = domain or check.string(custom.get("domain"), f"{prefix}.domain", required=False)
        if len(tags) > MAX_TAGS_PER_CLIP:
            raise ManifestError(path, line, f"{prefix}.audio_tag", found=f"{len(tags):,} tags over the supervisions",
                                found_is_description=True,
                                expected=f"at most {MAX_TAGS_PER_CLIP} tags per clip")
    recording = obj.get("recording")
    if not isinstance(recording, dict):
        raise check.fail("recording", recording, "an object with sources and sampling_rate")
    sources = recording.get("sources")
    if hasattr(sources, "tolist") and not isinstance(sources, list):
        sources = sources.tolist()
    if not isinstance(sources, list) or not sources or not all(isinstance(src, dict) for src in sources):
        raise check.fail("recording.sources", sources, "a list of audio source objects (at least one)")
    audio_ref = check.string(sources[0].get("source"), "recording.sources[0].source", required=True)
    channel_ids = recording.get("channel_ids")
    if hasattr(channel_ids, "tolist") and not isinstance(channel_ids, list):
        channel_ids = channel_ids.tolist()
    declared = _channel_list(check, channel_ids, "recording.channel_ids")
    cut_channel = obj.get("channel")
    if hasattr(cut_channel, "tolist") and not isinstance(cut_channel, (list, int)):
        cut_channel = cut_channel.tolist()
    num_samples = recording.get("num_samples")
    return ClipRecord(
        clip_id=clip_id.strip(),
        audio_ref=audio_ref,
        duration_s=duration_s,
        sample_rate_hz=check.positive_int(recording.get("sampling_rate"), "recording.sampling_rate"),
        caption=captions[0] if captions else None,
        captioner=captioner,
        original_captions=tuple(originals),
        tags=tuple(tags),
        source=source,
        domain=domain,
        start_s=float(start_s),
        cut_channels=_channel_list(check, cut_channel, "channel"),
        declared_channels=len(declared) if declared else None,
        declared_samples=check.positive_int(num_samples, "recording.num_samples") if num_samples is not None else None,
        more_captions=tuple(captions[1:]),
        supervisions=len(supervisions),
        sources=len(sources),
        tags_from_string=from_string,
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
    tags_field = "tags" if "tags" in row or "audio_tag" not in row else "audio_tag"
    tags_value = row.get(tags_field)
    if isinstance(tags_value, str):
        tags_value = split_tag_string(tags_value)
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
        tags=check.string_list(tags_value, tags_field, allow_single=False, item_max=MAX_TAG_CHARS),
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


def _object_of_line(path: Path, line_no: int, raw: bytes) -> dict | ManifestError:
    """The JSON object of one non-blank line, or the error naming what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return ManifestError(path, line_no, None, found=f"byte {raw[exc.start:exc.start + 1]!r} at column "
                             f"{exc.start + 1}", found_is_description=True, expected="UTF-8 text")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return ManifestError(path, line_no, None, found=f"invalid JSON ({exc.msg}, column {exc.colno})",
                             found_is_description=True, expected="one complete JSON object per line",
                             hint="the line may be truncated")
    if not isinstance(obj, dict):
        return ManifestError(path, line_no, None, found=obj, expected="a JSON object")
    return obj


def _damaged_stream(path: Path, line_no: int, exc: BaseException) -> ManifestError:
    return ManifestError(path, line_no, None, found=f"a damaged gzip stream ({exc})", found_is_description=True,
                         expected="a complete gzip file")


def _iter_objects_or_errors(path: Path) -> Iterator[tuple[int, dict | ManifestError]]:
    """(line, object) for every non-blank line; a bad line is yielded as its error so that skip mode can go on."""
    any_record = False
    with open_manifest_bytes(path) as handle:
        line_no = 0
        while True:
            try:
                raw = handle.readline()
            except (OSError, EOFError, zlib.error) as exc:
                yield line_no + 1, _damaged_stream(path, line_no + 1, exc)
                return  # nothing after a broken stream can be trusted
            if not raw:
                break
            line_no += 1
            if not raw.strip():
                continue
            any_record = True
            yield line_no, _object_of_line(path, line_no, raw)
    if not any_record:
        raise no_records_error(path)


def no_records_error(path: Path) -> ManifestError:
    return ManifestError(path, None, None, found="no records", found_is_description=True,
                         expected="at least one record", hint="the file is empty")


@dataclass(frozen=True)
class LineChunk:
    """Consecutive lines of a JSONL manifest, as read: ``data[offsets[i]:offsets[i + 1]]`` is line
    ``first_line + i`` (its newline included). Blank lines are kept (so that numbering stays exact) and marked."""

    data: bytes
    offsets: np.ndarray  # int64, len = lines + 1, absolute positions in data
    first_line: int
    blank: np.ndarray  # bool per line: only whitespace (such lines are no records)
    damaged: ManifestError | None = None  # the gzip stream broke after these lines: nothing after them is read

    @property
    def n_lines(self) -> int:
        return len(self.offsets) - 1

    @property
    def records(self) -> int:
        return int(self.n_lines - self.blank.sum())

    def raw_lines(self) -> Iterator[tuple[int, bytes]]:
        """(line number, bytes) of every non-blank line."""
        data, offsets = self.data, self.offsets.tolist()
        for index in range(self.n_lines):
            if not self.blank[index]:
                yield self.first_line + index, data[offsets[index]:offsets[index + 1]]

    def lines_table(self) -> pa.Table:
        """line (INTEGER), raw (the line's text), blank: what DuckDB's JSON parser reads.

        Raises pyarrow.ArrowInvalid when a line is not UTF-8 (the exact reader then names it)."""
        raw = pa.Array.from_buffers(pa.large_binary(), self.n_lines,
                                    [None, pa.py_buffer(self.offsets), pa.py_buffer(self.data)])
        return pa.table({"line": pa.array(np.arange(self.first_line, self.first_line + self.n_lines, dtype=np.int32)),
                         "raw": raw.cast(pa.large_string()), "blank": pa.array(self.blank)})


def iter_line_chunks(path: Path, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                     max_chunk_bytes: int = MAX_CHUNK_BYTES) -> Iterator[LineChunk]:
    """The lines of a JSONL(.gz) manifest in chunks of ``chunk_rows`` lines (fewer where they pass
    ``max_chunk_bytes``), read as a stream: memory holds one chunk, whatever the file size.

    A damaged gzip stream ends the last chunk with ``damaged`` set, at the line after the last complete one (as
    the line-by-line reader reports it). A file of no non-blank line raises the "no records" error.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows}: expected at least 1")
    pending: list[bytes] = []
    pending_newlines = pending_bytes = 0
    next_line = 1
    records = 0
    pieces = iter_manifest_bytes(path)
    while True:
        damaged: BaseException | None = None
        try:
            piece = next(pieces, b"")
        except (OSError, EOFError, zlib.error) as exc:
            piece, damaged = b"", exc
        at_end = not piece
        if piece:
            pending.append(piece)
            pending_newlines += piece.count(b"\n")
            pending_bytes += len(piece)
            if not pending_newlines or (pending_newlines < chunk_rows and pending_bytes < max_chunk_bytes):
                continue
        data = b"".join(pending)
        # At the end everything is cut; after a damaged stream, the complete lines only.
        chunks, consumed = _split_lines(data, next_line, chunk_rows, max_chunk_bytes, at_end=at_end,
                                        keep_unfinished_line=damaged is None)
        for chunk in chunks:
            next_line += chunk.n_lines
            records += chunk.records
            if at_end and damaged is not None and chunk is chunks[-1]:
                chunk = LineChunk(chunk.data, chunk.offsets, chunk.first_line, chunk.blank,
                                  _damaged_stream(path, next_line, damaged))
            yield chunk
        if at_end:
            if damaged is not None and not chunks:
                yield LineChunk(b"", np.zeros(1, np.int64), next_line, np.zeros(0, bool),
                                _damaged_stream(path, next_line, damaged))
            elif damaged is None and not records:
                raise no_records_error(path)
            return
        rest = data[consumed:]
        pending = [rest] if rest else []
        pending_newlines, pending_bytes = rest.count(b"\n"), len(rest)


def _split_lines(data: bytes, first_line: int, chunk_rows: int, max_chunk_bytes: int, at_end: bool,
                 keep_unfinished_line: bool = True) -> tuple[list[LineChunk], int]:
    """Cut ``data`` (starting at a line start) into full chunks; returns them and the bytes they hold. At the end
    of the stream every line is cut, a last line without a newline too (unless ``keep_unfinished_line`` is
    False); before it, an unfinished chunk and a line without its newline are left for the next read."""
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
    if at_end and keep_unfinished_line and len(data) and (not len(ends) or ends[-1] != len(data)):
        ends = np.append(ends, len(data))
    chunks: list[LineChunk] = []
    start_index, start = 0, 0
    while start_index < len(ends):
        stop_index = min(start_index + chunk_rows, len(ends))
        within_bytes = int(np.searchsorted(ends, start + max_chunk_bytes, side="right"))
        stop_index = max(start_index + 1, min(stop_index, within_bytes))
        full = (at_end or stop_index - start_index == chunk_rows or stop_index < len(ends)
                or ends[stop_index - 1] - start >= max_chunk_bytes)
        if not full:
            break
        offsets = np.concatenate([[start], ends[start_index:stop_index]]).astype(np.int64)
        chunks.append(LineChunk(data, offsets, first_line + start_index, _blank_lines(data, offsets)))
        start_index, start = stop_index, int(ends[stop_index - 1])
    return chunks, start


def _blank_lines(data: bytes, offsets: np.ndarray) -> np.ndarray:
    lengths = np.diff(offsets)
    blank = np.zeros(len(lengths), dtype=bool)
    # Only short lines can be blank in practice; a long run of spaces fails the fast parse and the exact reader,
    # which checks every line, skips it.
    for index in np.flatnonzero(lengths <= 16).tolist():
        blank[index] = not data[offsets[index]:offsets[index + 1]].strip()
    return blank


RowParser = Callable[[dict, Path, int], ClipRecord]


def parse_flat_json_row(row: dict, path: Path, line: int | None) -> ClipRecord:
    return parse_flat_row(row, path, line, from_text=False)


def parse_line_chunk(path: Path, chunk: LineChunk,
                     parse_row: RowParser) -> Iterator[tuple[int, ClipRecord | ManifestError]]:
    """The exact reader over one chunk: every record, or the error of its line (then the damaged stream's)."""
    for line_no, raw in chunk.raw_lines():
        obj = _object_of_line(path, line_no, raw)
        if isinstance(obj, ManifestError):
            yield line_no, obj
            continue
        try:
            yield line_no, parse_row(obj, path, line_no)
        except ManifestError as exc:
            yield line_no, exc
    if chunk.damaged is not None:
        yield chunk.damaged.line, chunk.damaged


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


def iter_parquet_records(path: Path, batches: Iterable[list[dict]]) -> Iterator[tuple[int, ClipRecord | ManifestError]]:
    """``batches`` of rows come from the store's streaming Parquet reader; 'line' is the 1-based row number."""
    index = 0
    for rows in batches:
        for row in rows:
            index += 1
            try:
                # The UTS release's Parquet conversion keeps the cut's nested supervisions / recording columns.
                if looks_like_lhotse(row):
                    yield index, parse_lhotse_cut(row, path, index)
                else:
                    yield index, parse_flat_row(row, path, index, from_text=False)
            except ManifestError as exc:
                yield index, exc
    if not index:
        raise ManifestError(path, None, None, found="no rows", found_is_description=True,
                            expected="at least one record")


def _is_published_vocabulary(path: Path) -> bool:
    """label_K.json as the UTS release publishes it: one JSON object of "0".."K-1" -> tag."""
    if path.stat().st_size > 50_000_000:
        return False
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return (isinstance(obj, dict) and bool(obj) and all(key.isdigit() for key in obj)
            and all(isinstance(value, str) for value in obj.values()))


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
    if name.endswith(".json") and _is_published_vocabulary(path):
        raise ManifestError(path, None, None, found='an id-to-label vocabulary {"0": tag, ...}',
                            found_is_description=True, expected="a manifest of clips",
                            hint="a published vocabulary such as label_800.json is compared with "
                                 "`python -m curation vocab compare FILE --db DB` and used as canonical targets "
                                 "with `python -m curation vocab seed FILE --db DB --by NAME`")
    if name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz")):
        for _line, obj in _iter_objects_or_errors(path):
            if isinstance(obj, dict):  # the first readable record decides; broken lines are reported later
                return "lhotse" if looks_like_lhotse(obj) else "flat_jsonl"
        return "lhotse"
    raise ManifestError(path, None, None, found=f"file name {path.name!r}", found_is_description=True,
                        expected="a .jsonl(.gz), .csv, .parquet manifest or a folder of audio files")
