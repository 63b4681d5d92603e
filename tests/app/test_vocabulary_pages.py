"""The Vocabulary and Tag map pages under AppTest: a merge and an undo performed through the widgets."""
from __future__ import annotations

import pytest
from helpers import make_cut, open_app_page, write_jsonl

from curation import store
from curation.ingest.ingest import ingest_path
from curation.vocabulary.decisions import list_decisions

CLIPS = {
    "c1": ("drum", "drums", "music"), "c2": ("drums", "hihat", "music"), "c3": ("speech", "male"),
    "c4": ("speech", "female", "reverb"), "c5": ("rain", "reverberation"), "c6": ("rain", "drum"),
    "c7": ("rain", "hiss"), "c8": ("hisss", "music"),  # a second suggestion for the bulk accept
}


@pytest.fixture
def corpus_db(db_path, tmp_path):
    con = store.connect(db_path)
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", [make_cut(c, tags=t) for c, t in CLIPS.items()]))
    con.close()
    return db_path


def _page(db_path, monkeypatch, page: str):
    return open_app_page(db_path, monkeypatch, page, name="ana")


def _ranked_tags(app) -> list[str]:
    return app.dataframe[0].value["tag"].tolist()


def test_merge_and_undo_through_the_vocabulary_page(corpus_db, monkeypatch):
    app = _page(corpus_db, monkeypatch, "views/vocabulary.py")
    assert "drums" in _ranked_tags(app) and "drum" in _ranked_tags(app)
    app.multiselect(key="tag_pick").set_value(["drums", "drum"]).run()
    app.text_input(key="merge_target").set_value("drum").run()
    app.text_input(key="decision_reason").set_value("plural").run()
    app.button(key="merge_button").click().run()
    assert not app.exception, app.exception
    assert "drums" not in _ranked_tags(app)
    table = app.dataframe[0].value.set_index("tag")
    assert table.loc["drum", "df"] == 3 and table.loc["drum", "members"] == "drums"
    con = store.connect(corpus_db)
    records = list_decisions(con)
    con.close()
    assert [(r.action, r.decided_by, r.reason) for r in records] == [("merge", "ana", "plural")]

    app.selectbox(key="undo_choice").set_value(records[0].decision_id).run()
    app.button(key="undo_button").click().run()
    assert not app.exception, app.exception
    assert "drums" in _ranked_tags(app)
    con = store.connect(corpus_db)
    assert [r.action for r in list_decisions(con)] == ["merge", "undo"]
    con.close()


def test_decisions_need_a_name(corpus_db, monkeypatch):
    app = _page(corpus_db, monkeypatch, "views/vocabulary.py")
    app.session_state["display_name"] = ""
    app.multiselect(key="tag_pick").set_value(["male"]).run()
    app.button(key="prune_button").click().run()
    assert any("Working as" in w.value for w in app.warning)
    con = store.connect(corpus_db)
    assert list_decisions(con) == []
    con.close()


def test_k_explorer_and_prune(corpus_db, monkeypatch):
    app = _page(corpus_db, monkeypatch, "views/vocabulary.py")
    app.slider(key="vocab_k").set_value(2).run()
    assert app.metric[1].label == "Clips kept at K=2"
    app.multiselect(key="tag_pick").set_value(["male"]).run()
    app.button(key="prune_button").click().run()
    assert "male" not in _ranked_tags(app)
    assert app.metric[3].value == "1"


def test_tag_map_page_renders_every_tag(corpus_db, monkeypatch):
    app = _page(corpus_db, monkeypatch, "views/tag_map.py")
    assert any("raw tags" in caption.value for caption in app.caption)
    app.text_input(key="map_search").set_value("drum").run()
    assert not app.exception, app.exception


def test_suggestion_queue_accept_and_prune_suggestions(corpus_db, monkeypatch):
    app = _page(corpus_db, monkeypatch, "views/vocabulary.py")
    app.toggle(key="show_suggestions").set_value(True).run()
    assert not app.exception, app.exception
    canonical_inputs = [w for w in app.text_input if str(w.key).startswith("canonical_")]
    groups = {w.key.removeprefix("canonical_"): w.value for w in canonical_inputs}
    assert "drum|drums" in groups, groups
    index = list(groups).index("drum|drums")
    app.button(key=f"accept_{index}").click().run()
    assert not app.exception, app.exception
    assert any("Merged" in s.value for s in app.success)
    assert "drums" not in _ranked_tags(app)
    # Rare tags (one clip each here) are offered for pruning.
    app.multiselect(key="prune_pick").set_value(["hihat"]).run()
    app.button(key="prune_suggested").click().run()
    assert "hihat" not in _ranked_tags(app)
    con = store.connect(corpus_db)
    assert [r.action for r in list_decisions(con)] == ["merge", "prune"]
    con.close()


def test_bulk_accept_from_the_suggestion_queue_is_one_write(corpus_db, monkeypatch):
    app = _page(corpus_db, monkeypatch, "views/vocabulary.py")
    app.toggle(key="show_suggestions").set_value(True).run()
    keys = [str(w.key).removeprefix("bulk_") for w in app.checkbox if str(w.key).startswith("bulk_")]
    assert "drum|drums" in keys and len(keys) >= 2, keys
    for key in keys:
        app.checkbox(key=f"bulk_{key}").check().run()
    app.button(key="accept_bulk").click().run()
    assert not app.exception, app.exception
    assert [s.value for s in app.success if "Accepted" in s.value] == [f"Accepted {len(keys)} suggestions"]
    con = store.connect(corpus_db)
    records = list_decisions(con)
    verdicts = con.execute("SELECT group_key, verdict, decided_by FROM suggestion_verdicts").fetchall()
    con.close()
    assert [(r.action, r.decided_by) for r in records] == [("merge", "ana")] * len(keys)
    assert sorted(verdicts) == sorted((key, "accepted", "ana") for key in keys)


def test_a_refused_decision_is_shown_in_place_and_nothing_is_written(corpus_db, monkeypatch):
    app = _page(corpus_db, monkeypatch, "views/vocabulary.py")
    app.multiselect(key="tag_pick").set_value(["drums", "drum"]).run()
    app.text_input(key="merge_target").set_value("  ").run()
    app.button(key="merge_button").click().run()
    assert not app.exception, app.exception
    assert any("expected a non-empty tag text" in e.value for e in app.error)
    assert "drums" in _ranked_tags(app) and len(app.tabs) == 5  # the rest of the page still renders
    con = store.connect(corpus_db)
    assert list_decisions(con) == []
    con.close()


def test_tag_sources_tab_records_which_extractors_feed_the_vocabulary(db_path, tmp_path, monkeypatch):
    con = store.connect(db_path)
    ingest_path(con, write_jsonl(tmp_path / "a.jsonl", [make_cut("a1", tags=("drum", "music"))]), extractor="human")
    ingest_path(con, write_jsonl(tmp_path / "b.jsonl", [make_cut("b1", tags=("rain",))]), extractor="machine")
    con.close()
    app = _page(db_path, monkeypatch, "views/vocabulary.py")
    assert set(_ranked_tags(app)) == {"drum", "music", "rain"}  # no choice made yet: every extractor's tags
    app.multiselect(key="sources_pick").set_value(["human"]).run()
    app.button(key="sources_button").click().run()
    assert not app.exception, app.exception
    assert set(_ranked_tags(app)) == {"drum", "music"}
    con = store.connect(db_path)
    records = list_decisions(con)
    con.close()
    assert [(r.action, r.payload) for r in records] == [("use_extractors", {"extractors": ["human"]})]
    app.selectbox(key="undo_choice").set_value(records[0].decision_id).run()
    app.button(key="undo_button").click().run()
    assert set(_ranked_tags(app)) == {"drum", "music", "rain"}
    assert app.selectbox(key="undo_choice").value is None  # the used selection is cleared
