"""Merge suggestions: known variants grouped with the right canonical, opposites and neighbours never grouped,
accept/reject round trips, prune suggestions; then the published 3k UTS vocabulary on caption co-occurrence.

The fixture corpus gives every concept realistic company (which other tags share its clips), so that the
corpus evidence is real: male and female keep the same company in different clips, pop keeps company with
music/song/vocals and pops with crackle/vinyl/noise, concert with crowd/applause and concerto with orchestra.
It uses the real default text model (loaded offline once per process, ~6 s).
"""
from __future__ import annotations

import csv
import itertools
import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import SHARED_DATA, make_cut, write_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st

import curation.vocabulary.suggestions as suggestion_engine
from curation import store
from curation.admin.permissions import Actor, PermissionDeniedError, acting_as
from curation.ingest.ingest import ingest_path
from curation.store import vocabulary as store_vocabulary
from curation.vocabulary.decisions import Decision, DecisionError, list_decisions, record_decision, replay
from curation.vocabulary.suggestions import (
    MergeSuggestion,
    _group,
    _known_words,
    _narrower,
    _opposition,
    accept_suggestion,
    accept_suggestions,
    reject_suggestion,
    suggest_merges,
    suggest_prunes,
)

# concept -> ({variant: clips}, company): each clip holds one variant and three tags of the company.
CONCEPTS = {
    "drums": ({"drums": 8, "drum": 5}, ("music", "beat", "snare", "percussion", "rock", "bass", "rhythm")),
    "hihat": ({"hi-hat": 6, "hihat": 4, "hi_hat": 2}, ("cymbal", "snare", "beat", "percussion", "music", "groove")),
    "reverb": ({"reverb": 8, "reverberation": 5, "reverberant": 5},
               ("room", "echo", "hall", "speech", "space", "ambience")),
    "hifi": ({"high-fidelity": 6, "high_fidelity": 4, "highfidelity": 2},
             ("studio", "clean", "professional", "music", "stereo", "mastered")),
    "hiss": ({"hiss": 8, "hisss": 1}, ("noise", "static", "background", "tape", "hum")),
    "male": ({"male": 6}, ("speech", "voice", "narration", "speaker", "talking", "english")),
    "female": ({"female": 6}, ("speech", "voice", "narration", "speaker", "talking", "english")),
    "indoor": ({"indoor": 5}, ("footsteps", "voices", "ambience", "people", "chatter")),
    "outdoor": ({"outdoor": 5}, ("footsteps", "voices", "ambience", "people", "chatter")),
    "electric": ({"electric": 5}, ("guitar", "amplifier", "rock", "distortion", "riff")),
    "electronic": ({"electronic": 6}, ("synth", "dance", "beat", "music", "edm")),
    "high-frequency": ({"high-frequency": 5}, ("hum", "tone", "noise", "beep", "buzz")),
    "low-frequency": ({"low-frequency": 5}, ("hum", "tone", "noise", "beep", "buzz")),
    "christmas": ({"christmas": 5}, ("song", "bells", "festive", "music", "choir")),
    "christian": ({"christian": 5}, ("worship", "choir", "song", "music", "church")),
    "pop": ({"pop": 6}, ("music", "song", "vocals", "dance", "catchy")),
    "pops": ({"pops": 5}, ("crackle", "vinyl", "noise", "clicks", "fire")),
    "concert": ({"concert": 5}, ("crowd", "applause", "live", "music", "cheering")),
    "concerto": ({"concerto": 5}, ("orchestra", "violin", "piano", "classical", "strings")),
}
VARIANT_GROUPS = {  # member set -> expected canonical (the most frequent member)
    frozenset({"drums", "drum"}): "drums",
    frozenset({"hi-hat", "hihat", "hi_hat"}): "hi-hat",
    frozenset({"reverb", "reverberation", "reverberant"}): "reverb",
    frozenset({"high-fidelity", "high_fidelity", "highfidelity"}): "high-fidelity",
    frozenset({"hiss", "hisss"}): "hiss",
}
TRAP_PAIRS = (("male", "female"), ("indoor", "outdoor"), ("electric", "electronic"),
              ("high-frequency", "low-frequency"), ("christmas", "christian"), ("pop", "pops"),
              ("concert", "concerto"))


def fixture_cuts(seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    cuts = []
    for concept, (variants, company) in CONCEPTS.items():
        for variant, clips in variants.items():
            for n in range(clips):
                tags = [variant, *rng.sample(company, 3)]
                cuts.append(make_cut(f"{concept}-{variant}-{n}", tags=tags))
    return cuts


@pytest.fixture(scope="module")
def corpus_db(tmp_path_factory) -> Path:
    """The fixture corpus, ingested and embedded once (copies of the file are cheap; the model load is not)."""
    folder = tmp_path_factory.mktemp("suggestions")
    path = folder / "uts.duckdb"
    con = store.connect(path)
    ingest_path(con, write_jsonl(folder / "cuts.jsonl", fixture_cuts()))
    suggest_merges(con)
    con.close()
    return path


@pytest.fixture
def corpus(corpus_db, tmp_path):
    copy = tmp_path / "uts.duckdb"
    shutil.copy(corpus_db, copy)
    connection = store.connect(copy)
    yield connection
    connection.close()


def _groups(suggestions) -> dict[frozenset, MergeSuggestion]:
    return {frozenset(s.tags): s for s in suggestions}


def _assert_no_trap_grouped(suggestions, traps) -> None:
    for s in suggestions:
        for x, y in traps:
            assert not {x, y} <= set(s.tags), f"opposites/neighbours {x!r} and {y!r} grouped: {s}"


def test_known_variants_are_grouped_with_the_most_frequent_canonical(corpus):
    groups = _groups(suggest_merges(corpus))
    for members, canonical in VARIANT_GROUPS.items():
        assert members in groups, f"{sorted(members)} not proposed; got {sorted(map(sorted, groups))}"
        suggestion = groups[members]
        assert suggestion.canonical == canonical
        assert suggestion.tags[0] == canonical
        assert 0.0 < suggestion.score <= 1.0 and suggestion.reasons


def test_opposites_and_neighbours_are_never_grouped(corpus):
    suggestions = suggest_merges(corpus)
    _assert_no_trap_grouped(suggestions, TRAP_PAIRS)
    # Including through an accepted merge: a merged group is a new, larger canonical tag.
    accept_suggestion(corpus, _groups(suggestions)[frozenset({"hiss", "hisss"})], by="ana")
    _assert_no_trap_grouped(suggest_merges(corpus), TRAP_PAIRS)


def test_reasons_name_the_signals_that_fired(corpus):
    groups = _groups(suggest_merges(corpus))
    hihat = " ".join(groups[frozenset({"hi-hat", "hihat", "hi_hat"})].reasons)
    assert "surface variant: same letters ignoring case, '-', '_', spaces" in hihat
    assert "plural of 'drum'" in " ".join(groups[frozenset({"drums", "drum"})].reasons)
    reverb = " ".join(groups[frozenset({"reverb", "reverberation", "reverberant"})].reasons)
    assert "derivation: shares stem 'reverber'" in reverb or "clipping: 'reverb'" in reverb
    assert "co-occurrence profiles cosine" in reverb
    assert "repeated-letter typo: 'hisss' for 'hiss'" in " ".join(groups[frozenset({"hiss", "hisss"})].reasons)


def test_order_top_and_as_dict(corpus):
    # Issue 14: the default order is impact (what accepting changes x confidence); confidence order on request.
    suggestions = suggest_merges(corpus)
    assert [s.impact for s in suggestions] == sorted((s.impact for s in suggestions), reverse=True)
    by_confidence = suggest_merges(corpus, order="confidence")
    assert [s.score for s in by_confidence] == sorted((s.score for s in by_confidence), reverse=True)
    assert suggest_merges(corpus, top=2) == suggestions[:2]
    assert suggest_merges(corpus, top=0) == []
    as_dict = suggestions[0].as_dict()
    assert set(as_dict) == {"tags", "canonical", "score", "reasons", "changed_clips", "top_k_changes", "impact",
                            "effect", "seeded"}
    assert isinstance(as_dict["tags"], list) and isinstance(as_dict["reasons"], list)
    assert isinstance(as_dict["score"], float) and as_dict["canonical"] == as_dict["tags"][0]
    json.dumps(as_dict)
    assert suggestions[0].group_key == "|".join(sorted(suggestions[0].tags))
    with pytest.raises(ValueError, match="top=-1"):
        suggest_merges(corpus, top=-1)


def test_accept_writes_one_merge_decision_and_the_group_disappears(corpus):
    drums = _groups(suggest_merges(corpus))[frozenset({"drums", "drum"})]
    record = accept_suggestion(corpus, drums, by="ana")
    assert record.action == "merge" and record.payload == {"tags": ["drum"], "into": "drums"}
    assert record.decided_by == "ana" and "plural of 'drum'" in record.reason
    assert len(list_decisions(corpus)) == 1
    assert replay(list_decisions(corpus)).canonical("drum") == "drums"
    after = suggest_merges(corpus)
    assert all("drum" not in s.tags for s in after)
    assert frozenset({"hi-hat", "hihat", "hi_hat"}) in _groups(after)


def test_accept_with_an_edited_canonical_name(corpus):
    hihat = _groups(suggest_merges(corpus))[frozenset({"hi-hat", "hihat", "hi_hat"})]
    record = accept_suggestion(corpus, hihat, by="ana", canonical=" hi hat ", reason="house spelling")
    assert record.payload == {"tags": ["hi-hat", "hihat", "hi_hat"], "into": "hi hat"}
    assert record.reason == "house spelling"
    state = replay(list_decisions(corpus))
    assert {state.canonical(t) for t in ("hi-hat", "hihat", "hi_hat")} == {"hi hat"}
    assert all(not {"hi-hat", "hihat", "hi_hat", "hi hat"} & set(s.tags) for s in suggest_merges(corpus))


def test_a_stale_suggestion_is_refused_by_the_decision_log(corpus):
    drums = _groups(suggest_merges(corpus))[frozenset({"drums", "drum"})]
    accept_suggestion(corpus, drums, by="ana")
    with pytest.raises(DecisionError, match="already resolves"):
        accept_suggestion(corpus, drums, by="ana")


def _written(con) -> tuple[int, int, int]:
    """(decisions, suggestion verdicts, interned tag texts): what an accept may write."""
    return tuple(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
                 for table in ("decisions", "suggestion_verdicts", "tags"))


def test_bulk_accept_writes_every_merge_and_verdict_in_one_transaction(corpus, monkeypatch):
    groups = _groups(suggest_merges(corpus))
    drums, hihat = groups[frozenset({"drums", "drum"})], groups[frozenset({"hi-hat", "hihat", "hi_hat"})]
    reverb = groups[frozenset({"reverb", "reverberation", "reverberant"})]
    opened = []
    real_transaction = store.transaction
    monkeypatch.setattr(store, "transaction", lambda con: opened.append(con) or real_transaction(con))
    records = accept_suggestions(corpus, [(drums, None), (hihat, " hi hat "), (reverb, None)], by=" ana ")
    assert len(opened) == 1
    assert [(r.action, r.payload, r.decided_by) for r in records] == [
        ("merge", {"tags": ["drum"], "into": "drums"}, "ana"),
        ("merge", {"tags": ["hi-hat", "hihat", "hi_hat"], "into": "hi hat"}, "ana"),
        ("merge", {"tags": [t for t in reverb.tags if t != "reverb"], "into": "reverb"}, "ana")]
    assert records == list_decisions(corpus)
    assert "plural of 'drum'" in records[0].reason
    assert corpus.execute("SELECT group_key, verdict, decided_by, canonical FROM suggestion_verdicts "
                          "ORDER BY group_key").fetchall() == sorted(
        [(s.group_key, "accepted", "ana", c) for s, c in ((drums, "drums"), (hihat, "hi hat"), (reverb, "reverb"))])
    state = replay(list_decisions(corpus))
    assert {state.canonical(t) for t in hihat.tags} == {"hi hat"} and state.canonical("drum") == "drums"
    assert accept_suggestions(corpus, [], by="ana") == []


@pytest.mark.parametrize("case", ["stale", "cycle"])
def test_a_refused_merge_half_way_leaves_the_whole_bulk_unwritten(corpus, case):
    groups = _groups(suggest_merges(corpus))
    drums, hihat = groups[frozenset({"drums", "drum"})], groups[frozenset({"hi-hat", "hihat", "hi_hat"})]
    if case == "stale":  # the same group twice: the second finds its merge already made by the first
        bulk, refusal = [(hihat, "hi hat"), (drums, None), (drums, None)], "already resolves"
    else:  # names edited crosswise: hihat, hi_hat, drum, drums -> hi-hat; then hi-hat -> drums closes a cycle
        bulk, refusal = [(hihat, None), (drums, "hi-hat"), (hihat, "drums")], "would close a cycle"
    before = _written(corpus)
    with pytest.raises(DecisionError, match=refusal):
        accept_suggestions(corpus, bulk, by="ana")
    assert _written(corpus) == before  # no decision, no verdict, not even the new name "hi hat"
    assert list_decisions(corpus) == []
    # Nothing half-applied: the same groups are still proposed, and a good bulk then goes through.
    assert {frozenset(drums.tags), frozenset(hihat.tags)} <= set(_groups(suggest_merges(corpus)))
    assert len(accept_suggestions(corpus, bulk[:2], by="ana")) == 2


def test_bulk_accept_needs_the_decide_ability_and_writes_nothing_without_it(corpus):
    groups = _groups(suggest_merges(corpus))
    bulk = [(groups[frozenset({"drums", "drum"})], None), (groups[frozenset({"hiss", "hisss"})], None)]
    before = _written(corpus)
    with acting_as(Actor("bo", "annotator", signed_in=True)), pytest.raises(PermissionDeniedError, match="decide"):
        accept_suggestions(corpus, bulk, by="bo")
    with pytest.raises(DecisionError, match="names who made it"):
        accept_suggestions(corpus, bulk, by=" ")
    assert _written(corpus) == before
    with acting_as(Actor("ana", "curator", signed_in=True)):
        assert [r.decided_by for r in accept_suggestions(corpus, bulk, by="ana")] == ["ana", "ana"]


def test_reject_is_remembered(corpus):
    reverb = _groups(suggest_merges(corpus))[frozenset({"reverb", "reverberation", "reverberant"})]
    reject_suggestion(corpus, reverb, by="ana")
    assert store_vocabulary.rejected_suggestion_members(corpus) == [list(reverb.tags)]
    after = suggest_merges(corpus)
    assert all(len(set(s.tags) & set(reverb.tags)) < 2 for s in after), "a pair of a rejected group was linked"
    assert frozenset({"drums", "drum"}) in _groups(after)
    assert list_decisions(corpus) == []
    with pytest.raises(DecisionError, match="names who made it"):
        reject_suggestion(corpus, reverb, by=" ")


def test_merged_and_pruned_tags_are_not_suggested(corpus):
    record_decision(corpus, Decision.prune(["hisss"]), by="ana")
    record_decision(corpus, Decision.merge(["highfidelity"], into="high-fidelity"), by="ana")
    groups = _groups(suggest_merges(corpus))
    assert all("hisss" not in members and "highfidelity" not in members for members in groups)
    assert frozenset({"high-fidelity", "high_fidelity"}) in groups


def test_guards_not_thresholds_keep_opposites_apart(corpus, monkeypatch):
    """With every threshold wide open many more tags are linked (issue 14: groups are no longer chains, so they
    stay small, but more of them form); the antonym and prefix guards still keep each opposite pair out of every
    group."""
    default_grouped = sum(len(s.tags) for s in suggest_merges(corpus))
    monkeypatch.setattr(suggestion_engine, "_CACHE", {})
    monkeypatch.setattr(suggestion_engine, "SEMANTIC_MIN", 0.3)
    monkeypatch.setattr(suggestion_engine, "SUPPORT_NEEDED", np.zeros(7))
    monkeypatch.setattr(suggestion_engine, "SELDOM_TOGETHER", 1.0)
    permissive = suggest_merges(corpus)
    assert sum(len(s.tags) for s in permissive) > default_grouped  # the open thresholds do link a lot more
    _assert_no_trap_grouped(permissive, [("male", "female"), ("indoor", "outdoor"),
                                         ("high-frequency", "low-frequency")])


def test_plural_follows_the_corpus_evidence(tmp_path, con):
    """pop/pops is refused above only because the corpus says so: give them the same company and they merge.
    An empty corpus has nothing to suggest."""
    assert suggest_merges(con) == []
    rng = random.Random(1)
    music, weather = ("music", "song", "vocals", "dance", "catchy"), ("rain", "thunder", "wind", "water", "storm")
    cuts = [make_cut(f"{tag}-{n}", tags=[tag, *rng.sample(company, 3)])
            for tag, company in (("pop", music), ("pops", music), ("downpour", weather)) for n in range(6)]
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
    groups = _groups(suggest_merges(con))
    assert frozenset({"pop", "pops"}) in groups and groups[frozenset({"pop", "pops"})].canonical == "pop"


def test_prune_suggestions(corpus):
    # hisss: 1 clip; with K = 2 every 1-clip tag lies outside the top K.
    proposals = suggest_prunes(corpus, k=2, min_df=2)
    by_tag = {p["tag"]: p for p in proposals}
    assert "hisss" in by_tag and by_tag["hisss"]["df"] == 1 and not by_tag["hisss"]["in_top_k"]
    assert all(p["df"] < 2 for p in proposals) and set(proposals[0]) == {"tag", "df", "rank", "in_top_k", "rule",
                                                                        "reason"}
    assert "fewer than 2" in by_tag["hisss"]["reason"] and "outside the top 2" in by_tag["hisss"]["reason"]
    everything = suggest_prunes(corpus, k=10_000, min_df=6)
    assert all(p["in_top_k"] for p in everything) and {"drum", "hisss", "concerto"} <= {p["tag"] for p in everything}
    assert "takes a vocabulary slot" in everything[0]["reason"]
    record_decision(corpus, Decision.prune(["hisss"]), by="ana")
    assert "hisss" not in {p["tag"] for p in suggest_prunes(corpus, k=2)}
    with pytest.raises(ValueError, match="k=0"):
        suggest_prunes(corpus, k=0)


@pytest.mark.parametrize("u, v", [("male", "female"), ("indoor", "outdoor"), ("high-frequency", "low-frequency"),
                                  ("highfidelity", "lowfidelity"), ("major-key", "minor_key"),
                                  ("young-male-voice", "young-female-voice"), ("man", "woman"), ("usual", "unusual"),
                                  ("verbal", "non-verbal"), ("bass", "sub-bass"), ("no_vocals", "vocals"),
                                  ("8-bit", "16_bit"), ("1980s", "1990s")])
def test_opposition_rules(u, v):
    assert _opposition(u, v) is not None and _opposition(v, u) is not None


@pytest.mark.parametrize("u, v, narrower", [("hiss", "faint-hiss", True), ("guitars", "electric-guitar", True),
                                            ("birds", "birdsong", True), ("dance", "dancehall", True),
                                            ("reverb", "reverberation", False), ("hi-hat", "hihats", False)])
def test_narrower_compounds(u, v, narrower):
    words = _known_words([u, v, "song", "hall", "electric"])
    assert (_narrower(u, v, words) is not None) is narrower and (_narrower(v, u, words) is not None) is narrower


@pytest.mark.parametrize("u, v", [("hi-hat", "hihat"), ("drum", "drums"), ("reverb", "reverberation"),
                                  ("hiss", "hisss"), ("electric", "electronic"), ("concert", "concerto")])
def test_no_opposition_between_variants_or_mere_neighbours(u, v):
    assert _opposition(u, v) is None


@settings(max_examples=200, deadline=None)
@given(edges=st.lists(st.tuples(st.integers(0, 11), st.integers(0, 11)), max_size=40),
       opposed_pairs=st.sets(st.tuples(st.integers(0, 11), st.integers(0, 11)), max_size=8))
def test_grouping_never_joins_opposed_tags(edges, opposed_pairs):
    opposed = {frozenset(p) for p in opposed_pairs if p[0] != p[1]}
    groups = _group(edges, lambda u, v: frozenset((u, v)) in opposed)
    seen = set()
    for members, joined_by in groups:
        assert not set(members) & seen
        seen |= set(members)
        assert len(joined_by) == len(members) - 1  # a spanning tree: every member linked by an accepted edge
        assert all(frozenset(p) not in opposed for p in itertools.combinations(members, 2))
        assert {x for e in joined_by for x in edges[e]} == set(members)


# ---------------------------------------------------------------------------------------------- published 3k list

LABELS_3K = SHARED_DATA / "uts_vocab" / "label_3k.json"
# One clip per row: AudioCaps (one caption), Clotho (five captions of one file), MusicCaps (caption + aspects).
CAPTION_FILES = (*sorted(SHARED_DATA.glob("captions/audiocaps_v1/*.csv")),
                 *sorted(SHARED_DATA.glob("captions/clotho/*.csv")),
                 SHARED_DATA / "captions" / "musiccaps" / "musiccaps-public.csv")
CAPTION_COLUMNS = re.compile(r"caption(_\d)?|aspect_list")
PUBLISHED_TRAPS = TRAP_PAIRS + (("man", "woman"), ("loud", "quiet"), ("fast", "slow"), ("major", "minor"),
                                ("wet", "dry"), ("high_frequency", "low_frequency"), ("high-fidelity", "low-fidelity"),
                                ("indoors", "outdoors"), ("male_voice", "female_voice"),
                                ("male-speaker", "female-speaker"), ("major-key", "minor-key"))


def _caption_rows() -> list[str]:
    rows = []
    for path in CAPTION_FILES:
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                rows.append(" . ".join(v for k, v in row.items() if k and CAPTION_COLUMNS.fullmatch(k) and v))
    return rows


def published_cuts(labels: list[str], captions: list[str], seed: int = 0) -> list[dict]:
    """Clips whose tags are the 3k labels their caption mentions, as an LLM extractor would write them.

    Labels that differ only in separators name one phrase; each mention picks one spelling (extractors are
    inconsistent), so variants share company in different clips. Plural and singular are separate words in the
    captions, which keeps "pops" (and crackles) apart from "pop" (songs). Labels no caption mentions get three
    clips with three random mentioned labels each: present, but without corpus evidence.
    """
    rng = random.Random(seed)
    spellings: dict[str, list[str]] = {}
    for label in labels:
        spellings.setdefault(" ".join(re.split(r"[\s_\-]+", label.lower())), []).append(label)
    longest = max(len(phrase.split()) for phrase in spellings)
    cuts, mentioned = [], set()
    for index, caption in enumerate(captions):
        words = re.findall(r"[a-z0-9]+", caption.lower())
        found = {" ".join(words[i:i + n]) for n in range(1, longest + 1) for i in range(len(words) - n + 1)}
        tags = sorted({rng.choice(spellings[phrase]) for phrase in found & spellings.keys()})
        if len(tags) >= 2:
            mentioned.update(tags)
            cuts.append(make_cut(f"cap{index}", tags=tags, original=()))
    pool = sorted(mentioned)
    for label in labels:
        if label not in mentioned:
            cuts.extend(make_cut(f"{label}-{n}", tags=[label, *rng.sample(pool, 3)], original=()) for n in range(3))
    return cuts


@pytest.mark.skipif(not LABELS_3K.exists() or not CAPTION_FILES[-1].exists(),
                    reason="the published UTS 3k vocabulary and the caption sets live in ../shared/data, absent here")
def test_published_3k_vocabulary(con, tmp_path):
    labels = list(dict.fromkeys(json.loads(LABELS_3K.read_text(encoding="utf-8")).values()))
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", published_cuts(labels, _caption_rows())))
    suggestions = suggest_merges(con)
    groups = [set(s.tags) for s in suggestions]
    present = set(labels)
    for members in ({"high-fidelity", "high_fidelity", "highfidelity"}, {"hihat", "hi-hat"}, {"drum", "drums"}):
        members &= present
        if len(members) >= 2:
            assert any(members <= g for g in groups), f"{sorted(members)} not grouped"
    _assert_no_trap_grouped(suggestions, [(x, y) for x, y in PUBLISHED_TRAPS if {x, y} <= present])


@given(st.text(alphabet="abcXYZ-_ é", max_size=20))
def test_surface_normalisation_is_idempotent(text):
    from curation.vocabulary.suggestions import surface_key

    assert surface_key(surface_key(text)) == surface_key(text)


@given(st.lists(st.sampled_from(["high", "fidelity", "hi", "hat"]), min_size=1, max_size=3),
       st.sampled_from(["-", "_", " ", ""]), st.booleans())
def test_separator_and_case_variants_share_one_key(words, separator, upper):
    from curation.vocabulary.suggestions import surface_key

    spelled = separator.join(words)
    assert surface_key(spelled.upper() if upper else spelled) == surface_key("".join(words))
