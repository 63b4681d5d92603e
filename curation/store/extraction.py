"""SQL of tagging and captioning jobs (tables from migrations 8 and 17 in curation/store/schema.py).

Place in the flow: extract / caption -> here. ``curation/extraction/jobs.py`` plans a job with ``pending_items``,
then writes each batch of outcomes with ``write_tag_batch`` / ``write_caption_batch`` inside one transaction.

Example::

    items = pending_items(con, task="tags", producer="offline:lexicon-v1", prompt_hash="ab12", limit=100)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pandas as pd

from curation import store


@dataclass(frozen=True)
class PendingItem:
    clip_key: int
    clip_id: str
    caption: str | None  # the caption to tag (tags task)
    audio_path: str | None  # the audio to caption (captions task)


@dataclass(frozen=True)
class Plan:
    clip_keys: list[int]  # the clips to process, in clip order (their text is read batch by batch)
    already_done: int  # eligible clips skipped because this producer + prompt already succeeded on them
    not_eligible: int  # clips without what the task needs (a generated caption / an audio path)


# A clip's text to tag: its first non-empty generated caption (by captioner, then position), or the given
# captioner's. Eligibility and the text read use the same rule.
def _caption_scope(captioner: str | None) -> tuple[str, list]:
    return ("kind = 'generated' AND length(trim(text)) > 0" + (" AND captioner = ?" if captioner else ""),
            [captioner] if captioner else [])


def plan_items(con: duckdb.DuckDBPyConnection, *, task: str, producer: str, prompt_hash: str,
               limit: int | None, force: bool, captioner: str | None = None) -> Plan:
    """Which clips a job should process, and the counts of those it leaves out and why.

    Only keys are read here: at 360k clips the captions are ~1 GB, so ``fetch_items`` reads them per batch.
    """
    if task == "tags":
        scope, scope_params = _caption_scope(captioner)
        eligible_sql = f"c.clip_key IN (SELECT clip_key FROM captions WHERE {scope})"
        done_sql = "d.clip_key IS NOT NULL"
        own_params: list = []
    else:
        scope_params = []
        eligible_sql = "c.audio_path IS NOT NULL"
        # A clip already captioned by this producer counts as done even when its caption came from an ingest.
        done_sql = ("(d.clip_key IS NOT NULL OR c.clip_key IN (SELECT clip_key FROM captions "
                    "WHERE kind = 'generated' AND captioner = ?))")
        own_params = [producer]
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE job_plan AS
        SELECT c.clip_key, {eligible_sql} AS eligible, {done_sql} AS done
        FROM clips c LEFT JOIN (SELECT clip_key FROM extraction_attempts
                                WHERE task = ? AND producer = ? AND prompt_hash = ? AND ok) d USING (clip_key)""",
                [*scope_params, *own_params, task, producer, prompt_hash] if task == "captions"
                else [*scope_params, task, producer, prompt_hash])
    try:
        not_eligible, already_done = con.execute(
            "SELECT count(*) FILTER (WHERE NOT eligible), count(*) FILTER (WHERE eligible AND done) "
            "FROM job_plan").fetchall()[0]
        keys = [r[0] for r in con.execute(
            "SELECT clip_key FROM job_plan WHERE eligible AND (? OR NOT done) ORDER BY clip_key"
            + (" LIMIT ?" if limit is not None else ""), [force, *([limit] if limit is not None else [])]).fetchall()]
    finally:
        con.execute("DROP TABLE IF EXISTS job_plan")
    return Plan(keys, already_done if not force else 0, not_eligible)


def fetch_items(con: duckdb.DuckDBPyConnection, clip_keys: list[int], *, task: str,
                captioner: str | None = None) -> list[PendingItem]:
    """The text (tags task) or audio path (captions task) of these clips, in clip order."""
    if task == "tags":
        scope, scope_params = _caption_scope(captioner)
    else:
        scope, scope_params = "false", []
    # One grouped read of the chunk's captions (a key range: zonemaps skip the rest of the table), not a
    # subquery per clip; arg_min, because an ordered first() over 2.5 KB captions costs ~6x more here.
    rows = con.execute(f"""
        SELECT c.clip_key, c.clip_id, t.text, c.audio_path
        FROM clips c LEFT JOIN (
            SELECT clip_key, arg_min(text, (captioner, position)) AS text FROM captions
            WHERE clip_key BETWEEN ? AND ? AND clip_key IN (SELECT unnest(?::INTEGER[])) AND {scope}
            GROUP BY clip_key) t USING (clip_key)
        WHERE c.clip_key IN (SELECT unnest(?::INTEGER[])) ORDER BY c.clip_key""",
                       [min(clip_keys), max(clip_keys), clip_keys, *scope_params, clip_keys]).fetchall()
    return [PendingItem(*row) for row in rows]


def start_job(con: duckdb.DuckDBPyConnection, *, task: str, backend: str, model: str | None, producer: str,
              prompt_hash: str, settings: dict, by: str | None, planned: int) -> int:
    with store.transaction(con):
        # A job still marked running belongs to a process that died (a database has one writing process, and
        # the caller registers its live jobs before starting another): say so instead of showing it running.
        con.execute("""UPDATE extraction_jobs SET status = 'interrupted',
                       message = coalesce(message, 'the process running it ended before it finished')
                       WHERE status = 'running' AND job_id NOT IN (SELECT unnest(?::INTEGER[]))""",
                    [sorted(_LIVE_JOBS)])
        job_id = con.execute("SELECT coalesce(max(job_id), 0) + 1 FROM extraction_jobs").fetchall()[0][0]
        con.execute("""INSERT INTO extraction_jobs (job_id, task, backend, model, producer, prompt_hash, settings,
                           started_by, started_at, status, planned)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?)""",
                    [job_id, task, backend, model, producer, prompt_hash, json.dumps(settings, sort_keys=True), by,
                     store.now_utc(), planned])
    _LIVE_JOBS.add(job_id)
    return job_id


# Jobs running in this process (their rows say 'running' legitimately).
_LIVE_JOBS: set[int] = set()


def finish_job(con: duckdb.DuckDBPyConnection, job_id: int, *, status: str, seconds: float,
               message: str | None, servers: list[dict] | None = None) -> None:
    """The job's end: status, time, message and (several servers) the final per-server report."""
    _LIVE_JOBS.discard(job_id)
    con.execute("""UPDATE extraction_jobs SET status = ?, finished_at = ?, seconds = ?, message = ?,
                       servers = coalesce(?, servers) WHERE job_id = ?""",
                [status, store.now_utc(), seconds, message, json.dumps(servers) if servers else None, job_id])


def set_job_servers(con: duckdb.DuckDBPyConnection, job_id: int, servers: list[dict]) -> None:
    """The per-server report of a running job (url, state, answered, errors, mean_ms, drops, rejoins, reason)."""
    con.execute("UPDATE extraction_jobs SET servers = ? WHERE job_id = ?", [json.dumps(servers), job_id])


def job_servers(con: duckdb.DuckDBPyConnection, job_id: int) -> list[dict]:
    """The per-server report stored with a job ([] for a job of one non-server backend)."""
    rows = con.execute("SELECT servers FROM extraction_jobs WHERE job_id = ?", [job_id]).fetchall()
    return json.loads(rows[0][0]) if rows and rows[0][0] else []


@dataclass(frozen=True)
class OutcomeRow:
    clip_key: int
    ok: bool
    outputs: tuple[str, ...]  # labels (tags task) or the one caption (captions task)
    raw_answer: str | None
    error: str | None


def _attempts_frame(rows: list[OutcomeRow], task: str, producer: str, prompt_hash: str, job_id: int,
                    at: datetime) -> pd.DataFrame:
    return pd.DataFrame({
        "clip_key": [r.clip_key for r in rows], "task": task, "producer": producer, "prompt_hash": prompt_hash,
        "job_id": job_id, "ok": [r.ok for r in rows], "n_outputs": [len(r.outputs) for r in rows],
        "raw_answer": [r.raw_answer for r in rows], "error": [r.error for r in rows], "attempted_at": at,
    })


def _write_attempts(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> None:
    con.register("batch_attempts", frame)
    try:
        con.execute("""DELETE FROM extraction_attempts a USING batch_attempts b
                       WHERE a.clip_key = b.clip_key AND a.task = b.task AND a.producer = b.producer
                         AND a.prompt_hash = b.prompt_hash""")
        con.execute("""INSERT INTO extraction_attempts (clip_key, task, producer, prompt_hash, job_id, ok, n_outputs,
                           raw_answer, error, attempted_at)
                       SELECT clip_key, task, producer, prompt_hash, job_id, ok, n_outputs, raw_answer, error,
                              attempted_at FROM batch_attempts""")
    finally:
        con.unregister("batch_attempts")


def _bump_job(con: duckdb.DuckDBPyConnection, job_id: int, rows: list[OutcomeRow], tag_rows: int) -> None:
    done = sum(r.ok for r in rows)
    con.execute("UPDATE extraction_jobs SET done = done + ?, failed = failed + ?, tag_rows = tag_rows + ? "
                "WHERE job_id = ?", [done, len(rows) - done, tag_rows, job_id])


def write_tag_batch(con: duckdb.DuckDBPyConnection, job_id: int, producer: str, prompt_hash: str,
                    rows: list[OutcomeRow]) -> int:
    """Replace this producer's tags of the batch's successful clips, record every attempt; returns tag rows.

    Call inside ``store.transaction``. A failure leaves the clip's earlier tags from this producer in place
    (nothing is lost) while its attempt row, now failed, makes the next run try it again.
    """
    good = [r for r in rows if r.ok]
    pairs = pd.DataFrame({"clip_key": [r.clip_key for r in good for _ in r.outputs],
                          "tag": [t for r in good for t in r.outputs]}, columns=["clip_key", "tag"])
    pairs = pairs.astype({"clip_key": "int64", "tag": "string"})
    con.register("batch_tags", pairs)
    try:
        con.execute("""INSERT INTO tags (tag_id, tag)
                       SELECT (SELECT coalesce(max(tag_id), 0) FROM tags)
                              + CAST(row_number() OVER (ORDER BY tag) AS INTEGER), tag
                       FROM (SELECT DISTINCT tag FROM batch_tags) n
                       WHERE NOT EXISTS (SELECT 1 FROM tags t WHERE t.tag = n.tag)""")
        con.execute("DELETE FROM clip_tags WHERE extractor = ? AND clip_key IN (SELECT unnest(?::INTEGER[]))",
                    [producer, [r.clip_key for r in good]])
        con.execute("""INSERT INTO clip_tags (clip_key, tag_id, extractor, ingest_id, prompt_hash)
                       SELECT DISTINCT b.clip_key, t.tag_id, ?, NULL, ? FROM batch_tags b JOIN tags t USING (tag)""",
                    [producer, prompt_hash])
    finally:
        con.unregister("batch_tags")
    _write_attempts(con, _attempts_frame(rows, "tags", producer, prompt_hash, job_id, store.now_utc()))
    _bump_job(con, job_id, rows, len(pairs))
    return len(pairs)


def write_caption_batch(con: duckdb.DuckDBPyConnection, job_id: int, producer: str, prompt_hash: str,
                        settings: dict, rows: list[OutcomeRow]) -> list[int]:
    """Store each successful clip's caption under this captioner (replacing its earlier one); returns their keys.

    Call inside ``store.transaction``; the caller reindexes the captions of the returned clips in the same one.
    """
    good = [r for r in rows if r.ok]
    keys = [r.clip_key for r in good]
    con.execute("DELETE FROM captions WHERE kind = 'generated' AND captioner = ? "
                "AND clip_key IN (SELECT unnest(?::INTEGER[]))", [producer, keys])
    if good:
        frame = pd.DataFrame({"clip_key": keys, "text": [r.outputs[0] for r in good]})
        con.register("batch_captions", frame)
        try:
            con.execute("""INSERT INTO captions (clip_key, kind, captioner, position, text, ingest_id, settings)
                           SELECT clip_key, 'generated', ?, 0, text, NULL, ? FROM batch_captions""",
                        [producer, json.dumps(settings, sort_keys=True)])
        finally:
            con.unregister("batch_captions")
    _write_attempts(con, _attempts_frame(rows, "captions", producer, prompt_hash, job_id, store.now_utc()))
    _bump_job(con, job_id, rows, 0)
    return keys


def job_row(con: duckdb.DuckDBPyConnection, job_id: int) -> dict:
    cur = con.execute("SELECT * FROM extraction_jobs WHERE job_id = ?", [job_id])
    names = [d[0] for d in cur.description]
    rows = cur.fetchall()
    return dict(zip(names, rows[0])) if rows else {}


def jobs_frame(con: duckdb.DuckDBPyConnection, limit: int = 50) -> pd.DataFrame:
    return con.execute("""SELECT job_id, task, producer, status, planned, done, failed, skipped, tag_rows,
                                 round(seconds, 1) AS seconds, started_by, started_at, finished_at, message,
                                 CAST(servers AS VARCHAR) AS servers
                          FROM extraction_jobs ORDER BY job_id DESC LIMIT ?""", [limit]).df()


def failures_frame(con: duckdb.DuckDBPyConnection, job_id: int | None = None, limit: int = 200) -> pd.DataFrame:
    """Failed attempts (still failed now) with what the model answered."""
    return con.execute("""SELECT c.clip_id, a.task, a.producer, a.error, a.raw_answer, a.job_id, a.attempted_at
                          FROM extraction_attempts a JOIN clips c USING (clip_key)
                          WHERE NOT a.ok AND (? IS NULL OR a.job_id = ?)
                          ORDER BY a.attempted_at DESC LIMIT ?""", [job_id, job_id, limit]).df()


def set_job_skipped(con: duckdb.DuckDBPyConnection, job_id: int, skipped: int) -> None:
    con.execute("UPDATE extraction_jobs SET skipped = ? WHERE job_id = ?", [skipped, job_id])


def work_summary(con: duckdb.DuckDBPyConnection) -> dict:
    """What is waiting: clips without any tag, clips without a generated caption, captioners present."""
    clips, untagged, uncaptioned = con.execute("""
        SELECT count(*),
               count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM clip_tags ct WHERE ct.clip_key = c.clip_key)),
               count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM captions g WHERE g.clip_key = c.clip_key
                                                   AND g.kind = 'generated'))
        FROM clips c""").fetchall()[0]
    captioners = [r[0] for r in con.execute(
        "SELECT DISTINCT captioner FROM captions WHERE kind = 'generated' ORDER BY 1").fetchall()]
    return {"clips": clips, "untagged": untagged, "uncaptioned": uncaptioned, "captioners": captioners}
