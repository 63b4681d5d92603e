"""What the runs modules share: their typed errors, the states of a live run, the one lock that serialises
writes to run rows in this process, and looking a run up.

Place in the flow: beside launch / follow / import / compare (curation/runs/). Example: ``require_run(con, run_id)``.
"""
from __future__ import annotations

import threading

import duckdb

from curation.errors import UtsError
from curation.store import runs as store_runs

ACTIVE = store_runs.ACTIVE_STATES


RUN_WRITE_LOCK = threading.RLock()  # held by every write to a run row of this process (see refresh_runs)


class RunError(UtsError):
    """A run cannot be launched, found, imported or cancelled as asked."""


class RunImportError(RunError, ValueError):
    """A run directory's file does not hold what the run directory contract says (file:line, what, fix)."""


def require_run(con: duckdb.DuckDBPyConnection, run_id: str) -> dict:
    row = store_runs.get_run(con, run_id)
    if row is None:
        raise RunError(f"no run {run_id!r}; `python -m curation runs list` shows the runs")
    return row

