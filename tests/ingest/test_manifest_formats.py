"""Every manifest format parses into the same clips, captions and tags; the exact UTS record included."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile
from helpers import SHARED_DATA, UTS_EXAMPLE_RECORD, make_cut, table_snapshot, write_jsonl

from curation import store
from curation.ingest.ingest import ingest_path


def _clip(con, clip_id):
    return con.execute("SELECT clip_id, source, domain, audio_path, audio_ok, duration_s, sample_rate_hz "
                       "FROM clips WHERE clip_id = ?", [clip_id]).fetchall()[0]


def _tags(con, clip_id):
    return sorted(r[0] for r in con.execute(
        "SELECT t.tag FROM clip_tags ct JOIN tags t USING (tag_id) JOIN clips c USING (clip_key) "
        "WHERE c.clip_id = ?", [clip_id]).fetchall())


def _captions(con, clip_id):
    return con.execute("SELECT kind, captioner, position, text FROM captions JOIN clips USING (clip_key) "
                       "WHERE clip_id = ? ORDER BY kind, position", [clip_id]).fetchall()


@pytest.mark.parametrize("name", ["cuts.jsonl", "cuts.jsonl.gz"])
def test_exact_uts_record(con, tmp_path, name):
    path = write_jsonl(tmp_path / name, [UTS_EXAMPLE_RECORD])
    summary = ingest_path(con, path)
    assert summary.format == "lhotse" and summary.fast_path
    assert (summary.clips, summary.captions, summary.tag_rows, summary.distinct_tags) == (1, 2, 7, 7)
    clip_id, source, domain, audio_path, audio_ok, duration_s, sr = _clip(con, "Y--0w1YA1Hm4_30.000")
    # The release names the dataset where a path belongs: it becomes the source, and the audio is missing.
    assert (source, audio_ok, duration_s, sr) == ("audioset", False, 10.0, 16000)
    assert summary.missing_audio == 1
    assert _tags(con, clip_id) == sorted(UTS_EXAMPLE_RECORD["supervisions"][0]["custom"]["audio_tag"])
    custom = UTS_EXAMPLE_RECORD["supervisions"][0]["custom"]
    assert _captions(con, clip_id) == [("generated", "manifest", 0, custom["caption"]),
                                       ("original", "human", 1, custom["original_caption"][0])]


def test_relative_audio_resolved_against_manifest_folder_or_audio_root(con, tmp_path):
    audio_dir = tmp_path / "corpus" / "audio"
    audio_dir.mkdir(parents=True)
    soundfile.write(audio_dir / "a.wav", np.zeros(1600, dtype=np.float32), 16000)
    manifest = write_jsonl(tmp_path / "corpus" / "cuts.jsonl", [make_cut("a", source="audio/a.wav"),
                                                               make_cut("b", source="audio/missing.wav")])
    summary = ingest_path(con, manifest)
    assert _clip(con, "a")[3:5] == (str(audio_dir / "a.wav"), True)
    assert _clip(con, "b")[4] is False
    assert summary.missing_audio == 1 and "missing.wav" in summary.missing_audio_examples[0]
    listed = con.execute("SELECT clip_id, reason FROM ingest_missing_audio").fetchall()
    assert listed == [("b", "no such file")]

    elsewhere = write_jsonl(tmp_path / "cuts_elsewhere.jsonl", [make_cut("c", source="a.wav")])
    ingest_path(con, elsewhere, audio_root=audio_dir)
    assert _clip(con, "c")[3:5] == (str(audio_dir / "a.wav"), True)


def _flat_rows():
    return [
        {"id": "f1", "audio_path": "x/f1.wav", "caption": "Rain falls. In summary, rain.", "tags": ["rain", "outdoor"],
         "source": "field", "duration": 4.5},
        {"id": "f2", "audio_path": "x/f2.wav", "caption": None, "tags": [], "source": "field", "duration": None},
    ]


def _assert_flat_ingested(con):
    assert _tags(con, "f1") == ["outdoor", "rain"]
    assert _tags(con, "f2") == []
    assert _clip(con, "f1")[1] == "field" and _clip(con, "f1")[5] == 4.5
    assert _clip(con, "f2")[5] is None
    assert [c[0] for c in _captions(con, "f1")] == ["generated"]
    assert _captions(con, "f2") == []


def test_flat_jsonl(con, tmp_path):
    ingest_path(con, write_jsonl(tmp_path / "flat.jsonl", _flat_rows()))
    _assert_flat_ingested(con)


def test_flat_jsonl_awaiting_extraction(con, tmp_path):
    """id, audio_path, caption only: clips awaiting tag extraction (issue 5's input)."""
    path = write_jsonl(tmp_path / "captions_only.jsonl", [{"id": "q1", "audio_path": "later/q1.wav",
                                                            "caption": "A dog barks."}])
    summary = ingest_path(con, path)
    assert (summary.clips, summary.captions, summary.tag_rows) == (1, 1, 0)


def test_flat_csv_with_semicolon_tags(con, tmp_path):
    path = tmp_path / "flat.csv"
    path.write_text("id,audio_path,caption,tags,source,duration\n"
                    "f1,x/f1.wav,\"Rain falls. In summary, rain.\",rain;outdoor,field,4.5\n"
                    "f2,x/f2.wav,,,field,\n", encoding="utf-8")
    summary = ingest_path(con, path)
    assert summary.format == "csv"
    _assert_flat_ingested(con)


def test_flat_parquet(con, tmp_path):
    rows = _flat_rows()
    table = pa.table({key: [row[key] for row in rows] for key in rows[0]})
    pq.write_table(table, tmp_path / "flat.parquet")
    summary = ingest_path(con, tmp_path / "flat.parquet")
    assert summary.format == "parquet"
    _assert_flat_ingested(con)


def test_audio_folder_lists_unreadable_files(con, tmp_path):
    folder = tmp_path / "field_recordings"
    (folder / "sub").mkdir(parents=True)
    soundfile.write(folder / "one.wav", np.zeros(8000, dtype=np.float32), 16000)
    soundfile.write(folder / "sub" / "two.flac", np.zeros(4410, dtype=np.float32), 44100)
    (folder / "broken.wav").write_bytes(b"RIFF not really a wav")
    summary = ingest_path(con, folder)
    assert summary.format == "audio_folder" and summary.clips == 3 and summary.tag_rows == 0
    assert _clip(con, "one")[4:7] == (True, 0.5, 16000)
    assert _clip(con, "sub/two")[4:7] == (True, 0.1, 44100)
    assert _clip(con, "broken")[4] is False
    assert summary.missing_audio == 1
    assert "unreadable" in con.execute("SELECT reason FROM ingest_missing_audio").fetchall()[0][0]


def test_fast_and_exact_readers_write_the_same_rows(tmp_path, monkeypatch):
    """The DuckDB fast path and the Python reader must write identical rows for a valid file."""
    from curation.ingest import ingest as ingest_module

    cuts = [make_cut(f"c{i}", tags=("a", "b", f"t{i % 3}"), original=("x", "y")[: 1 + i % 2]) for i in range(20)]
    path = write_jsonl(tmp_path / "cuts.jsonl", cuts)
    fast = store.connect(tmp_path / "fast.duckdb")
    assert ingest_path(fast, path).fast_path
    monkeypatch.setattr(ingest_module, "_stage_lhotse_fast", lambda con, p: False)
    exact = store.connect(tmp_path / "exact.duckdb")
    assert not ingest_path(exact, path).fast_path
    a, b = table_snapshot(fast), table_snapshot(exact)
    for table in ("clips", "captions", "tags", "clip_tags", "ingest_missing_audio"):
        assert a[table] == b[table], table


@pytest.mark.skipif(not (SHARED_DATA / "esc50" / "audio").is_dir(), reason="../shared/data/esc50 is absent")
def test_real_esc50_audio_folder(con):
    summary = ingest_path(con, SHARED_DATA / "esc50" / "audio")
    assert summary.clips >= 400 and summary.missing_audio == 0
    durations = {r[0] for r in con.execute("SELECT round(duration_s, 2) FROM clips").fetchall()}
    assert durations == {5.0}
