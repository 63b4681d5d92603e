"""SQL of ingest: every manifest format is staged into one table, then written to clips, captions and tags.

Place in the flow: ingest (curation/ingest/ingest.py) -> here -> DuckDB; the schema is owned by store/schema.py.
Example: ``stage_rows(con, arrow_table)`` then ``write_staging(con, ingest_id, audio_table, extractor, captioner)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from curation.errors import ManifestError
from curation.store.schema import now_utc

# Every format is first turned into this staging table; one set of statements then writes it.

STAGING_COLUMNS = (
    ("line", "INTEGER"), ("clip_id", "VARCHAR"), ("source", "VARCHAR"), ("domain", "VARCHAR"),
    ("audio_ref", "VARCHAR"), ("duration_s", "DOUBLE"), ("sample_rate_hz", "INTEGER"), ("caption", "VARCHAR"),
    ("captioner", "VARCHAR"), ("original_captions", "VARCHAR[]"), ("tags", "VARCHAR[]"), ("start_s", "DOUBLE"),
    ("cut_channels", "INTEGER[]"), ("declared_channels", "INTEGER"), ("declared_samples", "BIGINT"),
    ("more_captions", "VARCHAR[]"),
)


# Lhotse fields are read as JSON so that the type checks below are exact (DuckDB would quietly cast 12 to '12').
_LHOTSE_READ = """
    SELECT id, duration, start, channel,
           json_extract(supervisions, '$[0].custom') AS custom,
           json_type(supervisions) AS supervisions_type, json_array_length(supervisions) AS supervisions_len,
           json_extract(recording, '$.sources[0].source') AS audio_ref_json,
           json_array_length(recording, '$.sources') AS sources_len,
           json_extract(recording, '$.sampling_rate') AS sampling_rate_json,
           json_extract(recording, '$.num_samples') AS num_samples_json,
           json_extract(recording, '$.channel_ids') AS channel_ids_json
    FROM read_json(?, format = 'newline_delimited', maximum_object_size = 67108864,
                   columns = {id: 'JSON', duration: 'JSON', start: 'JSON', channel: 'JSON', supervisions: 'JSON',
                              recording: 'JSON'})
"""


_ALL_STRINGS = "list_bool_and(list_transform(json_extract({x}, '$[*]'), lambda e: json_type(e) = 'VARCHAR'))"


def stage_lhotse_fast(con: duckdb.DuckDBPyConnection, manifest_path: Path, max_caption_chars: int,
                      max_tag_chars: int, max_tags_per_clip: int) -> int:
    """Stage a well-formed Lhotse manifest with DuckDB's JSON reader; return the number of rows that break a rule.

    Raises duckdb.Error on any JSON or UTF-8 problem. Any non-zero return or error sends the caller to the
    exact (slower) Python reader, which names the file, line and field; this path only has to be fast and
    never accept what the Python reader would refuse.
    """
    con.execute(f"CREATE OR REPLACE TEMP TABLE lhotse_raw AS {_LHOTSE_READ}", [str(manifest_path)])
    tags_ok = _ALL_STRINGS.format(x="custom->'audio_tag'")
    originals_ok = _ALL_STRINGS.format(x="custom->'original_caption'")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE staging AS
        SELECT CAST(row_number() OVER () AS INTEGER) AS line,
               id ->> '$' AS clip_id,
               custom ->> 'source' AS source,
               custom ->> 'domain' AS domain,
               audio_ref_json ->> '$' AS audio_ref,
               CAST(duration AS DOUBLE) AS duration_s,
               CAST(sampling_rate_json AS INTEGER) AS sample_rate_hz,
               custom ->> 'caption' AS caption,
               custom ->> 'captioner' AS captioner,
               CASE json_type(custom->'original_caption')
                    WHEN 'ARRAY' THEN list_transform(json_extract(custom, '$.original_caption[*]'), lambda e: e ->> '$')
                    WHEN 'VARCHAR' THEN [custom ->> 'original_caption'] ELSE [] END AS original_captions,
               CASE WHEN json_type(custom->'audio_tag') = 'ARRAY'
                    THEN list_transform(json_extract(custom, '$.audio_tag[*]'), lambda e: trim(e ->> '$'))
                    ELSE [] END AS tags,
               coalesce(CAST(start AS DOUBLE), 0.0) AS start_s,
               CASE WHEN json_type(channel) IN ('UBIGINT', 'BIGINT') THEN [CAST(channel AS INTEGER)] END AS cut_channels,
               CAST(json_array_length(channel_ids_json) AS INTEGER) AS declared_channels,
               CAST(num_samples_json AS BIGINT) AS declared_samples,
               CAST([] AS VARCHAR[]) AS more_captions,
               (json_type(id) IS DISTINCT FROM 'VARCHAR' OR length(trim(id ->> '$')) = 0
                OR json_type(duration) NOT IN ('DOUBLE', 'UBIGINT', 'BIGINT') OR CAST(duration AS DOUBLE) <= 0
                OR supervisions_type IS DISTINCT FROM 'ARRAY' OR supervisions_len = 0
                OR json_type(custom) NOT IN ('OBJECT', 'NULL')
                OR json_type(audio_ref_json) IS DISTINCT FROM 'VARCHAR' OR length(audio_ref_json ->> '$') = 0
                OR (sampling_rate_json IS NOT NULL AND (json_type(sampling_rate_json) NOT IN ('UBIGINT', 'BIGINT')
                    OR CAST(sampling_rate_json AS BIGINT) <= 0))
                OR coalesce(json_type(custom->'caption') NOT IN ('VARCHAR', 'NULL'), false)
                OR coalesce(length(custom ->> 'caption') > {int(max_caption_chars)}, false)
                OR coalesce(json_type(custom->'audio_tag') NOT IN ('ARRAY', 'NULL'), false)
                OR coalesce(json_type(custom->'audio_tag') = 'ARRAY' AND NOT coalesce({tags_ok}, true), false)
                OR coalesce(json_type(custom->'original_caption') NOT IN ('ARRAY', 'VARCHAR', 'NULL'), false)
                OR coalesce(json_type(custom->'original_caption') = 'ARRAY' AND NOT coalesce({originals_ok}, true), false)
                OR coalesce(json_type(custom->'source') NOT IN ('VARCHAR', 'NULL'), false)
                OR coalesce(json_type(custom->'domain') NOT IN ('VARCHAR', 'NULL'), false)
                OR coalesce(json_type(custom->'captioner') NOT IN ('VARCHAR', 'NULL'), false)
                -- Anything beyond one supervision, one source, one channel and numeric fields goes to the exact
                -- reader, which applies the documented policies and counts them.
                OR supervisions_len > 1 OR sources_len IS DISTINCT FROM 1
                OR coalesce(json_type(start) NOT IN ('DOUBLE', 'UBIGINT', 'BIGINT', 'NULL'), false)
                OR coalesce(json_type(channel) NOT IN ('UBIGINT', 'BIGINT', 'NULL'), false)
                OR coalesce(json_type(channel_ids_json) NOT IN ('ARRAY', 'NULL'), false)
                OR coalesce(json_type(num_samples_json) NOT IN ('UBIGINT', 'BIGINT', 'NULL'), false)
                OR coalesce(json_array_length(custom->'audio_tag') > {int(max_tags_per_clip)}, false)
               ) AS bad
        FROM lhotse_raw
    """)
    con.execute("DROP TABLE lhotse_raw")
    bad_rows, empty_tags, long_tags, rows, distinct_ids = con.execute(f"""
        SELECT count(*) FILTER (WHERE bad),
               count(*) FILTER (WHERE list_contains(list_transform(tags, lambda t: length(t) = 0), true)),
               count(*) FILTER (WHERE list_contains(list_transform(tags, lambda t: length(t) > {int(max_tag_chars)}), true)),
               count(*), count(DISTINCT clip_id)
        FROM staging""").fetchall()[0]
    problems = bad_rows + empty_tags + long_tags + (rows - distinct_ids) + (1 if rows == 0 else 0)
    if problems == 0:
        con.execute("ALTER TABLE staging DROP COLUMN bad")
    return problems


def stage_rows(con: duckdb.DuckDBPyConnection, arrow_table) -> None:
    """Stage rows already checked in Python (slow path, flat formats, audio folders)."""
    con.register("staging_arrow", arrow_table)
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE staging AS SELECT * FROM staging_arrow")
    finally:
        con.unregister("staging_arrow")


def read_parquet_rows(con: duckdb.DuckDBPyConnection, path: Path) -> list[dict]:
    try:
        result = con.execute("SELECT * FROM read_parquet(?)", [str(path)])
    except duckdb.Error as exc:
        raise ManifestError(path, None, None, found=str(exc).splitlines()[0], found_is_description=True,
                            expected="a readable Parquet file") from None
    names = [column[0] for column in result.description]
    return [dict(zip(names, row)) for row in result.fetchall()]


def staged_audio_rows(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """What each staged clip declares about its audio, as dicts (audio resolution and probing read these)."""
    result = con.execute("""SELECT clip_id, audio_ref, source, duration_s, sample_rate_hz, start_s, cut_channels,
                                   declared_channels, declared_samples FROM staging ORDER BY line""")
    names = [d[0] for d in result.description]
    return [dict(zip(names, row)) for row in result.fetchall()]


def staged_distinct_tags(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [row[0] for row in con.execute(
        "SELECT DISTINCT tag FROM (SELECT unnest(tags) AS tag FROM staging) WHERE tag IS NOT NULL").fetchall()]


def respell_staged_tags(con: duckdb.DuckDBPyConnection, respelled: dict[str, str]) -> int:
    """Replace staged tag spellings by their normalised form, keep the first of duplicates in a clip; return how
    many tag rows were folded away as duplicates."""
    if not respelled:
        return 0
    con.execute("CREATE OR REPLACE TEMP TABLE tag_respelling (raw VARCHAR PRIMARY KEY, tag VARCHAR NOT NULL)")
    con.executemany("INSERT INTO tag_respelling VALUES (?, ?)", list(respelled.items()))
    before = con.execute("SELECT coalesce(sum(len(tags)), 0) FROM staging").fetchall()[0][0]
    con.execute("""
        CREATE OR REPLACE TEMP TABLE staging_retagged AS
        SELECT line, list(tag ORDER BY first_pos) AS tags FROM (
            SELECT e.line, coalesce(r.tag, e.raw) AS tag, min(e.pos) AS first_pos
            FROM (SELECT line, unnest(tags) AS raw, generate_subscripts(tags, 1) AS pos FROM staging) e
            LEFT JOIN tag_respelling r ON r.raw = e.raw
            GROUP BY e.line, coalesce(r.tag, e.raw))
        GROUP BY line""")
    con.execute("UPDATE staging SET tags = r.tags FROM staging_retagged r WHERE staging.line = r.line")
    after = con.execute("SELECT coalesce(sum(len(tags)), 0) FROM staging").fetchall()[0][0]
    con.execute("DROP TABLE staging_retagged")
    con.execute("DROP TABLE tag_respelling")
    return int(before - after)


def begin_ingest(con: duckdb.DuckDBPyConnection, path: str, fmt: str, on_bad_row: str,
                 audio_root: str | None = None) -> int:
    ingest_id = con.execute("SELECT coalesce(max(ingest_id), 0) + 1 FROM ingests").fetchall()[0][0]
    con.execute("INSERT INTO ingests (ingest_id, path, format, on_bad_row, started_at, audio_root) "
                "VALUES (?, ?, ?, ?, ?, ?)", [ingest_id, path, fmt, on_bad_row, now_utc(), audio_root])
    return ingest_id


def ingest_audio_roots(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [row[0] for row in con.execute(
        "SELECT DISTINCT audio_root FROM ingests WHERE audio_root IS NOT NULL ORDER BY 1").fetchall()]


@dataclass(frozen=True)
class StagedCounts:
    clips: int
    captions: int
    tag_rows: int
    distinct_tags: int


def write_staging(con: duckdb.DuckDBPyConnection, ingest_id: int, audio_table, extractor: str,
                  default_captioner: str) -> StagedCounts:
    """Upsert the staged clips by clip_id; replace their captions and this extractor's tag rows.

    Call inside ``transaction(con)``. ``audio_table`` (arrow: clip_id, audio_path, audio_ok, source) holds
    the audio paths already resolved and checked on disk.
    """
    con.register("staged_audio", audio_table)
    try:
        con.execute("""
            CREATE OR REPLACE TEMP TABLE staged AS
            SELECT s.line, s.clip_id, coalesce(s.source, a.source) AS source, s.domain, a.audio_path, a.audio_ok,
                   a.duration_s, a.sample_rate_hz, s.caption, coalesce(s.captioner, ?) AS captioner,
                   s.original_captions, s.tags, a.num_channels, a.num_frames, a.audio_format,
                   CASE WHEN a.probed THEN ?::TIMESTAMPTZ END AS probed_at, coalesce(s.start_s, 0.0) AS start_s,
                   a.cut_channels, s.more_captions
            FROM staging s JOIN staged_audio a USING (clip_id)""", [default_captioner, now_utc()])
    finally:
        con.unregister("staged_audio")
    con.execute("""
        UPDATE clips SET source = s.source, domain = s.domain, audio_path = s.audio_path, audio_ok = s.audio_ok,
               duration_s = s.duration_s, sample_rate_hz = s.sample_rate_hz, ingest_id = ?,
               num_channels = s.num_channels, num_frames = s.num_frames, audio_format = s.audio_format,
               probed_at = s.probed_at, start_s = s.start_s, cut_channels = s.cut_channels
        FROM staged s WHERE clips.clip_id = s.clip_id""", [ingest_id])
    con.execute("""
        INSERT INTO clips (clip_key, clip_id, source, domain, audio_path, audio_ok, duration_s, sample_rate_hz,
                           ingest_id, num_channels, num_frames, audio_format, probed_at, start_s, cut_channels)
        SELECT (SELECT coalesce(max(clip_key), 0) FROM clips) + CAST(row_number() OVER (ORDER BY s.line) AS INTEGER),
               s.clip_id, s.source, s.domain, s.audio_path, s.audio_ok, s.duration_s, s.sample_rate_hz, ?,
               s.num_channels, s.num_frames, s.audio_format, s.probed_at, s.start_s, s.cut_channels
        FROM staged s WHERE NOT EXISTS (SELECT 1 FROM clips c WHERE c.clip_id = s.clip_id)""", [ingest_id])
    con.execute("""
        CREATE OR REPLACE TEMP TABLE staged_keys AS
        SELECT c.clip_key, s.caption, s.captioner, s.original_captions, s.tags, s.more_captions
        FROM staged s JOIN clips c USING (clip_id)""")
    con.execute("DROP TABLE staged")
    # A re-ingested clip gets the manifest's captions and tags, not a second copy of them.
    con.execute("""
        DELETE FROM captions WHERE clip_key IN (SELECT clip_key FROM staged_keys)
          AND (kind = 'original' OR captioner IN (SELECT DISTINCT captioner FROM staged_keys))""")
    con.execute("""
        INSERT INTO captions (clip_key, kind, captioner, position, text, ingest_id)
        SELECT clip_key, 'generated', captioner, 0, caption, ? FROM staged_keys WHERE caption IS NOT NULL""",
                [ingest_id])
    # Captions of a cut's further supervisions (several-supervisions policy: all kept, in order).
    con.execute("""
        INSERT INTO captions (clip_key, kind, captioner, position, text, ingest_id)
        SELECT clip_key, 'generated', captioner, CAST(pos AS INTEGER), text, ?
        FROM (SELECT clip_key, captioner, unnest(more_captions) AS text, generate_subscripts(more_captions, 1) AS pos
              FROM staged_keys) WHERE text IS NOT NULL AND length(trim(text)) > 0""", [ingest_id])
    con.execute("""
        INSERT INTO captions (clip_key, kind, captioner, position, text, ingest_id)
        SELECT clip_key, 'original', 'human', CAST(pos AS INTEGER), text, ?
        FROM (SELECT clip_key, unnest(original_captions) AS text, generate_subscripts(original_captions, 1) AS pos
              FROM staged_keys) WHERE text IS NOT NULL AND length(trim(text)) > 0""", [ingest_id])
    con.execute("""
        CREATE OR REPLACE TEMP TABLE staged_tags AS
        SELECT DISTINCT clip_key, unnest(tags) AS tag FROM staged_keys""")
    con.execute("""
        INSERT INTO tags
        SELECT (SELECT coalesce(max(tag_id), 0) FROM tags) + CAST(row_number() OVER (ORDER BY tag) AS INTEGER), tag
        FROM (SELECT DISTINCT tag FROM staged_tags) n WHERE NOT EXISTS (SELECT 1 FROM tags t WHERE t.tag = n.tag)""")
    con.execute("DELETE FROM clip_tags WHERE extractor = ? AND clip_key IN (SELECT clip_key FROM staged_keys)",
                [extractor])
    con.execute("""
        INSERT INTO clip_tags (clip_key, tag_id, extractor, ingest_id) SELECT st.clip_key, t.tag_id, ?, ? FROM staged_tags st JOIN tags t USING (tag)""",
                [extractor, ingest_id])
    clips, captions, tag_rows, distinct_tags = con.execute("""
        SELECT (SELECT count(*) FROM staged_keys),
               (SELECT count(*) FILTER (WHERE caption IS NOT NULL)
                       + coalesce(sum(length(list_filter(original_captions, lambda x: length(trim(x)) > 0))), 0)
                       + coalesce(sum(length(list_filter(more_captions, lambda x: length(trim(x)) > 0))), 0)
                FROM staged_keys),
               (SELECT count(*) FROM staged_tags),
               (SELECT count(DISTINCT tag) FROM staged_tags)""").fetchall()[0]
    return StagedCounts(clips, captions, tag_rows, distinct_tags)


def drop_staging(con: duckdb.DuckDBPyConnection) -> None:
    for table in ("lhotse_raw", "staging", "staged", "staged_keys", "staged_tags", "tag_respelling",
                  "staging_retagged"):
        con.execute(f"DROP TABLE IF EXISTS {table}")


def record_notes(con: duckdb.DuckDBPyConnection, ingest_id: int, rows: list[tuple[str, int, str, list[str]]]) -> None:
    """rows: (kind, count, message, examples) from curation.ingest.ingest.IngestNotes."""
    import json

    if rows:
        con.executemany("INSERT INTO ingest_notes VALUES (?, ?, ?, ?, ?)",
                        [(ingest_id, kind, n, message, json.dumps(examples)) for kind, n, message, examples in rows])


def ingest_notes(con: duckdb.DuckDBPyConnection, ingest_id: int) -> list[tuple[str, int, str, str]]:
    return con.execute("SELECT kind, n, message, examples FROM ingest_notes WHERE ingest_id = ? ORDER BY kind",
                       [ingest_id]).fetchall()


def record_bad_rows(con: duckdb.DuckDBPyConnection, ingest_id: int, rows: list[tuple[int | None, str | None, str]]) -> None:
    if rows:
        con.executemany("INSERT INTO ingest_bad_rows VALUES (?, ?, ?, ?)", [(ingest_id, *row) for row in rows])


def record_missing_audio(con: duckdb.DuckDBPyConnection, ingest_id: int, arrow_table) -> None:
    """arrow_table: clip_id, audio_path, reason."""
    con.register("missing_arrow", arrow_table)
    try:
        con.execute("INSERT INTO ingest_missing_audio SELECT ?, clip_id, audio_path, reason FROM missing_arrow",
                    [ingest_id])
    finally:
        con.unregister("missing_arrow")


def finish_ingest(con: duckdb.DuckDBPyConnection, ingest_id: int, counts: StagedCounts, skipped_rows: int,
                  missing_audio: int, seconds: float) -> None:
    con.execute("""
        UPDATE ingests SET finished_at = ?, clips = ?, captions = ?, tag_rows = ?, distinct_tags = ?,
               skipped_rows = ?, missing_audio = ?, seconds = ? WHERE ingest_id = ?""",
                [now_utc(), counts.clips, counts.captions, counts.tag_rows, counts.distinct_tags, skipped_rows,
                 missing_audio, seconds, ingest_id])



def clips_to_probe(con: duckdb.DuckDBPyConnection, *, all_clips: bool, with_sources: bool) -> list[dict]:
    """Clips whose audio header has not been read (or all with a path); with_sources adds clips without a path
    whose source names a dataset (resolved by an audio pattern)."""
    where = "audio_path IS NOT NULL" + ("" if all_clips else " AND probed_at IS NULL")
    if with_sources:
        where = f"({where}) OR (audio_path IS NULL AND source IS NOT NULL)"
    result = con.execute(f"""
        SELECT clip_id, audio_path, source, duration_s, sample_rate_hz, coalesce(start_s, 0.0) AS start_s,
               cut_channels FROM clips WHERE {where} ORDER BY clip_key""")
    names = [d[0] for d in result.description]
    return [dict(zip(names, row)) for row in result.fetchall()]


def update_probed_clips(con: duckdb.DuckDBPyConnection, arrow_table) -> None:
    """arrow_table: clip_id, audio_path, audio_ok, duration_s, sample_rate_hz, num_channels, num_frames,
    audio_format, probed (bool), cut_channels. Call inside ``transaction(con)``."""
    con.register("probed_arrow", arrow_table)
    try:
        con.execute("""
            UPDATE clips SET audio_path = p.audio_path, audio_ok = p.audio_ok, duration_s = p.duration_s,
                   sample_rate_hz = p.sample_rate_hz, num_channels = p.num_channels, num_frames = p.num_frames,
                   audio_format = p.audio_format, cut_channels = p.cut_channels,
                   probed_at = CASE WHEN p.probed THEN ?::TIMESTAMPTZ END
            FROM probed_arrow p WHERE clips.clip_id = p.clip_id""", [now_utc()])
    finally:
        con.unregister("probed_arrow")
