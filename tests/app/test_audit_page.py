"""The Audit page under AppTest: create a campaign, judge a clip, get the next one; markup stays text."""
from __future__ import annotations

import pytest
from helpers import make_cut, open_app_page, write_jsonl

from curation import store
from curation.ingest.ingest import ingest_path
from curation.store import audit as store_audit


@pytest.fixture
def corpus_db(db_path, tmp_path):
    con = store.connect(db_path)
    cuts = [make_cut(f"c{i}", tags=("music", f"t{i % 3}"), caption=f"<script>alert({i})</script> A caption.")
            for i in range(6)]
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
    con.close()
    return db_path


def test_campaign_judge_and_next(corpus_db, monkeypatch):
    app = open_app_page(corpus_db, monkeypatch, "views/audit.py", name="bo")
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


def test_bias_dashboard_renders_and_prunes_from_a_tag(corpus_db, monkeypatch):
    from curation.audit.campaigns import create_campaign, next_item, submit
    from curation.vocabulary.decisions import list_decisions

    con = store.connect(corpus_db)
    campaign = create_campaign(con, "pilot", sample_size=6, by="ana", annotators_per_clip=2)
    for annotator in ("bo", "cy"):
        while (item := next_item(con, campaign, annotator)) is not None:
            submit(con, item, annotator, {t: ("wrong" if t == "music" else "correct") for t in item.tags},
                   added=["rain"], rating=3)
    con.close()
    app = open_app_page(corpus_db, monkeypatch, "views/audit_dashboard.py", name="ana")
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Slots submitted"] == "12 / 12" and metrics["Verdicts"] == str(2 * 6 * 2)
    app.selectbox(key="dashboard_tag").set_value("music").run()
    app.button(key="dashboard_prune").click().run()
    assert not app.exception, app.exception
    con = store.connect(corpus_db)
    assert [(r.action, r.payload["tags"]) for r in list_decisions(con)] == [("prune", ["music"])]
    con.close()


def test_open_a_tags_clips_in_browse(corpus_db, monkeypatch):
    from curation.audit.campaigns import create_campaign, next_item, submit

    con = store.connect(corpus_db)
    campaign = create_campaign(con, "pilot", sample_size=6, by="ana", annotators_per_clip=1)
    while (item := next_item(con, campaign, "bo")) is not None:
        submit(con, item, "bo", {t: "correct" for t in item.tags}, rating=3)
    con.close()
    app = open_app_page(corpus_db, monkeypatch, "views/audit_dashboard.py", name="ana")
    app.slider(key="dashboard_min_judged").set_value(1).run()
    app.selectbox(key="dashboard_tag").set_value("t1").run()
    app.button(key="dashboard_open_clips").click().run()
    assert not app.exception, app.exception
    assert app.title[0].value == "Browse clips"
    shown = [m.value.strip("*") for m in app.markdown if m.value.startswith("**c")]
    assert shown == ["c1", "c4"]
