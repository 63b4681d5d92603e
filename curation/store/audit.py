"""SQL of the captioner audit (campaigns, slots, verdicts); the schema itself is owned by curation/store/schema.py.

Place in the flow: audit (curation/audit/campaigns.py) -> here -> DuckDB. Example: ``campaigns(con)``.
"""
from __future__ import annotations

import json
import threading

import duckdb
import pandas as pd
import pyarrow as pa

from curation.store.schema import FIRST_GENERATED_CAPTION_SQL, ORIGINAL_CAPTIONS_SQL, RAW_TAGS_SQL, now_utc

# Held around every transaction that creates a campaign, claims a slot or submits one. DuckDB's concurrency is
# optimistic: when two cursors update the same row at once, one fails with a write-write conflict, and with many
# annotators all aiming at the first free slot a loser can keep losing however often it retries. One process at
# a time can write the file (the app, whose sessions share one connection; the CLI cannot open it meanwhile), so
# a lock in this process makes those transactions run one after another: each begins after the previous one
# committed, sees its claim, and never conflicts.
WRITE_LOCK = threading.Lock()


def sampling_frame(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every clip with tags: clip_key, clip_id, domain, source (the population a campaign samples from)."""
    return con.execute("""
        SELECT c.clip_key, c.clip_id, coalesce(c.domain, 'unknown') AS domain, coalesce(c.source, 'unknown') AS source
        FROM clips c WHERE EXISTS (SELECT 1 FROM clip_tags ct WHERE ct.clip_key = c.clip_key)
        ORDER BY c.clip_key""").df()


def insert_campaign(con: duckdb.DuckDBPyConnection, *, name: str, by: str, sample_size: int,
                    annotators_per_clip: int, seed: int, design: dict, kind: str, slots: pd.DataFrame) -> int:
    """slots: position, clip_key, stratum (one row per sampled clip; a row per annotator slot is made here)."""
    campaign_id = con.execute("SELECT coalesce(max(campaign_id), 0) + 1 FROM audit_campaigns").fetchall()[0][0]
    con.execute("INSERT INTO audit_campaigns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [campaign_id, name, now_utc(), by, sample_size, annotators_per_clip, seed, json.dumps(design), kind])
    con.register("new_slots", pa.Table.from_pandas(slots, preserve_index=False))
    try:
        con.execute("""
            INSERT INTO audit_slots (campaign_id, position, clip_key, slot, stratum)
            SELECT ?, s.position, s.clip_key, r.slot, s.stratum
            FROM new_slots s CROSS JOIN range(1, ? + 1) r(slot)""", [campaign_id, annotators_per_clip])
    finally:
        con.unregister("new_slots")
    return campaign_id


def campaign_id_by_name(con: duckdb.DuckDBPyConnection, name: str) -> int | None:
    rows = con.execute("SELECT campaign_id FROM audit_campaigns WHERE name = ?", [name]).fetchall()
    return rows[0][0] if rows else None


def campaigns(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute("""
        SELECT a.campaign_id, a.name, a.kind, a.created_by, a.created_at, a.sample_size, a.annotators_per_clip,
               a.seed, count(s.clip_key) AS slots, count(s.submitted_at) AS submitted,
               count(s.annotator) - count(s.submitted_at) AS in_progress
        FROM audit_campaigns a LEFT JOIN audit_slots s USING (campaign_id)
        GROUP BY ALL ORDER BY a.campaign_id""").df()


def open_slot_of(con: duckdb.DuckDBPyConnection, campaign_id: int, annotator: str) -> tuple | None:
    rows = con.execute("""
        SELECT clip_key, slot FROM audit_slots
        WHERE campaign_id = ? AND annotator = ? AND submitted_at IS NULL ORDER BY position LIMIT 1""",
                       [campaign_id, annotator]).fetchall()
    return rows[0] if rows else None


def claim_free_slot(con: duckdb.DuckDBPyConnection, campaign_id: int, annotator: str,
                    avoid_clip_keys: list[int] | None = None) -> tuple | None:
    """Claim the first free slot of a clip this annotator holds no slot of, preferring clips not in
    ``avoid_clip_keys`` (those the annotator skipped: they come back once nothing else is left). Call inside a
    transaction opened under ``WRITE_LOCK``: the slot chosen by the SELECT is then still free when the UPDATE
    runs."""
    rows = con.execute("""
        SELECT clip_key, slot FROM audit_slots s
        WHERE campaign_id = ? AND annotator IS NULL
          AND clip_key NOT IN (SELECT clip_key FROM audit_slots WHERE campaign_id = ? AND annotator = ?)
        ORDER BY list_contains(?::INTEGER[], clip_key), position, slot LIMIT 1""",
                       [campaign_id, campaign_id, annotator, list(avoid_clip_keys or [])]).fetchall()
    if not rows:
        return None
    clip_key, slot = rows[0]
    con.execute("""UPDATE audit_slots SET annotator = ?, claimed_at = ?
                   WHERE campaign_id = ? AND clip_key = ? AND slot = ? AND annotator IS NULL""",
                [annotator, now_utc(), campaign_id, clip_key, slot])
    return clip_key, slot


def release_open_slot(con: duckdb.DuckDBPyConnection, campaign_id: int, clip_key: int, slot: int,
                      annotator: str) -> bool:
    """Give back a claimed, unsubmitted slot (a skip); True when it was this annotator's. Under ``WRITE_LOCK``."""
    held = con.execute("SELECT count(*) FROM audit_slots WHERE campaign_id = ? AND clip_key = ? AND slot = ? "
                       "AND annotator = ? AND submitted_at IS NULL",
                       [campaign_id, clip_key, slot, annotator]).fetchall()[0][0]
    if held:
        con.execute("UPDATE audit_slots SET annotator = NULL, claimed_at = NULL WHERE campaign_id = ? AND "
                    "clip_key = ? AND slot = ?", [campaign_id, clip_key, slot])
    return bool(held)


def queue_counts(con: duckdb.DuckDBPyConnection, campaign_id: int, annotator: str) -> tuple[int, int, int]:
    """(submitted by this annotator, held open by them, clips with a free slot they could still claim)."""
    return tuple(con.execute("""
        SELECT (SELECT count(*) FROM audit_slots WHERE campaign_id = ? AND annotator = ? AND submitted_at IS NOT NULL),
               (SELECT count(*) FROM audit_slots WHERE campaign_id = ? AND annotator = ? AND submitted_at IS NULL),
               (SELECT count(DISTINCT clip_key) FROM audit_slots WHERE campaign_id = ? AND annotator IS NULL
                  AND clip_key NOT IN (SELECT clip_key FROM audit_slots WHERE campaign_id = ? AND annotator = ?))""",
        [campaign_id, annotator, campaign_id, annotator, campaign_id, campaign_id, annotator]).fetchall()[0])


def last_submitted_slot_of(con: duckdb.DuckDBPyConnection, campaign_id: int, annotator: str,
                           before=None) -> tuple | None:
    """(clip_key, slot, submitted_at) of this annotator's latest submission (before ``before`` when given)."""
    rows = con.execute("""
        SELECT clip_key, slot, submitted_at FROM audit_slots
        WHERE campaign_id = ? AND annotator = ? AND submitted_at IS NOT NULL AND (?::TIMESTAMPTZ IS NULL OR submitted_at < ?)
        ORDER BY submitted_at DESC, position DESC LIMIT 1""", [campaign_id, annotator, before, before]).fetchall()
    return rows[0] if rows else None


def submission_of(con: duckdb.DuckDBPyConnection, campaign_id: int, clip_key: int, annotator: str) -> dict:
    """What an annotator answered on one clip: verdicts by tag, added tags, rating, note."""
    verdicts = dict(con.execute("SELECT tag, verdict FROM audit_verdicts WHERE campaign_id = ? AND clip_key = ? "
                                "AND annotator = ?", [campaign_id, clip_key, annotator]).fetchall())
    added = [row[0] for row in con.execute("SELECT tag FROM audit_added_tags WHERE campaign_id = ? AND clip_key = ? "
                                           "AND annotator = ? ORDER BY tag", [campaign_id, clip_key, annotator]).fetchall()]
    rating = con.execute("SELECT rating, note FROM audit_caption_ratings WHERE campaign_id = ? AND clip_key = ? AND "
                         "annotator = ?", [campaign_id, clip_key, annotator]).fetchall()
    return {"verdicts": verdicts, "added": added, "rating": rating[0][0] if rating else None,
            "note": rating[0][1] if rating else None}


def delete_submission(con: duckdb.DuckDBPyConnection, campaign_id: int, clip_key: int, annotator: str) -> None:
    """Remove one clip's answers by one annotator before they are written again (a revision). In a transaction."""
    for table in ("audit_verdicts", "audit_added_tags", "audit_caption_ratings"):
        con.execute(f"DELETE FROM {table} WHERE campaign_id = ? AND clip_key = ? AND annotator = ?",
                    [campaign_id, clip_key, annotator])


def slot_holder(con: duckdb.DuckDBPyConnection, campaign_id: int, clip_key: int, slot: int) -> tuple:
    return con.execute("SELECT annotator, submitted_at FROM audit_slots WHERE campaign_id = ? AND clip_key = ? "
                       "AND slot = ?", [campaign_id, clip_key, slot]).fetchall()[0]


def write_submission(con: duckdb.DuckDBPyConnection, *, campaign_id: int, clip_key: int, slot: int,
                     annotator: str, verdicts: dict[str, str], added: list[str], rating: int | None,
                     note: str | None, seconds_spent: float | None) -> None:
    now = now_utc()
    if verdicts:
        con.executemany("INSERT INTO audit_verdicts VALUES (?, ?, ?, ?, ?, ?)",
                        [(campaign_id, clip_key, annotator, tag, verdict, now) for tag, verdict in verdicts.items()])
    if added:
        con.executemany("INSERT INTO audit_added_tags VALUES (?, ?, ?, ?, ?)",
                        [(campaign_id, clip_key, annotator, tag, now) for tag in added])
    con.execute("INSERT INTO audit_caption_ratings VALUES (?, ?, ?, ?, ?, ?, ?)",
                [campaign_id, clip_key, annotator, rating, note, seconds_spent, now])
    con.execute("UPDATE audit_slots SET submitted_at = ? WHERE campaign_id = ? AND clip_key = ? AND slot = ?",
                [now, campaign_id, clip_key, slot])


def clip_for_audit(con: duckdb.DuckDBPyConnection, clip_key: int) -> dict:
    result = con.execute(f"""
        SELECT c.clip_key, c.clip_id, c.domain, c.source, c.audio_path, c.audio_ok, c.duration_s,
               {FIRST_GENERATED_CAPTION_SQL} AS caption,
               {ORIGINAL_CAPTIONS_SQL} AS originals,
               {RAW_TAGS_SQL} AS raw_tags
        FROM clips c WHERE c.clip_key = ?""", [clip_key])
    names = [d[0] for d in result.description]
    return dict(zip(names, result.fetchall()[0]))


def verdict_frame(con: duckdb.DuckDBPyConnection, campaign_id: int | None = None) -> pd.DataFrame:
    where, params = ("WHERE v.campaign_id = ?", [campaign_id]) if campaign_id is not None else ("", [])
    return con.execute(f"""
        SELECT v.campaign_id, c.clip_id, v.annotator, v.tag, v.verdict, v.judged_at
        FROM audit_verdicts v JOIN clips c USING (clip_key) {where} ORDER BY v.judged_at""", params).df()


def added_frame(con: duckdb.DuckDBPyConnection, campaign_id: int | None = None) -> pd.DataFrame:
    where, params = ("WHERE a.campaign_id = ?", [campaign_id]) if campaign_id is not None else ("", [])
    return con.execute(f"""SELECT a.campaign_id, c.clip_id, a.annotator, a.tag FROM audit_added_tags a
                           JOIN clips c USING (clip_key) {where}""", params).df()


def rating_frame(con: duckdb.DuckDBPyConnection, campaign_id: int | None = None) -> pd.DataFrame:
    where, params = ("WHERE r.campaign_id = ?", [campaign_id]) if campaign_id is not None else ("", [])
    return con.execute(f"""SELECT r.campaign_id, c.clip_id, r.annotator, r.rating, r.note,
                                  r.seconds_spent AS seconds
                           FROM audit_caption_ratings r JOIN clips c USING (clip_key) {where}""", params).df()


def audited_clip_attributes(con: duckdb.DuckDBPyConnection, campaign_id: int | None = None) -> pd.DataFrame:
    where, params = ("WHERE s.campaign_id = ?", [campaign_id]) if campaign_id is not None else ("", [])
    return con.execute(f"""
        SELECT DISTINCT c.clip_id, coalesce(c.domain, 'unknown') AS domain, coalesce(c.source, 'unknown') AS source,
               (SELECT max(array_length(string_split(text, ' '))) FROM captions g
                WHERE g.clip_key = c.clip_key AND g.kind = 'generated') AS caption_words
        FROM audit_slots s JOIN clips c USING (clip_key) {where}""", params).df()


def caption_comparison_rows(con: duckdb.DuckDBPyConnection, clip_ids: list[str] | None = None) -> pd.DataFrame:
    """Per clip: domain, generated caption, original captions, raw tags (for captioner-vs-human statistics)."""
    filter_sql, params = "", []
    if clip_ids is not None:
        filter_sql, params = "WHERE c.clip_id IN (SELECT unnest(?))", [clip_ids]
    return con.execute(f"""
        SELECT c.clip_id, coalesce(c.domain, 'unknown') AS domain,
               {FIRST_GENERATED_CAPTION_SQL} AS generated_caption,
               coalesce({ORIGINAL_CAPTIONS_SQL}, []) AS original_captions,
               {RAW_TAGS_SQL} AS raw_tags
        FROM clips c {filter_sql}""", params).df()


def clip_keys_of(con: duckdb.DuckDBPyConnection, clip_ids: list[str]) -> dict[str, int]:
    return dict(con.execute("SELECT clip_id, clip_key FROM clips WHERE clip_id IN (SELECT unnest(?))",
                            [clip_ids]).fetchall())


def insert_reference_campaign(con: duckdb.DuckDBPyConnection, *, name: str, by: str, annotator: str, design: dict,
                              slots: pd.DataFrame, verdicts: pd.DataFrame, missed: pd.DataFrame) -> int:
    """A campaign judged by reference labels: one slot per clip, already claimed and submitted."""
    campaign_id = insert_campaign(con, name=name, by=by, sample_size=len(slots), annotators_per_clip=1, seed=0,
                                  design=design, kind="reference", slots=slots)
    now = now_utc()
    con.execute("UPDATE audit_slots SET annotator = ?, claimed_at = ?, submitted_at = ? WHERE campaign_id = ?",
                [annotator, now, now, campaign_id])
    for table, frame, columns in (("audit_verdicts", verdicts, "clip_key, ?, tag, verdict, ?"),
                                  ("audit_added_tags", missed, "clip_key, ?, tag, ?")):
        if frame.empty:
            continue
        con.register("reference_rows", pa.Table.from_pandas(frame, preserve_index=False))
        try:
            con.execute(f"INSERT INTO {table} SELECT ?, {columns} FROM reference_rows",
                        [campaign_id, annotator, now])
        finally:
            con.unregister("reference_rows")
    return campaign_id
