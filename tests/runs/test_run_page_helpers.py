"""Runs-page helpers: sweep defaults fitted to the vocabulary, the steps a run was launched for."""
from __future__ import annotations

from curation.runs.launch import default_sweep_ks, total_steps


def test_sweep_defaults_fit_the_vocabulary_size():
    assert default_sweep_ks(5000) == (800, 1000, 1500, 2000, 3000)
    assert default_sweep_ks(1600) == (800, 1000, 1500)
    assert default_sweep_ks(99) == (25, 50, 74, 99)  # not 800..3000, which would all clip to one run at K=99
    assert default_sweep_ks(3) == (1, 2, 3)


def test_total_steps_from_the_trainer_or_the_launch_config():
    assert total_steps({"train_config": {"steps": 400}, "config": {"steps": 100}}) == 400
    assert total_steps({"train_config": None, "config": {"steps": 100}}) == 100
    assert total_steps({"train_config": None, "config": {}}) is None


def test_archive_hides_a_finished_run_and_restore_brings_it_back(con):
    import pytest

    from curation.errors import UsageError
    from curation.runs.manage import archive_runs
    from curation.runs.state import RunError
    from curation.store import runs as store_runs

    store_runs.insert_run(con, {"run_id": "r1", "config": "{}", "backend": "local", "run_dir": "/runs/r1",
                                "state": "running"})
    with pytest.raises(UsageError, match="cancel it"):
        archive_runs(con, ["r1"], by="ana")
    store_runs.update_run(con, "r1", state="finished")
    with pytest.raises(RunError, match="no run 'nope'"):
        archive_runs(con, ["r1", "nope"], by="ana")  # an unknown id: nothing archived
    assert store_runs.runs_frame(con)["archived_at"].isna().all()
    assert archive_runs(con, ["r1"], by="ana") == 1
    assert store_runs.runs_frame(con)["archived_at"].notna().all()
    assert archive_runs(con, ["r1"], by="ana", archived=False) == 1
    assert store_runs.runs_frame(con)["archived_at"].isna().all()
