"""Following runs: poll each active run's backend, import what it wrote, record state changes; cancel a run.

Place in the flow: launch -> (this module, called by the Runs page on every rerun and by ``runs import``) ->
runs table. It is also how an app restart re-attaches to jobs that outlived it. Example: ``refresh_runs(con)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import duckdb

from curation import store
from curation.runs import backends as launcher
from curation.runs.importer import import_run_dir
from curation.runs.state import ACTIVE, RUN_WRITE_LOCK, RunError, RunImportError, require_run
from curation.store import runs as store_runs

FAILED_LOG_LINES = 15  # lines of train.log kept in the message of a failed run


def refresh_runs(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str] | None = None) -> list[tuple[str, str, str]]:
    """Poll the backend of every queued/running run (or of ``run_ids``), import what they wrote, and record
    state changes. This is also how an app restart re-attaches: a run whose process is alive (same pid, start
    time and script) stays running; one whose process is gone is finished (job_exit.json rc 0) or failed with
    the last lines of its log. Returns (run_id, old state, new state) for every change."""
    # One refresh at a time in this process: two browser sessions following the same run would otherwise
    # import the same lines at once, and DuckDB fails one of the two transactions on the write conflict.
    with RUN_WRITE_LOCK:
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
    from curation.admin.permissions import authorize

    by = authorize("runs", by)
    with RUN_WRITE_LOCK:
        row = require_run(con, run_id)
        if row["state"] not in ACTIVE:
            raise RunError(f"run {run_id} is already {row['state']}: only queued or running runs can be cancelled")
        if row["backend"] == "local" and (row["backend_meta"] or {}).get("pid"):
            launcher.cancel_local(row["backend_meta"])
        elif row["backend"] == "slurm" and row["backend_id"]:
            launcher.cancel_slurm(row["backend_id"])
        with store.transaction(con):
            store_runs.update_run(con, run_id, state="cancelled", ended_at=store.now_utc(),
                                  message=f"cancelled{f' by {by}' if by else ''}")

