"""Launching training runs: one run on an export, or a sweep over K (one export and one run per K).

Place in the flow: export -> (launch here; ``curation/runs/backends.py`` starts the job) -> run directory written
by ``training`` -> follow (curation/runs/follow.py) -> import (curation/runs/importer.py) -> compare. Every run
names its parent export, which names the vocabulary version (last decision included, K).

Example::

    ids = launch_runs(con, LaunchRequest(ks=(800, 1000), objective="mtc", size="tiny", steps=200, by="ana"),
                      runs_root=Path("data/runs"), exports_root=Path("data/exports"))
    refresh_runs(con)              # poll backends, import what the runs wrote; call it as often as you like
    compare_runs(con, ids).probe_table
"""
from __future__ import annotations

import secrets
import sys
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import duckdb

from curation import settings, store
from curation.errors import UsageError
from curation.runs import backends as launcher
from curation.runs.state import RUN_WRITE_LOCK
from curation.store import runs as store_runs

SWEEP_KS = (800, 1000, 1500, 2000, 3000)


def _beside_database(con: duckdb.DuckDBPyConnection) -> Path:
    # The folder of the file this connection has open, not of $UTS_DB: `runs launch --db /elsewhere/x.duckdb`
    # must keep its runs and exports beside /elsewhere/x.duckdb.
    path = store.database_path(con)
    return path.parent if path is not None else store.resolve_db_path().resolve().parent


def default_runs_root(con: duckdb.DuckDBPyConnection) -> Path:
    """$UTS_RUNS_DIR, else ``runs/`` beside the database ``con`` has open."""
    return Path(settings.RUNS_DIR.value() or _beside_database(con) / "runs")


def default_exports_root(con: duckdb.DuckDBPyConnection) -> Path:
    """$UTS_EXPORTS_DIR, else ``exports/`` beside the database ``con`` has open."""
    return Path(settings.EXPORTS_DIR.value() or _beside_database(con) / "exports")


def parse_key_values(text: str, what: str) -> dict[str, str]:
    """``KEY=VALUE`` per line (blank lines and # comments ignored) -> dict; a bad line is named."""
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{what}, line {number}: expected KEY=VALUE, found {line!r}")
        out[key.strip()] = value.strip()
    return out


def sweep_ks(requested: Sequence[int], vocabulary_size: int) -> list[int]:
    """The requested K clipped to the vocabulary size, deduplicated, ascending."""
    if vocabulary_size < 1:
        raise UsageError("the corpus has no tags: there is no vocabulary to sweep")
    ks = sorted({max(1, min(int(k), vocabulary_size)) for k in requested})
    if not ks:
        raise UsageError("no K given: pick at least one vocabulary size")
    return ks


@dataclass(frozen=True)
class LaunchRequest:
    """What the launch form (or ``runs launch``) asks for. Either ``export_id`` (an existing export) or ``ks``
    (export the current vocabulary now at each K: one export and one run per K, everything else equal)."""

    objective: str = "mtc"
    size: str = "tiny"
    steps: int = 100
    device: str = "cpu"
    gpus: int = 1  # processes per node (GPUs); > 1 runs torchrun
    nodes: int = 1  # Slurm only
    batch_seconds: float | None = None  # audio seconds per batch per process (TrainConfig.max_batch_s)
    lr: float | None = None  # peak learning rate (TrainConfig.lr)
    export_id: int | None = None
    ks: tuple[int, ...] = ()
    rank_by: str = "tfidf"  # ranking of "export now"
    probe_tasks: tuple[str, ...] = ()
    audit_folds: int = 0  # k >= 2: the job also writes the model audit's out-of-sample scores (JobSpec.audit_folds)
    backend: str = "local"  # local | slurm
    env: dict = field(default_factory=dict)
    extra_set: tuple[str, ...] = ()  # more key=value overrides of TrainConfig
    partition: str | None = None
    time_limit: str | None = None
    workdir: str | None = None  # folder holding the training package (default: this project)
    python: str | None = None  # interpreter of the job (default: the app's own; on a cluster, its venv's python)
    by: str | None = None

    def check(self) -> None:
        if self.backend not in launcher.BACKENDS:
            raise UsageError(f"backend {self.backend!r}: expected local or slurm")
        if (self.export_id is None) == (not self.ks):
            raise UsageError("give either an existing export (export_id) or one or more K to export now, not both")
        if self.backend == "local" and self.nodes != 1:
            raise UsageError(f"{self.nodes} nodes: a local run uses this machine only; choose the Slurm backend")
        if self.device == "cpu" and self.gpus > 1 and self.backend == "slurm":
            raise UsageError("several processes per node on CPU under Slurm: use device cuda, or 1 process")
        if launcher.audit_folds_problem(self.audit_folds):   # checked here too: before anything is exported
            raise UsageError(launcher.audit_folds_problem(self.audit_folds))
        for task in self.probe_tasks:
            if not Path(task).is_file():
                raise UsageError(f"probe task {task}: no such file (expected a task CSV with audio_path,label)")


def _new_run_id(k: int | None, objective: str, size: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-k{k if k is not None else 'x'}-{objective.replace('+', '-')}-{size}-{secrets.token_hex(2)}"


def launch_runs(con: duckdb.DuckDBPyConnection, request: LaunchRequest, *, runs_root: Path | None = None,
                exports_root: Path | None = None) -> list[str]:
    """Create the export(s) if asked, then one run per export; returns the new run ids at once (the jobs run
    on in their own process groups or in Slurm)."""
    from curation.admin.permissions import authorize

    request.check()
    request = replace(request, by=authorize("runs", request.by))  # the signed-in name, or refused
    runs_root = Path(runs_root or default_runs_root(con))
    exports_root = Path(exports_root or default_exports_root(con))
    exports = _exports_for(con, request, exports_root)
    sweep_id = f"sweep-{secrets.token_hex(3)}" if len(exports) > 1 else None
    run_ids = []
    for export in exports:
        run_ids.append(_launch_one(con, request, export, runs_root, sweep_id))
    return run_ids


def _exports_for(con: duckdb.DuckDBPyConnection, request: LaunchRequest, exports_root: Path) -> list[dict]:
    if request.export_id is not None:
        row = store_runs.export_row(con, int(request.export_id))
        if row is None:
            raise UsageError(f"export #{request.export_id} does not exist; list them with the Runs page or "
                             "`python -m curation runs list --exports`")
        if not Path(row["out_dir"]).is_dir():
            raise UsageError(f"export #{row['export_id']}: its folder {row['out_dir']} is gone; export again")
        return [row]
    from curation.vocabulary.decisions import list_decisions, replay
    from curation.vocabulary.export import export_vocabulary
    from curation.vocabulary.ranking import compute_vocabulary, load_tag_matrix

    state = replay(list_decisions(con))
    n_tags = len(compute_vocabulary(load_tag_matrix(con), state, rank_by=request.rank_by).ranking)
    rows = []
    for k in sweep_ks(request.ks, n_tags):
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        out_dir = exports_root / f"k{k}-d{state.last_decision_id}-{request.rank_by}-{stamp}-{secrets.token_hex(2)}"
        record = export_vocabulary(con, k=k, out_dir=out_dir, by=request.by, rank_by=request.rank_by)
        rows.append(store_runs.export_row(con, record.export_id))
    return rows


def _launch_one(con: duckdb.DuckDBPyConnection, request: LaunchRequest, export: dict, runs_root: Path,
                sweep_id: str | None) -> str:
    run_id = _new_run_id(export["k"], request.objective, request.size)
    run_dir = (runs_root / run_id).resolve()
    job = launcher.JobSpec(
        export_dir=export["out_dir"], run_dir=run_dir, objective=request.objective, size=request.size,
        steps=int(request.steps), device=request.device, gpus=int(request.gpus), nodes=int(request.nodes),
        batch_seconds=request.batch_seconds, lr=request.lr, extra_set=tuple(request.extra_set),
        probe_tasks=tuple(str(Path(t).resolve()) for t in request.probe_tasks),
        audit_folds=int(request.audit_folds), env=dict(request.env),
        python=request.python or sys.executable,
        workdir=Path(request.workdir) if request.workdir else launcher.PROJECT_ROOT,
        partition=request.partition, time_limit=request.time_limit)
    job.check()
    config = {**{k: v for k, v in asdict(request).items() if k not in ("ks", "by", "env", "workdir")},
              "export_id": int(export["export_id"]), "k": int(export["k"]), "export_dir": export["out_dir"],
              "probe_tasks": list(job.probe_tasks)}
    with RUN_WRITE_LOCK:
        return _start_one(con, request, job, export, config, run_id, run_dir, sweep_id)


def _start_one(con, request: LaunchRequest, job: launcher.JobSpec, export: dict, config: dict, run_id: str,
               run_dir: Path, sweep_id: str | None) -> str:
    with store.transaction(con):
        store_runs.insert_run(con, {
            "run_id": run_id, "export_id": int(export["export_id"]), "k": int(export["k"]),
            "objective": request.objective, "size": request.size, "config": config, "backend": request.backend,
            "env": dict(request.env), "run_dir": str(run_dir), "state": "queued", "created_by": request.by,
            "sweep_id": sweep_id, "message": "starting"})
    try:
        handle = launcher.start_local(job) if request.backend == "local" else launcher.submit_slurm(job)
    except launcher.LaunchError as exc:
        with store.transaction(con):
            store_runs.update_run(con, run_id, state="failed", message=str(exc), ended_at=store.now_utc())
        raise
    now = store.now_utc()
    with store.transaction(con):
        store_runs.update_run(con, run_id, state=handle.state, backend_id=handle.backend_id,
                              backend_meta=handle.meta, command=handle.command, message=handle.message or None,
                              started_at=now if handle.state == "running" else None)
    return run_id




def default_sweep_ks(n_tags: int, marks: Sequence[int] = SWEEP_KS) -> tuple[int, ...]:
    """The K values a sweep offers for a vocabulary of ``n_tags`` canonical tags: the paper's marks that fit, and
    otherwise (a small vocabulary, where 800..3,000 would all clip to one run) four sizes spread up to n_tags."""
    fitting = tuple(k for k in marks if k <= n_tags)
    if len(fitting) >= 3:
        return fitting
    if n_tags < 4:
        return tuple(range(1, n_tags + 1))
    return tuple(sorted({max(1, round(n_tags * share)) for share in (0.25, 0.5, 0.75, 1.0)}))


def total_steps(run: dict) -> int | None:
    """The steps a run was launched for (its config or the trainer's own config), if known."""
    for source in (run.get("train_config"), run.get("config")):
        if isinstance(source, dict) and isinstance(source.get("steps"), (int, float)) and source["steps"] > 0:
            return int(source["steps"])
    return None
