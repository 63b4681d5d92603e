"""The open-vocabulary offline extractor (issue 14): spaCy phrases -> lemmas -> tags, the lexicon as a fold and
sense layer only, the default of ``extract-tags``; on hand-written captions with known tags and on real captions."""
from __future__ import annotations

import csv
import json

import pytest
from helpers import SHARED_DATA, write_jsonl

from curation import store
from curation.cli.main import main as cli_main
from curation.extraction.backends import OfflineTagBackend, OpenVocabTagBackend, build_backend
from curation.extraction.jobs import producer_of, run_job
from curation.extraction.offline_tagger import tag_caption
from curation.extraction.open_vocab import MAX_TAGS, OpenVocabExtractor, tag_captions
from curation.extraction.prompt import normalise_label
from curation.ingest.ingest import ingest_path


@pytest.fixture(scope="module")
def extractor() -> OpenVocabExtractor:
    return OpenVocabExtractor()


@pytest.mark.parametrize("caption, expected", [
    ("Two dice are rolled across a wooden table", {"dice", "table"}),
    ("Someone is crinkling a plastic bag close to the microphone", {"crinkling", "bag"}),
    ("An owl hoots in a quiet forest at night", {"owl", "forest", "night"}),
    ("A xylophone and an oboe play a gentle melody", {"xylophone", "oboe", "melody"}),
    ("A large crowd is cheering in a stadium", {"crowd", "cheering", "stadium"}),
])
def test_salient_sounds_the_lexicon_misses_are_found(extractor, caption, expected):
    tags = extractor.tags(caption)
    assert expected <= set(tags), tags
    missed_by_lexicon = expected - set(tag_caption(caption))
    assert missed_by_lexicon  # each caption names at least one thing the closed lexicon cannot say


def test_metal_and_rock_take_their_sense_from_context(extractor):
    genre = extractor.tags("A heavy metal guitar riff with pounding drums")
    material = extractor.tags("A metal door clanging shut in a hallway")
    assert "metal" in genre and "metallic" not in genre
    assert "metallic" in material and "metal" not in material and "door" in material
    assert "rock" in extractor.tags("A hard rock song with a screaming singer")
    rocks = extractor.tags("Rocks tumble down a hillside")
    assert "stone" in rocks and "rock" not in rocks


def test_the_lexicon_folds_variants_but_never_narrows_or_filters(extractor):
    assert "reverb" in extractor.tags("A reverberant hall with lots of reverberation")
    assert "speech" in extractor.tags("A man is talking while a woman speaks")
    assert "hi-hat" in extractor.tags("steady hi hats and a snare")
    # Narrower words stay what the caption says (the lexicon alone folds them onto bird / clapping).
    sparrow = extractor.tags("A sparrow chirps and people are cheering")
    assert {"sparrow", "cheering"} <= set(sparrow) and "bird" not in sparrow and "clapping" not in sparrow


def test_generic_words_are_dropped_unless_qualified(extractor):
    tags = extractor.tags("The audio recording features an engine sound in the background with background noise")
    assert "engine" in tags and "background-noise" in tags
    assert not {"audio", "recording", "sound", "background", "feature", "featuring"} & set(tags)
    assert "slow-tempo" in extractor.tags("A ballad at a slow tempo")


def test_tags_follow_the_release_style_and_the_product_spelling_rule(extractor):
    tags = extractor.tags("Espresso machines hiss in a busy Café") + extractor.tags(
        "A low frequency hum under electric guitars")
    assert {"café", "espresso-machine", "hiss", "low-frequency", "electric-guitar"} <= set(tags), tags
    for tag in tags:
        assert normalise_label(tag) == (tag, ""), tag  # already in the one spelling: lowercase, '-' joined
        assert " " not in tag and tag.count("-") <= 2


def test_at_most_ten_tags_most_salient_first_and_deterministic(extractor):
    long_caption = " ".join([
        "The guitar plays a bright melody while the guitar and a violin answer each other.",
        "A cello, a flute, a trumpet, a harp, an organ, a piano, a banjo and a tuba join in a church.",
        "The guitar returns, loud and reverberant, and the crowd applauds.",
    ] * 3)
    tags = extractor.tags(long_caption)
    assert len(tags) == MAX_TAGS
    assert tags[0] == "guitar"  # named most often and first
    assert "church" in tags  # the scene keeps a slot although sources crowd the caption
    assert extractor.tags(long_caption) == tags == OpenVocabExtractor().tags(long_caption)
    assert extractor.tags("") == () and extractor.tags("   ") == ()


def test_worker_processes_give_the_same_tags_in_the_same_order(extractor):
    captions = [f"A dog barks {i} times near a busy road" if i % 2 else "Rain falls on a tin roof" for i in range(70)]
    assert tag_captions(captions, processes=2, batch=40) == extractor.tag_many(captions)


def _ingest(db_path, tmp_path, captions):
    con = store.connect(db_path)
    rows = [{"id": f"c{i}", "caption": text} for i, text in enumerate(captions)]
    ingest_path(con, write_jsonl(tmp_path / "c.jsonl", rows))
    con.close()


def _tags(db_path, extractor_name):
    con = store.connect(db_path, read_only=True)
    rows = con.execute("""SELECT c.clip_id, list(t.tag ORDER BY t.tag) FROM clip_tags ct JOIN tags t USING (tag_id)
                          JOIN clips c USING (clip_key) WHERE ct.extractor = ? GROUP BY 1""",
                       [extractor_name]).fetchall()
    con.close()
    return {clip: set(tags) for clip, tags in rows}


def test_extract_tags_without_a_backend_runs_the_open_vocabulary_extractor(db_path, tmp_path, capsys):
    _ingest(db_path, tmp_path, ["An owl hoots while dice rattle in a cup", "Crinkling paper and a xylophone", ""])
    assert cli_main(["extract-tags", "--db", str(db_path), "--no-progress", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["producer"] == "offline:open-vocab-v1" and (report["done"], report["failed"]) == (2, 0)
    opened = _tags(db_path, "offline:open-vocab-v1")
    assert {"owl", "dice", "cup"} <= opened["c0"] and {"crinkling", "paper", "xylophone"} <= opened["c1"]
    # The lexicon extractor is still there by name; its rows stay distinguishable from the default's.
    assert cli_main(["extract-tags", "--db", str(db_path), "--backend", "lexicon", "--no-progress"]) == 0
    assert "offline:lexicon-v1" in capsys.readouterr().out
    lexicon = _tags(db_path, "offline:lexicon-v1")
    assert "paper" in lexicon["c1"] and "xylophone" not in lexicon["c1"]
    assert set(opened) == {"c0", "c1"} and _tags(db_path, "offline:open-vocab-v1") == opened  # untouched
    # A second default run finds nothing left to do.
    assert cli_main(["extract-tags", "--db", str(db_path), "--no-progress"]) == 0
    assert "done 0, failed 0, skipped 2" in capsys.readouterr().out


def test_use_vocabulary_needs_the_lexicon_backend(db_path, tmp_path, capsys):
    _ingest(db_path, tmp_path, ["A dog barks"])
    assert cli_main(["extract-tags", "--db", str(db_path), "--use-vocabulary", "--no-progress"]) == 2
    assert "--backend lexicon" in capsys.readouterr().err


def test_backends_by_name_and_the_default_job(con, tmp_path):
    assert isinstance(build_backend("offline", "tags"), OpenVocabTagBackend)
    assert isinstance(build_backend("lexicon", "tags"), OfflineTagBackend)
    assert producer_of(build_backend("offline", "tags")) != producer_of(build_backend("lexicon", "tags"))
    rows = [{"id": f"c{i}", "caption": f"A kettle whistles and a spoon clinks, take {i}"} for i in range(600)]
    ingest_path(con, write_jsonl(tmp_path / "many.jsonl", rows))
    # More clips than one batch: the second batch goes to worker processes; every clip still gets its tags.
    report = run_job(con, OpenVocabTagBackend(processes=2, batch_size=256), task="tags")
    assert (report.done, report.failed) == (600, 0)
    tags = con.execute("""SELECT count(DISTINCT ct.clip_key) FROM clip_tags ct JOIN tags t USING (tag_id)
                          WHERE t.tag = 'kettle' AND ct.extractor = 'offline:open-vocab-v1'""").fetchone()[0]
    assert tags == 600


CAPTIONS = SHARED_DATA / "captions"


@pytest.mark.skipif(not CAPTIONS.is_dir(), reason="../shared/data/captions is not beside the project")
def test_real_captions_give_many_distinct_tags(extractor):
    audiocaps = [r["caption"] for r in csv.DictReader((CAPTIONS / "audiocaps_v1" / "test.csv")
                                                      .open(encoding="utf-8"))][:2500]
    musiccaps = [r["caption"] for r in csv.DictReader((CAPTIONS / "musiccaps" / "musiccaps-public.csv")
                                                      .open(encoding="utf-8"))][:500]
    captions = audiocaps + musiccaps
    tagged = extractor.tag_many(captions)
    assert sum(1 for tags in tagged if tags) / len(captions) >= 0.99
    assert max(map(len, tagged)) <= MAX_TAGS

    def with_df(tag_lists, minimum):
        counts: dict[str, int] = {}
        for tags in tag_lists:
            for tag in set(tags):
                counts[tag] = counts.get(tag, 0) + 1
        return sum(1 for n in counts.values() if n >= minimum)

    opened, closed = with_df(tagged, 3), with_df([tag_caption(c) for c in captions], 3)
    print(f"{len(captions)} real captions: open-vocab {opened} tags with df >= 3, lexicon {closed}")
    assert opened >= 600 and opened >= 2.5 * closed
