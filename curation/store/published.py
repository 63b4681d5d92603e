"""SQL of published vocabularies: the one seeded release list (label_K.json) that merge suggestions map onto.

Place in the flow: vocabulary (curation/vocabulary/published.py, suggestions) -> here -> DuckDB.
Example: ``replace_seeded(con, ["electronic", "studio"], "label_800.json", "ana")``.
"""
from __future__ import annotations

import duckdb

from curation.store.schema import now_utc


def replace_seeded(con: duckdb.DuckDBPyConnection, labels: list[str], source: str, by: str) -> None:
    """The seeded list becomes ``labels`` (in release order); call inside a transaction."""
    con.execute("DELETE FROM published_vocabulary")
    if labels:
        now = now_utc()
        con.executemany("INSERT INTO published_vocabulary VALUES (?, ?, ?, ?, ?)",
                        [[position, label, source, by, now] for position, label in enumerate(labels)])


def seeded_labels(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [row[0] for row in con.execute("SELECT label FROM published_vocabulary ORDER BY position").fetchall()]


def seeded_source(con: duckdb.DuckDBPyConnection) -> dict | None:
    """{source, seeded_by, seeded_at, labels} of the seeded list, or None."""
    row = con.execute("SELECT any_value(source), any_value(seeded_by), max(seeded_at), count(*) "
                      "FROM published_vocabulary").fetchall()[0]
    return None if not row[3] else {"source": row[0], "seeded_by": row[1], "seeded_at": row[2], "labels": row[3]}
