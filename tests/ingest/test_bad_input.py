"""Bad manifests: a typed error naming file, line and field, and nothing written (raise); counted rows (skip)."""
from __future__ import annotations

import copy
import gzip
import json

import pytest
from helpers import make_cut, table_snapshot, write_jsonl

from curation.errors import ManifestError
from curation.ingest.ingest import ingest_path
from curation.ingest.manifest import MAX_CAPTION_CHARS


def _with(cut: dict, mutate) -> dict:
    cut = copy.deepcopy(cut)
    mutate(cut)
    return cut


def _custom(cut):
    return cut["supervisions"][0]["custom"]


GOOD = make_cut("good-1")
# (name, line 2 of the file, expected line in the error, expected field, words the message must contain)
BAD_LINES = [
    ("truncated json", json.dumps(make_cut("t"))[:70], 2, None, "invalid JSON"),
    ("missing id", _with(make_cut("m"), lambda c: c.pop("id")), 2, "id", "non-empty string"),
    ("empty id", make_cut("  "), 2, "id", "non-empty string"),
    ("id is a number", _with(make_cut("n"), lambda c: c.update(id=12)), 2, "id", "a string"),
    ("duration is text", _with(make_cut("d"), lambda c: c.update(duration="10")), 2, "duration", "positive number"),
    ("negative duration", _with(make_cut("d"), lambda c: c.update(duration=-1)), 2, "duration", "positive number"),
    ("tags not a list", _with(make_cut("t"), lambda c: _custom(c).update(audio_tag=42)), 2,
     "supervisions[0].custom.audio_tag", "a list of strings"),
    ("tag not a string", _with(make_cut("t"), lambda c: _custom(c).update(audio_tag=["ok", 3])), 2,
     "supervisions[0].custom.audio_tag[1]", "a string"),
    ("empty tag", _with(make_cut("t"), lambda c: _custom(c).update(audio_tag=["ok", "  "])), 2,
     "supervisions[0].custom.audio_tag[1]", "non-empty tag"),
    ("caption not a string", _with(make_cut("c"), lambda c: _custom(c).update(caption=["x"])), 2,
     "supervisions[0].custom.caption", "a string"),
    ("huge caption", _with(make_cut("h"), lambda c: _custom(c).update(caption="x" * (MAX_CAPTION_CHARS + 1))), 2,
     "supervisions[0].custom.caption", f"at most {MAX_CAPTION_CHARS:,} characters"),
    ("no supervisions", _with(make_cut("s"), lambda c: c.update(supervisions=[])), 2, "supervisions", "a list"),
    ("no audio source", _with(make_cut("r"), lambda c: c["recording"].update(sources=[])), 2, "recording.sources",
     "audio source"),
    ("sampling rate text", _with(make_cut("r"), lambda c: c["recording"].update(sampling_rate="16k")), 2,
     "recording.sampling_rate", "positive integer"),
    ("not an object", "[1, 2, 3]", 2, None, "a JSON object"),
    ("duplicate id", make_cut("good-1"), 2, "id", "line 1 has it"),
]


@pytest.mark.parametrize("name,bad,line,field,words", BAD_LINES, ids=[case[0] for case in BAD_LINES])
@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_bad_line_rejects_the_whole_file(con, tmp_path, name, bad, line, field, words, suffix):
    ingest_path(con, write_jsonl(tmp_path / f"before{suffix}", [make_cut("already-there")]))
    before = table_snapshot(con)
    path = write_jsonl(tmp_path / f"cuts{suffix}", [GOOD, bad, make_cut("good-3")])
    with pytest.raises(ManifestError) as caught:
        ingest_path(con, path)
    error = caught.value
    assert (error.path, error.line, error.field) == (str(path), line, field)
    assert words in str(error) and f"{path}:{line}" in str(error)
    assert table_snapshot(con) == before  # nothing from the rejected file


@pytest.mark.parametrize("name,bad,line,field,words", BAD_LINES, ids=[case[0] for case in BAD_LINES])
def test_skip_mode_keeps_good_rows_and_counts_bad_ones(con, tmp_path, name, bad, line, field, words):
    path = write_jsonl(tmp_path / "cuts.jsonl", [GOOD, bad, make_cut("good-3")])
    summary = ingest_path(con, path, on_bad_row="skip")
    assert summary.skipped_rows == 1 and summary.clips == 2
    assert sorted(r[0] for r in con.execute("SELECT clip_id FROM clips").fetchall()) == ["good-1", "good-3"]
    stored = con.execute("SELECT line, field, reason FROM ingest_bad_rows").fetchall()
    assert len(stored) == 1 and stored[0][0] == line and stored[0][1] == field and words in stored[0][2]


def test_non_utf8_bytes(con, tmp_path):
    path = tmp_path / "latin1.jsonl"
    good = json.dumps(GOOD).encode()
    bad = json.dumps(make_cut("caf\u00e9"), ensure_ascii=False).encode("utf-8").replace(b"caf\xc3\xa9", b"caf\xe9")
    path.write_bytes(good + b"\n" + bad + b"\n")
    with pytest.raises(ManifestError) as caught:
        ingest_path(con, path)
    assert caught.value.line == 2 and "UTF-8" in str(caught.value)
    assert con.execute("SELECT count(*) FROM clips").fetchall()[0][0] == 0


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_file(con, tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(ManifestError, match="at least one record"):
        ingest_path(con, path)


def test_gzip_that_is_not_gzip(con, tmp_path):
    path = tmp_path / "cuts.jsonl.gz"
    path.write_text(json.dumps(GOOD) + "\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="gzip") as caught:
        ingest_path(con, path)
    assert caught.value.path == str(path)
    assert con.execute("SELECT count(*) FROM ingests").fetchall()[0][0] == 0


def test_truncated_gzip_stream(con, tmp_path):
    path = tmp_path / "cuts.jsonl.gz"
    payload = gzip.compress("".join(json.dumps(make_cut(f"c{i}")) + "\n" for i in range(50)).encode())
    path.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(ManifestError, match="gzip"):
        ingest_path(con, path)
    assert con.execute("SELECT count(*) FROM clips").fetchall()[0][0] == 0


def test_csv_bad_rows_name_their_line(con, tmp_path):
    path = tmp_path / "flat.csv"
    path.write_text("id,audio_path,caption,tags,source,duration\n"
                    "a,a.wav,ok,x;y,s,1.0\n"
                    ",b.wav,no id,x,s,1.0\n"
                    "c,c.wav,bad duration,x,s,ten\n", encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        ingest_path(con, path)
    assert (caught.value.line, caught.value.field) == (3, "id")
    summary = ingest_path(con, path, on_bad_row="skip")
    assert summary.clips == 1 and summary.skipped_rows == 2
    assert con.execute("SELECT line, field FROM ingest_bad_rows ORDER BY line").fetchall() == [(3, "id"),
                                                                                               (4, "duration")]


def test_missing_file_and_unknown_format(con, tmp_path):
    with pytest.raises(ManifestError, match="no such file"):
        ingest_path(con, tmp_path / "nope.jsonl")
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"\.jsonl"):
        ingest_path(con, tmp_path / "notes.txt")
