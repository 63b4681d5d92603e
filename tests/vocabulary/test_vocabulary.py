"""Decisions replay, TF-IDF ranking and coverage against a plain-Python reference; properties with hypothesis."""
from __future__ import annotations

import math
import statistics
from collections import Counter

import pytest
from helpers import make_cut, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curation import store
from curation.ingest.ingest import ingest_path
from curation.ingest.tag_text import normalize_tag
from curation.vocabulary.decisions import Decision, DecisionError, list_decisions, record_decision, replay
from curation.vocabulary.ranking import compute_vocabulary, load_tag_matrix


def _corpus(con, tmp_path, clips: dict[str, tuple[tuple[str, ...], str]]):
    cuts = [make_cut(clip_id, tags=tags, domain=domain) for clip_id, (tags, domain) in clips.items()]
    ingest_path(con, write_jsonl(tmp_path / f"cuts{len(list(tmp_path.iterdir()))}.jsonl", cuts))


def reference_clip_tags(raw: dict[str, set[str]], state) -> dict[str, set[str]]:
    out = {}
    for clip_id, tags in raw.items():
        canon = {state.canonical(t) for t in tags}
        canon |= {t for c, t in state.clip_adds if c == clip_id}
        canon -= {t for c, t in state.clip_removes if c == clip_id}
        out[clip_id] = {t for t in canon if t not in state.pruned}
    return out


def reference_ranking(clip_tags: dict[str, set[str]], rank_by="tfidf") -> list[tuple[str, int, float]]:
    n = len(clip_tags)
    df = Counter(t for tags in clip_tags.values() for t in tags)
    scored = [(t, d, d * math.log((n + 1) / (d + 1))) for t, d in df.items()]
    if rank_by == "tfidf":
        scored.sort(key=lambda x: (-x[2], -x[1], x[0]))
    else:
        scored.sort(key=lambda x: (-x[1], x[0]))
    return scored


def reference_coverage(clip_tags, ranking, k):
    top = {t for t, _, _ in ranking[:k]}
    counts = [len(tags & top) for tags in clip_tags.values()]
    kept = [c for c in counts if c > 0]
    return len(kept), (sum(kept) / len(kept) if kept else 0.0), (statistics.median_low(kept) if kept else 0)


HAND = {
    "c1": (("drum", "drums", "music"), "music"),
    "c2": (("drums", "hihat", "music"), "music"),
    "c3": (("speech", "male"), "speech"),
    "c4": (("speech", "female", "reverb"), "speech"),
    "c5": (("rain", "reverberation"), "environment"),
    "c6": (("rain",), "environment"),
}


def test_coverage_on_a_hand_built_corpus(con, tmp_path):
    _corpus(con, tmp_path, HAND)
    record_decision(con, Decision.merge(["drum", "drums"], into="drum"), by="ana", reason="plural")
    record_decision(con, Decision.merge(["reverberation"], into="reverb"), by="ana")
    view = compute_vocabulary(load_tag_matrix(con), replay(list_decisions(con)))
    ranking = view.ranking
    # df: drum 2, music 2, speech 2, rain 2, reverb 2, hihat 1, male 1, female 1; N = 6.
    assert dict(zip(ranking.tag, ranking.df)) == {"drum": 2, "music": 2, "speech": 2, "rain": 2, "reverb": 2,
                                                  "hihat": 1, "male": 1, "female": 1}
    assert ranking.tag.tolist()[:5] == ["drum", "music", "rain", "reverb", "speech"]  # ties by text
    assert ranking.score.iloc[0] == 2 * math.log(7 / 3)
    assert view.members["drum"] == ["drums"] and ranking.merged.iloc[0] == 1
    cov = view.coverage.set_index("k")
    # K=1 (drum): c1, c2. K=3 (+music, rain): c1, c2, c5, c6. K=5 (+reverb, speech): all six.
    assert cov.loc[1, "clips_kept"] == 2 and cov.loc[3, "clips_kept"] == 4 and cov.loc[5, "clips_kept"] == 6
    assert cov.loc[5, "share_kept"] == 1.0
    assert cov.loc[3, "mean_tags"] == (2 + 2 + 1 + 1) / 4
    assert cov.loc[8, "mean_tags"] == (2 + 3 + 2 + 3 + 2 + 1) / 6
    assert cov.loc[8, "median_tags"] == 2
    by_domain = view.coverage_by_domain.set_index("k")
    assert by_domain.loc[1, "music"] == 1.0 and by_domain.loc[1, "speech"] == 0.0
    assert view.tags_entering(1, 3) == ["music", "rain"]
    assert sorted(view.clips_lost(1, 3)) == ["c5", "c6"]


def test_chains_resolve_and_undo_restores(con, tmp_path):
    _corpus(con, tmp_path, HAND)
    first = record_decision(con, Decision.merge(["drums"], into="drum"), by="ana")
    record_decision(con, Decision.merge(["drum"], into="percussion"), by="ana")
    state = replay(list_decisions(con))
    assert state.canonical("drums") == "percussion" and state.canonical("drum") == "percussion"
    record_decision(con, Decision.undo(first.decision_id), by="bo", reason="wrong")
    state = replay(list_decisions(con))
    assert state.canonical("drums") == "drums" and state.canonical("drum") == "percussion"
    # An undo is a decision too: the log only grows.
    assert [r.action for r in list_decisions(con)] == ["merge", "merge", "undo"]


def test_cycle_is_refused(con, tmp_path):
    _corpus(con, tmp_path, HAND)
    record_decision(con, Decision.merge(["drums"], into="drum"), by="ana")
    with pytest.raises(DecisionError, match="cycle"):
        record_decision(con, Decision.merge(["drum"], into="drums"), by="ana")
    assert len(list_decisions(con)) == 1


@pytest.mark.parametrize("decision,words", [
    (Decision.merge(["nope"], into="x"), "unknown tag 'nope'"),
    (Decision.merge(["drum"], into="drum"), "into itself"),
    (Decision.restore(["rain"]), "not pruned"),
    (Decision.undo(99), "earlier decision"),
    (Decision.clip_add("no-such-clip", "rain"), "clip 'no-such-clip'"),
    (Decision.merge(["drum"], into="   "), "non-empty tag text"),  # " padded " is spelled "padded" (normalize_tag)
    (Decision("merge", {"tags": ["drum"], "into": " padded "}), "surrounding spaces"),  # e.g. from a replayed log
])
def test_bad_decisions_are_refused_and_not_written(con, tmp_path, decision, words):
    _corpus(con, tmp_path, HAND)
    with pytest.raises(DecisionError, match=words):
        record_decision(con, decision, by="ana")
    assert list_decisions(con) == []


def test_decision_needs_a_name(con, tmp_path):
    _corpus(con, tmp_path, HAND)
    with pytest.raises(DecisionError, match="who made it"):
        record_decision(con, Decision.prune(["rain"]), by=" ")


def test_prune_restore_and_clip_edits(con, tmp_path):
    _corpus(con, tmp_path, HAND)
    record_decision(con, Decision.prune(["male"]), by="ana")
    record_decision(con, Decision.clip_add("c6", "outdoor"), by="ana")
    record_decision(con, Decision.clip_remove("c5", "rain"), by="ana")
    view = compute_vocabulary(load_tag_matrix(con), replay(list_decisions(con)))
    assert "male" not in view.ranking.tag.tolist() and view.pruned == ("male",)
    assert view.clip_tags_at(100)["c6"] == ["outdoor", "rain"]  # both df 1 after the removal: text order
    assert "rain" not in view.clip_tags_at(100)["c5"]
    record_decision(con, Decision.restore(["male"]), by="ana")
    view = compute_vocabulary(load_tag_matrix(con), replay(list_decisions(con)))
    assert "male" in view.ranking.tag.tolist()


TAGS = st.sampled_from(["drum", "drums", "Drum", "hi-hat", "hihat", "rain", "rainfall", "male", "female", "x"])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(clips=st.lists(st.sets(TAGS, min_size=1, max_size=5), min_size=1, max_size=25),
       ops=st.lists(st.tuples(st.sampled_from(["merge", "prune", "undo", "add", "remove"]),
                              st.lists(TAGS, min_size=1, max_size=3), TAGS, st.integers(0, 30)), max_size=12),
       rank_by=st.sampled_from(["tfidf", "df"]))
def test_engine_equals_reference_and_merges_lose_no_clip(tmp_path_factory, clips, ops, rank_by):
    tmp = tmp_path_factory.mktemp("prop")
    con = store.connect(tmp / "p.duckdb")
    as_given = {f"c{i}": set(tags) for i, tags in enumerate(clips)}
    ingest_path(con, write_jsonl(tmp / "cuts.jsonl", [make_cut(c, tags=sorted(t)) for c, t in as_given.items()]))
    raw = {clip: {normalize_tag(t) for t in tags} for clip, tags in as_given.items()}  # ingest folds "Drum" into "drum"
    for action, tags, target, number in ops:
        known = {t for ts in raw.values() for t in ts}
        decision = {
            "merge": Decision.merge([t for t in tags if t in known] or [next(iter(known))], into=target),
            "prune": Decision.prune([t for t in tags if t in known] or [next(iter(known))]),
            "undo": Decision.undo(number),
            "add": Decision.clip_add(f"c{number % len(raw)}", target),
            "remove": Decision.clip_remove(f"c{number % len(raw)}", tags[0] if tags[0] in known else target),
        }[action]
        try:
            record_decision(con, decision, by="prop")
        except DecisionError:
            pass  # refused decisions write nothing; the engine must still agree with the reference
    state = replay(list_decisions(con))
    view = compute_vocabulary(load_tag_matrix(con), state, rank_by=rank_by)
    expected_tags = reference_clip_tags(raw, state)
    expected = reference_ranking(expected_tags, rank_by)
    assert view.ranking.tag.tolist() == [t for t, _, _ in expected]
    assert view.ranking.df.tolist() == [d for _, d, _ in expected]
    if rank_by == "tfidf":
        assert view.ranking.score.tolist() == [s for _, _, s in expected]
    for k in range(1, len(expected) + 1):
        kept, mean, median = reference_coverage(expected_tags, expected, k)
        row = view.coverage.iloc[k - 1]
        assert (row.clips_kept, row.median_tags) == (kept, median)
        assert row.mean_tags == pytest.approx(mean)
    # Merges never lose a clip: a clip with any unpruned tag keeps a canonical tag.
    if not state.pruned and not state.clip_removes:
        assert view.coverage.clips_kept.iloc[-1] == len(raw)
    # Replay is deterministic: the same log gives the same state.
    assert replay(list_decisions(con)) == state
    con.close()


def test_cli_decide_and_export_round_trip_through_lhotse(db_path, tmp_path, capsys):
    import gzip
    import json

    from lhotse import CutSet

    from curation.cli.main import main

    con = store.connect(db_path)
    cuts = [make_cut(c, tags=tags, domain=domain, duration=2.0) for c, (tags, domain) in HAND.items()]
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
    con.close()
    assert main(["decide", "merge", "drum", "drums", "--into", "drum", "--db", str(db_path), "--by", "ana",
                 "--reason", "plural"]) == 0
    assert main(["decide", "prune", "male", "--db", str(db_path), "--by", "ana"]) == 0
    assert main(["decide", "merge", "nope", "--into", "x", "--db", str(db_path), "--by", "ana"]) == 2
    assert "unknown tag 'nope'" in capsys.readouterr().err
    out = tmp_path / "export"
    assert main(["export", "--db", str(db_path), "--k", "3", "--out", str(out), "--by", "ana"]) == 0
    record = json.loads(capsys.readouterr().out)
    labels = json.loads((out / "label_3.json").read_text())
    assert labels == {"0": "drum", "1": "music", "2": "rain"}
    assert (out / "label_3.txt").read_text().splitlines() == ["drum", "music", "rain"]
    cut_set = CutSet.from_file(out / "cuts.jsonl.gz")
    by_id = {cut.id: cut.supervisions[0].custom["audio_tag"] for cut in cut_set}
    assert by_id == {"c1": ["drum", "music"], "c2": ["drum", "music"], "c5": ["rain"], "c6": ["rain"]}
    assert (record["clips_kept"], record["clips_dropped"], record["last_decision_id"]) == (4, 2, 2)
    con = store.connect(db_path)
    assert con.execute("SELECT k, ranking, last_decision_id, content_hash FROM exports").fetchall() == [
        (3, "tfidf", 2, record["content_hash"])]
    con.close()
    # The same state exports the same content.
    assert main(["export", "--db", str(db_path), "--k", "3", "--out", str(tmp_path / "again")]) == 0
    assert json.loads(capsys.readouterr().out)["content_hash"] == record["content_hash"]
    with gzip.open(out / "cuts.jsonl.gz", "rt") as handle:
        assert json.loads(handle.readline())["supervisions"][0]["custom"]["original_caption"] == ["a human caption"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(clips=st.lists(st.sets(TAGS, min_size=1, max_size=4), min_size=1, max_size=12),
       action=st.sampled_from(["merge", "prune", "add", "remove"]), tags=st.lists(TAGS, min_size=1, max_size=3),
       target=TAGS)
def test_undo_restores_the_previous_vocabulary(tmp_path_factory, clips, action, tags, target):
    tmp = tmp_path_factory.mktemp("undo")
    con = store.connect(tmp / "u.duckdb")
    as_given = {f"c{i}": set(t) for i, t in enumerate(clips)}
    ingest_path(con, write_jsonl(tmp / "cuts.jsonl", [make_cut(c, tags=sorted(t)) for c, t in as_given.items()]))
    raw = {clip: {normalize_tag(t) for t in tags} for clip, tags in as_given.items()}  # as ingest spells them
    record_decision(con, Decision.merge([sorted(raw["c0"])[0]], into="anchor"), by="prop")  # a non-empty log
    matrix = load_tag_matrix(con)
    before = compute_vocabulary(matrix, replay(list_decisions(con)))
    known = sorted({t for ts in raw.values() for t in ts})
    decision = {"merge": Decision.merge([t for t in tags if t in known] or known[:1], into=target),
                "prune": Decision.prune([t for t in tags if t in known] or known[:1]),
                "add": Decision.clip_add("c0", target), "remove": Decision.clip_remove("c0", known[0])}[action]
    try:
        made = record_decision(con, decision, by="prop")
    except DecisionError:
        con.close()
        return
    record_decision(con, Decision.undo(made.decision_id), by="prop")
    after = compute_vocabulary(load_tag_matrix(con), replay(list_decisions(con)))
    assert after.ranking[["tag", "df", "score"]].equals(before.ranking[["tag", "df", "score"]])
    assert after.coverage.equals(before.coverage)
    con.close()


def test_tag_text_a_decision_creates_is_spelled_the_same_from_every_route(con, db_path, tmp_path, capsys):
    from curation.cli.main import main

    _corpus(con, tmp_path, HAND)
    record_decision(con, Decision.clip_add("c1", " Drum "), by="ana")  # the app's route
    con.close()
    assert main(["decide", "add-tag", "c2", "DRUM", "--db", str(db_path), "--by", "bo"]) == 0  # the CLI's route
    assert main(["decide", "merge", "rain", "--into", "Heavy   Rain", "--db", str(db_path), "--by", "bo"]) == 0
    con = store.connect(db_path)
    try:
        state = replay(list_decisions(con))
        assert {t for _, t in state.clip_adds} == {"drum"}  # one tag, not "Drum", " Drum " and "DRUM"
        assert state.canonical("rain") == "heavy rain"
    finally:
        con.close()
