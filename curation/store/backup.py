"""SQL of backups, restores and the suggestion verdicts of the decision-log export/replay (see
curation/admin/backup.py, curation/vocabulary/decision_log.py; decisions themselves go through store/decisions.py).

A copy is DuckDB's ``COPY FROM DATABASE`` into a freshly attached file: one read transaction, so the copy is
a consistent snapshot even while other cursors of the same connection write.
"""
from __future__ import annotations

from pathlib import Path

import duckdb

from curation.store.schema import now_utc

_ALIAS = "uts_copy_target"


def _literal(path: Path) -> str:
    """A file path as a SQL string literal (ATTACH takes no bound parameter)."""
    return "'" + str(path).replace("'", "''") + "'"


def copy_database_to(con: duckdb.DuckDBPyConnection, target: Path) -> None:
    """Copy every table (schema, constraints, rows) of ``con``'s database into a new DuckDB file."""
    source = con.execute("SELECT current_database()").fetchall()[0][0]
    con.execute(f"ATTACH {_literal(target)} AS {_ALIAS} (READ_WRITE)")  # also from a read-only connection
    try:
        con.execute(f'COPY FROM DATABASE "{source.replace(chr(34), chr(34) * 2)}" TO {_ALIAS}')
    finally:
        con.execute(f"DETACH {_ALIAS}")


def user_table_rows(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows per table of the main database (a restore refuses to overwrite one that holds any)."""
    names = [row[0] for row in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND NOT temporary "
        "ORDER BY table_name").fetchall()]
    return {name: con.execute(f'SELECT count(*) FROM "{name}"').fetchall()[0][0] for name in names}


def suggestion_verdict_rows(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute("SELECT group_key, verdict, decided_by, decided_at, members, canonical "
                       "FROM suggestion_verdicts ORDER BY decided_at, group_key").fetchall()


def count_decisions(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT (SELECT count(*) FROM decisions) + (SELECT count(*) FROM suggestion_verdicts)"
                       ).fetchall()[0][0]


def insert_suggestion_verdict_as_logged(con: duckdb.DuckDBPyConnection, group_key: str, verdict: str,
                                        decided_by: str, decided_at, members_json: str,
                                        canonical: str | None) -> None:
    con.execute("INSERT INTO suggestion_verdicts (group_key, verdict, decided_by, decided_at, members, canonical) "
                "VALUES (?, ?, ?, ?, ?, ?)", [group_key, verdict, decided_by, decided_at or now_utc(),
                                              members_json, canonical])
