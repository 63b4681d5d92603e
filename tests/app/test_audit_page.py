"""The Audit page under AppTest: create a campaign, judge a clip, get the next one; markup stays text."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from curation import store, store_audit
from curation.ingest import ingest_path
from helpers import PROJECT, make_cut, write_jsonl


@pytest.fixture
def corpus_db(db_path, tmp_path):
    con = store.connect(db_path)
    cuts = [make_cut(f"c{i}", tags=("music", f"t{i % 3}"), caption=f"<script>alert({i})</script> A caption.")
            for i in range(6)]
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
    con.close()
    return db_path


def test_campaign_judge_and_next(corpus_db, monkeypatch):
    monkeypatch.setenv(store.DB_ENV_VAR, str(corpus_db))
    monkeypatch.chdir(PROJECT)
    app = AppTest.from_file(str(PROJECT / "app.py"), default_timeout=60)
    app.session_state["display_name"] = "bo"
    app.switch_page("views/audit.py")
    app.run()
    assert not app.exception, app.exception
    app.text_input(key="campaign_name").set_value("pilot")
    app.number_input(key="campaign_size").set_value(4)
    app.button[0].click().run()  # the form's submit button
    assert not app.exception, app.exception
    assert any("created" in s.value for s in app.success)
    clip_header = app.subheader[0].value
    # The caption is shown as text: the script tag is there verbatim, not executed markup.
    assert any("<script>alert(" in t.value for t in app.text)
    verdict_radios = [r for r in app.radio if str(r.key).startswith("verdict_")]
    assert len(verdict_radios) == 2
    for radio in verdict_radios:
        radio.set_value("correct")
    [r for r in app.radio if str(r.key).startswith("rating_")][0].set_value(4)
    [b for b in app.button if b.label == "Submit and next"][0].click().run()
    assert not app.exception, app.exception
    assert any("Saved your verdicts" in s.value for s in app.success)
    assert app.subheader[0].value != clip_header
    con = store.connect(corpus_db)
    verdicts = store_audit.verdict_frame(con)
    con.close()
    assert len(verdicts) == 2 and set(verdicts["verdict"]) == {"correct"} and set(verdicts["annotator"]) == {"bo"}
