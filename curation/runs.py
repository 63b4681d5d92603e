"""Training runs: launch (one run or a sweep over K), follow, cancel, import run directories, and the numbers
behind the Runs, Compare and Vocabulary size pages.

Place in the flow: export -> (launch here; ``curation.launcher`` runs the job) -> run directory written by
``training`` -> (import here) -> runs / run_metrics / probe_results / run_tag_ap -> dashboards. Every run names
its parent export, which names the vocabulary version (last decision included, K).

Import is incremental and idempotent: appended files (metrics.jsonl, results.jsonl) are read from the byte
offset where the last import stopped, rows are upserted by their keys, whole files (config.json,
per_tag_ap.json, finished.json) are re-read only when their size or mtime changed. A last line without its
newline (or not yet valid JSON) is being written: it is left for the next import, never an error.

Example::

    ids = launch_runs(con, LaunchRequest(ks=(800, 1000), objective="mtc", size="tiny", steps=200, by="ana"),
                      runs_root=Path("data/runs"), exports_root=Path("data/exports"))
    refresh_runs(con)              # poll backends, import what the runs wrote; call it as often as you like
    compare_runs(con, ids).probe_table
"""
from __future__ import annotations

import json
import math
import os
import secrets
import sys
import threading
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import duckdb
import numpy as np
import pandas as pd

from curation import launcher, store, store_runs
from curation.errors import UsageError, UtsError

RUNS_DIR_ENV = "UTS_RUNS_DIR"
EXPORTS_DIR_ENV = "UTS_EXPORTS_DIR"
STATES = ("queued", "running", "finished", "failed", "cancelled")
ACTIVE = store_runs.ACTIVE_STATES
SWEEP_KS = (800, 1000, 1500, 2000, 3000)
_REFRESH_LOCK = threading.RLock()  # held by every write to a run row of this process (see refresh_runs)
FAILED_LOG_LINES = 15  # lines of train.log kept in the message of a failed run
# Keys that differ between runs by construction: never part of a config diff or of "differs only in K".
_RUN_SPECIFIC_KEYS = {"out", "out_dir", "run_dir", "run_id", "created_at", "argv", "dir", "export_dir", "sweep_id",
                      "content_hash", "label_file", "cuts_file", "created_by"}
_K_KEYS = {"k", "export_id", "vocabulary_size", "clips_kept", "clips_dropped", "clips_without_duration"}


class RunError(UtsError):
    """A run cannot be launched, found, imported or cancelled as asked."""


class RunImportError(RunError, ValueError):
    """A run directory's file does not hold what the run directory contract says (file:line, what, fix)."""


def default_runs_root() -> Path:
    """$UTS_RUNS_DIR, else ``runs/`` beside the database."""
    return Path(os.environ.get(RUNS_DIR_ENV) or store.resolve_db_path().resolve().parent / "runs")


def default_exports_root() -> Path:
    """$UTS_EXPORTS_DIR, else ``exports/`` beside the database."""
    return Path(os.environ.get(EXPORTS_DIR_ENV) or store.resolve_db_path().resolve().parent / "exports")


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


# ---------------------------------------------------------------------------------------------- launching

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
    from curation.permissions import authorize

    request.check()
    request = replace(request, by=authorize("runs", request.by))  # the signed-in name, or refused
    runs_root = Path(runs_root or default_runs_root())
    exports_root = Path(exports_root or default_exports_root())
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
    from curation.decisions import list_decisions, replay
    from curation.export import export_vocabulary
    from curation.vocabulary import compute_vocabulary, load_tag_matrix

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
        probe_tasks=tuple(str(Path(t).resolve()) for t in request.probe_tasks), env=dict(request.env),
        python=request.python or sys.executable,
        workdir=Path(request.workdir) if request.workdir else launcher.PROJECT_ROOT,
        partition=request.partition, time_limit=request.time_limit)
    job.check()
    config = {**{k: v for k, v in asdict(request).items() if k not in ("ks", "by", "env", "workdir")},
              "export_id": int(export["export_id"]), "k": int(export["k"]), "export_dir": export["out_dir"],
              "probe_tasks": list(job.probe_tasks)}
    with _REFRESH_LOCK:
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


# ---------------------------------------------------------------------------------------------- following

def refresh_runs(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str] | None = None) -> list[tuple[str, str, str]]:
    """Poll the backend of every queued/running run (or of ``run_ids``), import what they wrote, and record
    state changes. This is also how an app restart re-attaches: a run whose process is alive (same pid, start
    time and script) stays running; one whose process is gone is finished (job_exit.json rc 0) or failed with
    the last lines of its log. Returns (run_id, old state, new state) for every change."""
    # One refresh at a time in this process: two browser sessions following the same run would otherwise
    # import the same lines at once, and DuckDB fails one of the two transactions on the write conflict.
    with _REFRESH_LOCK:
        rows = store_runs.active_runs(con)
        if run_ids is not None:
            wanted = set(run_ids)
            rows = [r for r in rows if r["run_id"] in wanted]
        changes = []
        for row in rows:
            changes.extend(_refresh_one(con, row))
        return changes


def _refresh_one(con: duckdb.DuckDBPyConnection, row: dict) -> list[tuple[str, str, str]]:
    run_id, run_dir = row["run_id"], Path(row["run_dir"])
    # The state first, then the import: whatever a job wrote before it ended is imported in this same call.
    if row["backend"] in ("local", "slurm"):
        state, detail = launcher.job_state(row["backend"], row["backend_id"], row["backend_meta"] or {}, run_dir)
    else:  # imported from a directory: finished once finished.json exists
        state, detail = ("finished" if (run_dir / "finished.json").exists() else row["state"]), ""
    import_message = None
    if run_dir.is_dir() and (run_dir / "config.json").exists():
        try:
            import_run_dir(con, run_dir, run_id=run_id)
        except RunImportError as exc:
            import_message = f"import: {exc}"
    fields: dict = {}
    if state == "unknown":
        state = row["state"]
        if detail and detail != row["message"]:
            fields["message"] = detail
    if state != row["state"]:
        fields["state"] = state
        if state == "running" and row["started_at"] is None:
            fields["started_at"] = store.now_utc()
        if state not in ACTIVE:
            fields["ended_at"] = store.now_utc()
            if state == "failed":
                tail = launcher.log_tail(run_dir, FAILED_LOG_LINES)
                fields["message"] = f"{detail}\n--- last lines of train.log ---\n{tail}" if tail else detail
            else:
                fields["message"] = detail or None
    if import_message and import_message != (fields.get("message") or row["message"]):
        fields["message"] = import_message if "message" not in fields else f"{fields['message']}\n{import_message}"
    if fields:
        with store.transaction(con):
            store_runs.update_run(con, run_id, **fields)
    return [(run_id, row["state"], state)] if state != row["state"] else []


def cancel_run(con: duckdb.DuckDBPyConnection, run_id: str, by: str | None = None) -> None:
    """End a queued or running job (its whole process group, or scancel) and mark it cancelled."""
    from curation.permissions import authorize

    by = authorize("runs", by)
    with _REFRESH_LOCK:
        row = _require_run(con, run_id)
        if row["state"] not in ACTIVE:
            raise RunError(f"run {run_id} is already {row['state']}: only queued or running runs can be cancelled")
        if row["backend"] == "local" and (row["backend_meta"] or {}).get("pid"):
            launcher.cancel_local(row["backend_meta"])
        elif row["backend"] == "slurm" and row["backend_id"]:
            launcher.cancel_slurm(row["backend_id"])
        with store.transaction(con):
            store_runs.update_run(con, run_id, state="cancelled", ended_at=store.now_utc(),
                                  message=f"cancelled{f' by {by}' if by else ''}")


def _require_run(con: duckdb.DuckDBPyConnection, run_id: str) -> dict:
    row = store_runs.get_run(con, run_id)
    if row is None:
        raise RunError(f"no run {run_id!r}; `python -m curation runs list` shows the runs")
    return row


# ---------------------------------------------------------------------------------------------- importing

@dataclass(frozen=True)
class ImportSummary:
    run_id: str
    created: bool  # a runs row was created (a directory not launched from here)
    metric_lines: int  # complete lines read this time
    probe_results: int
    tag_ap_rows: int
    pending_bytes: int  # bytes of a last line still being written, left for the next import


def _read_json_file(path: Path) -> object | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # replaced atomically by the writer; a torn read is retried at the next import


def _changed(con, run_id: str, path: Path) -> tuple[bool, int | None, int | None]:
    try:
        info = path.stat()
    except FileNotFoundError:
        return False, None, None
    _offset, _lines, size, mtime_ns = store_runs.file_mark(con, run_id, path.name)
    return (size, mtime_ns) != (info.st_size, info.st_mtime_ns), info.st_size, info.st_mtime_ns


def read_appended(path: Path, offset: int, lines_before: int) -> tuple[list[tuple[int, dict]], int, int, int]:
    """Complete JSON lines of ``path`` from byte ``offset``: (records as (line number, object), new offset,
    new line count, bytes left pending). The last line is pending when it has no newline yet or is not valid
    JSON yet; a bad line with complete lines after it is an error naming file and line."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return [], offset, lines_before, 0
    if size < offset:  # the file was replaced by a shorter one: read it again from the start (upserts)
        offset, lines_before = 0, 0
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset, lines_before, len(data)
    try:
        lines = data[:end].decode("utf-8").split("\n")  # one decode: json.loads on str skips encoding sniffing
    except UnicodeDecodeError as exc:
        raise RunImportError(f"{path}: bytes {offset + exc.start}-{offset + exc.end} are not UTF-8; expected "
                             "JSON lines written as UTF-8") from None
    records: list[tuple[int, dict]] = []
    loads = json.loads
    for index, line in enumerate(lines):
        if not line or line.isspace():
            continue
        number = lines_before + index + 1
        try:
            value = loads(line)
        except ValueError as exc:
            if index == len(lines) - 1:
                # The file's last complete line, still invalid: a writer may be mid-way; read it next time.
                pending = len(line.encode("utf-8")) + 1 + len(data) - end - 1
                return records, offset + len(data) - pending, lines_before + index, pending
            raise RunImportError(f"{path}:{number}: expected one JSON object per line, found {line[:80]!r} "
                                 f"({exc.msg}); fix or remove the line, then import again") from None
        if type(value) is not dict:
            raise RunImportError(f"{path}:{number}: expected a JSON object, found {type(value).__name__}")
        records.append((number, value))
    return records, offset + end + 1, lines_before + len(lines), len(data) - end - 1


def _metric_table(run_id: str, path: Path, records: list[tuple[int, dict]]):
    import pyarrow as pa
    import pyarrow.compute as pc

    latest: dict[tuple[int, str], dict] = {}
    for number, record in records:
        step, kind = record.get("step"), record.get("kind")
        if not isinstance(step, int) or isinstance(step, bool) or kind not in ("train", "val"):
            raise RunImportError(f"{path}:{number}: expected \"step\" (an integer) and \"kind\" (train or val), "
                                 f"found step={step!r}, kind={kind!r}")
        latest[(step, kind)] = record  # a resumed run may log a step again: the last line wins
    known = {"step", "kind", *store_runs.METRIC_COLUMNS}
    rows = list(latest.values())
    columns = {"run_id": pa.array([run_id] * len(rows), pa.string()),
               "step": pa.array([r["step"] for r in rows], pa.int32()),
               "kind": pa.array([r["kind"] for r in rows], pa.string())}
    for name in store_runs.METRIC_COLUMNS:
        values = [r.get(name) for r in rows]
        try:  # fast path: numbers (NaN becomes NULL); anything else goes through _number one by one
            array = pa.array(values, pa.float64(), from_pandas=True)
            columns[name] = pc.if_else(pc.is_finite(array), array, None)  # inf, like NaN, is no value
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            columns[name] = pa.array([_number(v) for v in values], pa.float64())
    extras = []
    for r in rows:
        extra = {k: v for k, v in r.items() if k not in known}
        extras.append(json.dumps(extra) if extra else None)
    columns["extra"] = pa.array(extras, pa.string())
    return pa.table(columns)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


_PROBE_FIELDS = ("task", "encoder", "pooling", "metric")


def import_run_dir(con: duckdb.DuckDBPyConnection, run_dir: Path, *, run_id: str | None = None) -> ImportSummary:
    """Bring the database up to date with one run directory (see the module docstring); one transaction."""
    run_dir = Path(run_dir).resolve()
    run_id = run_id or run_dir.name
    if not run_dir.is_dir():
        raise RunImportError(f"{run_dir}: not a directory (expected a run directory with config.json)")
    with store.transaction(con):
        row = store_runs.get_run(con, run_id)
        created = row is None
        config_path = run_dir / "config.json"
        changed, size, mtime = _changed(con, run_id, config_path)
        fields: dict = {}
        if created or changed:
            config = _read_json_file(config_path)
            if config is None and created:
                raise RunImportError(f"{config_path}: missing or not JSON; expected the run directory contract's "
                                     "config.json (training writes it before step 0)")
            if isinstance(config, dict):
                fields.update(_config_fields(config, row))
                if created:
                    _insert_imported(con, run_id, run_dir, config)
                store_runs.set_file_mark(con, run_id, config_path.name, size, 0, size, mtime)
        metric_lines, pending = _import_metrics(con, run_id, run_dir / "metrics.jsonl")
        probes = _import_probes(con, run_id, run_dir / "results.jsonl")
        tag_rows = _import_tag_ap(con, run_id, run_dir / "per_tag_ap.json")
        finished = run_dir / "finished.json"
        changed, size, mtime = _changed(con, run_id, finished)
        final_val_map = None
        if changed:
            summary = _read_json_file(finished)
            if isinstance(summary, dict):
                final_val_map = _number(summary.get("final_val_map"))
                store_runs.set_file_mark(con, run_id, finished.name, size, 0, size, mtime)
        if metric_lines or final_val_map is not None:
            last_step, latest_val = store_runs.metric_summary(con, run_id)
            fields.update(last_step=last_step, final_val_map=final_val_map if final_val_map is not None else latest_val)
        if fields:
            store_runs.update_run(con, run_id, **fields)
    return ImportSummary(run_id=run_id, created=created, metric_lines=metric_lines, probe_results=probes,
                         tag_ap_rows=tag_rows, pending_bytes=pending)


def _config_fields(config: dict, row: dict | None) -> dict:
    export = config.get("export") or {}
    fields = {"train_config": config.get("config") or {}, "n_parameters": config.get("n_parameters"),
              "world_size": config.get("world_size"), "git_commit": config.get("git_commit")}
    if row is not None and row.get("export_id") is None and export.get("export_id") is not None:
        fields["export_id"] = int(export["export_id"])
    if row is not None and row.get("k") is None and export.get("k") is not None:
        fields["k"] = int(export["k"])
    return fields


def _insert_imported(con, run_id: str, run_dir: Path, config: dict) -> None:
    export = config.get("export") or {}
    train = config.get("config") or {}
    store_runs.insert_run(con, {
        "run_id": run_id, "export_id": export.get("export_id"), "k": export.get("k"),
        "objective": train.get("objective"), "size": train.get("size"),
        "config": {"objective": train.get("objective"), "size": train.get("size"), "steps": train.get("steps"),
                   "device": config.get("device"), "export_id": export.get("export_id"), "k": export.get("k"),
                   "export_dir": export.get("dir")},
        "backend": "external", "run_dir": str(run_dir), "state": "running",
        "message": "imported from its run directory (not launched here): finished once finished.json appears",
        "created_by": None})


def _fast_metric_table(run_id: str, path: Path, offset: int, lines_before: int):
    """Arrow's JSON reader over the complete new lines: (table, new offset, new line count, rows, pending bytes),
    or None whenever anything is unusual (a pending invalid line, a type or key outside the contract, a step
    logged twice): the exact Python reader then runs and names file and line. ~10x faster on 100k lines."""
    import io

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as paj

    try:
        if path.stat().st_size < offset:
            return None
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return None
    end = data.rfind(b"\n")
    if end < 0:
        return None
    schema = pa.schema([("kind", pa.string()), ("step", pa.int64()),
                        *[(name, pa.float64()) for name in store_runs.METRIC_COLUMNS]])
    options = paj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    try:
        table = paj.read_json(io.BytesIO(data[: end + 1]), parse_options=options)
    except pa.ArrowException:
        return None
    step, kind = table["step"], table["kind"]
    if step.null_count or not pc.all(pc.is_in(kind, value_set=pa.array(["train", "val"]))).as_py() \
            or kind.null_count:
        return None
    key = pc.add(pc.multiply(step, 2), pc.cast(pc.equal(kind, "val"), pa.int64()))
    if pc.count_distinct(key).as_py() != table.num_rows:
        return None
    columns = {"run_id": pa.array([run_id] * table.num_rows, pa.string()), "step": pc.cast(step, pa.int32()),
               "kind": kind, **{name: table[name] for name in store_runs.METRIC_COLUMNS},
               "extra": pa.nulls(table.num_rows, pa.string())}
    return (pa.table(columns), offset + end + 1, lines_before + data[: end + 1].count(b"\n"), table.num_rows,
            len(data) - end - 1)


def _import_metrics(con, run_id: str, path: Path) -> tuple[int, int]:
    offset, lines, _size, _mtime = store_runs.file_mark(con, run_id, path.name)
    fast = _fast_metric_table(run_id, path, offset, lines)
    if fast is not None:
        table, new_offset, new_lines, count, pending = fast
    else:
        records, new_offset, new_lines, pending = read_appended(path, offset, lines)
        table, count = (_metric_table(run_id, path, records) if records else None), len(records)
    if count:
        store_runs.upsert_metrics(con, table)
    if new_offset != offset:
        store_runs.set_file_mark(con, run_id, path.name, new_offset, new_lines, None, None)
    return count, pending


def _import_probes(con, run_id: str, path: Path) -> int:
    offset, lines, _size, _mtime = store_runs.file_mark(con, run_id, path.name)
    records, new_offset, new_lines, _pending = read_appended(path, offset, lines)
    rows = []
    for number, record in records:
        missing = [name for name in _PROBE_FIELDS if not isinstance(record.get(name), str)]
        if missing:
            raise RunImportError(f"{path}:{number}: expected string fields {', '.join(missing)} "
                                 "(task, encoder, pooling, metric per the run directory contract)")
        rows.append(record)
    if rows:
        latest = {tuple(r[f] for f in ("task", "encoder", "pooling")): r for r in rows}  # a re-probe wins
        store_runs.upsert_probe_results(con, run_id, list(latest.values()))
    if new_offset != offset:
        store_runs.set_file_mark(con, run_id, path.name, new_offset, new_lines, None, None)
    return len(rows)


def _import_tag_ap(con, run_id: str, path: Path) -> int:
    import pyarrow as pa

    changed, size, mtime = _changed(con, run_id, path)
    if not changed:
        return 0
    data = _read_json_file(path)
    if not isinstance(data, dict) or not isinstance(data.get("ap"), dict):
        return 0
    tags = sorted(data["ap"])
    positives = data.get("positives") or {}
    table = pa.table({"tag": pa.array(tags, pa.string()),
                      "ap": pa.array([_number(data["ap"][t]) for t in tags], pa.float64()),
                      "positives": pa.array([positives.get(t) if isinstance(positives.get(t), int) else None
                                             for t in tags], pa.int32())})
    store_runs.replace_tag_ap(con, run_id, int(data.get("step") or 0), table)
    store_runs.set_file_mark(con, run_id, path.name, size, 0, size, mtime)
    return len(tags)


# ---------------------------------------------------------------------------------------------- reading

@dataclass(frozen=True)
class RunDetail:
    run: dict
    metrics: pd.DataFrame  # run_id, step, kind, time_s, loss, ..., val_map
    probes: pd.DataFrame
    log: str  # the last lines of train.log
    script: str  # the job's driver script (job.sh) or sbatch script, as written

    @property
    def active(self) -> bool:
        return self.run["state"] in ACTIVE


def run_detail(con: duckdb.DuckDBPyConnection, run_id: str, log_lines: int = 40) -> RunDetail:
    row = _require_run(con, run_id)
    return RunDetail(run=row, metrics=store_runs.metrics_frame(con, [run_id]),
                     probes=store_runs.probe_frame(con, [run_id]),
                     log=launcher.log_tail(Path(row["run_dir"]), log_lines),
                     script=launcher.job_script(Path(row["run_dir"])))


def runs_table(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return store_runs.runs_frame(con)


def exports_table(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return store_runs.exports_frame(con)


@dataclass(frozen=True)
class Lineage:
    """run -> export -> vocabulary version (last decision included, K, ranking) -> decisions included."""

    run_id: str
    export: dict | None
    decisions: pd.DataFrame  # decision_id, when, by, what, reason, in_effect (as of the export)

    def describe(self) -> str:
        if self.export is None:
            return f"run {self.run_id}: its export is not in this database"
        e = self.export
        return (f"run {self.run_id} <- export #{e['export_id']} (K={e['k']:,}, {e['ranking']}, "
                f"{e['clips_kept']:,} clips, hash {e['content_hash'][:10]}) <- vocabulary as of decision "
                f"#{e['last_decision_id']} ({len(self.decisions):,} decisions in the log then)")


def lineage(con: duckdb.DuckDBPyConnection, run_id: str) -> Lineage:
    from curation.decisions import decision_log_frame, list_decisions, replay

    row = _require_run(con, run_id)
    export = store_runs.export_row(con, int(row["export_id"])) if row["export_id"] is not None else None
    if export is None:
        return Lineage(run_id, None, decision_log_frame([], replay([])))
    included = [r for r in list_decisions(con) if r.decision_id <= int(export["last_decision_id"])]
    return Lineage(run_id, export, decision_log_frame(included, replay(included)))


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in _RUN_SPECIFIC_KEYS:
                continue
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: json.dumps(value) if isinstance(value, (list, dict)) else value}


def run_settings(row: dict) -> dict:
    """One flat dict per run: the launch settings and, once training wrote config.json, every TrainConfig field
    (``train.*``); paths and ids that differ by construction are left out."""
    settings = _flatten({k: v for k, v in (row.get("config") or {}).items() if k not in ("extra_set",)})
    settings.update(_flatten(row.get("train_config") or {}, "train."))
    return settings


def config_diff(rows: Sequence[dict]) -> pd.DataFrame:
    """Rows = settings whose values differ between the runs (missing counts as different), columns = runs."""
    flat = {row["run_id"]: run_settings(row) for row in rows}
    keys = sorted(set().union(*[set(f) for f in flat.values()])) if flat else []
    differing = [k for k in keys if len({json.dumps(f.get(k), default=str) for f in flat.values()}) > 1]
    frame = pd.DataFrame({run_id: [_cell(f.get(k)) for k in differing] for run_id, f in flat.items()},
                         index=pd.Index(differing, name="setting"))
    return frame


def _cell(value) -> str:
    return "—" if value is None else str(value)


def probe_table(probes: pd.DataFrame, encoder: str = "pretrained") -> tuple[pd.DataFrame, dict[str, str]]:
    """Rows = runs, columns = "task / pooling" (mean over folds, higher is better for accuracy and mAP);
    returns the table and, per column, the run with the best value."""
    frame = probes[probes["encoder"] == encoder] if not probes.empty else probes
    if frame.empty:
        return pd.DataFrame(), {}
    frame = frame.assign(column=frame["task"] + " / " + frame["pooling"])
    table = frame.pivot_table(index="run_id", columns="column", values="mean", aggfunc="last")
    table = table.reindex(sorted(table.columns), axis=1)
    best = {column: str(table[column].idxmax()) for column in table.columns if table[column].notna().any()}
    return table, best


@dataclass(frozen=True)
class Comparison:
    runs: list[dict]
    metrics: pd.DataFrame
    config_diff: pd.DataFrame
    probe_table: pd.DataFrame
    best: dict[str, str]  # column -> run_id with the best value
    baselines: pd.DataFrame  # random_init / fbank probe results of the same runs


def compare_runs(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> Comparison:
    rows = store_runs.runs_in(con, run_ids)
    probes = store_runs.probe_frame(con, run_ids)
    table, best = probe_table(probes)
    baselines = probes[probes["encoder"] != "pretrained"] if not probes.empty else probes
    return Comparison(runs=rows, metrics=store_runs.metrics_frame(con, run_ids), config_diff=config_diff(rows),
                      probe_table=table, best=best, baselines=baselines)


# ---------------------------------------------------------------------------------------------- picking K

@dataclass(frozen=True)
class KGroup:
    """Runs whose settings are equal except for K (and the export that carries it)."""

    label: str
    run_ids: tuple[str, ...]
    ks: tuple[int, ...]
    last_decision_ids: tuple[int, ...]


def _k_signature(row: dict) -> str:
    settings = {k: v for k, v in run_settings(row).items()
                if k not in _K_KEYS and not k.startswith("export.") and k.split(".")[-1] not in _K_KEYS}
    return json.dumps(settings, sort_keys=True, default=str)


def k_groups(con: duckdb.DuckDBPyConnection) -> list[KGroup]:
    """Groups of at least two finished runs at different K that differ in nothing else, most Ks first."""
    groups: dict[str, list[dict]] = {}
    for row in store_runs.all_run_configs(con):
        if row["state"] != "finished" or row["k"] is None:
            continue
        groups.setdefault(_k_signature(row), []).append(row)
    out = []
    for rows in groups.values():
        ks = sorted({int(r["k"]) for r in rows})
        if len(ks) < 2:
            continue
        first = rows[0]["config"] or {}
        label = (f"{first.get('objective')} / {first.get('size')} / {first.get('steps')} steps: "
                 f"K = {', '.join(f'{k:,}' for k in ks)} ({len(rows)} runs)")
        decision_ids = []
        for r in rows:
            export = store_runs.export_row(con, int(r["export_id"])) if r["export_id"] is not None else None
            decision_ids.append(int(export["last_decision_id"]) if export else -1)
        out.append(KGroup(label, tuple(r["run_id"] for r in rows), tuple(int(r["k"]) for r in rows),
                          tuple(decision_ids)))
    return sorted(out, key=lambda g: (-len(set(g.ks)), g.label))


def k_metric_options(con: duckdb.DuckDBPyConnection, group: KGroup) -> list[str]:
    probes = store_runs.probe_frame(con, group.run_ids)
    options = ["val mAP"]
    if not probes.empty:
        pretrained = probes[probes["encoder"] == "pretrained"]
        options += sorted({f"probe: {t} / {p}" for t, p in zip(pretrained["task"], pretrained["pooling"])})
    return options


def k_metric_frame(con: duckdb.DuckDBPyConnection, group: KGroup, metric: str) -> pd.DataFrame:
    """k, run_id, value (mean over runs at the same K as ``value_mean``) for one downstream metric."""
    rows = {r["run_id"]: r for r in store_runs.runs_in(con, group.run_ids)}
    if metric == "val mAP":
        values = [(rows[r]["k"], r, rows[r]["final_val_map"]) for r in group.run_ids]
    else:
        task, _, pooling = metric.removeprefix("probe: ").rpartition(" / ")
        probes = store_runs.probe_frame(con, group.run_ids)
        probes = probes[(probes["encoder"] == "pretrained") & (probes["task"] == task) & (probes["pooling"] == pooling)]
        by_run = dict(zip(probes["run_id"], probes["mean"]))
        values = [(rows[r]["k"], r, by_run.get(r)) for r in group.run_ids]
    frame = pd.DataFrame(values, columns=["k", "run_id", "value"]).astype({"value": float})
    frame["value_mean"] = frame.groupby("k")["value"].transform("mean")
    return frame.sort_values(["k", "run_id"], ignore_index=True)


def coverage_at(con: duckdb.DuckDBPyConnection, ks: Sequence[int], last_decision_id: int | None,
                rank_by: str = "tfidf", matrix=None) -> pd.DataFrame:
    """The coverage curve (share of clips keeping a tag, per K) of the vocabulary as of ``last_decision_id``
    (the version the exports were made from; None = now), with ``at_run_k`` marking the runs' K."""
    from curation.decisions import list_decisions, replay
    from curation.vocabulary import compute_vocabulary, load_tag_matrix

    records = list_decisions(con)
    if last_decision_id is not None:
        records = [r for r in records if r.decision_id <= last_decision_id]
    view = compute_vocabulary(matrix if matrix is not None else load_tag_matrix(con), replay(records), rank_by=rank_by)
    coverage = view.coverage[["k", "share_kept", "clips_kept", "mean_tags"]].copy()
    coverage["at_run_k"] = coverage["k"].isin([int(k) for k in ks])
    return coverage


def tag_ap_frame(con: duckdb.DuckDBPyConnection, run_id: str, matrix=None,
                 campaign: str | None = None) -> pd.DataFrame:
    """Per tag of a run's last validation: ap, positives (validation clips), df (clips carrying the tag in the
    corpus, as of the run's export) and, with an audit ``campaign``, the audited precision of the tag (verdicts
    on raw tags summed over each canonical tag)."""
    from curation.decisions import list_decisions, replay
    from curation.vocabulary import compute_vocabulary, load_tag_matrix

    row = _require_run(con, run_id)
    frame = store_runs.tag_ap_frame(con, run_id)
    if frame.empty:
        return frame.assign(df=pd.Series(dtype=float))
    export = store_runs.export_row(con, int(row["export_id"])) if row["export_id"] is not None else None
    records = list_decisions(con)
    if export is not None:
        records = [r for r in records if r.decision_id <= int(export["last_decision_id"])]
    state = replay(records)
    view = compute_vocabulary(matrix if matrix is not None else load_tag_matrix(con), state,
                              rank_by=export["ranking"] if export else "tfidf")
    frame = frame.merge(view.ranking[["tag", "df"]], on="tag", how="left")
    if campaign is not None:
        from curation.audit_report import campaign_report

        precision = campaign_report(con, campaign, matrix=matrix).precision
        if not precision.empty:
            precision = precision.assign(tag=[state.canonical(t) for t in precision["tag"]])
            agg = precision.groupby("tag", as_index=False)[["correct", "judged"]].sum()
            agg["audit_precision"] = np.where(agg["judged"] > 0, agg["correct"] / agg["judged"].clip(lower=1), np.nan)
            frame = frame.merge(agg[["tag", "audit_precision", "judged"]], on="tag", how="left")
        else:
            frame = frame.assign(audit_precision=np.nan, judged=0)
    return frame


def audit_campaign_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    from curation import store_audit

    return store_audit.campaigns(con)["name"].tolist()


def runs_json(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """The run list as plain JSON-ready dicts (CLI)."""
    frame = store_runs.runs_frame(con)
    return json.loads(frame.to_json(orient="records", date_format="iso"))

