"""SQL of corpus-wide reads and metadata: counts, the Overview frames, key-value corpus metadata, demo truth.

Place in the flow: read-only views of what ingest wrote (Overview, ``stats``), plus ``corpus_meta`` that the demo
and reference audits write. Example: ``corpus_stats(con)["clips"]``.
"""
from __future__ import annotations

import json
from typing import Iterator

import duckdb


def set_corpus_meta(con: duckdb.DuckDBPyConnection, key: str, value: object) -> None:
    con.execute("INSERT OR REPLACE INTO corpus_meta VALUES (?, ?)", [key, json.dumps(value)])


def corpus_meta(con: duckdb.DuckDBPyConnection, key: str) -> object | None:
    rows = con.execute("SELECT value FROM corpus_meta WHERE key = ?", [key]).fetchall()
    return json.loads(rows[0][0]) if rows else None


def write_clip_truth(con: duckdb.DuckDBPyConnection, rows: list[tuple[str, list, list, list, str]]) -> None:
    con.executemany("INSERT OR REPLACE INTO clip_truth VALUES (?, ?, ?, ?, ?)", rows)


def corpus_stats(con: duckdb.DuckDBPyConnection) -> dict:
    clips, captions, tag_rows, distinct_tags = con.execute("""
        SELECT (SELECT count(*) FROM clips), (SELECT count(*) FROM captions), (SELECT count(*) FROM clip_tags),
               (SELECT count(DISTINCT tag_id) FROM clip_tags)""").fetchall()[0]
    domains = dict(con.execute(
        "SELECT coalesce(domain, 'unknown'), count(*) FROM clips GROUP BY 1 ORDER BY 2 DESC, 1").fetchall())
    sources = dict(con.execute(
        "SELECT coalesce(source, 'unknown'), count(*) FROM clips GROUP BY 1 ORDER BY 2 DESC, 1").fetchall())
    return {"clips": clips, "captions": captions, "tag_rows": tag_rows, "distinct_tags": distinct_tags,
            "domains": domains, "sources": sources}


def overview_frames(con: duckdb.DuckDBPyConnection, top_tags: int = 30) -> dict:
    """DataFrames behind the Overview page; each one GROUP BY, so it stays fast at 400k clips."""
    return {
        "by_domain_source": con.execute("""
            SELECT coalesce(domain, 'unknown') AS domain, coalesce(source, 'unknown') AS source, count(*) AS clips,
                   round(sum(duration_s) / 3600, 3) AS hours
            FROM clips GROUP BY ALL ORDER BY clips DESC""").df(),
        "durations": con.execute("SELECT duration_s, coalesce(domain, 'unknown') AS domain FROM clips "
                                 "WHERE duration_s IS NOT NULL").df(),
        "caption_lengths": con.execute("""
            SELECT kind, length(text) AS characters, array_length(string_split(text, ' ')) AS words
            FROM captions""").df(),
        "tags_per_clip": con.execute("""
            SELECT c.clip_key, coalesce(domain, 'unknown') AS domain, count(ct.tag_id) AS tags
            FROM clips c LEFT JOIN clip_tags ct USING (clip_key) GROUP BY c.clip_key, domain""").df(),
        "top_tags": con.execute("""
            SELECT t.tag, count(DISTINCT ct.clip_key) AS clips
            FROM clip_tags ct JOIN tags t USING (tag_id) GROUP BY t.tag ORDER BY clips DESC, t.tag LIMIT ?""",
                                [top_tags]).df(),
        "ingests": con.execute("""
            SELECT ingest_id, path, format, started_at, round(seconds, 2) AS seconds, clips, captions, tag_rows,
                   distinct_tags, skipped_rows, missing_audio
            FROM ingests ORDER BY ingest_id DESC""").df(),
        "audio": con.execute("SELECT count(*) FILTER (WHERE audio_ok) AS playable, "
                             "count(*) FILTER (WHERE NOT audio_ok) AS missing FROM clips").df(),
    }


def iter_table_rows(con: duckdb.DuckDBPyConnection, table: str) -> Iterator[tuple]:
    """Every row of a known table in a stable order (tests compare whole databases with it)."""
    known = {"clips": "clip_key", "captions": "clip_key, kind, captioner, position", "tags": "tag_id",
             "clip_tags": "clip_key, tag_id, extractor", "ingests": "ingest_id", "decisions": "decision_id",
             "ingest_bad_rows": "ingest_id, line", "ingest_missing_audio": "ingest_id, clip_id",
             "corpus_meta": "key", "clip_truth": "clip_id"}
    if table not in known:
        raise KeyError(f"unknown table {table!r}; expected one of {sorted(known)}")
    yield from con.execute(f"SELECT * FROM {table} ORDER BY {known[table]}").fetchall()

