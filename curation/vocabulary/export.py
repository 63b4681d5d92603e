"""Export a vocabulary: label_K.json / label_K.txt in the published UTS format and the filtered Lhotse cuts.

Place in the flow: vocabulary -> export (this module) -> training (reads only these files). The export names
its parent: the last decision it includes, K, the ranking and a content hash, stored as a row of ``exports``
and in ``export.json`` beside the files.

Example::

    record = export_vocabulary(con, k=800, out_dir=Path("exports/v800"), by="ana")
    # exports/v800/label_800.json, label_800.txt, cuts.jsonl.gz, export.json
"""
from __future__ import annotations

import gc
import hashlib
import json
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import orjson
from isal import igzip

from curation import store
from curation.admin import permissions
from curation.errors import EmptyExportError, UsageError, UtsError
from curation.ingest.tag_text import tag_text_problem
from curation.store import exports as store_exports
from curation.store import memory as store_memory
from curation.vocabulary.decisions import list_decisions, replay
from curation.vocabulary.ranking import compute_vocabulary, load_tag_matrix

DEFAULT_SAMPLE_RATE_HZ = 16_000  # the UTS corpus rate; used only when a clip's rate is neither declared nor read
CHANNEL_POLICIES = ("first", "keep")
# The UTS recipe keeps cuts of 1 s to 60 s and drops the rest without a word (examples/uts/data_module.py).
RECIPE_MIN_DURATION_S = 1.0
RECIPE_MAX_DURATION_S = 60.0

# Why a clip is not in an export; the report counts each (ExportRecord.dropped_by_reason).
DROP_NO_TAG = "have no tag in the vocabulary at K"
DROP_NO_DURATION = "have no duration"
DROP_OUT_OF_WINDOW = "are outside the duration window"
DROP_NO_AUDIO = "have no audio file that could be read here"


@dataclass(frozen=True)
class ExportRecord:
    export_id: int
    k: int
    vocabulary_size: int
    rank_by: str
    last_decision_id: int
    content_hash: str
    out_dir: str
    clips_kept: int
    clips_dropped: int
    clips_without_duration: int
    dropped_by_reason: dict  # reason -> clips (every clip of the corpus not kept is counted under one reason)
    notes: dict  # counted facts about kept cuts: out of window (kept), multi-channel, audio not read here ...
    channels: str = "first"
    duration_window_s: tuple = (RECIPE_MIN_DURATION_S, RECIPE_MAX_DURATION_S)

    def as_dict(self) -> dict:
        return asdict(self)

    def as_text(self) -> str:
        lines = [f"export {self.export_id}: K={self.k} ({self.vocabulary_size} tags, ranked by {self.rank_by}, "
                 f"decisions up to #{self.last_decision_id}), {self.clips_kept:,} clips kept, "
                 f"{self.clips_dropped:,} left out -> {self.out_dir}"]
        lines += [f"  left out: {n:,} clips {why}" for why, n in self.dropped_by_reason.items() if n]
        lines += [f"  note: {text}" for text in self.notes.values()]
        return "\n".join(lines)


def _cut(clip: dict, tags: list[str], channels_policy: str) -> dict:
    """One Lhotse cut that declares exactly what the file holds (rate, channels, frames as read from its header)."""
    duration = float(clip["duration_s"])
    start = float(clip["start_s"] or 0.0)
    rate = int(clip["sample_rate_hz"] or DEFAULT_SAMPLE_RATE_HZ)
    n_channels = int(clip["num_channels"] or 1)
    channel_ids = list(range(n_channels))
    cut_channels = list(clip["cut_channels"]) if clip["cut_channels"] is not None else channel_ids
    if clip["num_frames"]:
        num_samples = int(clip["num_frames"])
    else:  # not read here: the recording is at least as long as the cut (as the manifest declared it)
        num_samples = int(round((start + duration) * rate))
    clip_id = clip["clip_id"]
    custom: dict = {"audio_tag": tags}
    if clip["caption"]:
        custom["caption"] = clip["caption"]
    if clip["originals"]:
        custom["original_caption"] = list(clip["originals"])
    if clip["domain"]:
        custom["domain"] = clip["domain"]
    if clip["source"]:
        custom["source"] = clip["source"]
    multi = channels_policy == "keep" and len(cut_channels) > 1
    channel: int | list[int] = cut_channels if multi else cut_channels[0]
    return {
        "id": clip_id, "start": start, "duration": duration, "channel": channel,
        "supervisions": [{"id": clip_id, "recording_id": clip_id, "start": 0.0, "duration": duration,
                          "channel": channel, "custom": custom}],
        "recording": {"id": clip_id, "sources": [{"type": "file", "channels": channel_ids,
                                                   "source": clip["audio_path"] or clip["source"] or clip_id}],
                      "sampling_rate": rate, "num_samples": num_samples, "duration": num_samples / rate,
                      "channel_ids": channel_ids},
        "type": "MultiCut" if multi else "MonoCut",
    }


class _BlockGzipWriter:
    """cuts.jsonl.gz as a series of gzip members of ~8 MB, compressed on worker threads (ISA-L releases the GIL)
    at ISA-L's level 2: one stream of members is one gzip file to every reader (gzip, lhotse). At 4M clips (12 GB of
    JSON, mostly captions) compression is the largest share of the export's CPU: stdlib gzip's level 9 on one thread
    alone took longer than the whole 3-minute budget, its level 1 runs at ~70-80 MB/s and zlib-ng's level 2 at ~110
    MB/s; ISA-L's level 2 compresses these cuts at ~310 MB/s into a file 1 % larger than zlib-ng's level 2 (6 % smaller
    than stdlib's level 1). Also hashes what it writes (the export's content hash)."""

    BLOCK_BYTES = 8 << 20
    LEVEL = 2

    def __init__(self, path: Path, digest, workers: int = 2):
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close(), on every path of export_vocabulary
        self._digest = digest
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="export-gzip")
        # sha256 releases the GIL too: one thread of its own hashes the blocks in order (13 s of 12 GB at 4M
        # cuts taken off the thread that writes the cuts).
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-hash")
        self._pending: deque = deque()
        # Lines are kept as they come and joined once per block: appending 3 KB lines to a bytearray, then copying
        # it into a bytes block, copied every byte twice while holding the GIL.
        self._lines: list[bytes] = []
        self._size = 0
        self._workers = workers

    def write(self, data: bytes) -> None:
        self._lines.append(data)
        self._size += len(data)
        if self._size >= self.BLOCK_BYTES:
            self._flush()

    def _flush(self) -> None:
        block = b"".join(self._lines)
        self._lines.clear()
        self._size = 0
        self._hasher.submit(self._digest.update, block)
        self._pending.append(self._pool.submit(igzip.compress, block, self.LEVEL, mtime=0))
        while len(self._pending) > 2 * self._workers:  # bounded memory: a few blocks in flight
            self._file.write(self._pending.popleft().result())

    def close(self) -> None:
        try:
            if self._lines:
                self._flush()
            while self._pending:
                self._file.write(self._pending.popleft().result())
        finally:
            self._pool.shutdown(cancel_futures=True)
            self._hasher.shutdown(wait=True)  # every block hashed before the caller reads the digest
            self._file.close()


# DuckDB's memory during an export: with the default limit (80% of RAM) its buffer pool keeps every caption it
# has read cached (the 4M-clip export peaked at 6.0 GB); capped, it evicts them. Measured at 4M clips: 1 GiB ->
# 2.9 GB peak but 210 s (a batch's caption blocks, scanned twice by its query, no longer stay cached between the
# two scans); 2 GiB -> 3.7 GB, 181 s; uncapped 6.0 GB, 152 s.
EXPORT_DUCKDB_MEMORY = "2GiB"


@contextmanager
def _cyclic_gc_paused():
    """Python's cyclic garbage collector off for the block, back as it was afterwards, error or not. Writing the cuts
    makes ~300,000 short-lived, acyclic objects per batch (rows, cuts) that reference counting frees; the collections
    they set off walked every live object again and again (~25 s of the 4M export)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def export_vocabulary(con: duckdb.DuckDBPyConnection, *, k: int, out_dir: Path, by: str | None = None,
                      rank_by: str = "tfidf", channels: str = "first",
                      min_duration_s: float = RECIPE_MIN_DURATION_S, max_duration_s: float = RECIPE_MAX_DURATION_S,
                      drop_out_of_window: bool = False, require_audio: bool = False) -> ExportRecord:
    """Write label_K.json / .txt, cuts.jsonl.gz and export.json; raise EmptyExportError (nothing written) when no
    clip would be kept.

    ``channels``: "first" (default) writes a MonoCut on the first channel the clip uses, which the UTS recipe
    loads unchanged; "keep" writes a MultiCut for multi-channel clips (for clients that take multi-channel input;
    this project's training downmixes it to mono). Clips outside [min_duration_s, max_duration_s] are counted and
    kept unless ``drop_out_of_window``; clips whose audio could not be read here are counted and kept unless
    ``require_audio``.
    """
    # Capped for the whole export (restored after, error or not); the settings are the database instance's.
    with store_memory.memory_capped(con, EXPORT_DUCKDB_MEMORY):
        return _export_vocabulary(con, k=k, out_dir=out_dir, by=by, rank_by=rank_by, channels=channels,
                                  min_duration_s=min_duration_s, max_duration_s=max_duration_s,
                                  drop_out_of_window=drop_out_of_window, require_audio=require_audio)


def _export_vocabulary(con: duckdb.DuckDBPyConnection, *, k: int, out_dir: Path, by: str | None, rank_by: str,
                       channels: str, min_duration_s: float, max_duration_s: float, drop_out_of_window: bool,
                       require_audio: bool) -> ExportRecord:
    by = permissions.authorize("export", by)
    if k < 1:
        raise UsageError(f"--k {k}: expected a vocabulary size of at least 1")
    if channels not in CHANNEL_POLICIES:
        raise UsageError(f"--channels {channels!r}: expected one of {CHANNEL_POLICIES}")
    if not 0 <= min_duration_s < max_duration_s:
        raise UsageError(f"duration window [{min_duration_s}, {max_duration_s}] s: expected 0 <= min < max")
    state = replay(list_decisions(con))
    view = compute_vocabulary(load_tag_matrix(con), state, rank_by=rank_by)
    if len(view.ranking) == 0:
        raise EmptyExportError(k, {"clips in the corpus": view.n_clips},
                               ["the corpus has no tags: ingest tagged clips or run extract-tags first"])
    labels = view.top_k(k)
    bad_labels = [tag for tag in labels if tag_text_problem(tag) is not None]
    if bad_labels:  # cannot happen for tags made by this version; a database from an older one may hold them
        raise UsageError(f"tags {bad_labels[:5]} cannot be exported: expected {tag_text_problem(bad_labels[0])}; "
                         "rename them (python -m curation decide rename ...) and export again")
    window = f"[{min_duration_s:g} s, {max_duration_s:g} s]"
    dropped = {DROP_NO_TAG: 0, DROP_NO_DURATION: 0, f"{DROP_OUT_OF_WINDOW} {window}": 0, DROP_NO_AUDIO: 0}
    counts = {"out_of_window_kept": 0, "not_read_here": 0, "multi_channel": 0, "without_caption": 0}
    examples: dict[str, list[str]] = {key: [] for key in (DROP_NO_DURATION, "out_of_window_kept", "not_read_here")}

    def note_example(key: str, clip_id: str) -> None:
        if len(examples[key]) < 3:
            examples[key].append(clip_id)

    created_dir = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    label_json = json.dumps({str(i): tag for i, tag in enumerate(labels)}, ensure_ascii=False, indent=1)
    digest.update(label_json.encode())
    kept = 0
    row = 0  # the view's rows are the corpus's clips in clip_key order, as export_clip_rows reads them
    tmp_cuts = out_dir / "cuts.jsonl.gz.partial"
    writer = _BlockGzipWriter(tmp_cuts, digest)
    try:
        # A batch of clips at a time (store_exports.EXPORT_BATCH_CLIPS): memory holds one batch of captions and
        # of tags, whatever the corpus size.
        with _cyclic_gc_paused():
            for batch in store_exports.export_clip_rows(con):
                in_view = max(0, min(len(batch), view.n_clips - row))
                batch_tags = view.tags_of_rows(k, np.arange(row, row + in_view)) + [[]] * (len(batch) - in_view)
                for clip, tags in zip(batch, batch_tags):
                    if row < view.n_clips and view.clip_ids[row] != clip["clip_id"]:
                        raise UtsError(f"clip {clip['clip_id']!r} is not the vocabulary's clip {view.clip_ids[row]!r} "
                                       "at this place: the corpus changed during the export; export again")
                    row += 1  # clips ingested after the vocabulary was computed have no tag in it: counted below
                    if not tags:
                        dropped[DROP_NO_TAG] += 1
                        continue
                    if not clip["duration_s"]:
                        dropped[DROP_NO_DURATION] += 1  # a cut without a duration cannot be trained on
                        note_example(DROP_NO_DURATION, clip["clip_id"])
                        continue
                    if not min_duration_s <= clip["duration_s"] <= max_duration_s:
                        if drop_out_of_window:
                            dropped[f"{DROP_OUT_OF_WINDOW} {window}"] += 1
                            continue
                        counts["out_of_window_kept"] += 1
                        note_example("out_of_window_kept", clip["clip_id"])
                    if not clip["probed"]:
                        if require_audio:
                            dropped[DROP_NO_AUDIO] += 1
                            continue
                        counts["not_read_here"] += 1
                        note_example("not_read_here", clip["clip_id"])
                    if (clip["num_channels"] or 1) > 1 and len(clip["cut_channels"] or range(clip["num_channels"])) > 1:
                        counts["multi_channel"] += 1
                    if not clip["caption"]:
                        counts["without_caption"] += 1
                    # orjson: half the time of json.dumps on these 3 KB lines (a minute less at 4M cuts).
                    writer.write(orjson.dumps(_cut(clip, tags, channels), option=orjson.OPT_APPEND_NEWLINE))
                    kept += 1
    except BaseException:
        writer.close()
        tmp_cuts.unlink(missing_ok=True)
        if created_dir and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    writer.close()
    if kept == 0:
        tmp_cuts.unlink(missing_ok=True)
        if created_dir:
            out_dir.rmdir()
        hints = []
        if dropped[DROP_NO_DURATION]:
            hints.append("run `python -m curation probe-audio` to read durations from the audio files, or give "
                         "durations in the manifest")
        if dropped[DROP_NO_TAG]:
            hints.append("a larger K or tagging the clips (extract-tags) keeps more clips")
        if dropped[f"{DROP_OUT_OF_WINDOW} {window}"]:
            hints.append("widen the window or keep out-of-window clips")
        if dropped[DROP_NO_AUDIO]:
            hints.append("check the audio paths (probe-audio lists what it cannot read) or export without "
                         "--require-audio")
        raise EmptyExportError(k, {f"clips {why}": n for why, n in dropped.items()}, hints)
    content_hash = digest.hexdigest()
    # Files appear under their final names only once complete, so a crash never leaves a half export.
    (out_dir / f"label_{k}.json").write_text(label_json, encoding="utf-8")
    (out_dir / f"label_{k}.txt").write_text("".join(tag + "\n" for tag in labels), encoding="utf-8")
    tmp_cuts.replace(out_dir / "cuts.jsonl.gz")
    n_dropped = row - kept
    notes = {}
    if counts["out_of_window_kept"]:
        notes["out_of_window_kept"] = (f"{counts['out_of_window_kept']:,} kept clips are outside {window} (the UTS "
                                       f"recipe drops them when it loads the cuts; --drop-out-of-window drops them "
                                       f"here), e.g. {', '.join(examples['out_of_window_kept'])}")
    if counts["not_read_here"]:
        notes["not_read_here"] = (f"{counts['not_read_here']:,} kept clips' audio was not read here (missing file or "
                                  f"no probe): their cuts declare what the manifest said, e.g. "
                                  f"{', '.join(examples['not_read_here'])}")
    if counts["multi_channel"]:
        notes["multi_channel"] = (f"{counts['multi_channel']:,} multi-channel clips written as "
                                  + ("MultiCuts (all channels)" if channels == "keep" else
                                     "MonoCuts on their first channel (--channels keep writes MultiCuts)"))
    if counts["without_caption"]:
        notes["without_caption"] = f"{counts['without_caption']:,} kept clips have no caption (the field is omitted)"
    with store.transaction(con):
        export_id = store_exports.record_export(con, by=by, k=k, rank_by=rank_by, last_decision_id=state.last_decision_id,
                                        content_hash=content_hash, out_dir=str(out_dir.resolve()),
                                        vocabulary_size=len(labels), clips_kept=kept, clips_dropped=n_dropped)
    record = ExportRecord(export_id=export_id, k=k, vocabulary_size=len(labels), rank_by=rank_by,
                          last_decision_id=state.last_decision_id, content_hash=content_hash,
                          out_dir=str(out_dir.resolve()), clips_kept=kept, clips_dropped=n_dropped,
                          clips_without_duration=dropped[DROP_NO_DURATION],
                          dropped_by_reason={why: n for why, n in dropped.items() if n}, notes=notes,
                          channels=channels, duration_window_s=(min_duration_s, max_duration_s))
    (out_dir / "export.json").write_text(json.dumps(
        {**record.as_dict(), "created_at": datetime.now(timezone.utc).isoformat(), "created_by": by,
         "label_file": f"label_{k}.json", "cuts_file": "cuts.jsonl.gz"}, indent=1), encoding="utf-8")
    return record
