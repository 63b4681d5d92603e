"""Issue 14: merge suggestions calibrated against chance, coherent groups, impact order, published vocabularies.

Corpora are built here: a random one (tags drawn independently: no co-occurrence structure) and a planted one
(each concept keeps its own company). The real text model is used (loaded offline once per process).
"""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
from helpers import make_cut, write_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st

from curation.cli.main import main as cli_main
from curation.ingest.ingest import ingest_path
from curation.vocabulary import suggestions as engine
from curation.vocabulary.decisions import list_decisions, replay
from curation.vocabulary.published import PublishedVocabularyError, compare, load_published, seed
from curation.vocabulary.suggestions import accept_suggestion, suggest_merges

INFLECTIONS = [("guitar", "guitars"), ("click", "clicks"), ("voice", "voices"), ("bell", "bells"),
               ("siren", "sirens"), ("footstep", "footsteps"), ("pop", "pops")]
FILLERS = ["rain", "thunder", "engine", "piano", "violin", "crowd", "applause", "wind", "water", "bird", "dog",
           "speech", "music", "beat", "synth", "hum", "buzz", "static", "traffic", "train", "laughter", "whistle"]
OPPOSED = [("male", "female"), ("indoor", "outdoor"), ("electric", "electronic")]


def _together(suggestions, x, y) -> bool:
    return any({x, y} <= set(s.tags) for s in suggestions)


def random_corpus(clips: int = 2500, seed_value: int = 0) -> list[dict]:
    """Every clip: 3-7 tags drawn independently: nothing in the corpus relates any two tags."""
    rng = random.Random(seed_value)
    vocabulary = [t for pair in INFLECTIONS + OPPOSED for t in pair] + FILLERS + ["hi-hat", "hihat", "hi_hat"]
    return [make_cut(f"r{i}", tags=rng.sample(vocabulary, rng.randint(3, 7))) for i in range(clips)]


def planted_corpus(seed_value: int = 0) -> list[dict]:
    """Each tag keeps the company of its concept: plural and singular share theirs, pop and pops do not."""
    rng = random.Random(seed_value)
    company = {
        "guitar": ("strings", "riff", "amplifier", "chord", "rock"), "guitars": ("strings", "riff", "amplifier",
                                                                              "chord", "rock"),
        "voice": ("speech", "narration", "talking", "speaker"), "voices": ("speech", "narration", "talking",
                                                                           "speaker"),
        "pop": ("song", "catchy", "dance", "chorus", "radio"), "pops": ("crackle", "vinyl", "static", "fire", "hiss"),
        "male": ("speech", "narration", "talking", "speaker"), "female": ("speech", "narration", "talking", "speaker"),
    }
    cuts = []
    for tag, friends in company.items():
        cuts.extend(make_cut(f"{tag}-{n}", tags=[tag, *rng.sample(friends, 3)]) for n in range(24))
    return cuts


@pytest.fixture
def ingested(con, tmp_path):
    def load(cuts):
        ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
        return con
    return load


def test_random_corpus_neither_vetoes_nor_supports(ingested):
    con = ingested(random_corpus())
    suggestions = suggest_merges(con)
    for x, y in INFLECTIONS:  # pop/pops too: without structure the corpus cannot show different use
        assert _together(suggestions, x, y), f"{x}/{y} not proposed on a corpus without structure"
    assert _together(suggestions, "hi-hat", "hihat")
    for x, y in OPPOSED:
        assert not _together(suggestions, x, y)
    # The calibrated evidence itself: no pair departs from chance in either direction.
    matrix = engine.load_tag_matrix(con)
    view = engine.compute_vocabulary(matrix, replay(list_decisions(con)), rank_by="df")
    clips_by_tag = engine._clip_tag_matrix(view, len(matrix.tag_texts))
    df = np.asarray(clips_by_tag.sum(axis=0)).ravel().astype(np.int64)
    ids = {t: i for i, t in enumerate(matrix.tag_texts) if t}
    a = np.array([ids[x] for x, _ in INFLECTIONS + OPPOSED])
    b = np.array([ids[y] for _, y in INFLECTIONS + OPPOSED])
    evidence = engine._calibrated_evidence(clips_by_tag, df, a, b)
    assert evidence.evidence.all() and not evidence.veto.any() and not evidence.support.any()


def test_planted_structure_vetoes_different_use_and_supports_same_use(ingested):
    con = ingested(planted_corpus())
    suggestions = suggest_merges(con)
    assert _together(suggestions, "guitar", "guitars") and _together(suggestions, "voice", "voices")
    assert not _together(suggestions, "pop", "pops"), "pop (songs) and pops (crackle) keep different company"
    assert not _together(suggestions, "male", "female"), "same company, but opposites"
    guitars = next(s for s in suggestions if "guitars" in s.tags)
    assert any("co-occurrence profiles cosine" in reason for reason in guitars.reasons)


# ---------------------------------------------------------------------------------------------- coherence

@settings(max_examples=150, deadline=None)
@given(edges=st.lists(st.tuples(st.integers(1, 10), st.integers(1, 10), st.sampled_from([0, 2, 4, 6]),
                                st.floats(0.0, 1.0), st.booleans(), st.booleans()), max_size=40))
def test_no_group_member_lacks_direct_support_to_the_canonical(edges):
    """Whatever links are accepted, every member of every group has its own accepted link to the group's
    canonical tag, meaning-only members are linked to every other member, and no refused pair shares a group."""
    seen = {}
    for u, v, relation, score, accepted, vetoed in edges:
        if u != v:
            seen[(min(u, v), max(u, v))] = (relation, score, accepted and not vetoed, vetoed)
    keys = list(seen)
    n = len(keys)
    corpus = engine._Evidence.empty(n)
    corpus = engine._Evidence(**{**corpus.__dict__, "veto": np.array([seen[k][3] for k in keys], dtype=bool)})
    pairs = engine._Pairs(
        a=np.array([k[0] for k in keys], dtype=np.int64), b=np.array([k[1] for k in keys], dtype=np.int64),
        relation=np.array([seen[k][0] for k in keys], dtype=np.int8), detail=[""] * n, cosine=np.zeros(n),
        corpus=corpus, together=np.zeros(n, dtype=np.int64), either=np.ones(n, dtype=np.int64),
        score=np.array([seen[k][1] for k in keys]), accepted=np.array([seen[k][2] for k in keys], dtype=bool))
    texts = ("", *[f"sound{chr(96 + i)}" for i in range(1, 11)])
    df = np.arange(len(texts), dtype=np.int64) + 5
    groups = engine._coherent_groups(pairs, texts, df, frozenset(), {})
    accepted = {k for k in keys if seen[k][2]}
    members_seen = set()
    for members, links in groups:
        canonical = members[0]
        assert not members_seen & set(members)
        members_seen |= set(members)
        assert len(links) == len(members) - 1
        for member in members[1:]:
            assert (min(canonical, member), max(canonical, member)) in accepted
        for x in members:
            for y in members:
                if x < y:
                    assert not seen.get((x, y), (0, 0, False, False))[3], "a vetoed pair shares a group"
        meaning = [m for m in members[1:] if seen[(min(canonical, m), max(canonical, m))][0] == engine.SEMANTIC]
        for m in meaning:
            for other in members:
                if other != m:
                    assert (min(m, other), max(m, other)) in accepted


def test_genres_that_merely_co_occur_never_form_a_group(ingested):
    rng = random.Random(3)
    genres = ["pop", "rock", "techno", "soul", "funk", "electro", "disco", "jazz"]
    cuts = [make_cut(f"g{i}", tags=rng.sample(genres, 3) + ["music"]) for i in range(400)]
    suggestions = suggest_merges(ingested(cuts))
    assert not any(len(set(s.tags) & set(genres)) >= 2 for s in suggestions), suggestions


# ---------------------------------------------------------------------------------------------- impact

def test_impact_order_puts_the_merge_that_changes_most_first(ingested):
    """hihat variants touch 3 clips; vocals/vocal touches 40 and moves 'vocals' into the top 3."""
    rng = random.Random(0)
    cuts = [make_cut(f"m{i}", tags=["music", "beat"]) for i in range(60)]
    cuts += [make_cut(f"s{i}", tags=["speech", "room"]) for i in range(50)]
    cuts += [make_cut(f"v{i}", tags=["vocals", rng.choice(["music", "beat"])]) for i in range(30)]
    cuts += [make_cut(f"w{i}", tags=["vocal", rng.choice(["music", "beat"])]) for i in range(40)]
    cuts += [make_cut(f"h{i}", tags=["hi-hat", "beat"]) for i in range(20)]
    cuts += [make_cut(f"x{i}", tags=["hihat", "beat"]) for i in range(3)]
    con = ingested(cuts)
    by_impact = suggest_merges(con, k=3)
    assert [set(s.tags) for s in by_impact[:2]] == [{"vocal", "vocals"}, {"hi-hat", "hihat"}]
    vocals = by_impact[0]
    assert vocals.changed_clips == 30 and vocals.canonical == "vocal"
    assert "changes 30 clips" in vocals.effect and "enters the top 3" in vocals.effect
    assert by_impact[1].changed_clips == 3 and by_impact[1].impact < vocals.impact
    by_confidence = suggest_merges(con, k=3, order="confidence")
    assert by_confidence[0].score >= by_confidence[-1].score and by_confidence[0].tags[0] == "hi-hat"


def test_canonical_name_is_the_well_formed_spelling(ingested):
    cuts = [make_cut(f"b{i}", tags=["banjomusic", "folk"]) for i in range(9)]
    cuts += [make_cut(f"c{i}", tags=["banjo-music", "folk"]) for i in range(3)]
    suggestions = suggest_merges(ingested(cuts))
    group = next(s for s in suggestions if "banjomusic" in s.tags)
    assert group.canonical == "banjo-music" and group.tags[0] == "banjo-music"


# ---------------------------------------------------------------------------------------------- published lists

def _label_file(path, labels):
    path.write_text(json.dumps({str(i): label for i, label in enumerate(labels)}), encoding="utf-8")
    return path


def test_vocab_compare_round_trip(ingested, tmp_path, capsys, monkeypatch):
    cuts = [make_cut(f"a{i}", tags=["music", "drums"]) for i in range(10)]
    cuts += [make_cut(f"b{i}", tags=["speech", "studio"]) for i in range(5)]
    con = ingested(cuts)
    labels = ["music", "speech", "guitar", "drums"]
    report = compare(con, labels)
    assert report.published == 4 and report.shared == 3
    assert report.overlap[-1] == {"k": 4, "shared": 3, "share": 0.75}
    assert {row["label"] for row in report.only_published} == {"guitar"}
    assert [row["tag"] for row in report.only_ours] == ["studio"]
    db = tmp_path / "uts.duckdb"
    con.close()
    path = _label_file(tmp_path / "label_4.json", labels)
    assert cli_main(["vocab", "compare", str(path), "--db", str(db), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["shared"] == 3 and printed["only_published"][0]["label"] == "guitar"
    assert printed["spearman"] is not None and -1 <= printed["kendall"] <= 1
    bad = tmp_path / "bad.json"
    bad.write_text('{"0": "music", "x": "drums"}', encoding="utf-8")
    with pytest.raises(PublishedVocabularyError, match="bad.json: key 'x'"):
        load_published(bad)
    assert cli_main(["vocab", "compare", str(bad), "--db", str(db)]) == 2


def test_vocab_seed_maps_raw_tags_onto_release_labels_first(ingested, tmp_path, capsys):
    cuts = [make_cut(f"g{i}", tags=["guitars", "music"]) for i in range(6)]
    cuts += [make_cut(f"h{i}", tags=["hihat", "beat"]) for i in range(9)] + [make_cut("h-x", tags=["hi-hat", "beat"])]
    con = ingested(cuts)
    before = suggest_merges(con)
    assert not any(s.seeded for s in before)
    seed(con, ["music", "guitar", "hi_hat"], source="label_3.json", by="ana")
    after = suggest_merges(con)
    assert after[0].seeded and after[1].seeded
    mapping = {s.canonical: s for s in after}
    assert mapping["guitar"].tags == ("guitars",)  # a raw tag mapped onto a label no clip carries yet
    assert mapping["hi_hat"].tags == ("hihat", "hi-hat") and "seeded release label" in " ".join(
        mapping["hi_hat"].reasons)
    accept_suggestion(con, mapping["guitar"], by="ana")
    assert replay(list_decisions(con)).canonical("guitars") == "guitar"
    assert not any("guitars" in s.tags for s in suggest_merges(con))
    db = tmp_path / "uts.duckdb"
    con.close()
    assert cli_main(["vocab", "seed", "--clear", "--db", str(db), "--by", "ana"]) == 0
    assert "cleared" in capsys.readouterr().out
    path = _label_file(tmp_path / "label_2.json", ["hi-hat", "music"])
    assert cli_main(["vocab", "seed", str(path), "--db", str(db), "--by", "ana"]) == 0
    assert "seeded 2 labels" in capsys.readouterr().out
