"""SQL of the model-based audit: out-of-sample scores per run, clip and tag; suspects; per-tag estimates.

Place in the flow: ``curation.audit.model_audit`` (reads RUN_DIR/model_audit/oos_scores.* in row blocks, ranks
suspects) -> here -> DuckDB tables model_audits, model_audit_scores, model_audit_suspects, model_audit_tags
(migration 14 in store/schema.py). A run's audit is replaced as a whole, inside the caller's transaction; a large
one is written block by block (``insert_rows``) inside that one transaction.

Example::

    with transaction(con):
        replace_audit(con, "r1", audit_row, scores, suspects, tags)   # or delete_audit + insert_rows per block
    suspects_frame(con, "r1")
"""
from __future__ import annotations

import json

import duckdb
import pandas as pd
import pyarrow as pa

from curation.store.schema import now_utc

AUDIT_COLUMNS = ("run_id", "created_at", "folds", "features", "method", "scores_file", "n_clips", "n_tags",
                 "stored_pairs", "omitted_pairs", "min_stored_probability", "unknown_clips", "seconds")
SCORE_COLUMNS = ("clip_key", "tag", "asserted", "probability", "fold")
SUSPECT_COLUMNS = ("clip_key", "tag", "kind", "score", "rank")
TAG_COLUMNS = ("tag", "asserted", "omitted", "threshold_asserted", "threshold_omitted", "hallucinations", "misses",
               "mean_probability_asserted", "estimated_precision")
TABLES = ("model_audit_scores", "model_audit_suspects", "model_audit_tags", "model_audits")


def clip_keys(con: duckdb.DuckDBPyConnection, clip_ids: list[str]) -> pd.DataFrame:
    """clip_id, clip_key of the given ids that the store holds (one query for any number of ids)."""
    con.register("wanted_clip_ids", pa.table({"clip_id": pa.array(clip_ids, pa.string())}))
    try:
        return con.execute("SELECT c.clip_id, c.clip_key FROM clips c JOIN wanted_clip_ids w USING (clip_id)").df()
    finally:
        con.unregister("wanted_clip_ids")


def insert_rows(con: duckdb.DuckDBPyConnection, table: str, run_id: str, rows: pa.Table) -> None:
    """Append ``rows`` (an Arrow table with the table's columns but run_id; string columns may be dictionary
    arrays: a tag name per row is then an index, not a Python string) to one of the audit's tables for ``run_id``
    (call inside ``store.transaction``)."""
    if table not in TABLES:
        raise ValueError(f"{table}: expected one of {', '.join(TABLES)}")
    if rows.num_rows == 0:
        return
    select = [f"CAST({c} AS VARCHAR)" if pa.types.is_dictionary(rows.schema.field(c).type) else c
              for c in rows.column_names]
    name = f"new_{table}"
    con.register(name, rows)
    try:
        con.execute(f"INSERT INTO {table} (run_id, {', '.join(rows.column_names)}) "
                    f"SELECT ?, {', '.join(select)} FROM {name}", [run_id])
    finally:
        con.unregister(name)


def delete_audit(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Remove the run's previous audit from every table (call inside ``store.transaction``)."""
    for table in TABLES:
        con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])


def insert_audit_row(con: duckdb.DuckDBPyConnection, run_id: str, audit: dict) -> None:
    row = {"created_at": now_utc(), **audit, "run_id": run_id}
    con.execute(f"INSERT INTO model_audits ({', '.join(AUDIT_COLUMNS)}) VALUES ({', '.join('?' for _ in AUDIT_COLUMNS)})",
                [row.get(c) for c in AUDIT_COLUMNS])


def replace_audit(con: duckdb.DuckDBPyConnection, run_id: str, audit: dict, scores: pd.DataFrame,
                  suspects: pd.DataFrame, tags: pd.DataFrame) -> None:
    """Delete the run's previous audit and write this one (call inside ``store.transaction``)."""
    delete_audit(con, run_id)
    insert_audit_row(con, run_id, audit)
    for table, frame, columns in (("model_audit_scores", scores, SCORE_COLUMNS),
                                  ("model_audit_suspects", suspects, SUSPECT_COLUMNS),
                                  ("model_audit_tags", tags, TAG_COLUMNS)):
        if not frame.empty:
            insert_rows(con, table, run_id, pa.Table.from_pandas(frame[list(columns)], preserve_index=False))


def audit_row(con: duckdb.DuckDBPyConnection, run_id: str) -> dict | None:
    result = con.execute(f"SELECT {', '.join(AUDIT_COLUMNS)} FROM model_audits WHERE run_id = ?", [run_id])
    rows = result.fetchall()
    return dict(zip(AUDIT_COLUMNS, rows[0])) if rows else None


def audited_runs(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute(f"SELECT {', '.join(AUDIT_COLUMNS)} FROM model_audits ORDER BY created_at DESC").df()


def suspects_frame(con: duckdb.DuckDBPyConnection, run_id: str, limit: int | None = None) -> pd.DataFrame:
    """clip_id, clip_key, tag, kind, score, rank of the run's suspects, best first."""
    sql = ("SELECT c.clip_id, s.clip_key, s.tag, s.kind, s.score, s.rank FROM model_audit_suspects s "
           "JOIN clips c USING (clip_key) WHERE s.run_id = ? ORDER BY s.rank")
    params: list = [run_id]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return con.execute(sql, params).df()


def tags_frame(con: duckdb.DuckDBPyConnection, run_id: str) -> pd.DataFrame:
    return con.execute(f"SELECT {', '.join(TAG_COLUMNS)} FROM model_audit_tags WHERE run_id = ? ORDER BY tag",
                       [run_id]).df()


def scores_frame(con: duckdb.DuckDBPyConnection, run_id: str, clip_ids: list[str] | None = None) -> pd.DataFrame:
    """clip_id, tag, asserted, probability, fold (optionally of some clips only)."""
    sql = ("SELECT c.clip_id, s.tag, s.asserted, s.probability, s.fold FROM model_audit_scores s "
           "JOIN clips c USING (clip_key) WHERE s.run_id = ?")
    params: list = [run_id]
    if clip_ids is not None:
        sql += " AND c.clip_id IN (SELECT unnest(?))"
        params.append(list(clip_ids))
    return con.execute(sql + " ORDER BY c.clip_id, s.tag", params).df()


def disputed_clip_keys(con: duckdb.DuckDBPyConnection, run_id: str, tag: str | None = None,
                       kind: str | None = None, min_score: float | None = None) -> list[int]:
    """Clip keys where the model disputes a tag (optionally one tag / one kind / at least ``min_score``): the
    Browse filter's set."""
    sql = "SELECT DISTINCT clip_key FROM model_audit_suspects WHERE run_id = ?"
    params: list = [run_id]
    if tag is not None:
        sql += " AND tag = ?"
        params.append(tag)
    if kind is not None:
        sql += " AND kind = ?"
        params.append(kind)
    if min_score is not None:
        sql += " AND score >= ?"
        params.append(float(min_score))
    return [r[0] for r in con.execute(sql + " ORDER BY clip_key", params).fetchall()]


def campaign_strategy(con: duckdb.DuckDBPyConnection, campaign_id: int) -> str | None:
    """The sampling strategy an audit campaign's design records ("stratified", "suspects first (run r1)"), or
    None for campaigns whose design names none (reference imports, older campaigns)."""
    rows = con.execute("SELECT design FROM audit_campaigns WHERE campaign_id = ?", [int(campaign_id)]).fetchall()
    if not rows or rows[0][0] is None:
        return None
    try:
        design = json.loads(rows[0][0]) if isinstance(rows[0][0], str) else rows[0][0]
    except ValueError:
        return None
    return design.get("strategy") if isinstance(design, dict) else None


def suspects_of_clips(con: duckdb.DuckDBPyConnection, run_id: str, clip_keys: list[int],
                      min_score: float | None = None) -> pd.DataFrame:
    """clip_key, tag, kind, score, rank of the run's suspects on some clips (a Browse page), best first."""
    if not clip_keys:
        return pd.DataFrame(columns=["clip_key", "tag", "kind", "score", "rank"])
    return con.execute("SELECT clip_key, tag, kind, score, rank FROM model_audit_suspects "
                       "WHERE run_id = ? AND clip_key IN (SELECT unnest(?)) AND score >= ? ORDER BY rank",
                       [run_id, [int(k) for k in clip_keys], float(min_score or 0.0)]).df()


def suspect_tags(con: duckdb.DuckDBPyConnection, run_id: str, min_score: float | None = None) -> pd.DataFrame:
    """tag, suspects (how many clips the run's model audit disputes it on, at least ``min_score``), most
    disputed first."""
    return con.execute("SELECT tag, count(*) AS suspects FROM model_audit_suspects WHERE run_id = ? AND score >= ? "
                       "GROUP BY tag ORDER BY suspects DESC, tag", [run_id, float(min_score or 0.0)]).df()


def runs_disputing(con: duckdb.DuckDBPyConnection, tag: str) -> list[str]:
    """Runs whose model audit disputes ``tag`` on some clip, the most recently audited first."""
    return [r[0] for r in con.execute(
        "SELECT a.run_id FROM model_audits a WHERE EXISTS (SELECT 1 FROM model_audit_suspects s "
        "WHERE s.run_id = a.run_id AND s.tag = ?) ORDER BY a.created_at DESC, a.run_id", [tag]).fetchall()]
