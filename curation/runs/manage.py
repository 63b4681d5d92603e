"""Keeping the run list workable: archive runs (hidden from the lists and pickers, kept with their metrics,
probe results and lineage) and bring them back.

Place in the flow: runs (launch, follow, import) -> (this module) -> the Runs and Compare pages, ``runs archive``.

Example::

    archive_runs(con, ["k800-mtc-tiny-1a2b"], by="ana")
    archive_runs(con, ["k800-mtc-tiny-1a2b"], by="ana", archived=False)   # back in the lists
"""
from __future__ import annotations

from collections.abc import Sequence

import duckdb

from curation import store
from curation.admin import permissions
from curation.errors import UsageError
from curation.runs.state import ACTIVE, require_run
from curation.store import runs as store_runs


def archive_runs(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str], *, by: str | None = None,
                 archived: bool = True) -> int:
    """Archive (or, with ``archived=False``, restore) the runs; refused for a queued or running run (cancel it
    first) and for an unknown id, before anything is written. Returns how many runs changed."""
    permissions.authorize("runs", by)
    if not run_ids:
        raise UsageError("archive: expected at least one run id")
    for run_id in run_ids:
        row = require_run(con, run_id)
        if archived and row["state"] in ACTIVE:
            raise UsageError(f"run {run_id} is {row['state']}: cancel it (or let it finish) before archiving it")
    with store.transaction(con):
        return store_runs.set_archived(con, list(run_ids), store.now_utc() if archived else None)
