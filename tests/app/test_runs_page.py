"""The Runs and Compare pages under Streamlit's AppTest: a tiny CPU run launched from the page with the real
trainer (export now at K, train, finish, curves), cancelling a running one, and the Compare / Vocabulary size
views over imported run directories."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import open_app_page
from run_dirs import append_lines, finish, probe_line, val_line, write_config

from curation import store
from curation.demo.corpus import build_and_ingest_demo
from curation.runs import backends as launcher
from curation.runs.importer import import_run_dir
from curation.store import runs as store_runs
from curation.vocabulary.export import export_vocabulary

TRAINING_SETTINGS = "num_workers=0\nval_every=2\nlog_every=1\nval_fraction=0.1"


@pytest.fixture
def demo_db(db_path, tmp_path):
    con = store.connect(db_path)
    build_and_ingest_demo(con, tmp_path / "demo", n_clips=40, seed=0)
    con.close()
    return db_path


def _launch_from_page(app, *, k: int, steps: int, audit_folds: int = 0):
    app.radio(key="launch_source").set_value("export now at K").run()
    app.number_input(key="launch_k").set_value(k)
    app.number_input(key="launch_steps").set_value(steps)
    app.number_input(key="launch_audit_folds").set_value(audit_folds)
    app.text_area(key="launch_set").set_value(TRAINING_SETTINGS)
    app.button(key="launch_button").click().run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    return app


def _chart_titles(app) -> list[str]:
    titles = []
    for chart in app.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        title = spec.get("layout", {}).get("title", {})
        titles.append(title.get("text") if isinstance(title, dict) else title)
    return titles


def _values(array) -> list:
    """A plotly array as JSON: a plain list, or a typed array ({"dtype", "bdata"} in base64)."""
    if isinstance(array, dict):
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def _frame_with(app, column: str):
    """The first dataframe on the page with this column (AppTest does not expose dataframe keys)."""
    for frame in app.dataframe:
        if column in frame.value.columns:
            return frame.value
    raise AssertionError(f"no dataframe with a column {column!r}: {[list(f.value.columns) for f in app.dataframe]}")


def _metric(app, label: str) -> str:
    return next(m.value for m in app.metric if m.label == label)


def test_a_tiny_cpu_run_launched_from_the_page_finishes_and_its_curve_appears(demo_db, monkeypatch):
    """... and, launched with model-audit folds, its job scores the clips out of sample, so that the page's
    model audit button only stores them."""
    app = open_app_page(demo_db, monkeypatch, "views/runs.py", name="ana")
    assert "No runs yet" in app.info[0].value
    _launch_from_page(app, k=20, steps=3, audit_folds=3)
    assert "Launched 1 run" in app.success[0].value
    con = store.connect(demo_db)  # same process: DuckDB shares the app's database instance
    try:
        [run] = store_runs.runs_in(con, store_runs.runs_frame(con)["run_id"].tolist())
    finally:
        con.close()
    assert run["k"] == 20 and run["created_by"] == "ana" and run["backend"] == "local"
    assert "--set num_workers=0" in run["command"] and "training.pretrain" in run["command"]
    # Wait for the job itself (a child of this process), not for a guessed time.
    launcher._children[int(run["backend_id"])].wait(timeout=600)
    app.run()
    assert not app.exception, app.exception
    assert _metric(app, "State") == "finished", app.metric
    assert _metric(app, "Step") == "3"
    titles = _chart_titles(app)
    assert "Training loss" in titles and "Validation mAP" in titles
    loss = json.loads(app.get("plotly_chart")[titles.index("Training loss")].proto.spec)["data"][0]
    assert _values(loss["x"]) == [1, 2, 3]
    assert any(t and t.startswith("AP vs tag frequency") for t in titles)
    assert any("export #1 (K=20" in m.value for m in app.markdown)
    assert run["config"]["audit_folds"] == 3 and "training.oos_scores" in (Path(run["run_dir"]) / "job.sh").read_text()
    assert any("The job wrote its out-of-sample scores (3 folds)" in c.value for c in app.caption), \
        [c.value for c in app.caption]
    app.button(key="model_audit_button").click().run()
    assert not app.exception and not app.error, (app.exception, [e.value for e in app.error])
    flashed = [s.value.replace("\\", "") for s in app.success]   # the flash escapes markdown
    assert any("(the job's scores reused)" in text for text in flashed), flashed
    assert any("Audited " in m.value and "the model disputes" in m.value for m in app.markdown)


def test_cancel_from_the_page_ends_the_run(demo_db, monkeypatch):
    app = open_app_page(demo_db, monkeypatch, "views/runs.py", name="ana")
    _launch_from_page(app, k=10, steps=100_000)
    assert _metric(app, "State") == "running"
    app.button(key="cancel_button").click().run()
    assert not app.exception, app.exception
    assert _metric(app, "State") == "cancelled"
    con = store.connect(demo_db)
    try:
        [run_id] = store_runs.runs_frame(con)["run_id"].tolist()
        run = store_runs.get_run(con, run_id)
    finally:
        con.close()
    assert run["state"] == "cancelled" and run["message"] == "cancelled by ana"
    assert launcher._children[int(run["backend_id"])].wait(timeout=60) != 0  # ended by the signal


def _imported_runs(db_path: Path, tmp_path: Path) -> None:
    con = store.connect(db_path)
    try:
        for k, val_map, lr in ((5, 0.30, 1e-3), (10, 0.42, 1e-3), (20, 0.38, 1e-3), (10, 0.50, 3e-4)):
            record = export_vocabulary(con, k=k, out_dir=tmp_path / f"export{k}", by="ana")
            run_dir = tmp_path / "runs" / f"k{k}-lr{lr:g}"
            write_config(run_dir, config={"lr": lr}, export={"export_id": record.export_id, "k": k})
            append_lines(run_dir / "metrics.jsonl", [val_line(9, val_map)])
            append_lines(run_dir / "results.jsonl", [probe_line("esc", "mean", val_map + 0.2),
                                                     probe_line("esc", "attention", val_map + 0.25)])
            finish(run_dir, 9, val_map)
            import_run_dir(con, run_dir)
    finally:
        con.close()


def test_compare_shows_differing_settings_and_the_best_probe_per_column(demo_db, tmp_path, monkeypatch):
    _imported_runs(demo_db, tmp_path)
    app = open_app_page(demo_db, monkeypatch, "views/compare.py", name="ana")
    app.multiselect(key="compare_runs").set_value(["k10-lr0.001", "k10-lr0.0003"]).run()
    assert not app.exception, app.exception
    diff = _frame_with(app, "k10-lr0.0003")
    # Same K and settings; two exports of the same vocabulary, and another learning rate.
    assert diff.to_dict("index") == {"export_id": {"k10-lr0.001": "2", "k10-lr0.0003": "4"},
                                     "train.lr": {"k10-lr0.001": "0.001", "k10-lr0.0003": "0.0003"}}
    probes = _frame_with(app, "esc / mean")
    assert list(probes.columns) == ["esc / attention", "esc / mean"]
    assert any("esc / mean: **k10-lr0.0003**" in c.value for c in app.caption)


def test_the_vocabulary_size_view_plots_the_metric_against_k_beside_coverage(demo_db, tmp_path, monkeypatch):
    _imported_runs(demo_db, tmp_path)
    app = open_app_page(demo_db, monkeypatch, "views/compare.py", name="ana")
    table = _frame_with(app, "share_kept")
    assert table["k"].tolist() == [5, 10, 20] and table["value"].tolist() == [0.30, 0.42, 0.38]
    assert table["share_kept"].is_monotonic_increasing
    app.selectbox(key="k_metric").set_value("probe: esc / attention").run()
    table = _frame_with(app, "share_kept")
    assert table["value"].round(2).tolist() == [0.55, 0.67, 0.63]


def test_the_runs_page_shows_an_imported_run_with_its_lineage(demo_db, tmp_path, monkeypatch):
    _imported_runs(demo_db, tmp_path)
    app = open_app_page(demo_db, monkeypatch, "views/runs.py", name="ana")
    assert len(_frame_with(app, "final_val_map")) == 4
    app.selectbox(key="run_pick").set_value("k20-lr0.001").run()
    assert _metric(app, "State") == "finished" and _metric(app, "K") == "20"
    assert any("export #3 (K=20" in m.value for m in app.markdown)
    assert _frame_with(app, "pooling")["mean"].round(2).tolist() == [0.63, 0.58]


def test_a_sweep_from_the_page_makes_one_export_and_one_run_per_k(demo_db, monkeypatch):
    from curation.runs.compare import config_diff
    from curation.runs.follow import cancel_run

    app = open_app_page(demo_db, monkeypatch, "views/runs.py", name="ana")
    app.radio(key="launch_source").set_value("sweep K").run()
    app.text_input(key="launch_ks").set_value("5, 10, 100000")
    app.number_input(key="launch_steps").set_value(100_000)
    app.button(key="launch_button").click().run()
    assert not app.exception and not app.error, (app.exception, [e.value for e in app.error])
    con = store.connect(demo_db)
    try:
        runs = store_runs.runs_in(con, store_runs.runs_frame(con)["run_id"].tolist())
        n_tags = int(store_runs.exports_frame(con)["vocabulary_size"].max())
        for run in runs:  # the sweep's settings were checked; its jobs need not train here
            cancel_run(con, run["run_id"], by="ana")
    finally:
        con.close()
    assert sorted(r["k"] for r in runs) == [5, 10, n_tags]  # 100000 clipped to the vocabulary size
    assert len({r["export_id"] for r in runs}) == 3 and len({r["sweep_id"] for r in runs}) == 1
    assert set(config_diff(runs).index) == {"export_id", "k"}  # everything else equal
    for run in runs:
        launcher._children[int(run["backend_id"])].wait(timeout=60)


def test_both_pages_render_on_an_empty_database(db_path, monkeypatch):
    app = open_app_page(db_path, monkeypatch, "views/runs.py", name="ana")
    assert "No runs yet" in app.info[0].value
    app.button(key="launch_button").click().run()
    assert not app.exception
    assert "no tags" in app.error[0].value  # export now at K on an empty corpus says why it cannot
    app = open_app_page(db_path, monkeypatch, "views/compare.py", name="ana")
    assert "No runs yet" in app.info[0].value
