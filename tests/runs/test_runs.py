"""Importing run directories (incremental, idempotent, half-written lines), and the numbers behind the Compare
and Vocabulary size views."""
from __future__ import annotations

import json

import pytest
from helpers import make_cut, write_jsonl
from run_dirs import append_lines, finish, probe_line, train_line, val_line, write_config, write_tag_ap

from curation import store
from curation.ingest.ingest import ingest_path
from curation.runs.compare import (
    compare_runs,
    config_diff,
    coverage_at,
    k_groups,
    k_metric_frame,
    lineage,
    probe_table,
    tag_ap_frame,
)
from curation.runs.follow import refresh_runs
from curation.runs.importer import import_run_dir
from curation.runs.launch import sweep_ks
from curation.runs.state import RunImportError
from curation.store import runs as store_runs
from curation.vocabulary.export import export_vocabulary


def _metric_rows(con, run_id):
    return con.execute("SELECT step, kind, loss, val_map FROM run_metrics WHERE run_id = ? ORDER BY kind, step",
                       [run_id]).fetchall()


def test_a_half_written_last_line_waits_for_the_next_import(con, tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    write_config(run_dir)
    metrics = run_dir / "metrics.jsonl"
    append_lines(metrics, [train_line(0, 2.0), train_line(10, 1.5), val_line(10, 0.25)],
                 partial='{"kind": "train", "step": 20, "lo')
    first = import_run_dir(con, run_dir)
    assert first.created and first.metric_lines == 3 and first.pending_bytes > 0
    assert [(s, k) for s, k, _, _ in _metric_rows(con, "r1")] == [(0, "train"), (10, "train"), (10, "val")]
    # The writer finishes the line and appends another one.
    with open(metrics, "a", encoding="utf-8") as handle:
        handle.write('ss": 1.25, "lr": 0.001}\n' + json.dumps(train_line(30, 1.0)) + "\n")
    second = import_run_dir(con, run_dir)
    assert second.metric_lines == 2 and second.pending_bytes == 0 and not second.created
    rows = _metric_rows(con, "r1")
    assert [(s, k, loss) for s, k, loss, _ in rows if k == "train"] == [(0, "train", 2.0), (10, "train", 1.5),
                                                                      (20, "train", 1.25), (30, "train", 1.0)]
    # Nothing new: nothing read, nothing changed.
    assert import_run_dir(con, run_dir).metric_lines == 0
    assert _metric_rows(con, "r1") == rows
    run = store_runs.get_run(con, "r1")
    assert run["last_step"] == 30 and run["final_val_map"] == pytest.approx(0.25)
    assert run["backend"] == "external" and run["train_config"]["objective"] == "mtc"


def test_invalid_json_at_the_end_is_pending_but_in_the_middle_is_an_error_naming_the_line(con, tmp_path):
    run_dir = tmp_path / "r2"
    write_config(run_dir)
    metrics = run_dir / "metrics.jsonl"
    append_lines(metrics, [train_line(0)], partial='{"kind": "train", "step": 1, "loss": \n')
    summary = import_run_dir(con, run_dir)
    assert summary.metric_lines == 1 and summary.pending_bytes > 0
    append_lines(metrics, [train_line(2)])  # the broken line is now followed by a complete one: a real error
    with pytest.raises(RunImportError, match=r"metrics\.jsonl:2: expected one JSON object per line"):
        import_run_dir(con, run_dir)
    assert [s for s, *_ in _metric_rows(con, "r2")] == [0]  # the failed import wrote nothing


def test_reimporting_from_scratch_gives_the_same_tables(con, tmp_path):
    run_dir = tmp_path / "r3"
    write_config(run_dir)
    append_lines(run_dir / "metrics.jsonl", [train_line(s, 1.0 / (s + 1)) for s in range(50)] + [val_line(49, 0.4)])
    append_lines(run_dir / "results.jsonl", [probe_line("esc", "mean", 0.6), probe_line("esc", "attention", 0.7)])
    write_tag_ap(run_dir, 49, {"dog": 0.5, "rain": None}, {"dog": 4, "rain": 0})
    import_run_dir(con, run_dir)
    before = [con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in ("run_metrics", "probe_results",
                                                                                    "run_tag_ap")]
    con.execute("DELETE FROM run_files")  # forget every offset: the upserts alone must keep it idempotent
    import_run_dir(con, run_dir)
    after = [con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in ("run_metrics", "probe_results",
                                                                                   "run_tag_ap")]
    assert before == after
    assert len(before[0]) == 51 and len(before[1]) == 2
    tag_ap = store_runs.tag_ap_frame(con, "r3")
    assert tag_ap["tag"].tolist() == ["dog", "rain"] and tag_ap["ap"].iloc[0] == 0.5 and tag_ap["ap"].isna().iloc[1]
    assert tag_ap["positives"].tolist() == [4, 0] and set(tag_ap["step"]) == {49}


def test_a_resumed_run_that_logs_a_step_again_keeps_the_last_value(con, tmp_path):
    run_dir = tmp_path / "r4"
    write_config(run_dir)
    append_lines(run_dir / "metrics.jsonl", [train_line(0, 3.0), train_line(10, 2.0)])
    import_run_dir(con, run_dir)
    append_lines(run_dir / "metrics.jsonl", [train_line(10, 1.9), train_line(20, 1.5)])  # resumed from step 10
    import_run_dir(con, run_dir)
    assert [(s, loss) for s, _, loss, _ in _metric_rows(con, "r4")] == [(0, 3.0), (10, 1.9), (20, 1.5)]


def test_a_line_without_step_or_kind_is_named(con, tmp_path):
    run_dir = tmp_path / "r5"
    write_config(run_dir)
    append_lines(run_dir / "metrics.jsonl", [train_line(0), {"kind": "train", "loss": 1.0}, train_line(2)])
    with pytest.raises(RunImportError, match=r"metrics\.jsonl:2: expected \"step\""):
        import_run_dir(con, run_dir)


def test_a_directory_without_config_is_refused(con, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunImportError, match="config.json"):
        import_run_dir(con, tmp_path / "empty")


def test_an_imported_run_is_finished_once_finished_json_appears(con, tmp_path):
    run_dir = tmp_path / "r6"
    write_config(run_dir)
    append_lines(run_dir / "metrics.jsonl", [train_line(0), val_line(5, 0.3)])
    import_run_dir(con, run_dir)
    assert refresh_runs(con) == []  # still going
    append_lines(run_dir / "metrics.jsonl", [val_line(9, 0.35)])
    finish(run_dir, 9, 0.35)
    assert refresh_runs(con) == [("r6", "running", "finished")]
    run = store_runs.get_run(con, "r6")
    assert run["state"] == "finished" and run["last_step"] == 9 and run["final_val_map"] == pytest.approx(0.35)


def test_config_diff_shows_only_what_differs_and_the_probe_table_marks_the_best(con, tmp_path):
    for run_id, lr, objective, scores in (("a", 1e-3, "mtc", (0.6, 0.7)), ("b", 3e-4, "mtc", (0.8, 0.65)),
                                          ("c", 1e-3, "par", (0.5, 0.9))):
        run_dir = tmp_path / run_id
        write_config(run_dir, config={"lr": lr, "objective": objective})
        append_lines(run_dir / "results.jsonl", [probe_line("esc", "mean", scores[0]),
                                                 probe_line("esc", "attention", scores[1]),
                                                 probe_line("esc", "mean", 0.99, encoder="random_init")])
        import_run_dir(con, run_dir)
    comparison = compare_runs(con, ["a", "b", "c"])
    diff = comparison.config_diff
    assert set(diff.index) == {"objective", "train.lr", "train.objective"}
    assert diff.loc["train.lr"].tolist() == ["0.001", "0.0003", "0.001"]
    assert list(comparison.probe_table.columns) == ["esc / attention", "esc / mean"]
    assert comparison.best == {"esc / attention": "c", "esc / mean": "b"}  # the random_init 0.99 is a baseline
    assert set(comparison.baselines["encoder"]) == {"random_init"}
    assert config_diff(store_runs.runs_in(con, ["a"])).empty
    assert probe_table(comparison.baselines.iloc[0:0])[1] == {}


def test_sweep_ks_are_clipped_to_the_vocabulary_and_deduplicated():
    assert sweep_ks([800, 1000, 1500, 2000, 3000], 1200) == [800, 1000, 1200]
    assert sweep_ks([50, 5, 50], 40) == [5, 40]


@pytest.fixture
def corpus(con, tmp_path):
    cuts = [make_cut(f"c{i}", tags=[f"t{j}" for j in range(i % 7 + 1)], duration=2.0) for i in range(30)]
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
    return con


def test_runs_that_differ_only_in_k_form_a_group_with_their_metric_and_coverage(corpus, tmp_path):
    con = corpus
    for k, val_map in ((2, 0.30), (4, 0.45), (6, 0.40)):
        record = export_vocabulary(con, k=k, out_dir=tmp_path / f"export{k}", by="ana")
        run_dir = tmp_path / "runs" / f"k{k}"
        write_config(run_dir, export={"export_id": record.export_id, "k": k, "dir": str(tmp_path / f"export{k}")})
        append_lines(run_dir / "metrics.jsonl", [val_line(9, val_map)])
        append_lines(run_dir / "results.jsonl", [probe_line("esc", "mean", val_map + 0.1)])
        finish(run_dir, 9, val_map)
        import_run_dir(con, run_dir)
    # A run with another learning rate is not part of the K group.
    other = tmp_path / "runs" / "other"
    write_config(other, config={"lr": 0.01}, export={"export_id": 1, "k": 2})
    finish(other, 9, 0.9)
    import_run_dir(con, other)
    refresh_runs(con)
    groups = k_groups(con)
    assert len(groups) == 1 and sorted(groups[0].ks) == [2, 4, 6]
    frame = k_metric_frame(con, groups[0], "val mAP")
    assert frame[["k", "value"]].values.tolist() == [[2, 0.30], [4, 0.45], [6, 0.40]]
    probe = k_metric_frame(con, groups[0], "probe: esc / mean")
    assert probe["value"].round(2).tolist() == [0.4, 0.55, 0.5]
    coverage = coverage_at(con, groups[0].ks, groups[0].last_decision_ids[0])
    assert coverage[coverage["at_run_k"]]["k"].tolist() == [2, 4, 6]
    # t0 is on every clip but TF-IDF ranks it last (idf 0): coverage grows with K and reaches every clip.
    assert coverage["share_kept"].is_monotonic_increasing and coverage["share_kept"].iloc[-1] == 1.0
    assert coverage["share_kept"].iloc[0] < 1.0
    # Lineage: run -> export -> vocabulary version -> decisions.
    trace = lineage(con, "k4")
    assert trace.export["k"] == 4 and "export #2" in trace.describe()


def test_lineage_lists_only_the_decisions_the_export_included(corpus, tmp_path):
    from curation.vocabulary.decisions import Decision, record_decision

    con = corpus
    record_decision(con, Decision.merge(["t5", "t6"], into="t5"), by="ana")
    record = export_vocabulary(con, k=3, out_dir=tmp_path / "e", by="ana")
    record_decision(con, Decision.prune(["t4"]), by="ana")  # after the export: not part of its lineage
    run_dir = tmp_path / "runs" / "r"
    write_config(run_dir, export={"export_id": record.export_id, "k": 3})
    write_tag_ap(run_dir, 5, {"t0": 0.9, "t1": 0.4, "t5": 0.2}, {"t0": 3, "t1": 2, "t5": 1})
    import_run_dir(con, run_dir)
    trace = lineage(con, "r")
    assert trace.decisions["what"].tolist() == ["merge t5, t6 -> t5"]
    frame = tag_ap_frame(con, "r")
    df = dict(zip(frame["tag"], frame["df"]))
    # t1 is on every clip but those with i % 7 == 0 (5 of 30); t5 absorbed t6, both on clips with i % 7 >= 5.
    assert df == {"t0": 30, "t1": 25, "t5": 8}


def test_the_runs_table_lists_state_and_metrics(con, tmp_path):
    run_dir = tmp_path / "rr"
    write_config(run_dir)
    append_lines(run_dir / "metrics.jsonl", [train_line(3)])
    import_run_dir(con, run_dir)
    frame = store_runs.runs_frame(con)
    assert frame[["run_id", "state", "last_step"]].values.tolist() == [["rr", "running", 3]]
    assert store.schema_version(con) >= 9


def test_lines_outside_the_fast_reader_keep_extra_keys_and_turn_non_numbers_into_nulls(con, tmp_path):
    run_dir = tmp_path / "r7"
    write_config(run_dir)
    (run_dir / "metrics.jsonl").write_text(
        json.dumps(train_line(0, 2.0)) + "\n"
        + '{"kind": "train", "step": 1, "loss": NaN, "lr": 0.001, "tokens": 12}\n'
        + '{"kind": "train", "step": 2, "loss": Infinity, "lr": "warmup"}\n')
    assert import_run_dir(con, run_dir).metric_lines == 3
    rows = con.execute("SELECT step, loss, lr, extra FROM run_metrics WHERE run_id = 'r7' ORDER BY step").fetchall()
    assert rows[0][:3] == (0, 2.0, 1e-3)
    assert rows[1][1] is None and json.loads(rows[1][3]) == {"tokens": 12}
    assert rows[2][1] is None and rows[2][2] is None and rows[2][3] is None


def test_two_sessions_refreshing_the_same_run_at_once_import_it_once(con, tmp_path):
    import threading

    run_dir = tmp_path / "r8"
    write_config(run_dir)
    append_lines(run_dir / "metrics.jsonl", [train_line(0)])
    import_run_dir(con, run_dir)
    append_lines(run_dir / "metrics.jsonl", [train_line(s) for s in range(1, 2001)])
    errors = []
    start = threading.Barrier(4)

    def session():
        cursor = con.cursor()  # a cursor per thread, as the app's sessions have
        start.wait()
        try:
            refresh_runs(cursor)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=session) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert con.execute("SELECT count(*), max(step) FROM run_metrics WHERE run_id = 'r8'").fetchall() == [(2001, 2000)]


def test_per_tag_ap_is_set_against_audited_precision(corpus, tmp_path):
    from curation.audit.campaigns import create_campaign, next_item, submit

    con = corpus
    campaign_id = create_campaign(con, "pilot", sample_size=30, by="ana", annotators_per_clip=1, seed=0)
    while (item := next_item(con, campaign_id, "bo")) is not None:
        verdicts = {tag: ("wrong" if tag == "t2" else "unsure" if tag == "t3" else "correct") for tag in item.tags}
        submit(con, item, "bo", verdicts)
    record = export_vocabulary(con, k=4, out_dir=tmp_path / "e", by="ana")
    run_dir = tmp_path / "runs" / "audited"
    write_config(run_dir, export={"export_id": record.export_id, "k": 4})
    write_tag_ap(run_dir, 5, {"t1": 0.9, "t2": 0.3, "t3": 0.5}, {"t1": 3, "t2": 2, "t3": 2})
    import_run_dir(con, run_dir)
    frame = tag_ap_frame(con, "audited", campaign="pilot").set_index("tag")
    assert frame.loc["t1", "audit_precision"] == 1.0 and frame.loc["t2", "audit_precision"] == 0.0
    assert frame.loc["t1", "judged"] == 25  # t1 is on every clip with i % 7 >= 1
    assert frame.loc["t3", "judged"] == 0 and frame["audit_precision"].isna()["t3"]
