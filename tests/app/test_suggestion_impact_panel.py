"""Issue 14 in the app: the suggestion queue's sort control and effect line, and the published-vocabulary panel
(compare + seed) on the Vocabulary page, under AppTest."""
from __future__ import annotations

import json

import pytest
from helpers import make_cut, open_app_page, write_jsonl

from curation import store
from curation.ingest.ingest import ingest_path
from curation.store import published as store_published


@pytest.fixture
def corpus_db(db_path, tmp_path):
    cuts = [make_cut(f"v{i}", tags=["vocals", "music"]) for i in range(12)]
    cuts += [make_cut(f"w{i}", tags=["vocal", "music"]) for i in range(8)]
    cuts += [make_cut(f"h{i}", tags=["hi-hat", "beat"]) for i in range(4)] + [make_cut("h9", tags=["hihat", "beat"])]
    con = store.connect(db_path)
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
    con.close()
    return db_path


def test_queue_shows_the_effect_and_sorts_by_impact_or_confidence(corpus_db, monkeypatch):
    app = open_app_page(corpus_db, monkeypatch, "views/vocabulary.py", name="ana")
    app.toggle(key="show_suggestions").set_value(True).run()
    assert not app.exception, app.exception
    keys = [w.key.removeprefix("canonical_") for w in app.text_input if str(w.key).startswith("canonical_")]
    assert keys[0] == "vocal|vocals", keys  # changes 8 clips: before hi-hat (1 clip)
    effects = [m.value for m in app.markdown if m.value.startswith("Accepting changes")]
    assert effects[0].startswith("Accepting changes 8 clips"), effects
    app.segmented_control(key="suggestion_order").set_value("confidence").run()
    keys = [w.key.removeprefix("canonical_") for w in app.text_input if str(w.key).startswith("canonical_")]
    assert keys[0] == "hi-hat|hihat", keys  # a surface variant is the surest link


def test_published_panel_compares_and_seeds(corpus_db, monkeypatch, tmp_path):
    label_file = tmp_path / "label_3.json"
    label_file.write_text(json.dumps({"0": "music", "1": "vocals", "2": "guitar"}), encoding="utf-8")
    app = open_app_page(corpus_db, monkeypatch, "views/vocabulary.py", name="ana")
    app.selectbox(key="published_pick").set_value("other file...").run()
    app.text_input(key="published_path").set_value(str(label_file)).run()
    assert not app.exception, app.exception
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Published labels"] == "3" and metrics["In both lists"] == "2"
    app.button(key="published_seed").click().run()
    assert not app.exception, app.exception
    con = store.connect(corpus_db)
    assert store_published.seeded_labels(con) == ["music", "vocals", "guitar"]
    con.close()
