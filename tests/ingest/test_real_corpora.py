"""Real corpora in: audio headers read from the files (the file wins over the manifest, every difference counted),
the one tag normalisation at ingest, the tag cap, several supervisions / sources, the release's dataset-name
sources found under --audio-root, the Parquet conversion with nested columns, and probe-audio for old databases."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import unicodedata

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from audio_formats import KINDS, mp3_writable, write_all_kinds, write_kind
from helpers import PROJECT, make_cut, write_jsonl

from curation import store
from curation.errors import ManifestError
from curation.ingest.ingest import ingest_path


def _clip(con, clip_id):
    row = con.execute("""SELECT duration_s, sample_rate_hz, num_channels, num_frames, audio_format, audio_ok,
                                cut_channels, probed_at IS NOT NULL FROM clips WHERE clip_id = ?""", [clip_id]).fetchone()
    return dict(zip(("duration", "rate", "channels", "frames", "format", "ok", "cut_channels", "probed"), row))


def _tags(con, clip_id):
    return sorted(r[0] for r in con.execute("""SELECT t.tag FROM clip_tags ct JOIN tags t USING (tag_id)
        JOIN clips c USING (clip_key) WHERE c.clip_id = ?""", [clip_id]).fetchall())


@pytest.fixture()
def con(tmp_path):
    connection = store.connect(tmp_path / "uts.duckdb")
    yield connection
    connection.close()


def test_flat_rows_without_durations_get_them_from_every_kind_of_file(con, tmp_path):
    files = write_all_kinds(tmp_path / "audio")
    rows = [{"id": name, "audio_path": f"audio/{path.name}", "caption": "a sound", "tags": "dog;bark"}
            for name, path in files.items()]
    manifest = tmp_path / "flat.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = ingest_path(con, manifest)
    assert summary.missing_audio == 0
    assert summary.notes["durations_from_files"]["n"] == len(files)
    kinds = {kind.name: kind for kind in KINDS}
    for name in files:
        clip = _clip(con, name)
        kind = kinds[name]
        assert clip["rate"] == kind.rate and clip["channels"] == kind.channels and clip["probed"]
        assert clip["duration"] == pytest.approx(kind.seconds, abs=0.06)  # MP3 headers round to a frame
        assert clip["format"].startswith(kind.format)
        assert _tags(con, name) == ["bark", "dog"]
    stereo = sum(k.channels > 1 for k in KINDS if k.name in files)
    assert summary.notes["multi_channel_audio"]["n"] == stereo


def test_a_manifest_declaring_16k_mono_for_a_stereo_44k_file_is_corrected_and_reported(con, tmp_path):
    path = write_kind(tmp_path / "audio", KINDS[0], "clip")  # stereo 44.1 kHz FLAC, 3 s
    cut = make_cut("c1", source="audio/clip.flac", duration=3.0)  # declares 16 kHz, channel_ids [0], 160000 samples
    summary = ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", [cut]))
    note = summary.notes["declared_audio_differs"]
    assert note["n"] == 1 and "44100" in note["examples"][0] and "2" in note["examples"][0]
    clip = _clip(con, "c1")
    assert (clip["rate"], clip["channels"], clip["frames"]) == (44_100, 2, 3 * 44_100)
    assert clip["cut_channels"] == [0]  # the MonoCut used channel 0; it still does
    stored = con.execute("SELECT kind, n FROM ingest_notes WHERE ingest_id = ?", [summary.ingest_id]).fetchall()
    assert ("declared_audio_differs", 1) in stored
    assert "differs from the file" in summary.as_text()


def test_one_normalisation_folds_case_whitespace_nfd_and_invisible_characters(con, tmp_path):
    variants = ["dog", "dog\t", "Dog", " DOG ", "dog\u200b", "\u202edog", unicodedata.normalize("NFD", "café"),
                "café", "Hi\u00a0 Hat"]
    cuts = [make_cut("a", tags=variants, source="x.wav"), make_cut("b", tags=["dog\ufeff"], source="x.wav")]
    summary = ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
    assert _tags(con, "a") == ["café", "dog", "hi hat"]
    assert _tags(con, "b") == ["dog"]
    assert [r[0] for r in con.execute("SELECT tag FROM tags ORDER BY tag").fetchall()] == ["café", "dog", "hi hat"]
    assert summary.notes["tags_respelled"]["n"] >= 7
    assert summary.notes["tag_rows_folded"]["n"] == 6  # 9 spellings on clip a became 3 tags
    assert any("'dog\\t' -> 'dog'" in e for e in summary.notes["tags_respelled"]["examples"])


@pytest.mark.parametrize("fast", [True, False], ids=["one-supervision file", "file needing the exact reader"])
def test_a_tag_holding_the_recipes_separator_is_refused_with_file_line_and_field(con, tmp_path, fast):
    good = make_cut("ok", source="x.wav")
    bad = make_cut("bad", tags=["rock;pop", "music"], source="x.wav")
    if not fast:
        bad["supervisions"].append(copy.deepcopy(bad["supervisions"][0]))
    path = write_jsonl(tmp_path / "cuts.jsonl", [good, bad])
    with pytest.raises(ManifestError) as caught:
        ingest_path(con, path)
    assert f"{path}:2" in str(caught.value) and "audio_tag[0]" in str(caught.value) and "';'" in str(caught.value)
    assert con.execute("SELECT count(*) FROM clips").fetchone()[0] == 0  # nothing half-written
    summary = ingest_path(con, path, on_bad_row="skip")
    assert summary.clips == 1 and summary.skipped_rows == 1


def test_audio_tag_as_one_joined_string_is_split_and_counted(con, tmp_path):
    cut = make_cut("s", source="x.wav")
    cut["supervisions"][0]["custom"]["audio_tag"] = "Blues; Music;;guitar"
    summary = ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", [cut]))
    assert _tags(con, "s") == ["blues", "guitar", "music"]
    assert summary.notes["tag_strings_split"]["n"] == 1


def test_a_clip_with_100000_tags_is_refused_before_anything_is_written(con, tmp_path):
    cut = make_cut("huge", tags=[f"t{i}" for i in range(100_000)], source="x.wav")
    path = write_jsonl(tmp_path / "cuts.jsonl", [make_cut("fine", source="x.wav"), cut])
    with pytest.raises(ManifestError, match=r"cuts.jsonl:2: field 'supervisions\[0\].custom.audio_tag': expected at "
                                            r"most 64 tags per clip.*100,000 tags"):
        ingest_path(con, path)
    assert con.execute("SELECT count(*) FROM tags").fetchone()[0] == 0


def test_several_supervisions_are_unioned_and_several_sources_counted(con, tmp_path):
    cut = make_cut("multi", tags=["dog"], caption="A dog barks.", source="x.wav")
    second = copy.deepcopy(cut["supervisions"][0])
    second["custom"] = {"audio_tag": ["bark", "dog"], "caption": "Then a car passes.",
                        "original_caption": ["a car"]}
    cut["supervisions"].append(second)
    cut["recording"]["sources"].append({"type": "file", "channels": [1], "source": "y.wav"})
    summary = ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", [cut]))
    assert _tags(con, "multi") == ["bark", "dog"]
    captions = con.execute("SELECT kind, position, text FROM captions ORDER BY kind, position").fetchall()
    assert ("generated", 0, "A dog barks.") in captions and ("generated", 1, "Then a car passes.") in captions
    assert [t for k, _, t in captions if k == "original"] == ["a human caption", "a car"]
    assert summary.notes["several_supervisions"]["n"] == 1
    assert summary.notes["several_sources"]["n"] == 1
    assert "unioned" in summary.as_text() and "first is the clip's audio" in summary.as_text()


def test_release_dataset_sources_are_found_under_audio_root_and_misses_list_what_was_tried(con, tmp_path):
    root = tmp_path / "release_audio"
    write_kind(root / "audioset", KINDS[1], "Y--0w1YA1Hm4_30.000")  # the release's own example id
    found = make_cut("Y--0w1YA1Hm4_30.000", source="audioset")
    lost = make_cut("Ynot-there", source="audioset")
    manifest = write_jsonl(tmp_path / "release.jsonl", [found, lost])
    summary = ingest_path(con, manifest, audio_root=root)
    assert _clip(con, "Y--0w1YA1Hm4_30.000")["ok"] and _clip(con, "Y--0w1YA1Hm4_30.000")["rate"] == 8_000
    assert summary.missing_audio == 1
    assert "tried" in summary.missing_audio_examples[0] and str(root / "audioset" / "Ynot-there.wav") in \
        summary.missing_audio_examples[0]
    # An explicit template, e.g. a flat folder of FLACs named by id:
    flat = tmp_path / "flat"
    write_kind(flat, KINDS[0], "Ynot-there")
    ingest_path(con, manifest, audio_root=flat, audio_pattern="{root}/{id}.flac")
    assert _clip(con, "Ynot-there")["ok"] and _clip(con, "Ynot-there")["channels"] == 2


def test_the_release_as_parquet_with_nested_columns_ingests_like_the_jsonl(con, tmp_path):
    write_kind(tmp_path / "audio", KINDS[1], "a")
    cuts = [make_cut("a", tags=["Dog", "bark"], source="audio/a.wav", duration=2.5),
            make_cut("b", tags=["rain"], source="audio/missing.wav")]
    table = pa.Table.from_pylist(cuts)
    pq.write_table(table, tmp_path / "release.parquet")
    summary = ingest_path(con, tmp_path / "release.parquet")
    assert summary.clips == 2 and summary.missing_audio == 1
    assert _tags(con, "a") == ["bark", "dog"]
    assert _clip(con, "a")["rate"] == 8_000
    originals = con.execute("SELECT text FROM captions WHERE kind = 'original'").fetchall()
    assert ("a human caption",) in originals


def test_probe_audio_fills_an_old_database_and_reports(tmp_path):
    files = write_all_kinds(tmp_path / "audio")
    rows = [{"id": name, "audio_path": f"audio/{path.name}", "tags": ["x"]} for name, path in files.items()]
    rows.append({"id": "gone", "audio_path": "audio/gone.wav", "tags": ["x"]})
    (tmp_path / "flat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    db = tmp_path / "old.duckdb"
    cli = [sys.executable, "-m", "curation"]
    subprocess.run(cli + ["ingest", str(tmp_path / "flat.jsonl"), "--db", str(db), "--no-probe"], check=True,
                   cwd=PROJECT, capture_output=True)
    con = store.connect(db)
    assert con.execute("SELECT count(*) FROM clips WHERE duration_s IS NULL").fetchone()[0] == len(rows)
    con.close()
    done = subprocess.run(cli + ["probe-audio", "--db", str(db), "--json"], cwd=PROJECT, capture_output=True,
                          text=True, check=True)
    summary = json.loads(done.stdout)
    assert summary["read"] == len(files) and summary["durations_filled"] == len(files)
    assert [u[0] for u in summary["unreadable"]] == ["gone"]
    con = store.connect(db)
    assert con.execute("SELECT count(*) FROM clips WHERE duration_s IS NULL").fetchone()[0] == 1
    con.close()
    again = subprocess.run(cli + ["probe-audio", "--db", str(db)], cwd=PROJECT, capture_output=True, text=True,
                           check=True)
    assert "read 0 of 1 clips" in again.stdout  # only what was not read yet: the missing file


def test_mp3_is_read_when_this_libsndfile_supports_it():
    if not mp3_writable():
        pytest.skip("this libsndfile cannot write MP3, so the MP3 case is not exercised here")
    assert any(kind.format == "MP3" for kind in KINDS)


def test_a_published_vocabulary_given_to_ingest_says_what_to_do_with_it(con, tmp_path):
    path = tmp_path / "label_3.json"
    path.write_text(json.dumps({"0": "music", "1": "speech", "2": "dog"}, indent=2))
    with pytest.raises(ManifestError, match="vocab compare .*vocab seed"):
        ingest_path(con, path)


def test_manifests_written_by_lhotse_itself_ingest_recordings_cuts_and_refuse_bare_supervisions(con, tmp_path):
    """What a lhotse recipe writes: a RecordingSet (MUSAN's kind), SupervisionSet with text, and cuts joined from
    them (a stereo recording gives a MultiCut-able recording; several supervisions per recording)."""
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    files = write_all_kinds(tmp_path / "audio")
    recordings = RecordingSet.from_recordings(Recording.from_file(p, recording_id=n) for n, p in files.items())
    recordings.to_file(tmp_path / "recordings.jsonl.gz")
    summary = ingest_path(con, tmp_path / "recordings.jsonl.gz")
    assert summary.clips == len(files) and summary.missing_audio == 0
    assert "declared_audio_differs" not in summary.notes  # lhotse wrote what the files hold
    assert _clip(con, "stereo_44k_flac")["channels"] == 2

    supervisions = SupervisionSet.from_segments(
        SupervisionSegment(id=f"{n}-{i}", recording_id=n, start=0.0, duration=0.5, channel=0,
                           text=f"a person describes {n} part {i}") for n in files for i in range(2))
    supervisions.to_file(tmp_path / "supervisions.jsonl.gz")
    with pytest.raises(ManifestError, match="SupervisionSet line .*lhotse cut simple"):
        ingest_path(con, tmp_path / "supervisions.jsonl.gz")
    cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    summary = ingest_path(con, tmp_path / "cuts.jsonl.gz")
    assert summary.notes["several_supervisions"]["n"] == len(files)
    assert summary.notes["multi_channel_cuts"]["n"] == 2  # lhotse made MultiCuts of the two stereo recordings
    originals = [r[0] for r in con.execute("""SELECT text FROM captions JOIN clips USING (clip_key)
        WHERE clip_id LIKE 'mono_8k_wav-%' AND kind = 'original' ORDER BY position""").fetchall()]  # lhotse's cut id
    assert originals == ["a person describes mono_8k_wav part 0", "a person describes mono_8k_wav part 1"]


def test_an_audio_folder_counts_the_files_it_cannot_take(con, tmp_path):
    write_all_kinds(tmp_path / "audio")
    (tmp_path / "audio" / "notes.txt").write_text("not audio")
    (tmp_path / "audio" / "song.m4a").write_bytes(b"\x00" * 64)
    summary = ingest_path(con, tmp_path / "audio")
    note = summary.notes["folder_files_skipped"]
    assert note["n"] == 2 and sorted(note["examples"]) == ["1 .m4a file(s)", "1 .txt file(s)"]
    assert "2 files in the folder are not audio" in summary.as_text()
