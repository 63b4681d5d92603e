"""Issue 18 on the Vocabulary page: a run's model evidence beside the merge and prune suggestions (pairs the model
cannot tell apart, with a merge; tags it cannot predict, with a prune), under AppTest."""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import make_cut, open_app_page, write_jsonl

from curation import store
from curation.audit.model_audit import OosScores, store_audit_of
from curation.ingest.ingest import ingest_path
from curation.vocabulary.decisions import list_decisions

LABELS = ["siren", "alarm", "dog", "studio"]


@pytest.fixture
def audited_db(db_path, tmp_path):
    """60 clips: "siren" and "alarm" name one sound at random, "dog" is distinct, "studio" a caption habit; run r1's
    scores file says so."""
    rng = np.random.default_rng(0)
    n = 60
    targets = np.zeros((n, 4), bool)
    targets[0:12, 0], targets[12:24, 1], targets[24:40, 2], targets[::2, 3] = True, True, True, True
    scores = np.full((n, 4), 0.05)
    scores[0:24, 0:2] = 0.5 + rng.uniform(-0.1, 0.1, (24, 2))
    scores[24:40, 2] = 0.9
    scores[:, 3] = rng.uniform(0.3, 0.7, n)
    clip_ids = [f"c{i:02d}" for i in range(n)]
    out = tmp_path / "runs" / "r1" / "model_audit"
    out.mkdir(parents=True)
    np.savez_compressed(out / "oos_scores.npz", clip_ids=np.array(clip_ids), labels=np.array(LABELS),
                        scores=scores.astype(np.float32), targets=targets.astype(np.uint8),
                        folds=np.zeros(n, np.int32))
    meta = {"run_id": "r1", "folds": 2, "features": "fbank", "method": "test"}
    (out / "oos_scores.json").write_text(json.dumps(meta), encoding="utf-8")
    con = store.connect(db_path)
    try:
        # Five more clips say "sirens" (after the run's export): a text suggestion pairs it with "siren".
        ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", [
            make_cut(c, tags=[t for t, on in zip(LABELS, targets[i]) if on] or ["quiet"])
            for i, c in enumerate(clip_ids)] + [make_cut(f"s{i}", tags=["sirens"]) for i in range(5)]))
        store_audit_of(con, "r1", OosScores(clip_ids, LABELS, scores, targets, np.zeros(n, int),
                                            {**meta, "scores_file": str(out / "oos_scores.npz")}))
    finally:
        con.close()
    return db_path


def test_merge_a_pair_the_model_cannot_tell_apart(audited_db, monkeypatch):
    app = open_app_page(audited_db, monkeypatch, "views/vocabulary.py", name="ana")
    assert not [t for t in app.dataframe if "Tag A" in t.value.columns]   # no run picked: text evidence only
    app.selectbox(key="model_evidence_run").set_value("r1").run()
    assert not app.exception, app.exception
    pairs = next(t.value for t in app.dataframe if "Tag A" in t.value.columns)
    assert [(r["Tag A"], r["Tag B"]) for _, r in pairs.iterrows()] == [("siren", "alarm")]
    assert 0.3 < pairs.iloc[0]["Separability"] < 0.7
    app.selectbox(key="model_merge_pick").set_value("siren + alarm").run()
    app.button(key="model_merge_button").click().run()
    assert not app.exception, app.exception
    con = store.connect(audited_db)
    records = list_decisions(con)
    con.close()
    assert [(r.action, sorted(r.payload["tags"]), r.payload["into"]) for r in records] == [
        ("merge", ["alarm", "siren"], "siren")]
    assert "cannot tell them apart" in records[0].reason


def test_prune_a_tag_the_model_cannot_predict(audited_db, monkeypatch):
    app = open_app_page(audited_db, monkeypatch, "views/vocabulary.py", name="ana")
    app.selectbox(key="model_evidence_run").set_value("r1").run()
    table = next(t.value for t in app.dataframe if "AUC" in t.value.columns)
    assert table["Tag"].tolist() == ["studio"] and table.iloc[0]["Clips"] == 30
    app.multiselect(key="model_prune_pick").set_value(["studio"]).run()
    app.button(key="model_prune_button").click().run()
    assert not app.exception, app.exception
    con = store.connect(audited_db)
    records = list_decisions(con)
    con.close()
    assert [(r.action, r.payload["tags"]) for r in records] == [("prune", ["studio"])]
    assert "predicts no better than chance" in records[0].reason


def test_a_text_suggestion_carries_the_models_word(audited_db, monkeypatch):
    app = open_app_page(audited_db, monkeypatch, "views/vocabulary.py", name="ana")
    app.selectbox(key="model_evidence_run").set_value("r1").run()
    app.toggle(key="show_suggestions").set_value(True).run()
    assert not app.exception, app.exception
    keys = [w.key.removeprefix("canonical_") for w in app.text_input if str(w.key).startswith("canonical_")]
    assert "siren|sirens" in keys, keys
    # Captions are escaped Markdown ("\\(" for "("): compare the text a person reads.
    shown = [c.value.replace("\\", "") for c in app.caption]
    assert "model (run r1): its export does not label sirens" in shown, shown
