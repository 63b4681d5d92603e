"""SQL of API tokens (the ``api_tokens`` table of Migration 11): insert, look up by hash, list, revoke, last use.

Place in the flow: admin (curation/admin/tokens.py decides who may do what) -> here -> DuckDB.
Example: ``token_by_hash(con, sha256_hex)``.
"""
from __future__ import annotations

import threading
from datetime import datetime, timedelta

import duckdb

from curation.store.schema import now_utc, transaction

# Token ids are max + 1 and last-use stamps are UPDATEs of one row: in the one process that writes the file (the
# server, whose requests run in threads), these run one after another instead of failing on DuckDB's optimistic
# write-write conflicts.
TOKEN_WRITE_LOCK = threading.Lock()
# A token used many times a second is stamped at most once per interval (each stamp is a write).
LAST_USE_RESOLUTION = timedelta(seconds=30)

_COLUMNS = ("token_id, user_name, label, prefix, created_by, created_at, last_used_at, revoked_at, revoked_by")


def _row(values: tuple) -> dict:
    return dict(zip([c.strip() for c in _COLUMNS.split(",")], values))


def insert_token(con: duckdb.DuckDBPyConnection, *, user_name: str, label: str | None, prefix: str,
                 token_sha256: str, created_by: str) -> dict:
    with TOKEN_WRITE_LOCK, transaction(con):
        token_id = con.execute("SELECT coalesce(max(token_id), 0) + 1 FROM api_tokens").fetchall()[0][0]
        con.execute(f"INSERT INTO api_tokens ({_COLUMNS}, token_sha256) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?)",
                    [token_id, user_name, label, prefix, created_by, now_utc(), token_sha256])
    return token_row(con, token_id)


def token_row(con: duckdb.DuckDBPyConnection, token_id: int) -> dict | None:
    rows = con.execute(f"SELECT {_COLUMNS} FROM api_tokens WHERE token_id = ?", [token_id]).fetchall()
    return _row(rows[0]) if rows else None


def token_by_hash(con: duckdb.DuckDBPyConnection, token_sha256: str) -> dict | None:
    rows = con.execute(f"SELECT {_COLUMNS} FROM api_tokens WHERE token_sha256 = ?", [token_sha256]).fetchall()
    return _row(rows[0]) if rows else None


def list_tokens(con: duckdb.DuckDBPyConnection, user_name: str | None = None) -> list[dict]:
    rows = con.execute(f"SELECT {_COLUMNS} FROM api_tokens WHERE ? IS NULL OR user_name = ? ORDER BY token_id",
                       [user_name, user_name]).fetchall()
    return [_row(row) for row in rows]


def revoke_token(con: duckdb.DuckDBPyConnection, token_id: int, by: str) -> None:
    with TOKEN_WRITE_LOCK, transaction(con):
        con.execute("UPDATE api_tokens SET revoked_at = ?, revoked_by = ? WHERE token_id = ? AND revoked_at IS NULL",
                    [now_utc(), by, token_id])


def stamp_last_use(con: duckdb.DuckDBPyConnection, token_id: int, last_used_at: datetime | None) -> None:
    """Record a use, unless the stored stamp is recent (LAST_USE_RESOLUTION): a busy client does not turn every
    read into a write."""
    now = now_utc()
    if last_used_at is not None and now - last_used_at < LAST_USE_RESOLUTION:
        return
    with TOKEN_WRITE_LOCK, transaction(con):
        con.execute("UPDATE api_tokens SET last_used_at = ? WHERE token_id = ?", [now, token_id])
