"""The offline extractor: lexicon + lemmatisation on made-up, demo and real human captions."""
from __future__ import annotations

import csv

import pytest
from helpers import SHARED_DATA

from curation.demo.corpus import build_and_ingest_demo
from curation.extraction.backends import OfflineTagBackend
from curation.extraction.jobs import run_job
from curation.extraction.offline_tagger import MAX_LABELS, lemma_candidates, tag_caption


def test_inflections_and_synonyms_collapse_onto_one_tag():
    assert tag_caption("Two dogs are barking loudly in a small room") == ("room", "dog", "bark", "loud")
    assert tag_caption("A puppy yaps; a canine barks") == ("dog", "bark")
    assert "hi-hat" in tag_caption("steady eighth-note hi-hats") and "hi-hat" in tag_caption("a hi hat ticks")
    assert "lo-fi" in tag_caption("The low quality recording of a song")
    assert {"run", "running"} <= set(lemma_candidates("running")) and "cry" in lemma_candidates("cried")


def test_music_is_implied_by_instruments_and_labels_are_capped():
    tags = tag_caption("A melody on piano, guitar, violin, cello, flute, trumpet, drums, bass and organ in a church "
                       "hall, loud and reverberant, sad and slow")
    assert "music" in tags and len(tags) == MAX_LABELS
    # Round-robin over aspects: the scene, a trait and the mood survive a caption crowded with instruments.
    assert {"church", "loud", "sad"} <= set(tags)


def test_offline_vocabulary_adds_corpus_terms_the_lexicon_lacks():
    assert "theremin" not in tag_caption("someone plays a theremin")
    assert "theremin" in tag_caption("someone plays a theremin", ["theremin", "drum", "the"])


def test_offline_job_tags_the_demo_corpus_sensibly(con, tmp_path):
    build_and_ingest_demo(con, tmp_path / "demo", n_clips=60, seed=5)
    report = run_job(con, OfflineTagBackend(), task="tags")
    assert (report.done, report.failed) == (60, 0) and report.tags_per_clip >= 5
    rows = con.execute("""
        SELECT t.caption_tags, list(g.tag) FROM clip_truth t JOIN clips c USING (clip_id)
        JOIN clip_tags ct ON ct.clip_key = c.clip_key AND ct.extractor = 'offline:lexicon-v1'
        JOIN tags g ON g.tag_id = ct.tag_id GROUP BY ALL""").fetchall()
    alias = {"ambience": "ambient", "noise": "noisy"}
    recalls = [sum(alias.get(c, c) in tags for c in concepts) / len(concepts) for concepts, tags in rows]
    # What the caption asserts is mostly recovered (the 10-label cap loses some detail on rich captions).
    assert sum(recalls) / len(recalls) >= 0.7
    for concept in ("dog", "rain", "piano", "speech"):
        carrying = [tags for concepts, tags in rows if concept in concepts]
        assert carrying and sum(concept in tags for tags in carrying) / len(carrying) >= 0.8, concept


CAPTIONS = SHARED_DATA / "captions"


@pytest.mark.skipif(not CAPTIONS.is_dir(), reason="../shared/data/captions is not beside the project")
@pytest.mark.parametrize("path, minimum_share", [
    (CAPTIONS / "audiocaps_v1" / "test.csv", 0.98),
    (CAPTIONS / "musiccaps" / "musiccaps-public.csv", 0.99),
])
def test_offline_extractor_tags_nearly_every_real_caption(path, minimum_share):
    captions = [row["caption"] for row in csv.DictReader(path.open(encoding="utf-8"))]
    tagged = [tag_caption(text) for text in captions]
    share = sum(1 for tags in tagged if tags) / len(captions)
    print(f"{path.parent.name}/{path.name}: {share:.4f} of {len(captions)} captions tagged")
    assert share >= minimum_share


def test_offline_prompt_hash_follows_the_lexicon():
    from curation.extraction import lexicon as audio_lexicon

    before = OfflineTagBackend().prompt_hash
    audio_lexicon.FORMS["zzzword"] = ("zzz", "event")
    try:
        assert OfflineTagBackend().prompt_hash != before  # editing the lexicon makes clips eligible again
    finally:
        del audio_lexicon.FORMS["zzzword"]
    assert OfflineTagBackend().prompt_hash == before

