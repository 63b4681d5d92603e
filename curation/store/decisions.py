"""SQL of the decision log: the one reader and the one writer of the append-only ``decisions`` table.

Place in the flow: decide (curation/vocabulary/decisions.py) and the decision-log replay
(curation/vocabulary/decision_log.py) -> here -> DuckDB. Example: ``append_decision(con, "merge", payload, "ana", None)``.
"""
from __future__ import annotations

import threading

import duckdb

from curation.store.schema import now_utc

# Decision ids are max + 1 inside the writing transaction and DuckDB's concurrency is optimistic: two sessions of
# the one process that holds the file (app pages, API requests) deciding at the same moment would make the later
# commit fail on a duplicate id. Every decision write takes this lock around its whole transaction, so each begins
# after the previous one committed (as store/audit.py's WRITE_LOCK does for verdicts). Re-entrant: a decision's
# ``also`` step may record through the same writer.
WRITE_LOCK = threading.RLock()


def decision_rows(con: duckdb.DuckDBPyConnection, up_to: int | None = None) -> list[tuple]:
    """(decision_id, decided_at, decided_by, action, payload, reason) in order, up to ``up_to`` when given."""
    return con.execute("SELECT decision_id, decided_at, decided_by, action, payload, reason FROM decisions "
                       "WHERE ? IS NULL OR decision_id <= ? ORDER BY decision_id", [up_to, up_to]).fetchall()


def append_decision(con: duckdb.DuckDBPyConnection, action: str, payload_json: str, by: str,
                    reason: str | None, *, decision_id: int | None = None, decided_at=None) -> int:
    """The one writer of the decisions table. A new decision takes the next id and the current time; a replayed
    log (curation/vocabulary/decision_log.py) keeps its original id and time."""
    if decision_id is None:
        decision_id = con.execute("SELECT coalesce(max(decision_id), 0) + 1 FROM decisions").fetchall()[0][0]
    con.execute("INSERT INTO decisions (decision_id, decided_at, decided_by, action, payload, reason) "
                "VALUES (?, ?, ?, ?, ?, ?)", [decision_id, decided_at or now_utc(), by, action, payload_json, reason])
    return decision_id
