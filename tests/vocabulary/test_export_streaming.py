"""An export is written a batch of clips at a time and compressed in blocks (issue 17: 4M clips in bounded
memory): the file is the same whatever the batch and block sizes, lhotse reads every cut of a multi-member gzip,
and a failure mid-export leaves no file behind."""
from __future__ import annotations

import gc
import gzip
import json

import numpy as np
import pytest
from helpers import make_cut, write_jsonl
from lhotse import CutSet

from curation import store
from curation.errors import UsageError
from curation.ingest.ingest import ingest_path
from curation.store import exports as store_exports
from curation.store import vocabulary as store_vocabulary
from curation.store.schema import FIRST_GENERATED_CAPTION_SQL, ORIGINAL_CAPTIONS_SQL
from curation.vocabulary import export as export_module
from curation.vocabulary.decisions import Decision, record_decision
from curation.vocabulary.export import export_vocabulary
from curation.vocabulary.ranking import load_tag_matrix, tag_matrix_from_inputs

TAGS = ["music", "drum", "drums", "speech", "rain", "dog", "bark", "engine", "guitar", "piano", "wind", "birds"]


@pytest.fixture()
def corpus(tmp_path):
    con = store.connect(tmp_path / "uts.duckdb")
    cuts = [make_cut(f"clip-{i:03d}", tags=(TAGS[i % 12], TAGS[(i * 7) % 12], TAGS[(i * 5 + 1) % 12]),
                     caption=f"Clip {i}: a caption with \"quotes\", ünïcode and a tab\t.",
                     original=(f"human {i}",) * (i % 3), duration=1.0 + (i % 50))
            for i in range(157)]
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
    record_decision(con, Decision.merge(["drums"], into="drum"), by="ana")
    record_decision(con, Decision.clip_add("clip-004", "extra tag"), by="ana")
    yield con
    con.close()


def _lines(path):
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return handle.read().splitlines()


def test_batches_and_blocks_do_not_change_the_export(corpus, tmp_path, monkeypatch):
    whole = export_vocabulary(corpus, k=8, out_dir=tmp_path / "whole", by="ana")
    monkeypatch.setattr(store_exports.export_clip_rows, "__defaults__", (10,))
    monkeypatch.setattr(export_module._BlockGzipWriter, "BLOCK_BYTES", 2_000)  # many gzip members
    pieces = export_vocabulary(corpus, k=8, out_dir=tmp_path / "pieces", by="ana")
    assert _lines(tmp_path / "pieces" / "cuts.jsonl.gz") == _lines(tmp_path / "whole" / "cuts.jsonl.gz")
    assert pieces.content_hash == whole.content_hash and pieces.clips_kept == whole.clips_kept
    assert pieces.clips_kept + pieces.clips_dropped == 157
    raw = (tmp_path / "pieces" / "cuts.jsonl.gz").read_bytes()
    assert raw.count(b"\x1f\x8b\x08") > 5  # really several gzip members ...
    cuts = CutSet.from_file(tmp_path / "pieces" / "cuts.jsonl.gz")  # ... which lhotse reads as one file
    by_id = {cut.id: cut for cut in cuts}
    assert len(by_id) == pieces.clips_kept
    assert all(cut.supervisions[0].custom["audio_tag"] for cut in cuts)
    first = json.loads(_lines(tmp_path / "pieces" / "cuts.jsonl.gz")[0])
    assert first["supervisions"][0]["custom"]["caption"].startswith("Clip 0: a caption with \"quotes\", ünïcode")
    assert "drums" not in {t for line in _lines(tmp_path / "whole" / "cuts.jsonl.gz")
                           for t in json.loads(line)["supervisions"][0]["custom"]["audio_tag"]}


def test_a_failure_mid_export_leaves_nothing(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(store_exports.export_clip_rows, "__defaults__", (10,))
    calls = {"n": 0}
    real_cut = export_module._cut

    def failing_cut(clip, tags, channels):
        calls["n"] += 1
        if calls["n"] == 60:  # in the 6th batch
            raise OSError("disk full")
        return real_cut(clip, tags, channels)

    monkeypatch.setattr(export_module, "_cut", failing_cut)
    with pytest.raises(OSError, match="disk full"):
        export_vocabulary(corpus, k=8, out_dir=tmp_path / "failed", by="ana")
    assert not (tmp_path / "failed").exists()
    assert corpus.execute("SELECT count(*) FROM exports").fetchall()[0][0] == 0


def test_duckdb_memory_is_capped_during_an_export_and_restored_after(corpus, tmp_path, monkeypatch):
    """DuckDB's buffer pool would otherwise keep every caption an export read (~3 GB at 4M clips)."""
    limit = corpus.execute("SELECT current_setting('memory_limit')").fetchall()
    during = []
    real = store_exports.export_clip_rows

    def rows_seen_with_the_limit(con, *args):
        during.append(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])
        yield from real(con, *args)

    monkeypatch.setattr(store_exports, "export_clip_rows", rows_seen_with_the_limit)
    export_vocabulary(corpus, k=8, out_dir=tmp_path / "capped", by="ana")
    assert during == ["2.0 GiB"]  # EXPORT_DUCKDB_MEMORY
    assert corpus.execute("SELECT current_setting('memory_limit')").fetchall() == limit
    with pytest.raises(UsageError):
        export_vocabulary(corpus, k=0, out_dir=tmp_path / "refused", by="ana")
    assert corpus.execute("SELECT current_setting('memory_limit')").fetchall() == limit


def test_the_tag_matrix_read_in_clip_key_ranges_equals_the_matrix_read_at_once(corpus):
    whole = tag_matrix_from_inputs(store_vocabulary.tag_matrix_inputs(corpus))
    for part_clips in (1, 7, 157, 10_000):
        parts = load_tag_matrix(corpus, part_clips=part_clips)
        assert np.array_equal(parts.slots, whole.slots) and parts.slots.flags.c_contiguous
        assert np.array_equal(parts.slot_extractors, whole.slot_extractors)
        assert np.array_equal(parts.clip_ids, whole.clip_ids) and parts.tag_texts == whole.tag_texts
        assert parts.version == whole.version and parts.extractors == whole.extractors


def test_a_batch_reads_the_same_captions_as_the_per_clip_queries(corpus):
    """A batch's captions are read by range for the whole batch; what it reads must be what every other view of a clip
    shows: the first generated caption by captioner then position, the originals in position order."""
    corpus.execute("""INSERT INTO captions (clip_key, kind, captioner, position, text)
                      SELECT clip_key, 'generated', 'aaa-first-captioner', 0,
                      'an earlier captioner''s caption ' || clip_key FROM clips WHERE clip_key % 4 = 0""")
    corpus.execute("""INSERT INTO captions (clip_key, kind, captioner, position, text)
                      SELECT clip_key, 'original', 'human', 7, 'a later original ' || clip_key
                      FROM clips WHERE clip_key % 5 = 0""")
    corpus.execute("DELETE FROM captions WHERE kind = 'generated' AND clip_key % 6 = 1")  # clips without a caption
    expected = dict(((cid, (cap, orig)) for cid, cap, orig in corpus.execute(
        f"SELECT clip_id, {FIRST_GENERATED_CAPTION_SQL}, {ORIGINAL_CAPTIONS_SQL} FROM clips c").fetchall()))
    seen = {row["clip_id"]: (row["caption"], row["originals"])
            for batch in store_exports.export_clip_rows(corpus, 13) for row in batch}
    assert seen == expected
    assert sum(cap is None for cap, _ in seen.values()) > 10
    assert sum(cap.startswith("an earlier") for cap, _ in seen.values() if cap) > 10
    assert sum(len(orig or []) >= 2 for _, orig in seen.values()) > 3


def test_the_cyclic_gc_is_paused_while_cuts_are_written_and_restored_on_every_path(corpus, tmp_path, monkeypatch):
    """The export pauses Python's cyclic GC in its batch loop (at 4M clips it walked every live object again and
    again: ~25 s of a 3-minute budget); a failure must not leave it off for the rest of the app's life."""
    seen = []
    real_cut = export_module._cut

    def watching_cut(clip, tags, channels):
        seen.append(gc.isenabled())
        if len(seen) == 50 and tmp_path.joinpath("failing").exists():
            raise OSError("disk full")
        return real_cut(clip, tags, channels)

    monkeypatch.setattr(export_module, "_cut", watching_cut)
    assert gc.isenabled()
    export_vocabulary(corpus, k=8, out_dir=tmp_path / "ok", by="ana")
    assert seen and not any(seen) and gc.isenabled()
    tmp_path.joinpath("failing").touch()
    seen.clear()
    with pytest.raises(OSError, match="disk full"):
        export_vocabulary(corpus, k=8, out_dir=tmp_path / "failed", by="ana")
    assert len(seen) == 50 and gc.isenabled()
    gc.disable()  # an app that runs with the GC off keeps it off
    try:
        export_vocabulary(corpus, k=8, out_dir=tmp_path / "ok2", by="ana")
        assert not gc.isenabled()
    finally:
        gc.enable()
