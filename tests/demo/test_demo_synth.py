"""The demo corpus generator: reproducible bytes, the UTS MonoCut layout, and biases that fire at their rates."""
from __future__ import annotations

import gzip
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from curation.demo import synth as demo_synth
from curation.demo.synth import CAPTIONER_BIASES, DemoCorpusFiles, bias_applies, build_demo_corpus

CUT_KEYS = ["id", "start", "duration", "channel", "supervisions", "recording", "type"]
SUPERVISION_KEYS = ["id", "recording_id", "start", "duration", "channel", "custom"]
CUSTOM_KEYS = ["audio_tag", "caption", "original_caption", "captioner", "domain", "source"]
RECORDING_KEYS = ["id", "sources", "sampling_rate", "num_samples", "duration", "channel_ids"]
TRUTH_KEYS = ["clip_id", "domain", "source", "true_tags", "attributes", "applied_biases", "caption_tags"]
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def read_manifest(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def read_truth(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def wav_bytes(out_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out_dir / "audio").glob("*.wav"))}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> DemoCorpusFiles:
    return build_demo_corpus(tmp_path_factory.mktemp("demo_a"), n_clips=24, seed=7)


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> DemoCorpusFiles:
    return build_demo_corpus(tmp_path_factory.mktemp("demo_large"), n_clips=300, seed=0)


def test_same_seed_is_byte_identical_and_other_seed_differs(small, tmp_path):
    again = build_demo_corpus(tmp_path / "again", n_clips=24, seed=7)
    assert again.manifest_path.read_bytes() == small.manifest_path.read_bytes()
    assert again.truth_path.read_bytes() == small.truth_path.read_bytes()
    assert again.biases_path.read_bytes() == small.biases_path.read_bytes()
    assert wav_bytes(again.out_dir) == wav_bytes(small.out_dir)

    other = build_demo_corpus(tmp_path / "other", n_clips=24, seed=8)
    assert other.manifest_path.read_bytes() != small.manifest_path.read_bytes()
    assert other.truth_path.read_bytes() != small.truth_path.read_bytes()
    assert wav_bytes(other.out_dir)["demo-000000.wav"] != wav_bytes(small.out_dir)["demo-000000.wav"]


def test_returned_paths(small):
    assert small.n_clips == 24 and small.seed == 7
    assert small.manifest_path == small.out_dir / "manifest.jsonl.gz"
    assert small.truth_path == small.out_dir / "truth.jsonl"
    assert small.biases_path == small.out_dir / "biases.json"
    with pytest.raises(AttributeError):
        small.seed = 1  # frozen


def test_manifest_layout_tags_captions_and_audio(small):
    cuts = read_manifest(small.manifest_path)
    assert [c["id"] for c in cuts] == [f"demo-{i:06d}" for i in range(24)]
    for cut in cuts:
        clip_id = cut["id"]
        assert list(cut) == CUT_KEYS
        assert cut["start"] == 0.0 and cut["channel"] == 0 and cut["type"] == "MonoCut"
        assert 3.0 <= cut["duration"] <= 6.0
        (sup,) = cut["supervisions"]
        assert list(sup) == SUPERVISION_KEYS
        assert sup["id"] == clip_id and sup["recording_id"] == clip_id
        assert sup["start"] == 0.0 and sup["duration"] == cut["duration"] and sup["channel"] == 0
        custom = sup["custom"]
        assert list(custom) == CUSTOM_KEYS
        assert custom["captioner"] == "sim-captioner-v1"
        assert custom["domain"] in demo_synth.DOMAINS
        assert custom["source"] in demo_synth.SOURCE_DATASETS

        tags = custom["audio_tag"]
        assert 5 <= len(tags) <= 10, tags
        assert len(set(tags)) == len(tags), tags
        for tag in tags:
            assert tag == tag.lower() and tag.strip() and " " not in tag, tag

        sentences = SENTENCE_END.split(custom["caption"].strip())
        assert 4 <= len(sentences) <= 8, custom["caption"]
        assert sentences[-1].startswith("In summary,"), custom["caption"]

        originals = custom["original_caption"]
        assert 1 <= len(originals) <= 2
        for text in originals:
            assert 6 <= len(text.split()) <= 15, text

        rec = cut["recording"]
        assert list(rec) == RECORDING_KEYS
        assert rec["id"] == clip_id and rec["sampling_rate"] == 16000 and rec["channel_ids"] == [0]
        assert rec["sources"] == [{"type": "file", "channels": [0], "source": f"audio/{clip_id}.wav"}]
        assert rec["duration"] == cut["duration"]
        assert rec["num_samples"] == round(rec["duration"] * 16000)

        wav = small.out_dir / rec["sources"][0]["source"]  # relative to the manifest's folder
        info = sf.info(str(wav))
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        assert abs(info.frames - rec["duration"] * 16000) <= 1
        assert info.frames == rec["num_samples"]


def test_audio_is_not_silent_and_does_not_clip(small):
    for wav in sorted((small.out_dir / "audio").glob("*.wav")):
        data, _ = sf.read(str(wav), dtype="float64")
        assert np.isfinite(data).all()
        assert 0.4 < np.max(np.abs(data)) < 1.0, wav.name
        assert np.sqrt(np.mean(data ** 2)) > 0.01, wav.name


def test_truth_matches_manifest_and_declared_biases(small):
    cuts = {c["id"]: c for c in read_manifest(small.manifest_path)}
    declared = json.loads(small.biases_path.read_text(encoding="utf-8"))
    assert [b["name"] for b in declared] == [b.name for b in CAPTIONER_BIASES]
    assert {b["kind"] for b in declared} <= {"hallucination", "confusion", "omission"}
    names = {b.name for b in CAPTIONER_BIASES}
    for record in read_truth(small.truth_path):
        assert list(record) == TRUTH_KEYS
        custom = cuts[record["clip_id"]]["supervisions"][0]["custom"]
        assert record["domain"] == custom["domain"] and record["source"] == custom["source"]
        assert set(record["applied_biases"]) <= names
        for name in record["applied_biases"]:
            assert bias_applies(name, record)
        if not record["applied_biases"]:
            assert record["caption_tags"] == record["true_tags"]


def test_caption_mentions_every_asserted_concept(small):
    cuts = {c["id"]: c for c in read_manifest(small.manifest_path)}
    for record in read_truth(small.truth_path):
        caption = cuts[record["clip_id"]]["supervisions"][0]["custom"]["caption"].lower()
        for concept in record["caption_tags"]:
            cues = demo_synth._CONCEPT_CUES[concept]
            assert any(re.search(rf"\b{re.escape(cue)}", caption) for cue in cues), (concept, caption)


def test_biases_fire_near_their_declared_rates(large):
    records = read_truth(large.truth_path)
    assert len(records) == 300
    for bias in CAPTIONER_BIASES:
        eligible = [r for r in records if bias_applies(bias.name, r)]
        fired = [r for r in eligible if bias.name in r["applied_biases"]]
        assert len(eligible) >= 10, (bias.name, len(eligible))
        assert fired, bias.name
        assert all(bias.name not in r["applied_biases"] for r in records if r not in eligible)
        realised = len(fired) / len(eligible)
        band = 4 * math.sqrt(bias.rate * (1 - bias.rate) / len(eligible))
        assert abs(realised - bias.rate) <= band, (bias.name, realised, bias.rate, len(eligible))

        for r in fired:
            if bias.kind == "hallucination":
                assert bias.tag in r["caption_tags"] and bias.tag not in r["true_tags"]
            elif bias.kind == "omission":
                assert bias.tag in r["true_tags"] and bias.tag not in r["caption_tags"]
            else:
                assert bias.tag in r["caption_tags"]


def test_child_confusion_swaps_child_for_female(large):
    cuts = {c["id"]: c for c in read_manifest(large.manifest_path)}
    children = [r for r in read_truth(large.truth_path) if r["attributes"]["speaker"] == "child"]
    assert children
    for r in children:
        assert "child" in r["true_tags"]
        caption = cuts[r["clip_id"]]["supervisions"][0]["custom"]["caption"].lower()
        if "child_called_female" in r["applied_biases"]:
            assert "female" in r["caption_tags"] and "child" not in r["caption_tags"]
            assert "child" not in caption and "kid" not in caption
        else:
            assert "child" in r["caption_tags"] and "female" not in r["caption_tags"]


def test_domains_and_sources_are_all_represented(large):
    records = read_truth(large.truth_path)
    domains = [r["domain"] for r in records]
    for domain in demo_synth.DOMAINS:
        assert 0.2 < domains.count(domain) / len(records) < 0.45, domain
    assert {r["source"] for r in records} == set(demo_synth.SOURCE_DATASETS)
    mixed = sum(r["attributes"]["mixed"] for r in records) / len(records)
    assert 0.07 < mixed < 0.25
    tags = {t for c in read_manifest(large.manifest_path) for t in c["supervisions"][0]["custom"]["audio_tag"]}
    for opposite in ("male", "female", "indoor", "outdoor", "electric", "electronic"):
        assert opposite in tags, opposite
