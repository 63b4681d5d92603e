"""Exports a training run can trust, proven with the real client: lhotse reads every cut (CutSet.from_file,
load_audio, its Fbank after the recipe's resample to 16 kHz) for every kind of audio; channels follow the
--channels policy; an empty export fails and writes nothing; drop reasons and the duration window are counted;
missing captions are omitted; this project's training reads the same cuts with the channels they declare."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest
from audio_formats import KINDS, write_all_kinds, write_kind
from helpers import PROJECT, SHARED_DATA, make_cut, write_jsonl

from curation import store
from curation.errors import EmptyExportError
from curation.ingest.ingest import ingest_path
from curation.vocabulary.export import export_vocabulary


@pytest.fixture()
def con(tmp_path):
    connection = store.connect(tmp_path / "uts.duckdb")
    yield connection
    connection.close()


def _flat(tmp_path, files, *, caption="A clip.") -> object:
    rows = [{"id": name, "audio_path": str(path), "tags": ["sound", name.split("_")[0]],
             **({"caption": caption} if caption else {})} for name, path in files.items()]
    manifest = tmp_path / "flat.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def _cuts(out):
    with gzip.open(out / "cuts.jsonl.gz", "rt") as handle:
        return [json.loads(line) for line in handle]


def test_every_audio_kind_exports_cuts_that_lhotse_loads_and_featurises(con, tmp_path):
    from lhotse import CutSet, Fbank, FbankConfig

    files = write_all_kinds(tmp_path / "audio")
    ingest_path(con, _flat(tmp_path, files))
    record = export_vocabulary(con, k=10, out_dir=tmp_path / "export", by="ana")
    assert record.clips_kept == len(files)
    assert "out_of_window_kept" in record.notes  # the 0.6 s clip is outside the recipe's [1 s, 60 s]
    assert record.notes["multi_channel"].startswith("2 multi-channel clips written as MonoCuts")
    cuts = CutSet.from_file(tmp_path / "export" / "cuts.jsonl.gz")
    kinds = {kind.name: kind for kind in KINDS}
    fbank = Fbank(FbankConfig(num_mel_bins=80))
    for cut in cuts:
        kind = kinds[cut.id]
        assert cut.recording.sampling_rate == kind.rate and cut.recording.num_channels == kind.channels
        audio = cut.load_audio()  # lhotse refuses a recording whose declared samples diverge from the file
        assert audio.shape[0] == 1 and abs(audio.shape[1] - cut.num_samples) <= 0.03 * kind.rate
        resampled = cut.resample(16_000)  # what the UTS recipe does first
        feats = resampled.compute_features(fbank)
        assert feats.shape[1] == 80 and np.isfinite(feats).all() and feats.shape[0] > 10


def test_channels_first_is_a_monocut_on_channel_0_and_keep_is_a_multicut(con, tmp_path):
    from lhotse import CutSet

    write_kind(tmp_path / "audio", KINDS[0], "stereo")  # stereo FLAC, channel 1 = 0.6 x channel 0
    ingest_path(con, _flat(tmp_path, {"stereo_x": tmp_path / "audio" / "stereo.flac"}))
    first = export_vocabulary(con, k=5, out_dir=tmp_path / "first", by="ana")
    keep = export_vocabulary(con, k=5, out_dir=tmp_path / "keep", by="ana", channels="keep")
    mono_cut = next(iter(CutSet.from_file(tmp_path / "first" / "cuts.jsonl.gz")))
    multi_cut = next(iter(CutSet.from_file(tmp_path / "keep" / "cuts.jsonl.gz")))
    assert type(mono_cut).__name__ == "MonoCut" and mono_cut.channel == 0
    assert type(multi_cut).__name__ == "MultiCut" and list(multi_cut.channel) == [0, 1]
    assert mono_cut.recording.channel_ids == [0, 1]  # the recording declares what the file holds
    both = multi_cut.load_audio()
    assert both.shape[0] == 2 and np.allclose(both[1], 0.6 * both[0], atol=2e-3)
    assert np.allclose(mono_cut.load_audio()[0], both[0])
    assert first.content_hash != keep.content_hash

    # This project's training reads what the cut declares: channel 0 for the MonoCut, the mean of both otherwise.
    from training.data import load_export
    from training.features import read_audio

    for folder, expected in (("first", both[0]), ("keep", both.mean(axis=0))):
        clip = next(iter(load_export(tmp_path / folder, max_clip_s=10.0).clips.values()))
        wave = read_audio(clip.audio_path, clip.clip_id, channels=clip.channels, target_rate=44_100)
        assert np.allclose(wave, expected, atol=2e-3)


def test_a_multicut_manifest_stays_a_multicut_with_keep(con, tmp_path):
    from lhotse import CutSet

    write_kind(tmp_path / "audio", KINDS[3], "room")  # stereo 48 kHz, 24-bit
    cut = make_cut("room", source="audio/room.wav", duration=1.5)
    cut.update(type="MultiCut", channel=[0, 1])
    cut["supervisions"][0]["channel"] = [0, 1]
    cut["recording"].update(sampling_rate=48_000, num_samples=72_000, channel_ids=[0, 1], duration=1.5)
    cut["recording"]["sources"][0]["channels"] = [0, 1]
    summary = ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", [cut]))
    assert summary.notes["multi_channel_cuts"]["n"] == 1 and "declared_audio_differs" not in summary.notes
    export_vocabulary(con, k=5, out_dir=tmp_path / "keep", by="ana", channels="keep")
    loaded = next(iter(CutSet.from_file(tmp_path / "keep" / "cuts.jsonl.gz")))
    assert list(loaded.channel) == [0, 1] and loaded.load_audio().shape == (2, 72_000)


def test_a_segment_cut_keeps_its_offset(con, tmp_path):
    from lhotse import CutSet

    write_kind(tmp_path / "audio", KINDS[0], "long")  # 3 s
    cut = make_cut("seg", source="audio/long.flac", duration=1.2)
    cut["start"] = 1.5
    cut["recording"].update(sampling_rate=44_100, num_samples=3 * 44_100, duration=3.0, channel_ids=[0, 1])
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", [cut]))
    export_vocabulary(con, k=5, out_dir=tmp_path / "e", by="ana")
    loaded = next(iter(CutSet.from_file(tmp_path / "e" / "cuts.jsonl.gz")))
    assert loaded.start == 1.5 and loaded.duration == pytest.approx(1.2)
    assert loaded.load_audio().shape == (1, int(round(1.2 * 44_100)))


def test_an_export_without_durations_fails_says_why_and_writes_nothing(tmp_path):
    rows = [{"id": f"c{i}", "audio_path": f"audio/c{i}.wav", "caption": "x", "tags": ["dog"]} for i in range(5)]
    (tmp_path / "flat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    db, out = tmp_path / "uts.duckdb", tmp_path / "export"
    cli = [sys.executable, "-m", "curation"]
    subprocess.run(cli + ["ingest", str(tmp_path / "flat.jsonl"), "--db", str(db)], cwd=PROJECT, check=True,
                   capture_output=True)
    done = subprocess.run(cli + ["export", "--db", str(db), "--k", "10", "--out", str(out), "--by", "ana"],
                          cwd=PROJECT, capture_output=True, text=True)
    assert done.returncode != 0
    assert "5 clips have no duration" in done.stderr and "probe-audio" in done.stderr
    assert not out.exists()
    con = store.connect(db)
    assert con.execute("SELECT count(*) FROM exports").fetchone()[0] == 0
    con.close()
    with pytest.raises(EmptyExportError) as caught:
        con = store.connect(db)
        try:
            export_vocabulary(con, k=10, out_dir=out, by="ana")
        finally:
            con.close()
    assert caught.value.reasons["clips have no duration"] == 5


def test_drop_reasons_window_and_missing_captions_are_counted(con, tmp_path):
    files = write_all_kinds(tmp_path / "audio")
    ingest_path(con, _flat(tmp_path, files, caption=None))
    extra = [{"id": "untagged", "audio_path": str(files["mono_8k_wav"])}]
    (tmp_path / "more.jsonl").write_text("".join(json.dumps(r) + "\n" for r in extra))
    ingest_path(con, tmp_path / "more.jsonl")
    record = export_vocabulary(con, k=10, out_dir=tmp_path / "e", by="ana", min_duration_s=1.0, max_duration_s=2.4,
                               drop_out_of_window=True)
    window_reason = "are outside the duration window [1 s, 2.4 s]"
    long_ones = sum(1 for k in KINDS if k.name in files and not 1.0 <= k.seconds <= 2.4)
    assert record.dropped_by_reason == {"have no tag in the vocabulary at K": 1, window_reason: long_ones}
    assert record.clips_kept + record.clips_dropped == len(files) + 1
    assert all("caption" not in cut["supervisions"][0]["custom"] for cut in _cuts(tmp_path / "e"))
    assert "no caption" in record.notes["without_caption"]
    exported = json.loads((tmp_path / "e" / "export.json").read_text())
    assert exported["dropped_by_reason"][window_reason] == long_ones


@pytest.mark.skipif(not (SHARED_DATA / "esc50" / "audio").is_dir(), reason="../shared/data (ESC-50 clips) is absent")
def test_real_esc50_clips_round_trip_through_lhotse(con, tmp_path):
    from lhotse import CutSet

    ingest_path(con, SHARED_DATA / "esc50" / "audio")
    con.execute("INSERT INTO tags VALUES (1000000, 'sound')")
    con.execute("INSERT INTO clip_tags (clip_key, tag_id, extractor) SELECT clip_key, 1000000, 'test' FROM clips")
    record = export_vocabulary(con, k=1, out_dir=tmp_path / "e", by="ana")
    assert record.clips_kept == con.execute("SELECT count(*) FROM clips").fetchone()[0] >= 100
    for cut in list(CutSet.from_file(tmp_path / "e" / "cuts.jsonl.gz"))[:40]:
        assert cut.load_audio().shape[1] == cut.num_samples
