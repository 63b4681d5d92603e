"""Store module of training runs: every SQL statement on runs, run_metrics, probe_results, run_tag_ap, run_files.

Place in the flow: beside ``store/schema.py`` (which owns the schema; migration 9 created these tables).
``curation.runs`` (launch, follow, importer, compare) calls these functions; it holds no SQL.

Example::

    insert_run(con, {"run_id": "r1", "config": "{}", "backend": "local", "run_dir": "/runs/r1", "state": "queued"})
    metrics_frame(con, ["r1"])
"""
from __future__ import annotations

import json
from typing import Sequence

import duckdb
import pandas as pd

from curation.store.schema import now_utc

RUN_COLUMNS = ("run_id", "export_id", "k", "objective", "size", "config", "backend", "backend_id", "backend_meta",
               "command", "env", "run_dir", "state", "created_by", "created_at", "started_at", "ended_at",
               "updated_at", "message", "sweep_id", "train_config", "last_step", "final_val_map", "n_parameters",
               "world_size", "git_commit")
_JSON_COLUMNS = ("config", "backend_meta", "env", "train_config")
METRIC_COLUMNS = ("time_s", "loss", "loss_mtc", "loss_par", "lr", "audio_s_per_s", "grad_norm", "val_map", "val_loss")
ACTIVE_STATES = ("queued", "running")


def _encode(column: str, value):
    if column in _JSON_COLUMNS and value is not None and not isinstance(value, str):
        return json.dumps(value, sort_keys=True)
    return value


def insert_run(con: duckdb.DuckDBPyConnection, row: dict) -> None:
    now = now_utc()
    row = {"created_at": now, "updated_at": now, **row}
    unknown = set(row) - set(RUN_COLUMNS)
    if unknown:
        raise KeyError(f"unknown run columns {sorted(unknown)}")
    columns = [c for c in RUN_COLUMNS if c in row]
    con.execute(f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
                [_encode(c, row[c]) for c in columns])


def update_run(con: duckdb.DuckDBPyConnection, run_id: str, **fields) -> None:
    unknown = set(fields) - set(RUN_COLUMNS)
    if unknown:
        raise KeyError(f"unknown run columns {sorted(unknown)}")
    fields["updated_at"] = now_utc()
    columns = list(fields)
    con.execute(f"UPDATE runs SET {', '.join(f'{c} = ?' for c in columns)} WHERE run_id = ?",
                [_encode(c, fields[c]) for c in columns] + [run_id])


def _rows(result) -> list[dict]:
    names = [d[0] for d in result.description]
    out = []
    for values in result.fetchall():
        row = dict(zip(names, values))
        for column in _JSON_COLUMNS:
            if column in row and isinstance(row[column], str):
                row[column] = json.loads(row[column])
        out.append(row)
    return out


def get_run(con: duckdb.DuckDBPyConnection, run_id: str) -> dict | None:
    rows = _rows(con.execute(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE run_id = ?", [run_id]))
    return rows[0] if rows else None


def runs_in(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> list[dict]:
    return _rows(con.execute(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE run_id IN (SELECT unnest(?)) "
                             "ORDER BY created_at, run_id", [list(run_ids)]))


def active_runs(con: duckdb.DuckDBPyConnection) -> list[dict]:
    return _rows(con.execute(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE state IN (SELECT unnest(?)) "
                             "ORDER BY created_at", [list(ACTIVE_STATES)]))


def runs_frame(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The run list, newest first, with the latest metrics and the number of probe results."""
    return con.execute("""
        SELECT r.run_id, r.state, r.k, r.objective, r.size, r.backend, r.backend_id, r.export_id, r.sweep_id,
               r.last_step, r.final_val_map, r.created_by, r.created_at, r.ended_at, r.message,
               (SELECT count(*) FROM probe_results p WHERE p.run_id = r.run_id) AS probe_results,
               r.run_dir, r.archived_at
        FROM runs r ORDER BY r.created_at DESC, r.run_id DESC""").df()


def set_archived(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str], archived_at) -> int:
    """Archive (a time) or unarchive (None) runs; returns how many rows changed."""
    before = con.execute("SELECT count(*) FROM runs WHERE run_id IN (SELECT unnest(?)) AND "
                         "archived_at IS DISTINCT FROM ?", [list(run_ids), archived_at]).fetchall()[0][0]
    con.execute("UPDATE runs SET archived_at = ? WHERE run_id IN (SELECT unnest(?))", [archived_at, list(run_ids)])
    return before


def all_run_configs(con: duckdb.DuckDBPyConnection) -> list[dict]:
    return _rows(con.execute("SELECT run_id, k, export_id, state, config, train_config, final_val_map, created_at "
                             "FROM runs ORDER BY created_at, run_id"))


# ---------------------------------------------------------------------------------------------- files, metrics

def file_mark(con: duckdb.DuckDBPyConnection, run_id: str, name: str) -> tuple[int, int, int | None, int | None]:
    """(byte_offset, lines, size, mtime_ns) recorded for a run file; (0, 0, None, None) before the first read."""
    rows = con.execute("SELECT byte_offset, lines, size, mtime_ns FROM run_files WHERE run_id = ? AND name = ?",
                       [run_id, name]).fetchall()
    return rows[0] if rows else (0, 0, None, None)


def set_file_mark(con: duckdb.DuckDBPyConnection, run_id: str, name: str, byte_offset: int, lines: int,
                  size: int | None, mtime_ns: int | None) -> None:
    con.execute("INSERT OR REPLACE INTO run_files (run_id, name, byte_offset, lines, size, mtime_ns) "
                "VALUES (?, ?, ?, ?, ?, ?)", [run_id, name, byte_offset, lines, size, mtime_ns])


def upsert_metrics(con: duckdb.DuckDBPyConnection, arrow_table) -> None:
    """arrow_table: run_id, step, kind, METRIC_COLUMNS..., extra; at most one row per (run_id, step, kind)."""
    columns = ("run_id", "step", "kind", *METRIC_COLUMNS, "extra")
    con.register("new_run_metrics", arrow_table)
    try:
        con.execute(f"INSERT OR REPLACE INTO run_metrics ({', '.join(columns)}) "
                    f"SELECT {', '.join(columns)} FROM new_run_metrics")
    finally:
        con.unregister("new_run_metrics")


def metric_summary(con: duckdb.DuckDBPyConnection, run_id: str) -> tuple[int | None, float | None]:
    """(last step, latest validation mAP) of a run."""
    return con.execute("""
        SELECT (SELECT max(step) FROM run_metrics WHERE run_id = ?),
               (SELECT arg_max(val_map, step) FROM run_metrics WHERE run_id = ? AND kind = 'val'
                AND val_map IS NOT NULL)""", [run_id, run_id]).fetchall()[0]


def metrics_frame(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str], since_step: int = -1) -> pd.DataFrame:
    return con.execute(f"""
        SELECT run_id, step, kind, {', '.join(METRIC_COLUMNS)} FROM run_metrics
        WHERE run_id IN (SELECT unnest(?)) AND step > ? ORDER BY run_id, kind, step""",
                       [list(run_ids), since_step]).df()


def upsert_probe_results(con: duckdb.DuckDBPyConnection, run_id: str, rows: list[dict]) -> None:
    columns = ("run_id", "task", "encoder", "pooling", "metric", "mean", "std", "folds", "n_clips", "n_classes",
               "task_file", "checkpoint", "created_at")
    values = [[run_id, r["task"], r["encoder"], r["pooling"], r["metric"], r.get("mean"), r.get("std"),
               json.dumps(r.get("folds")), r.get("n_clips"), r.get("n_classes"), r.get("task_file"),
               r.get("checkpoint"), r.get("created_at")] for r in rows]
    # One statement for all rows (executemany costs ~10 ms per row in DuckDB).
    con.execute(f"INSERT OR REPLACE INTO probe_results ({', '.join(columns)}) VALUES "
                + ", ".join(f"({', '.join('?' for _ in columns)})" for _ in values),
                [value for row in values for value in row])


def probe_frame(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> pd.DataFrame:
    return con.execute("""
        SELECT run_id, task, metric, encoder, pooling, mean, std, n_clips, n_classes, created_at
        FROM probe_results WHERE run_id IN (SELECT unnest(?)) ORDER BY run_id, task, encoder, pooling""",
                       [list(run_ids)]).df()


def replace_tag_ap(con: duckdb.DuckDBPyConnection, run_id: str, step: int, arrow_table) -> None:
    """arrow_table: tag, ap, positives. The run's per-tag AP becomes this validation's."""
    con.execute("DELETE FROM run_tag_ap WHERE run_id = ?", [run_id])
    con.register("new_tag_ap", arrow_table)
    try:
        con.execute("INSERT INTO run_tag_ap (run_id, step, tag, ap, positives) "
                    "SELECT ?, ?, tag, ap, positives FROM new_tag_ap", [run_id, step])
    finally:
        con.unregister("new_tag_ap")


def tag_ap_frame(con: duckdb.DuckDBPyConnection, run_id: str) -> pd.DataFrame:
    return con.execute("SELECT tag, ap, positives, step FROM run_tag_ap WHERE run_id = ? ORDER BY tag",
                       [run_id]).df()


# ---------------------------------------------------------------------------------------------- exports

EXPORT_COLUMNS = ("export_id", "created_at", "created_by", "k", "ranking", "last_decision_id", "content_hash",
                  "out_dir", "vocabulary_size", "clips_kept", "clips_dropped")


def export_row(con: duckdb.DuckDBPyConnection, export_id: int) -> dict | None:
    rows = _rows(con.execute(f"SELECT {', '.join(EXPORT_COLUMNS)} FROM exports WHERE export_id = ?", [export_id]))
    return rows[0] if rows else None


def exports_frame(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute(f"SELECT {', '.join(EXPORT_COLUMNS)} FROM exports ORDER BY export_id DESC").df()
