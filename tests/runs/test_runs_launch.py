"""Launching runs: the local backend (a real process group running a driver script, here with a trainer that
follows the run directory contract and is steered by the test), cancel, re-attach after a restart, and the
Slurm backend (the sbatch script for 2 nodes x 4 GPUs; fake sbatch/squeue/sacct/scancel on PATH drive the
states). The real trainer runs in tests/app/test_runs_page.py."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from helpers import make_cut, write_jsonl
from run_dirs import fake_training_workdir

from curation import store
from curation.ingest.ingest import ingest_path
from curation.runs import backends as launcher
from curation.runs.follow import cancel_run, refresh_runs
from curation.runs.launch import LaunchRequest, launch_runs
from curation.runs.state import RunError
from curation.store import runs as store_runs

DEADLINE_S = 60


@pytest.fixture
def corpus(con, tmp_path):
    cuts = [make_cut(f"c{i}", tags=[f"t{j}" for j in range(i % 4 + 1)], duration=2.0) for i in range(12)]
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
    return con


def _request(tmp_path: Path, mode: str, **overrides) -> LaunchRequest:
    fields = dict(objective="mtc", size="tiny", steps=5, ks=(3,), backend="local", by="ana",
                  env={"FAKE_MODE": mode}, workdir=str(fake_training_workdir(tmp_path / "fakeproj")))
    fields.update(overrides)
    return LaunchRequest(**fields)


def _launch(con, tmp_path, mode, **overrides) -> dict:
    [run_id] = launch_runs(con, _request(tmp_path, mode, **overrides), runs_root=tmp_path / "runs",
                           exports_root=tmp_path / "exports")
    return store_runs.get_run(con, run_id)


def _wait_driver(run: dict) -> None:
    """Wait for the job's driver process to end (it is this test process's child)."""
    launcher._children[int(run["backend_id"])].wait(timeout=DEADLINE_S)


def _wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _gone(pid: int) -> bool:
    stat = launcher._proc_stat(pid)
    return stat is None or stat[0] in ("Z", "X")


def test_a_local_run_trains_then_probes_and_is_imported(corpus, tmp_path):
    task = tmp_path / "esc_task.csv"
    task.write_text("audio_path,label\na.wav,dog\n")
    run = _launch(corpus, tmp_path, "finish", probe_tasks=(str(task),), env={"FAKE_MODE": "finish", "MY_VAR": "x y"})
    assert run["state"] == "running" and run["backend"] == "local"
    assert run["command"].split()[1:4] == ["-m", "training.pretrain", "--export"]
    assert run["env"] == {"FAKE_MODE": "finish", "MY_VAR": "x y"}
    assert run["export_id"] == 1 and run["k"] == 3 and run["created_by"] == "ana"
    _wait_driver(run)
    assert refresh_runs(corpus) == [(run["run_id"], "running", "finished")]
    run = store_runs.get_run(corpus, run["run_id"])
    assert run["state"] == "finished" and run["last_step"] == 4 and run["ended_at"] is not None
    assert len(store_runs.metrics_frame(corpus, [run["run_id"]])) == 5
    probes = store_runs.probe_frame(corpus, [run["run_id"]])
    assert sorted(probes["pooling"]) == ["attention", "mean"] and set(probes["task"]) == {"esc_task"}
    log = (Path(run["run_dir"]) / "train.log").read_text()
    assert "fake trainer starting" in log and "probe:" in log


def test_a_crashing_run_is_failed_with_the_last_lines_of_its_log(corpus, tmp_path):
    run = _launch(corpus, tmp_path, "crash")
    _wait_driver(run)
    refresh_runs(corpus)
    run = store_runs.get_run(corpus, run["run_id"])
    assert run["state"] == "failed"
    assert "train exited with status 3" in run["message"]
    assert "the fake trainer crashed on purpose" in run["message"]


def test_cancel_ends_the_whole_process_group(corpus, tmp_path):
    run = _launch(corpus, tmp_path, "wait")
    pid_file = Path(run["run_dir"]) / "trainer.pid"
    _wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), "the trainer to start")
    trainer_pid = int(pid_file.read_text())
    assert not _gone(trainer_pid)
    cancel_run(corpus, run["run_id"], by="ana")
    run = store_runs.get_run(corpus, run["run_id"])
    assert run["state"] == "cancelled" and run["message"] == "cancelled by ana"
    _wait_driver(run)
    _wait_for(lambda: _gone(trainer_pid), "the trainer (a grandchild in the same group) to end")
    assert refresh_runs(corpus) == []  # a cancelled run stays cancelled
    with pytest.raises(RunError, match="already cancelled"):
        cancel_run(corpus, run["run_id"])


def test_a_restarted_app_reattaches_to_live_runs_and_marks_dead_ones_failed(db_path, tmp_path):
    con = store.connect(db_path)
    cuts = [make_cut(f"c{i}", tags=["a", "b", f"t{i % 3}"], duration=2.0) for i in range(6)]
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
    alive = _launch(con, tmp_path, "wait")
    doomed = _launch(con, tmp_path, "wait")
    for run in (alive, doomed):
        pid_file = Path(run["run_dir"]) / "trainer.pid"
        _wait_for(lambda: pid_file.exists() and (Path(run["run_dir"]) / "metrics.jsonl").exists(), "the trainer")
    # The app stops: its connection and its Popen objects are gone; one job is killed meanwhile.
    con.close()
    children = {pid: launcher._children.pop(pid) for pid in (int(alive["backend_id"]), int(doomed["backend_id"]))}
    os.killpg(int(doomed["backend_meta"]["pgid"]), signal.SIGKILL)
    children[int(doomed["backend_id"])].wait(timeout=DEADLINE_S)
    # A new app process starts: the same refresh re-attaches.
    con = store.connect(db_path)
    try:
        changes = refresh_runs(con)
        assert changes == [(doomed["run_id"], "running", "failed")]
        dead = store_runs.get_run(con, doomed["run_id"])
        assert "without writing job_exit.json" in dead["message"]
        assert "fake trainer starting" in dead["message"]  # the log's last lines
        assert store_runs.get_run(con, alive["run_id"])["state"] == "running"
        # A pid that now belongs to another process (other start time) is not the job.
        assert launcher.local_alive(alive["backend_meta"])
        assert not launcher.local_alive({**alive["backend_meta"], "start_ticks": alive["backend_meta"]["start_ticks"] + 1})
        (Path(alive["run_dir"]) / "release").touch()
        children[int(alive["backend_id"])].wait(timeout=DEADLINE_S)
        assert refresh_runs(con) == [(alive["run_id"], "running", "finished")]
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------- Slurm

def test_the_sbatch_script_for_2_nodes_x_4_gpus_has_what_torchrun_needs(tmp_path):
    job = launcher.JobSpec(export_dir="/data/exports/k800", run_dir=tmp_path / "runs" / "r1", objective="mtc+par",
                           size="base", steps=20000, device="cuda", gpus=4, nodes=2, batch_seconds=320, lr=5e-4,
                           probe_tasks=("/tasks/esc.csv",), env={"NCCL_DEBUG": "WARN"}, partition="gpu",
                           time_limit="24:00:00")
    script = launcher.sbatch_script(job)
    header = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert {"#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=4",
            "#SBATCH --partition=gpu", "#SBATCH --time=24:00:00"} <= set(header)
    assert 'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)' in script
    assert "export NCCL_DEBUG=WARN" in script
    srun = next(line for line in script.splitlines() if line.startswith("srun "))
    # As the batch shell tokenises it: the torchrun line reaches each node unexpanded, so that every node
    # substitutes its own SLURM_NODEID (expanding it in the batch shell would give every node rank 0).
    words = shlex.split(srun)
    assert words[:4] == ["srun", "--kill-on-bad-exit=1", "bash", "-c"]
    inner = shlex.split(words[4])
    assert inner[0].endswith("torchrun")
    for expected in ("--nnodes=2", "--nproc_per_node=4", "--node_rank=$SLURM_NODEID", "--rdzv_id=$SLURM_JOB_ID",
                     "--rdzv_backend=c10d", "--rdzv_endpoint=$MASTER_ADDR:$MASTER_PORT"):
        assert expected in inner
    module = inner.index("-m")
    assert inner[module + 1] == "training.pretrain"
    args = inner[module + 2:]
    assert args[args.index("--objective") + 1] == "mtc+par" and args[args.index("--device") + 1] == "cuda"
    assert "max_batch_s=320" in args and "lr=0.0005" in args
    assert "--task /tasks/esc.csv" in script
    # Each node expands the line itself: run the srun argument the way one node's bash would.
    expanded = subprocess.run(["bash", "-c", "printf '%s\\n' " + words[4].replace(inner[0], "", 1)],
                              env={"SLURM_NODEID": "1", "SLURM_JOB_ID": "4242", "MASTER_ADDR": "node07",
                                   "MASTER_PORT": "22242", "PATH": os.environ["PATH"]},
                              capture_output=True, text=True, check=True).stdout.split()
    assert "--node_rank=1" in expanded and "--rdzv_endpoint=node07:22242" in expanded
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_with_audit_folds_both_scripts_score_for_the_model_audit_after_the_probes(tmp_path):
    job = launcher.JobSpec(export_dir="/data/exports/k800", run_dir=tmp_path / "runs" / "r1", device="cuda", gpus=2,
                           nodes=2, probe_tasks=("/tasks/esc.csv",), audit_folds=5)
    run_dir = str((tmp_path / "runs" / "r1").resolve())
    for script in (launcher.driver_script(job), launcher.sbatch_script(job)):
        lines = script.splitlines()
        probe = next(i for i, line in enumerate(lines) if "-m training.probe" in line and not line.startswith("printf"))
        score = next(i for i, line in enumerate(lines) if "-m training.oos_scores" in line
                     and not line.startswith("printf"))
        assert probe < score < lines.index("write_exit done 0")
        words = shlex.split(lines[score].split(" >> ")[0])
        assert words[1:] == ["-m", "training.oos_scores", "--run", run_dir, "--folds", "5", "--device", "cuda"]
        assert lines[score + 2].startswith('if [ "$rc" -ne 0 ]; then write_exit "model-audit scores"')
        assert "model-audit scores (5 folds)" in script
        assert subprocess.run(["bash", "-n"], input=script, text=True, check=False).returncode == 0
    assert "training.oos_scores" not in launcher.driver_script(launcher.JobSpec(export_dir="/x", run_dir=tmp_path))


def test_sbatch_job_ids_are_parsed_from_every_output_form():
    assert launcher.parse_sbatch_job_id("4242\n") == "4242"
    assert launcher.parse_sbatch_job_id("4242;cluster-a\n") == "4242"
    assert launcher.parse_sbatch_job_id("Submitted batch job 77\n") == "77"
    with pytest.raises(launcher.LaunchError, match="expected a job id"):
        launcher.parse_sbatch_job_id("sbatch: error: invalid partition")


def _fake_slurm(bin_dir: Path, state_file: Path, calls: Path) -> None:
    """sbatch/squeue/sacct/scancel that read the job's state from ``state_file`` and log their calls."""
    bin_dir.mkdir()
    tools = {
        "sbatch": f'echo "sbatch $*" >> {calls}\necho "4242;testcluster"',
        "squeue": f'echo "squeue $*" >> {calls}\nstate=$(cat {state_file})\n'
                  'case "$state" in PENDING|RUNNING) echo "$state";; esac',
        "sacct": f'echo "sacct $*" >> {calls}\nstate=$(cat {state_file})\n'
                 'case "$state" in COMPLETED) echo "COMPLETED|0:0";; FAILED) echo "FAILED|1:0";; '
                 'CANCELLED) echo "CANCELLED by 1000|0:15";; esac',
        "scancel": f'echo "scancel $*" >> {calls}\necho CANCELLED > {state_file}',
    }
    for name, body in tools.items():
        path = bin_dir / name
        path.write_text("#!/usr/bin/env bash\n" + textwrap.dedent(body) + "\n")
        path.chmod(0o755)


def test_fake_slurm_drives_queued_running_finished(corpus, tmp_path, monkeypatch):
    state_file, calls = tmp_path / "slurm_state", tmp_path / "calls.log"
    _fake_slurm(tmp_path / "bin", state_file, calls)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    state_file.write_text("PENDING")
    run = _launch(corpus, tmp_path, "finish", backend="slurm", device="cuda", gpus=4, nodes=2)
    assert run["state"] == "queued" and run["backend_id"] == "4242"
    assert f"sbatch --parsable {run['run_dir']}/job.sbatch" in calls.read_text()
    assert refresh_runs(corpus) == []
    state_file.write_text("RUNNING")
    assert refresh_runs(corpus) == [(run["run_id"], "queued", "running")]
    assert store_runs.get_run(corpus, run["run_id"])["started_at"] is not None
    state_file.write_text("COMPLETED")  # squeue no longer lists it; sacct knows how it ended
    assert refresh_runs(corpus) == [(run["run_id"], "running", "finished")]
    assert "sacct -n -X -P -j 4242 -o State,ExitCode" in calls.read_text()
    from curation.runs.compare import run_detail

    script = run_detail(corpus, run["run_id"]).script
    assert "#SBATCH --nodes=2" in script and "--rdzv_backend=c10d" in script


def test_fake_slurm_cancel_and_failure(corpus, tmp_path, monkeypatch):
    state_file, calls = tmp_path / "slurm_state", tmp_path / "calls.log"
    _fake_slurm(tmp_path / "bin", state_file, calls)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    state_file.write_text("RUNNING")
    cancelled = _launch(corpus, tmp_path, "finish", backend="slurm")
    cancel_run(corpus, cancelled["run_id"], by="ana")
    assert "scancel 4242" in calls.read_text()
    assert store_runs.get_run(corpus, cancelled["run_id"])["state"] == "cancelled"
    state_file.write_text("RUNNING")
    failing = _launch(corpus, tmp_path, "finish", backend="slurm")
    refresh_runs(corpus)
    Path(failing["run_dir"], "train.log").write_text("torch.OutOfMemoryError: CUDA out of memory\n")
    state_file.write_text("FAILED")
    assert refresh_runs(corpus) == [(failing["run_id"], "running", "failed")]
    message = store_runs.get_run(corpus, failing["run_id"])["message"]
    assert "FAILED (exit 1:0)" in message and "CUDA out of memory" in message


def test_without_sbatch_the_script_is_written_and_the_run_says_how_to_submit(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    run = _launch(corpus, tmp_path, "finish", backend="slurm")
    assert run["state"] == "queued" and run["backend_id"] is None
    assert "sbatch is not on PATH" in run["message"] and (Path(run["run_dir"]) / "job.sbatch").exists()


def test_a_signed_in_curator_may_not_launch_runs_and_nothing_is_written(corpus, tmp_path):
    from curation.admin.permissions import Actor, PermissionDeniedError, acting_as

    with acting_as(Actor("bo", "curator", signed_in=True)):
        with pytest.raises(PermissionDeniedError, match="may not runs"):
            launch_runs(corpus, _request(tmp_path, "finish"), runs_root=tmp_path / "runs",
                        exports_root=tmp_path / "exports")
    assert store_runs.runs_frame(corpus).empty and not (tmp_path / "runs").exists()
    with acting_as(Actor("al", "admin", signed_in=True)):
        run = _launch(corpus, tmp_path, "finish", by=None)
    assert run["created_by"] == "al"
    _wait_driver(run)


def test_runs_and_exports_go_beside_the_database_they_were_launched_on(tmp_path, monkeypatch):
    from curation.runs.launch import default_exports_root, default_runs_root

    monkeypatch.setenv("UTS_DB", str(tmp_path / "default" / "uts.duckdb"))  # another database is the default
    monkeypatch.delenv("UTS_RUNS_DIR", raising=False)
    monkeypatch.delenv("UTS_EXPORTS_DIR", raising=False)
    elsewhere = tmp_path / "elsewhere" / "x.duckdb"
    con = store.connect(elsewhere)
    try:
        assert default_runs_root(con) == elsewhere.parent.resolve() / "runs"
        assert default_exports_root(con) == elsewhere.parent.resolve() / "exports"
        monkeypatch.setenv("UTS_RUNS_DIR", str(tmp_path / "chosen"))
        assert default_runs_root(con) == tmp_path / "chosen"
    finally:
        con.close()
