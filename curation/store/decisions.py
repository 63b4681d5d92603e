"""SQL of the decision log: the one reader and the one writer of the append-only ``decisions`` table.

Place in the flow: decide (curation/vocabulary/decisions.py) and the decision-log replay
(curation/vocabulary/decision_log.py) -> here -> DuckDB. Example: ``append_decision(con, "merge", payload, "ana", None)``.
"""
from __future__ import annotations

import duckdb

from curation.store.schema import now_utc


def decision_rows(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute("SELECT decision_id, decided_at, decided_by, action, payload, reason FROM decisions "
                       "ORDER BY decision_id").fetchall()


def append_decision(con: duckdb.DuckDBPyConnection, action: str, payload_json: str, by: str,
                    reason: str | None) -> int:
    decision_id = con.execute("SELECT coalesce(max(decision_id), 0) + 1 FROM decisions").fetchall()[0][0]
    con.execute("INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?)",
                [decision_id, now_utc(), by, action, payload_json, reason])
    return decision_id

