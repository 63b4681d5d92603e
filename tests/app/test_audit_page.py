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
    next(r for r in app.radio if str(r.key).startswith("rating_")).set_value(4)
    next(b for b in app.button if b.label == "Submit and next").click().run()
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


def _store_model_audit(db_path, run_id="r1"):
    """A model audit of run ``run_id`` over the six clips: the model disputes "t1" on c1 (one of its two clips) and
    nothing else, so its precision estimates are music 1.0, t1 0.5, t0 and t2 1.0."""
    import numpy as np

    from curation.audit.model_audit import OosScores, store_audit_of

    clip_ids = [f"c{i}" for i in range(6)]
    labels = ["music", "t0", "t1", "t2"]
    targets = np.array([[True] + [i % 3 == t for t in range(3)] for i in range(6)])
    scores = np.where(targets, 0.9, 0.05)
    scores[1, 2] = 0.02
    con = store.connect(db_path)
    try:
        store_audit_of(con, run_id, OosScores(clip_ids, labels, scores, targets, np.zeros(6, int),
                                              {"folds": 2, "features": "fbank", "method": "test"}))
    finally:
        con.close()


def test_bias_dashboard_shows_the_models_estimates_beside_the_audit(corpus_db, monkeypatch):
    import json

    from curation.audit.campaigns import create_campaign, next_item, submit

    con = store.connect(corpus_db)
    campaign = create_campaign(con, "pilot", sample_size=6, by="ana", annotators_per_clip=1)
    while (item := next_item(con, campaign, "bo")) is not None:
        # The audit calls every "music" wrong (a systematic bias the model cannot see) and the rest correct.
        submit(con, item, "bo", {t: ("wrong" if t == "music" else "correct") for t in item.tags}, rating=3)
    con.close()
    app = open_app_page(corpus_db, monkeypatch, "views/audit_dashboard.py", name="ana")
    # Without a model audit the section says how to get one and offers no run.
    assert not [s for s in app.selectbox if s.key == "dashboard_model_run"]
    assert any("python -m curation model-audit" in c.value for c in app.caption)
    _store_model_audit(corpus_db)
    app = open_app_page(corpus_db, monkeypatch, "views/audit_dashboard.py", name="ana")
    app.slider(key="dashboard_min_judged").set_value(1).run()
    assert not app.exception, app.exception
    assert app.selectbox(key="dashboard_model_run").value == "r1"
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Tags in both (judged at least this often)"] == "4"
    # music: model 100% vs audit 0% (disagrees); t0, t1 (model 50%, audit 100% on 2 verdicts: interval reaches
    # 0.34), t2: agree.
    assert metrics["Model agrees with the audit"] == "3 of 4"
    table = next(d.value for d in app.dataframe if "Agreement" in d.value.columns).set_index("Tag")
    assert table.loc["music", "Agreement"] == "disagrees" and table.loc["t1", "Agreement"] == "agrees"
    assert table.loc["t1", "Model's estimate"] == 0.5 and table.loc["music", "Audited precision"] == 0.0
    chart = [c for c in app.get("plotly_chart") if "model_vs_audit_chart" in str(c.proto.id)]
    assert chart, "the model-vs-audit chart is drawn"
    traces = {t["name"]: t for t in json.loads(chart[0].proto.spec)["data"]}
    assert set(traces) == {"audited precision (95% Wilson interval)",
                           "model's estimate: inside the audit's interval (agrees)",
                           "model's estimate: outside the audit's interval (disagrees)"}
    assert traces["model's estimate: outside the audit's interval (disagrees)"]["y"] == ["music"]


def test_open_the_clips_the_model_disputes_on_a_tag_in_browse(corpus_db, monkeypatch):
    from curation.audit.campaigns import create_campaign, next_item, submit

    con = store.connect(corpus_db)
    campaign = create_campaign(con, "pilot", sample_size=6, by="ana", annotators_per_clip=1)
    while (item := next_item(con, campaign, "bo")) is not None:
        submit(con, item, "bo", dict.fromkeys(item.tags, "correct"), rating=3)
    con.close()
    _store_model_audit(corpus_db)            # the model disputes "t1" on c1 only
    app = open_app_page(corpus_db, monkeypatch, "views/audit_dashboard.py", name="ana")
    app.slider(key="dashboard_min_judged").set_value(1).run()
    app.selectbox(key="dashboard_tag").set_value("t0").run()
    assert not [b for b in app.button if b.key == "dashboard_open_disputed"]   # nothing disputed on t0
    app.selectbox(key="dashboard_tag").set_value("t1").run()
    app.button(key="dashboard_open_disputed").click().run()
    assert not app.exception, app.exception
    assert app.title[0].value == "Browse clips"
    shown = [m.value.strip("*") for m in app.markdown if m.value.startswith("**c")]
    assert shown == ["c1"]
    assert any(m.value.startswith("Model (run r1) disputes: **t1**") for m in app.markdown)
