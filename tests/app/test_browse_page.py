"""The Browse page under AppTest: filters narrow the clips, audio plays from the roots, a per-clip tag edit."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile
from helpers import make_cut, open_app_page, write_jsonl

from curation import store
from curation.ingest.ingest import ingest_path
from curation.vocabulary.decisions import list_decisions


@pytest.fixture
def corpus_db(db_path, tmp_path):
    root = tmp_path / "corpus"
    (root / "audio").mkdir(parents=True)
    for i in range(5):
        soundfile.write(root / "audio" / f"c{i}.wav", np.zeros(8000, dtype=np.float32), 16000)
    cuts = [make_cut("c0", tags=("dog", "bark"), caption="A dog barks twice. In summary, a dog.", source="audio/c0.wav",
                     domain="environment"),
            make_cut("c1", tags=("music", "piano"), caption="A piano plays. In summary, calm music.",
                     source="audio/c1.wav", domain="music"),
            make_cut("c2", tags=("speech", "male"), caption="<img src=x onerror=alert(1)> A man talks.",
                     source="audio/c2.wav", domain="speech"),
            make_cut("c3", tags=("dog",), caption="Dogs and birds outside.", source="audio/c3.wav",
                     domain="environment"),
            make_cut("c4", tags=("rain",), caption="Rain falls 100% of the time; 'quoted' _text_.",
                     source="audio/c4.wav", domain="environment")]
    con = store.connect(db_path)
    ingest_path(con, write_jsonl(root / "cuts.jsonl", cuts))
    con.close()
    return db_path


def _browse(db_path, monkeypatch):
    return open_app_page(db_path, monkeypatch, "views/browse.py", name="ana")


def _shown(app) -> list[str]:
    return [m.value.strip("*") for m in app.markdown if m.value.startswith("**c")]


def test_filters_and_audio(corpus_db, monkeypatch):
    app = _browse(corpus_db, monkeypatch)
    assert _shown(app) == ["c0", "c1", "c2", "c3", "c4"]
    assert any("**5 clips match**" in m.value for m in app.markdown)
    assert len(app.get("audio")) == 5
    app.text_input(key="browse_text").set_value("dog").run()
    assert _shown(app) == ["c0"]  # "Dogs" in c3 is another word
    app.text_input(key="browse_text").set_value("").run()
    app.multiselect(key="browse_domains").set_value(["environment"]).run()
    assert _shown(app) == ["c0", "c3", "c4"]
    app.multiselect(key="browse_tags").set_value(["dog"]).run()
    assert _shown(app) == ["c0", "c3"]
    assert any("**2 clips match**" in m.value for m in app.markdown)  # the total, not only this page
    app.text_input(key="browse_text").set_value("100% 'quoted' _text_").run()
    assert not app.exception, app.exception
    assert _shown(app) == []  # c4 is not tagged dog
    app.multiselect(key="browse_tags").set_value([]).run()
    assert _shown(app) == ["c4"]  # SQL metacharacters are literal text


def test_add_a_tag_to_one_clip(corpus_db, monkeypatch):
    app = _browse(corpus_db, monkeypatch)
    app.text_input(key="add_1").set_value("calm").run()
    app.button(key="add_button_1").click().run()
    assert not app.exception, app.exception
    con = store.connect(corpus_db)
    assert [(r.action, r.payload) for r in list_decisions(con)] == [("clip_add", {"clip_id": "c0", "tag": "calm"})]
    con.close()


def test_the_model_disputes_this_tag(corpus_db, monkeypatch):
    from curation.audit.model_audit import OosScores, store_audit_of

    app = _browse(corpus_db, monkeypatch)
    assert app.selectbox(key="browse_disputed_run").disabled  # no run has a model audit yet
    labels = ["dog", "bark", "music", "piano", "speech", "male", "rain"]
    asserted = {"c0": {"dog", "bark"}, "c1": {"music", "piano"}, "c2": {"speech", "male"}, "c3": {"dog"},
                "c4": {"rain"}}
    clip_ids = list(asserted)
    targets = np.array([[tag in asserted[c] for tag in labels] for c in clip_ids])
    scores = np.where(targets, 0.9, 0.03)
    scores[3, 0] = 0.01     # "dog" asserted on c3, the model finds it unlikely: a suspected hallucination
    scores[0, 6] = 0.97     # "rain" left out of c0, the model finds it likely: a suspected miss
    con = store.connect(corpus_db)
    store_audit_of(con, "r1", OosScores(clip_ids, labels, scores, targets, np.zeros(5, int),
                                        {"folds": 2, "features": "fbank", "method": "test"}))
    con.close()
    app = _browse(corpus_db, monkeypatch)
    app.selectbox(key="browse_disputed_run").set_value("r1").run()
    assert not app.exception, app.exception
    assert _shown(app) == ["c0", "c3"]
    assert any("**2 clips match**" in m.value for m in app.markdown)
    disputes = [m.value for m in app.markdown if m.value.startswith("Model (run r1) disputes:")]
    assert len(disputes) == 2
    assert "**rain**: suspected miss" in disputes[0] and "score 0.97" in disputes[0]
    assert "**dog**: suspected hallucination" in disputes[1] and "score 0.99" in disputes[1]
    app.number_input(key="browse_disputed_min").set_value(0.98).run()
    assert _shown(app) == ["c3"]    # the miss on c0 (0.97) is below the score asked for
    app.number_input(key="browse_disputed_min").set_value(0.5).run()
    assert _shown(app) == ["c0", "c3"]
    app.selectbox(key="browse_disputed_tag_r1").set_value("dog").run()
    assert _shown(app) == ["c3"]
    app.multiselect(key="browse_tags").set_value(["music"]).run()
    assert _shown(app) == []   # combined with the other filters
    app.multiselect(key="browse_tags").set_value([]).run()
    app.selectbox(key="browse_disputed_run").set_value(None).run()
    assert _shown(app) == ["c0", "c1", "c2", "c3", "c4"]
    assert not [m for m in app.markdown if m.value.startswith("Model (run")]
