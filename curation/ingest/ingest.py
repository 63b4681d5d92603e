"""Ingest: any supported manifest or audio folder -> clips, captions, interned tags and clip-tag rows in DuckDB.

Place in the flow: manifest -> ingest (this module) -> extract/caption, decide, vocabulary, export.
With ``on_bad_row="raise"`` (default) the first bad row aborts the ingest and nothing from the file stays in the
store; with ``"skip"`` every bad row is left out, counted and stored with its reason. Missing or unreadable audio
never stops an ingest; it is counted and listed.

Streaming: the file is read and written in chunks of ``chunk_rows`` rows, each chunk in its own transaction, so
that memory holds one chunk whatever the file size (an open transaction keeps what it wrote in memory until its
commit: one transaction over a 4M-clip file held 15 GB). The ingest is recorded as unfinished (``ingests.finished_at``
NULL, ``lines_done`` its progress) until its last commit; any failure (a bad row in chunk 3, a damaged gzip
stream, a full disk, Ctrl-C) undoes everything it committed (``undo_ingest``: its new clips go, clips it
re-ingested get their earlier rows back from ``ingest_replaced_*``, tags only it used go). A killed process cannot
undo itself: the next ingest into the database does (``undo_stopped_ingests``), and says so in its notes.
Meanwhile other readers see the clips of the committed chunks. DuckDB's own memory is capped at
``INGEST_DUCKDB_MEMORY`` for the ingest, beyond which it spills to its temp folder beside the database. Each chunk
is parsed on a second connection of the same database, outside the write transactions, first by DuckDB's JSON
parser (fast path) and, if that finds anything wrong, by the exact Python reader for that chunk only, which names
file, line and field. Ids are checked for duplicates across chunks. The caption index of the new clips is written
after the chunks, 60,000 clips per transaction, before the ingest reports success.

Example::

    con = store.connect("data/uts.duckdb")
    summary = ingest_path(con, Path("cuts.jsonl.gz"), audio_root=Path("/data/audio"))
    print(summary.as_text())
"""
from __future__ import annotations

import contextlib
import itertools
import os
import threading
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
from curation.store import memory as store_memory

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
    # Seconds by step: read (decompress, split lines), parse (check and stage), audio (resolve, probe), write
    # (clips, captions, tags), index (caption text index), commit. Where a large ingest spends its time.
    phases: dict = field(default_factory=dict)

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
                probe_audio: bool = True, chunk_rows: int = manifest.DEFAULT_CHUNK_ROWS) -> IngestSummary:
    """Ingest one manifest file or audio folder, ``chunk_rows`` rows per transaction, all or nothing (see the module
    docstring).

    ``audio_pattern`` finds the audio of clips whose source names a dataset (the UTS release writes "audioset"
    where a path belongs): a template with {root}, {source}, {id} and optionally {ext}; by default
    DEFAULT_AUDIO_PATTERNS are tried. ``probe_audio`` reads every found file's header (the file's duration,
    rate and channels win over the manifest's; differences are counted).
    """
    if on_bad_row not in ON_BAD_ROW_CHOICES:
        raise UsageError(f"on_bad_row={on_bad_row!r}: expected one of {ON_BAD_ROW_CHOICES}")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise UsageError(f"chunk_rows={chunk_rows!r}: expected a whole number of rows >= 1")
    if audio_pattern is not None:
        check_audio_pattern(audio_pattern)
    path = Path(path).resolve()
    audio_root = Path(audio_root).resolve() if audio_root else None
    started = time.perf_counter()
    fmt = manifest.detect_format(path)
    # A folder's paths are relative to the folder itself; a manifest's to its folder or --audio-root.
    base = path if fmt == "audio_folder" else (audio_root or path.parent)
    run = _Run(path=path, fmt=fmt, on_bad_row=on_bad_row, extractor=extractor, captioner=captioner, base=base,
               audio_root=audio_root, audio_pattern=audio_pattern, probe_audio=probe_audio)
    undone = undo_stopped_ingests(con)
    for stopped in undone:
        run.notes.add("stopped_ingests_undone", f"ingest {stopped.ingest_id} of {stopped.path}: stopped after "
                                                 f"{stopped.lines_done:,} lines, {stopped.clips:,} clips removed")
    with store.transaction(con):
        ingest_id = store_ingest.begin_ingest(con, str(path), fmt, on_bad_row, audio_root=str(base))
        _set_running(con, ingest_id, True)  # before the commit makes it visible: never taken for a stopped one
    stage = con.cursor()  # parses and stages chunks outside the write transactions (its temp tables are its own)
    try:
        with store_memory.memory_capped(con, INGEST_DUCKDB_MEMORY):
            store_ingest.start_file_tables(stage)
            chunks = _chunks(stage, path, fmt, chunk_rows, run.notes)
            while True:
                with run.timed("read"):
                    chunk = next(chunks, None)
                if chunk is None:
                    break
                # One transaction per chunk: an open transaction keeps every row and temp table it wrote in
                # memory until its commit (~15 GB for 4M clips). The ingest stays unfinished (finished_at
                # NULL) until its last commit; any failure undoes what it committed (undo_ingest).
                with store.transaction(con):
                    run.ingest_chunk(con, stage, ingest_id, chunk)
                    store_ingest.record_progress(con, ingest_id, run.last_line)
            with run.timed("index"):
                keys = store_ingest.ingest_clip_keys(con, ingest_id)
                for start in range(0, len(keys), INDEX_BATCH_CLIPS):
                    with store.transaction(con):  # searchable before the ingest reports success
                        text_index.index_clips(con, keys[start:start + INDEX_BATCH_CLIPS])
            with store.transaction(con):
                distinct_tags = store_ingest.ingest_distinct_tags(con, ingest_id, extractor)
                run.note_respellings(stage)
                store_ingest.record_notes(con, ingest_id, run.notes.rows())
                counts = store_ingest.StagedCounts(run.clips, run.captions, run.tag_rows, distinct_tags)
                seconds = time.perf_counter() - started
                store_ingest.finish_ingest(con, ingest_id, counts, run.skipped_rows, run.missing_audio,
                                           seconds)
                commit_started = time.perf_counter()
            run.phases["commit"] = time.perf_counter() - commit_started
    except BaseException as failure:
        # A bad row (raise mode), a damaged file, a full disk, Ctrl-C: the store goes back to what it was.
        # (A killed process cannot do this: the next ingest into this database does it, undo_stopped_ingests.)
        try:
            undo_ingest(con, ingest_id)
        except Exception as undo_failure:  # the first error is what the user must see; say what is left
            failure.add_note(f"undoing ingest {ingest_id} failed too ({undo_failure}); the next ingest into "
                             "this database undoes it")
        raise
    finally:
        _set_running(con, ingest_id, False)
        stage.close()
    return IngestSummary(
        ingest_id=ingest_id, path=str(path), format=fmt, clips=counts.clips, captions=counts.captions,
        tag_rows=counts.tag_rows, distinct_tags=counts.distinct_tags, skipped_rows=run.skipped_rows,
        missing_audio=run.missing_audio, seconds=seconds, fast_path=run.fast_chunks > 0 and not run.exact_chunks,
        missing_audio_examples=tuple(run.missing_examples), skipped_examples=tuple(run.skipped_examples),
        notes=run.notes.as_dict(), phases={step: round(value, 2) for step, value in run.phases.items()})


# Clips whose captions are indexed per transaction after the chunks are written (the index's own batch size).
INDEX_BATCH_CLIPS = 60_000
UNDO_BATCH_CLIPS = 200_000

# Ingests running now in this process, by database file. DuckDB lets one process at a time write a database file,
# so an unfinished ingest of a database this process holds that is not listed here was stopped (killed, or the
# machine went down) and will never finish.
_RUNNING: dict[str, set[int]] = {}
_RUNNING_LOCK = threading.Lock()


def _database_key(con: duckdb.DuckDBPyConnection) -> str:
    path = store.database_path(con)
    return str(path) if path is not None else f"memory:{id(con)}"


def _set_running(con: duckdb.DuckDBPyConnection, ingest_id: int, running: bool) -> None:
    with _RUNNING_LOCK:
        ids = _RUNNING.setdefault(_database_key(con), set())
        ids.add(ingest_id) if running else ids.discard(ingest_id)


@dataclass(frozen=True)
class UndoneIngest:
    ingest_id: int
    path: str
    lines_done: int  # manifest lines it had committed when it stopped
    clips: int  # clips removed (new ones) or given back their earlier rows (re-ingested ones)
    restored: int  # of those, re-ingested clips given back their earlier rows
    tags_removed: int  # tags it had created that nothing uses any more
    seconds: float


def undo_ingest(con: duckdb.DuckDBPyConnection, ingest_id: int) -> UndoneIngest:
    """Take an unfinished ingest back out of the store: its new clips with everything naming them, the earlier
    rows of the clips it re-ingested, its tags that nothing else uses, its records. Batch by batch, each batch in
    its own transaction (memory stays bounded at 4M clips); stopped half-way, running it again finishes it."""
    started = time.perf_counter()
    info = {u.ingest_id: u for u in store_ingest.unfinished_ingests(con)}.get(ingest_id)
    if info is None:
        raise UsageError(f"ingest {ingest_id}: not an unfinished ingest of this database (a finished ingest is "
                         "undone by ingesting the earlier manifest again, or from a backup)")
    keys = store_ingest.ingest_clip_keys(con, ingest_id)
    replaced = store_ingest.replaced_clip_keys(con, ingest_id)
    restored = 0
    for start in range(0, len(keys), UNDO_BATCH_CLIPS):
        with store.transaction(con):
            back = store_ingest.undo_ingest_batch(con, ingest_id, keys[start:start + UNDO_BATCH_CLIPS], replaced)
            if len(back):
                text_index.index_clips(con, back)  # their earlier captions become searchable again
            restored += len(back)
    with store.transaction(con):
        tags_removed = store_ingest.forget_ingest(con, ingest_id)
    return UndoneIngest(ingest_id=ingest_id, path=info.path, lines_done=info.lines_done, clips=len(keys),
                        restored=restored, tags_removed=tags_removed, seconds=time.perf_counter() - started)


def undo_stopped_ingests(con: duckdb.DuckDBPyConnection) -> list[UndoneIngest]:
    """Undo every unfinished ingest of this database that is not running in this process (its process stopped)."""
    with _RUNNING_LOCK:
        running = set(_RUNNING.get(_database_key(con), set()))
    return [undo_ingest(con, stopped.ingest_id) for stopped in store_ingest.unfinished_ingests(con)
            if stopped.ingest_id not in running]


# DuckDB's memory during an ingest (its buffer pool, the staging tables, the uncommitted rows, the text index's
# per-batch lists, which a transaction keeps until its commit): with the default (80% of RAM) a 4M-clip ingest's
# process grows past 5 GB; capped, DuckDB spills to its temp folder beside the database (~10% slower) and the
# process stays near 2 GB. Its allocator's background threads return freed pages to the system meanwhile.
INGEST_DUCKDB_MEMORY = "1GiB"
@dataclass
class _Run:
    """One ingest's running totals and policy, fed chunk by chunk (only counts and a few examples are kept)."""

    path: Path
    fmt: str
    on_bad_row: str
    extractor: str
    captioner: str
    base: Path
    audio_root: Path | None
    audio_pattern: str | None
    probe_audio: bool
    notes: IngestNotes = field(default_factory=lambda: IngestNotes())
    clips: int = 0
    captions: int = 0
    tag_rows: int = 0
    skipped_rows: int = 0
    missing_audio: int = 0
    fast_chunks: int = 0
    exact_chunks: int = 0
    last_line: int = 0  # the last manifest line of the chunks read so far
    skipped_examples: list[str] = field(default_factory=list)
    missing_examples: list[str] = field(default_factory=list)
    normalised: dict[str, str] = field(default_factory=dict)  # raw spelling -> normalize_tag (a bounded cache)
    phases: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases[step] = self.phases.get(step, 0.0) + time.perf_counter() - started

    def ingest_chunk(self, con: duckdb.DuckDBPyConnection, stage: duckdb.DuckDBPyConnection, ingest_id: int,
                     chunk: manifest.LineChunk | list) -> None:
        """Stage, check, resolve and write one chunk (inside the chunk's transaction on ``con``)."""
        if isinstance(chunk, manifest.LineChunk):
            self.last_line = chunk.first_line + chunk.n_lines - 1
        elif chunk:
            self.last_line = chunk[-1][0]
        bad_rows: list[ManifestError] = []
        try:
            with self.timed("parse"):
                if (isinstance(chunk, manifest.LineChunk) and self.fmt == "lhotse"
                        and _stage_lhotse_fast(stage, chunk)):
                    self.fast_chunks += 1
                    if chunk.damaged is not None:
                        self._bad_row(chunk.damaged, bad_rows)
                else:
                    self.exact_chunks += 1
                    records = list(_records_of_chunk(self.path, self.fmt, chunk))
                    seen = store_ingest.seen_id_lines(
                        stage, [rec.clip_id for _, rec in records if isinstance(rec, ClipRecord)])
                    checked = _checked(self.path, records, self.on_bad_row, bad_rows, seen)
                    store_ingest.stage_rows(stage, _records_to_arrow(checked, self.notes))
                self._normalise_staged_tags(stage)
            with self.timed("audio"):
                audio_table, missing = _resolve_audio(store_ingest.staged_audio_rows(stage), self.base,
                                                      audio_root=self.audio_root, audio_pattern=self.audio_pattern,
                                                      probe_audio=self.probe_audio, notes=self.notes)
                rows = store_ingest.staged_for_writing(stage, audio_table, self.captioner)
            with self.timed("write"):
                if rows.num_rows:
                    counts = store_ingest.write_chunk(con, ingest_id, rows, self.extractor)
                    self.clips, self.captions = self.clips + counts.clips, self.captions + counts.captions
                    self.tag_rows += counts.tag_rows
                del rows
                store_ingest.record_missing_audio(con, ingest_id, pa.table({
                    "clip_id": pa.array([m[0] for m in missing], pa.string()),
                    "audio_path": pa.array([m[1] for m in missing], pa.string()),
                    "reason": pa.array([m[2] for m in missing], pa.string())}))
                store_ingest.record_bad_rows(con, ingest_id, [(err.line, err.field, err.reason) for err in bad_rows])
            self.missing_audio += len(missing)
            self.missing_examples += [f"{m[0]}: {m[1]} ({m[2]})"
                                      for m in missing[:MAX_LISTED_MISSING_AUDIO - len(self.missing_examples)]]
            self.skipped_rows += len(bad_rows)
            self.skipped_examples += [str(err) for err in bad_rows[:MAX_LISTED_MISSING_AUDIO - len(self.skipped_examples)]]
            store_ingest.remember_staged_ids(stage)
        finally:
            store_ingest.drop_staging(stage)

    def _bad_row(self, error: ManifestError, bad_rows: list[ManifestError]) -> None:
        if self.on_bad_row == "raise":
            raise error
        bad_rows.append(error)

    def _normalise_staged_tags(self, stage: duckdb.DuckDBPyConnection) -> None:
        """Respell every staged tag by the product's one rule (normalize_tag) and fold duplicates inside a clip."""
        respelled = {}
        for tag in store_ingest.staged_distinct_tags(stage):
            new = self._normalise(tag)
            if new != tag:
                respelled[tag] = new
        store_ingest.remember_respellings(stage, respelled)
        folded = store_ingest.respell_staged_tags(stage, respelled)
        if folded:
            self.notes.add("tag_rows_folded", n=folded)

    def _normalise(self, tag: str) -> str:
        new = self.normalised.get(tag)
        if new is None:
            if len(self.normalised) >= _NORMALISED_CACHE:
                self.normalised.clear()
            new = self.normalised[tag] = normalize_tag(tag)
        return new

    def note_respellings(self, stage: duckdb.DuckDBPyConnection) -> None:
        """Distinct spellings respelled over the whole file (a spelling met in several chunks counts once)."""
        n, examples = store_ingest.respellings(stage, MAX_NOTE_EXAMPLES)
        for tag, new in examples:
            self.notes.add("tags_respelled", f"{tag!r} -> {new!r}", n=0)
        self.notes.add("tags_respelled", n=n)


_NORMALISED_CACHE = 500_000  # distinct spellings remembered between chunks (the UTS release has ~100k)


def _chunks(stage: duckdb.DuckDBPyConnection, path: Path, fmt: str, chunk_rows: int,
            notes: IngestNotes) -> Iterator[manifest.LineChunk | list]:
    """The file in chunks: LineChunks for JSONL (each parsed later, fast or exact), else lists of
    (line, ClipRecord | ManifestError) from the format's exact reader."""
    if fmt in ("lhotse", "flat_jsonl"):
        yield from manifest.iter_line_chunks(path, chunk_rows)
        return
    if fmt == "csv":
        records = manifest.iter_csv_records(path)
    elif fmt == "parquet":
        records = manifest.iter_parquet_records(path, store_ingest.iter_parquet_batches(stage, path, chunk_rows))
    elif fmt == "audio_folder":
        records = _iter_audio_folder(path, notes)
    else:
        raise UsageError(f"{path}: unsupported format {fmt!r}")
    while batch := list(itertools.islice(records, chunk_rows)):
        yield batch


def _records_of_chunk(path: Path, fmt: str,
                      chunk: manifest.LineChunk | list) -> Iterable[tuple[int, ClipRecord | ManifestError]]:
    if not isinstance(chunk, manifest.LineChunk):
        return chunk
    parse_row = manifest.parse_lhotse_cut if fmt == "lhotse" else manifest.parse_flat_json_row
    return manifest.parse_line_chunk(path, chunk, parse_row)


def _checked(path: Path, records: Iterable[tuple[int, ClipRecord | ManifestError]], on_bad_row: str,
             bad_rows: list[ManifestError], seen_before: dict[str, int]) -> Iterator[tuple[int, ClipRecord]]:
    """Apply the bad-row policy, including duplicate ids inside one file (the first one wins in skip mode);
    ``seen_before``: id -> line of the ids of this chunk that earlier chunks hold."""
    first_line_of = dict(seen_before)
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
    "stopped_ingests_undone": "{n:,} unfinished ingest(s) of a stopped process were undone first (the store "
                              "went back to what it was before them)",
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


def _stage_lhotse_fast(stage: duckdb.DuckDBPyConnection, chunk: manifest.LineChunk) -> bool:
    """True when DuckDB's parser staged the whole chunk and found nothing to report."""
    try:
        problems = store_ingest.stage_lhotse_lines(stage, chunk.lines_table(), manifest.MAX_CAPTION_CHARS,
                                                   manifest.MAX_TAG_CHARS, MAX_TAGS_PER_CLIP)
        if problems == 0:
            # Tags that normalise to nothing or hold a reserved character: the exact reader names line and field.
            problems = sum(tag_text_problem(normalize_tag(tag)) is not None
                           for tag in store_ingest.staged_distinct_tags(stage))
    except (duckdb.Error, pa.ArrowInvalid, UnicodeDecodeError):
        # Bad UTF-8 (arrow refuses the chunk), or something the parser cannot take: the exact reader will say
        # where. (DuckDB can cut its own error message inside a multi-byte character, which then surfaces as
        # UnicodeDecodeError; found by fuzzing.)
        problems = -1
    if problems != 0:
        store_ingest.drop_staging(stage)
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
