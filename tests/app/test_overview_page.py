"""The Overview page under Streamlit's AppTest: renders any ingested corpus with its figures, and an empty one."""
from __future__ import annotations

from helpers import make_cut, open_app_page, write_jsonl

from curation import store
from curation.ingest.ingest import ingest_path


def _run_app(db_path, monkeypatch):
    return open_app_page(db_path, monkeypatch)


def test_overview_shows_the_corpus_figures(db_path, tmp_path, monkeypatch):
    con = store.connect(db_path)
    cuts = [make_cut(f"m{i}", domain="music", tags=("music", "drums", f"t{i}"), duration=4.0) for i in range(6)]
    cuts += [make_cut(f"s{i}", domain="speech", tags=("speech", "male"), duration=2.0) for i in range(3)]
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
    con.close()
    app = _run_app(db_path, monkeypatch)
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Clips"] == "9"
    assert metrics["Captions"] == "18"
    assert metrics["Distinct raw tags"] == str(len({"music", "drums", "speech", "male"} | {f"t{i}" for i in range(6)}))
    assert metrics["Tag rows"] == str(6 * 3 + 3 * 2)
    assert metrics["Hours of audio"] == f"{(6 * 4 + 3 * 2) / 3600:,.2f}"
    assert len(app.get("plotly_chart")) == 5
    history = app.dataframe[0].value
    assert list(history["clips"]) == [9]


def test_overview_on_an_empty_database_says_how_to_start(db_path, monkeypatch):
    app = _run_app(db_path, monkeypatch)
    assert "python -m curation demo" in app.info[0].value
    assert not app.metric
