"""Streaming ingest: a manifest read and written in chunks gives the store exactly what a whole-file ingest gives,
a bad row in a later chunk leaves the store as it was (one transaction), and duplicates, notes and counts are
kept across chunk boundaries. Files are small and chunks tiny (chunk_rows=3 or 4), so every boundary case is
crossed in well under a second per ingest."""
from __future__ import annotations

import copy
import csv
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import make_cut, table_snapshot, write_jsonl

from curation import store
from curation.errors import ManifestError, UsageError
from curation.ingest import ingest as ingest_module
from curation.ingest import manifest
from curation.ingest.ingest import ingest_path


def _store_by_natural_keys(con) -> dict:
    """Everything an ingest writes, keyed by clip id and tag text (surrogate tag ids depend on chunking)."""
    return {
        "clips": con.execute("""SELECT clip_key, clip_id, source, domain, audio_path, audio_ok, duration_s,
                                       sample_rate_hz, num_channels, start_s, cut_channels
                                FROM clips ORDER BY clip_key""").fetchall(),
        "captions": con.execute("""SELECT c.clip_id, kind, captioner, position, text FROM captions
                                   JOIN clips c USING (clip_key) ORDER BY ALL""").fetchall(),
        "tags": con.execute("""SELECT c.clip_id, t.tag, ct.extractor FROM clip_tags ct JOIN tags t USING (tag_id)
                               JOIN clips c USING (clip_key) ORDER BY ALL""").fetchall(),
        "vocabulary": con.execute("SELECT tag FROM tags ORDER BY tag").fetchall(),
        "missing_audio": con.execute("SELECT clip_id, audio_path, reason FROM ingest_missing_audio "
                                     "ORDER BY ALL").fetchall(),
        "bad_rows": con.execute("SELECT line, field, reason FROM ingest_bad_rows ORDER BY ALL").fetchall(),
        "notes": con.execute("SELECT kind, n, message, examples FROM ingest_notes ORDER BY kind").fetchall(),
        "postings": con.execute("""SELECT t.term, c.clip_id FROM caption_postings p JOIN caption_terms t
                                   USING (term_id) JOIN clips c USING (clip_key) ORDER BY ALL""").fetchall(),
    }


def _summary_counts(summary) -> tuple:
    return (summary.clips, summary.captions, summary.tag_rows, summary.distinct_tags, summary.skipped_rows,
            summary.missing_audio, summary.notes, summary.missing_audio_examples, summary.skipped_examples)


def _varied_cuts(n: int = 14) -> list:
    """UTS-layout cuts whose tags need respelling and folding, with one cut only the exact reader takes (two
    supervisions) so that fast and exact chunks alternate."""
    cuts = []
    for i in range(n):
        tags = [f"t{i % 5}", "Dog  Bark", "dog bark", f"rare{i}"] if i % 3 == 0 else [f"t{i % 5}", "music"]
        cut = make_cut(f"clip-{i:02d}", tags=tags, caption=f"A dog barks {i} times. In summary, clip {i}.",
                       original=(f"human caption {i}",), source="audioset" if i % 2 else f"audio/c{i}.wav")
        cuts.append(cut)
    several = copy.deepcopy(cuts[5])
    several["supervisions"].append(copy.deepcopy(several["supervisions"][0]))
    several["supervisions"][1]["custom"]["caption"] = "A second supervision's caption."
    several["supervisions"][1]["custom"]["audio_tag"] = ["extra tag"]
    cuts[5] = several
    return cuts


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_chunked_ingest_equals_the_whole_file_ingest(tmp_path, suffix):
    lines = [json.dumps(cut) for cut in _varied_cuts()]
    lines.insert(4, "")  # a blank line inside a chunk: skipped, line numbers stay exact
    path = write_jsonl(tmp_path / f"cuts{suffix}", lines)
    results = {}
    for chunk_rows in (3, 4, 1000):
        con = store.connect(tmp_path / f"chunks_{chunk_rows}.duckdb")
        summary = ingest_path(con, path, chunk_rows=chunk_rows)
        results[chunk_rows] = (_store_by_natural_keys(con), _summary_counts(summary))
        con.close()
    assert results[3] == results[1000] and results[4] == results[1000]
    stored, counts = results[1000]
    assert counts[:4] == (14, 29, 34, 13)  # clips, captions, tag rows, distinct tags
    notes = {kind: n for kind, n, _message, _examples in stored["notes"]}
    # "Dog  Bark" is one spelling respelled once for the file, though it comes in several chunks.
    assert notes["tags_respelled"] == 1 and notes["tag_rows_folded"] == 5 and notes["several_supervisions"] == 1


def test_bad_row_in_the_third_chunk_leaves_the_store_as_it_was(con, tmp_path):
    ingest_path(con, write_jsonl(tmp_path / "first.jsonl", [make_cut("kept-1"), make_cut("kept-2", tags=("rain",))]))
    before = table_snapshot(con)
    index_before = con.execute("SELECT count(*) FROM caption_postings").fetchall()
    cuts = [json.dumps(make_cut(f"c{i}", tags=(f"new{i}",))) for i in range(12)]
    bad = make_cut("c7")
    bad["duration"] = "ten"
    cuts[7] = json.dumps(bad)  # line 8: chunk 3 of chunks of 3 lines
    path = write_jsonl(tmp_path / "cuts.jsonl.gz", cuts)
    with pytest.raises(ManifestError) as caught:
        ingest_path(con, path, chunk_rows=3)
    assert (caught.value.line, caught.value.field) == (8, "duration") and f"{path}:8" in str(caught.value)
    assert table_snapshot(con) == before  # chunks 1 and 2 were written, then rolled back with the rest
    assert con.execute("SELECT count(*) FROM caption_postings").fetchall() == index_before
    assert con.execute("SELECT count(*) FROM tags WHERE tag LIKE 'new%'").fetchall() == [(0,)]
    # The connection is usable and the same file, repaired, goes in whole.
    bad["duration"] = 10.0
    cuts[7] = json.dumps(bad)
    summary = ingest_path(con, write_jsonl(path, cuts), chunk_rows=3)
    assert summary.clips == 12 and con.execute("SELECT count(*) FROM clips").fetchall() == [(14,)]


def test_skip_mode_counts_bad_rows_of_every_chunk(con, tmp_path):
    cuts = [json.dumps(make_cut(f"c{i}")) for i in range(10)]
    cuts[1] = cuts[1][:40]  # truncated JSON, chunk 1
    cuts[8] = json.dumps(make_cut("c2"))  # duplicate of line 3 (chunk 1) in chunk 3
    summary = ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts), on_bad_row="skip", chunk_rows=3)
    assert (summary.clips, summary.skipped_rows) == (8, 2)
    assert con.execute("SELECT line, field FROM ingest_bad_rows ORDER BY line").fetchall() == [(2, None), (9, "id")]
    reason = con.execute("SELECT reason FROM ingest_bad_rows WHERE line = 9").fetchall()[0][0]
    assert "line 3 has it" in reason


def test_duplicate_id_across_chunks_names_the_first_line(con, tmp_path):
    cuts = [make_cut(f"c{i}") for i in range(7)] + [make_cut("c1")]
    path = write_jsonl(tmp_path / "cuts.jsonl", cuts)
    with pytest.raises(ManifestError, match="line 2 has it") as caught:
        ingest_path(con, path, chunk_rows=2)
    assert (caught.value.line, caught.value.field) == (8, "id")
    assert con.execute("SELECT count(*) FROM clips").fetchall() == [(0,)]


def test_damaged_gzip_in_a_later_chunk(con, tmp_path):
    payload = gzip.compress("".join(json.dumps(make_cut(f"c{i}")) + "\n" for i in range(60)).encode())
    path = tmp_path / "cuts.jsonl.gz"
    path.write_bytes(payload[: len(payload) * 2 // 3])
    with pytest.raises(ManifestError, match="gzip") as caught:
        ingest_path(con, path, chunk_rows=4)
    assert caught.value.line > 8  # the damage lies past the first chunks, which were rolled back
    assert con.execute("SELECT count(*) FROM clips").fetchall() == [(0,)]
    summary = ingest_path(con, path, chunk_rows=4, on_bad_row="skip")
    assert summary.clips == caught.value.line - 1 and summary.skipped_rows == 1


def test_csv_and_parquet_in_chunks_equal_one_chunk(tmp_path):
    rows = [{"id": f"f{i}", "audio_path": f"a{i}.wav", "caption": f"caption {i}", "tags": f"x{i % 3};Y {i % 2}",
             "source": "s", "duration": 1.0 + i} for i in range(11)]
    csv_path = tmp_path / "flat.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    parquet_path = tmp_path / "flat.parquet"
    pq.write_table(pa.Table.from_pylist([{**r, "tags": r["tags"].split(";")} for r in rows]), parquet_path,
                   row_group_size=4)
    for path in (csv_path, parquet_path):
        results = []
        for chunk_rows in (3, 1000):
            con = store.connect(tmp_path / f"{path.suffix[1:]}_{chunk_rows}.duckdb")
            summary = ingest_path(con, path, chunk_rows=chunk_rows)
            results.append((_store_by_natural_keys(con), _summary_counts(summary)))
            con.close()
        assert results[0] == results[1], path.name
        assert results[0][1][:3] == (11, 11, 22)


UNUSUAL_BUT_VALID = [
    ("id with surrounding spaces", lambda c: c.update(id="  spaced  ")),
    ("blank caption", lambda c: c["supervisions"][0]["custom"].update(caption="  \n ")),
    ("repeated original captions", lambda c: c["supervisions"][0]["custom"].update(original_caption=["a", "a", " "])),
    ("supervision text", lambda c: c["supervisions"][0].update(text="a transcript")),
    ("no custom", lambda c: c["supervisions"][0].pop("custom")),
    ("original caption as one string", lambda c: c["supervisions"][0]["custom"].update(original_caption="one")),
    ("integer duration and offset", lambda c: c.update(duration=4, start=1)),
    ("no sampling rate", lambda c: c["recording"].pop("sampling_rate")),
]


def test_fast_and_exact_chunks_write_the_same_rows_for_unusual_records(tmp_path, monkeypatch):
    cuts = []
    for index, (_name, mutate) in enumerate(UNUSUAL_BUT_VALID):
        cut = make_cut(f"u{index}", tags=("Rain ", "rain", "wind"))
        mutate(cut)
        cuts.append(cut)
    cuts += [make_cut(f"plain{i}") for i in range(4)]
    path = write_jsonl(tmp_path / "cuts.jsonl", cuts)
    fast = store.connect(tmp_path / "fast.duckdb")
    ingest_path(fast, path, chunk_rows=2)
    monkeypatch.setattr(ingest_module, "_stage_lhotse_fast", lambda stage, chunk: False)
    exact = store.connect(tmp_path / "exact.duckdb")
    assert not ingest_path(exact, path, chunk_rows=2).fast_path
    assert _store_by_natural_keys(fast) == _store_by_natural_keys(exact)


def test_the_fast_path_takes_plain_uts_chunks_and_the_memory_cap_is_restored(con, tmp_path, monkeypatch):
    from curation.store import ingest as store_ingest

    limit = con.execute("SELECT current_setting('memory_limit')").fetchall()
    during = []
    real = store_ingest.record_progress

    def progress_seen_with_the_limit(c, ingest_id, lines):
        during.append(c.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])
        real(c, ingest_id, lines)

    monkeypatch.setattr(store_ingest, "record_progress", progress_seen_with_the_limit)
    summary = ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", [make_cut(f"c{i}") for i in range(9)]),
                          chunk_rows=4)
    assert summary.fast_path and summary.clips == 9
    # Capped while the chunks are written (DuckDB reports "1.0 GiB" for INGEST_DUCKDB_MEMORY), restored after.
    assert during == ["1.0 GiB"] * 3
    assert con.execute("SELECT current_setting('memory_limit')").fetchall() == limit
    with pytest.raises(UsageError, match="chunk_rows"):
        ingest_path(con, tmp_path / "cuts.jsonl", chunk_rows=0)


def test_line_chunks_cover_every_line_once(tmp_path):
    path = tmp_path / "lines.jsonl"
    lines = [json.dumps({"i": i, "pad": "x" * (i * 7)}) for i in range(23)]
    lines[5] = "   "
    path.write_text("\n".join(lines), encoding="utf-8")  # no newline after the last line
    expected = [(n, line.encode()) for n, line in enumerate(lines, start=1) if line.strip()]
    for chunk_rows, max_bytes in ((1, 10**6), (4, 10**6), (1000, 10**6), (1000, 200)):
        chunks = list(manifest.iter_line_chunks(path, chunk_rows, max_chunk_bytes=max_bytes))
        got = [(n, raw.rstrip(b"\n")) for chunk in chunks for n, raw in chunk.raw_lines()]
        assert got == expected, (chunk_rows, max_bytes)
        assert all(chunk.n_lines <= chunk_rows for chunk in chunks)
        table = chunks[-1].lines_table()
        assert table.column("line").to_pylist()[-1] == 23 and not chunks[-1].damaged


# ------------------------------------------------------------------ chunk commits: undo after a failure or a kill

_KILL_AT_CHUNK = """
import os, signal, sys
from curation import store
from curation.ingest import ingest as ingest_module

real = ingest_module._Run.ingest_chunk
calls = []

def killed_at_third(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == 3:  # two chunks are committed; the process dies inside the third
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, *args, **kwargs)

ingest_module._Run.ingest_chunk = killed_at_third
con = store.connect(sys.argv[1])
ingest_module.ingest_path(con, sys.argv[2], chunk_rows=3)
"""


def _postings_by_clip(con) -> list:
    return con.execute("""SELECT c.clip_id, t.term FROM caption_postings p JOIN caption_terms t USING (term_id)
                          JOIN clips c USING (clip_key) ORDER BY ALL""").fetchall()


def test_a_killed_ingest_is_undone_by_the_next_one(db_path, tmp_path):
    import subprocess
    import sys

    from helpers import PROJECT

    from curation.store import ingest as store_ingest

    con = store.connect(db_path)
    ingest_path(con, write_jsonl(tmp_path / "first.jsonl", [make_cut("kept-1"), make_cut("kept-2", tags=("rain",))]))
    before, postings_before = table_snapshot(con), _postings_by_clip(con)
    con.close()
    cuts = [make_cut(f"c{i}", tags=(f"new{i}",), caption=f"Killed caption {i}.") for i in range(12)]
    child = subprocess.run([sys.executable, "-c", _KILL_AT_CHUNK, str(db_path),
                            str(write_jsonl(tmp_path / "cuts.jsonl", cuts))], cwd=PROJECT, capture_output=True)
    assert child.returncode == -9, child.stderr.decode()[-2000:]

    con = store.connect(db_path)
    [stopped] = store_ingest.unfinished_ingests(con)
    assert stopped.lines_done == 6  # chunks 1 and 2 were committed before the kill: the store holds them
    assert con.execute("SELECT count(*) FROM clips").fetchall() == [(8,)]
    summary = ingest_path(con, write_jsonl(tmp_path / "later.jsonl", [make_cut("later-1", tags=("wind",))]))
    note = summary.notes["stopped_ingests_undone"]
    assert note["n"] == 1 and "stopped after 6 lines, 6 clips removed" in note["examples"][0]
    assert sorted(r[0] for r in con.execute("SELECT clip_id FROM clips").fetchall()) == ["kept-1", "kept-2", "later-1"]
    assert con.execute("SELECT count(*) FROM tags WHERE tag LIKE 'new%'").fetchall() == [(0,)]
    assert [row for row in _postings_by_clip(con) if row[0] != "later-1"] == postings_before
    assert store_ingest.unfinished_ingests(con) == [] and summary.ingest_id == 2
    # Undone means as it was: leaving out what the later ingest wrote, every table equals the snapshot.
    assert _without_ingest(con, 2) == before
    con.close()


def _without_ingest(con, ingest_id: int) -> dict:
    later = [row[0] for row in con.execute("SELECT clip_key FROM clips WHERE ingest_id = ?", [ingest_id]).fetchall()]
    later_tags = [row[0] for row in con.execute(
        "SELECT tag_id FROM clip_tags WHERE ingest_id = ? EXCEPT SELECT tag_id FROM clip_tags WHERE ingest_id <> ?",
        [ingest_id, ingest_id]).fetchall()]
    snapshot = table_snapshot(con)
    positions = {"clips": 0, "captions": 0, "clip_tags": 0}
    for table, column in positions.items():
        snapshot[table] = [row for row in snapshot[table] if row[column] not in later]
    snapshot["tags"] = [row for row in snapshot["tags"] if row[0] not in later_tags]
    for table in ("ingests", "ingest_bad_rows", "ingest_missing_audio"):
        snapshot[table] = [row for row in snapshot[table] if row[0] != ingest_id]
    return snapshot


def test_a_failed_reingest_gives_the_clips_back_their_earlier_rows(con, tmp_path):
    from curation.ingest import text_index

    first = [make_cut(f"c{i}", tags=(f"old{i}", "shared"), caption=f"An oldword caption {i}.",
                      original=(f"old human {i}",)) for i in range(6)]
    ingest_path(con, write_jsonl(tmp_path / "first.jsonl", first))
    con.execute("INSERT INTO captions VALUES (1, 'generated', 'llm-x', 0, 'An llm caption.', NULL, NULL)")
    text_index.index_captions(con, [1])  # a caption of another captioner, which the re-ingest must not touch
    before, postings_before = table_snapshot(con), _postings_by_clip(con)
    again = [make_cut(f"c{i}", tags=(f"fresh{i}",), caption=f"A newword caption {i}.") for i in range(9)]
    again[7]["duration"] = -1  # line 8, chunk 3: chunks 1 and 2 re-ingested c0..c5, committed, then undone
    with pytest.raises(ManifestError, match="duration"):
        ingest_path(con, write_jsonl(tmp_path / "again.jsonl", again), chunk_rows=3)
    assert table_snapshot(con) == before
    assert _postings_by_clip(con) == postings_before
    assert len(text_index.search(con, "oldword")) == 6 and len(text_index.search(con, "newword")) == 0
    assert con.execute("SELECT count(*) FROM ingest_replaced_clips").fetchall() == [(0,)]
    assert con.execute("SELECT count(*) FROM tags WHERE tag LIKE 'fresh%'").fetchall() == [(0,)]
