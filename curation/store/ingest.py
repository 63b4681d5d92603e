"""SQL of ingest: every manifest format is staged into one table, then written to clips, captions and tags.

Place in the flow: ingest (curation/ingest/ingest.py) -> here -> DuckDB; the schema is owned by store/schema.py.
Example: ``stage_rows(con, arrow_table)`` then ``write_staging(con, ingest_id, audio_table, extractor, captioner)``.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

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


# The Lhotse fields a chunk's fast path reads, as JSON values (so that the type checks below are exact: DuckDB would
# quietly cast 12 to '12'), and the paths whose JSON type the checks need. Each list is read by one parse of the
# line (json_extract / json_type with a list of paths); reading a field at a time would parse the ~2.5 KB caption
# some twenty times per line.
_SUP = "$.supervisions[0].custom"
_LHOTSE_VALUES = {
    "id": "$.id", "duration": "$.duration", "start": "$.start", "channel": "$.channel",
    "audio_tag": f"{_SUP}.audio_tag", "caption": f"{_SUP}.caption", "original_caption": f"{_SUP}.original_caption",
    "source": f"{_SUP}.source", "domain": f"{_SUP}.domain", "captioner": f"{_SUP}.captioner",
    "audio_ref": "$.recording.sources[0].source", "sampling_rate": "$.recording.sampling_rate",
    "num_samples": "$.recording.num_samples", "channel_ids": "$.recording.channel_ids", "cut_type": "$.type",
}
_LHOTSE_TYPES = {
    "supervisions": "$.supervisions", "supervision_0": "$.supervisions[0]", "supervision_1": "$.supervisions[1]",
    "custom": _SUP, "caption": f"{_SUP}.caption", "text": "$.supervisions[0].text", "sources": "$.recording.sources",
    "source_0": "$.recording.sources[0]", "source_1": "$.recording.sources[1]",
}


def _lhotse_read(max_tags_per_clip: int) -> str:
    types = {**_LHOTSE_TYPES, "tag_beyond_max": f"{_SUP}.audio_tag[{int(max_tags_per_clip)}]"}
    values_sql = ", ".join(f"v[{i}] AS {name}" for i, name in enumerate(_LHOTSE_VALUES, start=1))
    types_sql = ", ".join(f"t[{i}] AS {name}_type" for i, name in enumerate(types, start=1))
    value_paths = ", ".join(f"'{path}'" for path in _LHOTSE_VALUES.values())
    type_paths = ", ".join(f"'{path}'" for path in types.values())
    # try(): a line that is no JSON gives NULL lists, which the checks count as bad (the exact reader says why).
    return f"""
        SELECT line, v IS NULL OR t IS NULL AS unreadable, {values_sql}, {types_sql}
        FROM (SELECT line, try(json_extract(raw, [{value_paths}])) AS v, try(json_type(raw, [{type_paths}])) AS t
              FROM manifest_lines WHERE NOT blank)"""


_ALL_STRINGS = "list_bool_and(list_transform(json_extract({x}, '$[*]'), lambda e: json_type(e) = 'VARCHAR'))"


def _type_in(value: str, *types: str) -> str:
    """SQL: the JSON value is absent or of one of ``types`` (a JSON null counts as 'NULL')."""
    listed = ", ".join(f"'{t}'" for t in types)
    return f"coalesce(json_type({value}) IN ({listed}, 'NULL'), true)"


def stage_lhotse_lines(con: duckdb.DuckDBPyConnection, lines, max_caption_chars: int, max_tag_chars: int,
                       max_tags_per_clip: int) -> int:
    """Stage one chunk of Lhotse lines with DuckDB's JSON parser; return the number of rows that break a rule.

    ``lines``: arrow table (line, raw, blank) of ``LineChunk.lines_table``. Call on the ingest's staging
    connection (never inside the write transaction: a failed statement there would abort it). Raises
    duckdb.Error on anything the parser cannot take. Any non-zero return or error sends the caller to the exact
    (slower) Python reader for this chunk, which names the file, line and field; this path only has to be fast
    and never accept what the Python reader would refuse. Ids seen in earlier chunks (``remember_staged_ids``)
    count as problems too (duplicates).
    """
    con.register("manifest_lines", lines)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE lhotse_raw AS {_lhotse_read(max_tags_per_clip)}")
    finally:
        con.unregister("manifest_lines")
    tags_ok = _ALL_STRINGS.format(x="audio_tag")
    originals_ok = _ALL_STRINGS.format(x="original_caption")
    numeric = ("DOUBLE", "UBIGINT", "BIGINT")
    integer = ("UBIGINT", "BIGINT")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE staging AS
        SELECT line,
               id ->> '$' AS clip_id,
               source ->> '$' AS source,
               domain ->> '$' AS domain,
               audio_ref ->> '$' AS audio_ref,
               TRY_CAST(duration AS DOUBLE) AS duration_s,
               TRY_CAST(sampling_rate AS INTEGER) AS sample_rate_hz,
               caption ->> '$' AS caption,
               captioner ->> '$' AS captioner,
               CASE json_type(original_caption)
                    WHEN 'ARRAY' THEN list_transform(json_extract(original_caption, '$[*]'), lambda e: e ->> '$')
                    WHEN 'VARCHAR' THEN [original_caption ->> '$'] ELSE [] END AS original_captions,
               CASE WHEN json_type(audio_tag) = 'ARRAY'
                    THEN list_transform(json_extract(audio_tag, '$[*]'), lambda e: trim(e ->> '$'))
                    ELSE [] END AS tags,
               coalesce(TRY_CAST(start AS DOUBLE), 0.0) AS start_s,
               CASE WHEN json_type(channel) IN ('UBIGINT', 'BIGINT') THEN [TRY_CAST(channel AS INTEGER)] END AS cut_channels,
               CAST(json_array_length(channel_ids) AS INTEGER) AS declared_channels,
               TRY_CAST(num_samples AS BIGINT) AS declared_samples,
               CAST([] AS VARCHAR[]) AS more_captions,
               (unreadable
                OR json_type(id) IS DISTINCT FROM 'VARCHAR' OR NOT regexp_matches(id ->> '$', '\\S')
                OR regexp_matches(id ->> '$', '^\\s|\\s$')  -- the exact reader strips it: let it
                OR NOT coalesce(json_type(duration) IN {numeric!r}, false) OR TRY_CAST(duration AS DOUBLE) <= 0
                OR NOT coalesce(json_type(cut_type) = 'NULL' OR cut_type ->> '$' IN ('MonoCut', 'MultiCut'), true)
                OR supervisions_type IS DISTINCT FROM 'ARRAY' OR supervision_0_type IS DISTINCT FROM 'OBJECT'
                OR coalesce(text_type <> 'NULL', false)  -- a supervision's text is an original caption: the exact reader adds it
                OR NOT coalesce(custom_type IN ('OBJECT', 'NULL'), true)
                OR json_type(audio_ref) IS DISTINCT FROM 'VARCHAR' OR length(audio_ref ->> '$') = 0
                OR NOT {_type_in("sampling_rate", *integer)} OR TRY_CAST(sampling_rate AS BIGINT) <= 0
                OR NOT coalesce(caption_type IN ('VARCHAR', 'NULL'), true)
                OR coalesce(length(caption ->> '$') > {int(max_caption_chars)}, false)
                OR coalesce(NOT regexp_matches(caption ->> '$', '\\S'), false)  -- blank: the exact reader drops it
                OR NOT {_type_in("audio_tag", "ARRAY")}
                OR (json_type(audio_tag) = 'ARRAY' AND NOT coalesce({tags_ok}, true))
                OR NOT {_type_in("original_caption", "ARRAY", "VARCHAR")}
                OR (json_type(original_caption) = 'ARRAY' AND NOT coalesce({originals_ok}, true))
                OR (json_type(original_caption) = 'ARRAY'  -- repeats and blanks: the exact reader drops them
                    AND json_array_length(original_caption) <> len(list_distinct(list_filter(
                        list_transform(json_extract(original_caption, '$[*]'), lambda e: e ->> '$'),
                        lambda x: regexp_matches(x, '\\S')))))
                OR coalesce(list_bool_or(list_transform(
                        CASE json_type(original_caption)
                             WHEN 'ARRAY' THEN list_transform(json_extract(original_caption, '$[*]'), lambda e: e ->> '$')
                             WHEN 'VARCHAR' THEN [original_caption ->> '$'] ELSE [] END,
                        lambda x: length(x) > {int(max_caption_chars)} OR NOT regexp_matches(x, '\\S'))), false)
                OR NOT {_type_in("source", "VARCHAR")} OR NOT {_type_in("domain", "VARCHAR")}
                OR NOT {_type_in("captioner", "VARCHAR")}
                -- Anything beyond one supervision, one source, one channel and numeric fields goes to the exact
                -- reader, which applies the documented policies and counts them.
                OR supervision_1_type IS NOT NULL
                OR sources_type IS DISTINCT FROM 'ARRAY' OR source_0_type IS DISTINCT FROM 'OBJECT'
                OR source_1_type IS NOT NULL
                OR NOT {_type_in("start", *numeric)} OR TRY_CAST(start AS DOUBLE) < 0
                OR NOT {_type_in("channel", *integer)} OR TRY_CAST(channel AS BIGINT) < 0
                OR NOT {_type_in("channel_ids", "ARRAY")}
                OR (json_type(channel_ids) = 'ARRAY' AND NOT coalesce(json_array_length(channel_ids) > 0
                    AND list_bool_and(list_transform(json_extract(channel_ids, '$[*]'),
                        lambda e: json_type(e) IN ('UBIGINT', 'BIGINT') AND TRY_CAST(e AS BIGINT) >= 0)), false))
                OR NOT {_type_in("num_samples", *integer)} OR TRY_CAST(num_samples AS BIGINT) <= 0
                OR tag_beyond_max_type IS NOT NULL
               ) IS NOT FALSE AS bad
        FROM lhotse_raw
    """)
    con.execute("DROP TABLE lhotse_raw")
    bad_rows, empty_tags, long_tags, rows, distinct_ids = con.execute(f"""
        SELECT count(*) FILTER (WHERE bad),
               count(*) FILTER (WHERE list_contains(list_transform(tags, lambda t: length(t) = 0), true)),
               count(*) FILTER (WHERE list_contains(list_transform(tags, lambda t: length(t) > {int(max_tag_chars)}), true)),
               count(*), count(DISTINCT clip_id)
        FROM staging""").fetchall()[0]
    problems = bad_rows + empty_tags + long_tags + (rows - distinct_ids)
    if problems == 0:
        problems += staged_ids_seen_before(con)
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
    con.execute("INSERT INTO tag_respelling SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[])",
                [list(respelled), list(respelled.values())])
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


def staged_for_writing(con: duckdb.DuckDBPyConnection, audio_table, default_captioner: str):
    """The staged chunk joined with its resolved audio (arrow: clip_id, audio_path, audio_ok, ...), in line order,
    as one arrow table: everything ``write_chunk`` needs, handed from the staging connection to the writing one."""
    con.register("staged_audio", audio_table)
    try:
        return con.sql("""
            SELECT s.line, s.clip_id, coalesce(s.source, a.source) AS source, s.domain, a.audio_path, a.audio_ok,
                   a.duration_s, a.sample_rate_hz, s.caption, coalesce(s.captioner, ?) AS captioner,
                   s.original_captions, s.tags, a.num_channels, a.num_frames, a.audio_format,
                   CASE WHEN a.probed THEN ?::TIMESTAMPTZ END AS probed_at, coalesce(s.start_s, 0.0) AS start_s,
                   a.cut_channels, s.more_captions
            FROM staging s JOIN staged_audio a USING (clip_id) ORDER BY s.line""",
                       params=[default_captioner, now_utc()]).to_arrow_table()
    finally:
        con.unregister("staged_audio")


# ------------------------------------------------------------------ what one ingest has seen, across its chunks

def start_file_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Per-file memory of the staging connection: ids seen (duplicates across chunks), tag spellings respelled."""
    con.execute("CREATE OR REPLACE TEMP TABLE ingest_seen_ids (clip_id VARCHAR NOT NULL, line INTEGER NOT NULL)")
    con.execute("CREATE OR REPLACE TEMP TABLE ingest_respellings (raw VARCHAR NOT NULL, tag VARCHAR NOT NULL)")


def staged_ids_seen_before(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT count(*) FROM staging JOIN ingest_seen_ids USING (clip_id)").fetchall()[0][0]


def seen_id_lines(con: duckdb.DuckDBPyConnection, clip_ids: list[str]) -> dict[str, int]:
    """clip_id -> the line of an earlier chunk that has it, for those of ``clip_ids`` seen before."""
    if not clip_ids:
        return {}
    return dict(con.execute("SELECT clip_id, min(line) FROM ingest_seen_ids "
                            "WHERE clip_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY clip_id", [clip_ids]).fetchall())


def remember_staged_ids(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("INSERT INTO ingest_seen_ids SELECT clip_id, line FROM staging")


def remember_respellings(con: duckdb.DuckDBPyConnection, respelled: dict[str, str]) -> None:
    if respelled:
        con.execute("""INSERT INTO ingest_respellings SELECT DISTINCT r.raw, r.tag
                       FROM (SELECT unnest(?::VARCHAR[]) AS raw, unnest(?::VARCHAR[]) AS tag) r
                       WHERE NOT EXISTS (SELECT 1 FROM ingest_respellings i WHERE i.raw = r.raw)""",
                    [list(respelled), list(respelled.values())])


def respellings(con: duckdb.DuckDBPyConnection, examples: int) -> tuple[int, list[tuple[str, str]]]:
    """How many distinct spellings this file had respelled, and the first ``examples`` of them by spelling."""
    n = con.execute("SELECT count(*) FROM ingest_respellings").fetchall()[0][0]
    first = con.execute("SELECT raw, tag FROM ingest_respellings ORDER BY raw LIMIT ?", [examples]).fetchall()
    return n, first


# ------------------------------------------------------------------------------------------------- readers

def parquet_row_count(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    try:
        return con.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchall()[0][0]
    except duckdb.Error as exc:
        raise ManifestError(path, None, None, found=str(exc).splitlines()[0], found_is_description=True,
                            expected="a readable Parquet file") from None


def iter_parquet_batches(con: duckdb.DuckDBPyConnection, path: Path, batch_rows: int) -> Iterator[list[dict]]:
    """The Parquet file's rows as dicts, ``batch_rows`` at a time, in file order.

    Each batch is one query over a range of file_row_number, which DuckDB prunes to the row groups holding it:
    memory holds a batch (a whole-file result, or a streamed arrow reader, buffers far more).
    """
    total = parquet_row_count(con, path)
    for low in range(0, total, batch_rows):
        try:
            result = con.execute("""
                SELECT * EXCLUDE (file_row_number) FROM read_parquet(?, file_row_number = true)
                WHERE file_row_number >= ? AND file_row_number < ? ORDER BY file_row_number""",
                                 [str(path), low, low + batch_rows])
            names = [column[0] for column in result.description]
            rows = result.fetchall()
        except duckdb.Error as exc:
            raise ManifestError(path, low + 1, None, found=str(exc).splitlines()[0], found_is_description=True,
                                expected="a readable Parquet file") from None
        yield [dict(zip(names, row)) for row in rows]


def begin_ingest(con: duckdb.DuckDBPyConnection, path: str, fmt: str, on_bad_row: str,
                 audio_root: str | None = None) -> int:
    """Record a new, unfinished ingest (finished_at NULL, no line done yet) and return its id."""
    ingest_id = con.execute("SELECT coalesce(max(ingest_id), 0) + 1 FROM ingests").fetchall()[0][0]
    con.execute("INSERT INTO ingests (ingest_id, path, format, on_bad_row, started_at, audio_root, lines_done, "
                "tag_id_before) VALUES (?, ?, ?, ?, ?, ?, 0, (SELECT coalesce(max(tag_id), 0) FROM tags))",
                [ingest_id, path, fmt, on_bad_row, now_utc(), audio_root])
    return ingest_id


def record_progress(con: duckdb.DuckDBPyConnection, ingest_id: int, lines_done: int) -> None:
    """The manifest lines this ingest has committed (call in the transaction that writes them)."""
    con.execute("UPDATE ingests SET lines_done = ? WHERE ingest_id = ?", [int(lines_done), ingest_id])


@dataclass(frozen=True)
class UnfinishedIngest:
    ingest_id: int
    path: str
    lines_done: int
    started_at: object


def unfinished_ingests(con: duckdb.DuckDBPyConnection) -> list[UnfinishedIngest]:
    """Ingests that began and never finished (their process stopped, or one is running now)."""
    return [UnfinishedIngest(*row) for row in con.execute(
        "SELECT ingest_id, path, coalesce(lines_done, 0), started_at FROM ingests WHERE finished_at IS NULL "
        "ORDER BY ingest_id").fetchall()]


def ingest_clip_keys(con: duckdb.DuckDBPyConnection, ingest_id: int) -> np.ndarray:
    """Sorted keys of the clips an ingest wrote (new ones and the ones it re-ingested)."""
    keys = con.execute("SELECT clip_key FROM clips WHERE ingest_id = ? ORDER BY clip_key",
                       [ingest_id]).fetchnumpy()["clip_key"]
    return np.asarray(keys, dtype=np.int64)


def replaced_clip_keys(con: duckdb.DuckDBPyConnection, ingest_id: int) -> np.ndarray:
    keys = con.execute("SELECT clip_key FROM ingest_replaced_clips WHERE replaced_by = ? ORDER BY clip_key",
                       [ingest_id]).fetchnumpy()["clip_key"]
    return np.asarray(keys, dtype=np.int64)


def _restorable_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """Columns of ``table`` that an undo copies back (all but the keys that identify the row)."""
    return [row[0] for row in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() AND NOT internal "
        "AND table_name = ? AND column_name NOT IN ('clip_key', 'clip_id') ORDER BY column_index",
        [table]).fetchall()]


def undo_ingest_batch(con: duckdb.DuckDBPyConnection, ingest_id: int, keys: np.ndarray,
                      replaced: np.ndarray) -> np.ndarray:
    """Undo an unfinished ingest for the clips ``keys`` (sorted; ``replaced``: those of them it re-ingested).

    New clips go with every row that names them (captions, tag rows, postings, extraction attempts); a
    re-ingested clip gets back its earlier row, captions and tag rows. Call inside a transaction, once per batch;
    returns the restored keys, whose captions the caller reindexes in the same transaction. Running it again on
    the same batch changes nothing more.
    """
    if not len(keys):
        return replaced[:0]
    low, high = int(keys[0]), int(keys[-1])
    undo_keys = pa_keys(keys)  # noqa: F841 -- the names the SQL reads
    undo_replaced = pa_keys(replaced[(replaced >= low) & (replaced <= high)])  # noqa: F841
    # The key range lets DuckDB skip the row groups of other clips (zonemaps) before the semi-join.
    con.execute("DELETE FROM caption_postings WHERE clip_key BETWEEN ? AND ? "
                "AND clip_key IN (SELECT clip_key FROM undo_keys)", [low, high])
    con.execute("""DELETE FROM captions WHERE clip_key BETWEEN ? AND ? AND clip_key IN (SELECT clip_key FROM undo_keys)
                   AND (ingest_id = ? OR clip_key NOT IN (SELECT clip_key FROM undo_replaced))""",
                [low, high, ingest_id])
    con.execute("""DELETE FROM clip_tags WHERE clip_key BETWEEN ? AND ? AND clip_key IN (SELECT clip_key FROM undo_keys)
                   AND (ingest_id = ? OR clip_key NOT IN (SELECT clip_key FROM undo_replaced))""",
                [low, high, ingest_id])
    con.execute("""DELETE FROM extraction_attempts WHERE clip_key IN (SELECT clip_key FROM undo_keys)
                   AND clip_key NOT IN (SELECT clip_key FROM undo_replaced)""")
    con.execute("""DELETE FROM clips WHERE clip_key IN (SELECT clip_key FROM undo_keys)
                   AND clip_key NOT IN (SELECT clip_key FROM undo_replaced)""")
    for table in ("captions", "clip_tags"):
        con.execute(f"""INSERT INTO {table} BY NAME SELECT * EXCLUDE (replaced_by) FROM ingest_replaced_{table}
                        WHERE replaced_by = ? AND clip_key IN (SELECT clip_key FROM undo_replaced)""", [ingest_id])
    # An UPDATE, not a delete and insert: the clip keeps its key and id (both indexed) and gets its old values.
    columns = _restorable_columns(con, "clips")
    con.execute(f"""UPDATE clips SET {', '.join(f'{c} = r.{c}' for c in columns)}
                    FROM (SELECT * FROM ingest_replaced_clips WHERE replaced_by = ?) r
                    WHERE clips.clip_key = r.clip_key AND clips.clip_key IN (SELECT clip_key FROM undo_replaced)""",
                [ingest_id])
    for table in ("clips", "captions", "clip_tags"):
        con.execute(f"DELETE FROM ingest_replaced_{table} WHERE replaced_by = ? "
                    "AND clip_key IN (SELECT clip_key FROM undo_replaced)", [ingest_id])
    return replaced[(replaced >= low) & (replaced <= high)]


def forget_ingest(con: duckdb.DuckDBPyConnection, ingest_id: int) -> int:
    """Last step of an undo (inside a transaction): the ingest's own records and the tags it created that no
    tag row uses any more; returns how many tags were removed."""
    removed = con.execute("""DELETE FROM tags WHERE tag_id > (SELECT coalesce(tag_id_before, 0) FROM ingests
                                                              WHERE ingest_id = ?)
                             AND NOT EXISTS (SELECT 1 FROM clip_tags ct WHERE ct.tag_id = tags.tag_id)""",
                          [ingest_id]).fetchall()[0][0]
    for table in ("ingest_bad_rows", "ingest_missing_audio", "ingest_notes"):
        con.execute(f"DELETE FROM {table} WHERE ingest_id = ?", [ingest_id])
    for table in ("clips", "captions", "clip_tags"):
        con.execute(f"DELETE FROM ingest_replaced_{table} WHERE replaced_by = ?", [ingest_id])
    con.execute("DELETE FROM ingests WHERE ingest_id = ?", [ingest_id])
    return removed


def pa_keys(keys: np.ndarray):
    """Clip keys as an arrow table with one column, clip_key (for SQL that reads a Python variable by name)."""
    import pyarrow as pa

    return pa.table({"clip_key": np.asarray(keys, dtype=np.int32)})


def ingest_audio_roots(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [row[0] for row in con.execute(
        "SELECT DISTINCT audio_root FROM ingests WHERE audio_root IS NOT NULL ORDER BY 1").fetchall()]


@dataclass(frozen=True)
class StagedCounts:
    clips: int
    captions: int
    tag_rows: int
    distinct_tags: int


def write_chunk(con: duckdb.DuckDBPyConnection, ingest_id: int, chunk, extractor: str) -> StagedCounts:
    """Upsert one chunk's clips by clip_id; replace their captions and this extractor's tag rows.

    Call inside the ingest's ``transaction(con)``, once per chunk in file order. ``chunk`` is the arrow table of
    ``staged_for_writing``. It is read by name (DuckDB's scan of a Python variable), not registered and not
    copied into a temp table: inside a transaction DuckDB keeps every replaced view's object and every dropped
    temp table until the commit, which for a 4M-clip file is gigabytes; only the chunk's (line, clip_key) pairs
    are kept that way. ``distinct_tags`` of the result is 0: it is counted over the whole file at the end
    (``ingest_distinct_tags``).
    """
    staged_chunk = chunk  # noqa: F841 -- the name the SQL below reads
    updated = _keep_replaced_rows(con, ingest_id, chunk, extractor)
    if updated:
        con.execute("""
        UPDATE clips SET source = s.source, domain = s.domain, audio_path = s.audio_path, audio_ok = s.audio_ok,
               duration_s = s.duration_s, sample_rate_hz = s.sample_rate_hz, ingest_id = ?,
               num_channels = s.num_channels, num_frames = s.num_frames, audio_format = s.audio_format,
               probed_at = s.probed_at, start_s = s.start_s, cut_channels = s.cut_channels
        FROM staged_chunk s WHERE clips.clip_id = s.clip_id""", [ingest_id]).fetchall()
    con.execute("""
        INSERT INTO clips (clip_key, clip_id, source, domain, audio_path, audio_ok, duration_s, sample_rate_hz,
                           ingest_id, num_channels, num_frames, audio_format, probed_at, start_s, cut_channels)
        SELECT (SELECT coalesce(max(clip_key), 0) FROM clips) + CAST(row_number() OVER (ORDER BY s.line) AS INTEGER),
               s.clip_id, s.source, s.domain, s.audio_path, s.audio_ok, s.duration_s, s.sample_rate_hz, ?,
               s.num_channels, s.num_frames, s.audio_format, s.probed_at, s.start_s, s.cut_channels
        FROM staged_chunk s WHERE NOT EXISTS (SELECT 1 FROM clips c WHERE c.clip_id = s.clip_id)""",
                [ingest_id]).fetchall()
    con.execute("""
        CREATE OR REPLACE TEMP TABLE chunk_keys AS
        SELECT s.line, c.clip_key FROM staged_chunk s JOIN clips c USING (clip_id)""")
    if updated:
        # A re-ingested clip gets the manifest's captions and tags, not a second copy of them. (A clip new to the
        # store has none: the deletes, which scan the whole tables, are skipped for them.)
        con.execute("""
            DELETE FROM captions WHERE clip_key IN (SELECT clip_key FROM chunk_keys)
              AND (kind = 'original' OR captioner IN (SELECT DISTINCT captioner FROM staged_chunk))""")
        con.execute("DELETE FROM clip_tags WHERE extractor = ? AND clip_key IN (SELECT clip_key FROM chunk_keys)",
                    [extractor])
    captions = con.execute("""
        INSERT INTO captions (clip_key, kind, captioner, position, text, ingest_id)
        SELECT k.clip_key, 'generated', s.captioner, 0, s.caption, ?
        FROM staged_chunk s JOIN chunk_keys k USING (line) WHERE s.caption IS NOT NULL""",
                           [ingest_id]).fetchall()[0][0]
    # Captions of a cut's further supervisions (several-supervisions policy: all kept, in order).
    captions += con.execute("""
        INSERT INTO captions (clip_key, kind, captioner, position, text, ingest_id)
        SELECT clip_key, 'generated', captioner, CAST(pos AS INTEGER), text, ?
        FROM (SELECT k.clip_key, s.captioner, unnest(s.more_captions) AS text,
                     generate_subscripts(s.more_captions, 1) AS pos
              FROM staged_chunk s JOIN chunk_keys k USING (line))
        WHERE text IS NOT NULL AND length(trim(text)) > 0""", [ingest_id]).fetchall()[0][0]
    captions += con.execute("""
        INSERT INTO captions (clip_key, kind, captioner, position, text, ingest_id)
        SELECT clip_key, 'original', 'human', CAST(pos AS INTEGER), text, ?
        FROM (SELECT k.clip_key, unnest(s.original_captions) AS text, generate_subscripts(s.original_captions, 1) AS pos
              FROM staged_chunk s JOIN chunk_keys k USING (line))
        WHERE text IS NOT NULL AND length(trim(text)) > 0""", [ingest_id]).fetchall()[0][0]
    con.execute("""
        INSERT INTO tags
        SELECT (SELECT coalesce(max(tag_id), 0) FROM tags) + CAST(row_number() OVER (ORDER BY tag) AS INTEGER), tag
        FROM (SELECT DISTINCT unnest(tags) AS tag FROM staged_chunk) n
        WHERE tag IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.tag = n.tag)""").fetchall()
    tag_rows = con.execute("""
        INSERT INTO clip_tags (clip_key, tag_id, extractor, ingest_id)
        SELECT k.clip_key, t.tag_id, ?, ?
        FROM (SELECT DISTINCT line, unnest(tags) AS tag FROM staged_chunk) st
        JOIN chunk_keys k USING (line) JOIN tags t USING (tag)""", [extractor, ingest_id]).fetchall()[0][0]
    return StagedCounts(clips=chunk.num_rows, captions=captions, tag_rows=tag_rows, distinct_tags=0)


def _keep_replaced_rows(con: duckdb.DuckDBPyConnection, ingest_id: int, chunk, extractor: str) -> int:
    """Copy the rows of the chunk's clips that are already stored (a re-ingest) before they are replaced: what
    they looked like goes back if the ingest is undone. Returns how many stored clips the chunk holds."""
    staged_chunk = chunk  # noqa: F841 -- the name the SQL reads
    existing = con.execute("SELECT c.clip_key FROM clips c JOIN staged_chunk s USING (clip_id)").fetchnumpy()
    if not len(existing["clip_key"]):
        return 0
    replaced_keys = pa_keys(existing["clip_key"])  # noqa: F841 -- the name the SQL reads
    con.execute("""INSERT INTO ingest_replaced_clips BY NAME SELECT ? AS replaced_by, c.* FROM clips c
                   WHERE c.clip_key IN (SELECT clip_key FROM replaced_keys)""", [ingest_id])
    # Exactly the rows write_chunk deletes below: original captions, this file's captioners, this extractor.
    con.execute("""INSERT INTO ingest_replaced_captions BY NAME SELECT ? AS replaced_by, g.* FROM captions g
                   WHERE g.clip_key IN (SELECT clip_key FROM replaced_keys)
                     AND (g.kind = 'original' OR g.captioner IN (SELECT DISTINCT captioner FROM staged_chunk))""",
                [ingest_id])
    con.execute("""INSERT INTO ingest_replaced_clip_tags BY NAME SELECT ? AS replaced_by, ct.* FROM clip_tags ct
                   WHERE ct.clip_key IN (SELECT clip_key FROM replaced_keys) AND ct.extractor = ?""",
                [ingest_id, extractor])
    return len(existing["clip_key"])


def ingest_distinct_tags(con: duckdb.DuckDBPyConnection, ingest_id: int, extractor: str) -> int:
    return con.execute("SELECT count(DISTINCT tag_id) FROM clip_tags WHERE ingest_id = ? AND extractor = ?",
                       [ingest_id, extractor]).fetchall()[0][0]


def drop_staging(con: duckdb.DuckDBPyConnection) -> None:
    """Drop one chunk's staging tables (on the staging connection, outside any transaction: freed at once)."""
    for table in ("lhotse_raw", "staging", "tag_respelling", "staging_retagged"):
        con.execute(f"DROP TABLE IF EXISTS {table}")


def drop_file_tables(con: duckdb.DuckDBPyConnection) -> None:
    for table in ("ingest_seen_ids", "ingest_respellings"):
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
    """rows: (line, field, reason) of the rows a skip-mode ingest left out."""
    if rows:
        con.execute("INSERT INTO ingest_bad_rows SELECT ?, unnest(?::INTEGER[]), unnest(?::VARCHAR[]), "
                    "unnest(?::VARCHAR[])", [ingest_id, [r[0] for r in rows], [r[1] for r in rows],
                                             [r[2] for r in rows]]).fetchall()


def record_missing_audio(con: duckdb.DuckDBPyConnection, ingest_id: int, arrow_table) -> None:
    """arrow_table: clip_id, audio_path, reason. Read by name, not registered (see ``write_chunk``)."""
    if arrow_table.num_rows:
        missing_audio_rows = arrow_table  # noqa: F841 -- the name the SQL reads
        con.execute("INSERT INTO ingest_missing_audio SELECT ?, clip_id, audio_path, reason FROM missing_audio_rows",
                    [ingest_id]).fetchall()


def finish_ingest(con: duckdb.DuckDBPyConnection, ingest_id: int, counts: StagedCounts, skipped_rows: int,
                  missing_audio: int, seconds: float) -> None:
    """Mark the ingest finished (its last commit); the rows it replaced are no longer needed for an undo."""
    con.execute("""
        UPDATE ingests SET finished_at = ?, clips = ?, captions = ?, tag_rows = ?, distinct_tags = ?,
               skipped_rows = ?, missing_audio = ?, seconds = ? WHERE ingest_id = ?""",
                [now_utc(), counts.clips, counts.captions, counts.tag_rows, counts.distinct_tags, skipped_rows,
                 missing_audio, seconds, ingest_id])
    for table in ("clips", "captions", "clip_tags"):
        con.execute(f"DELETE FROM ingest_replaced_{table} WHERE replaced_by = ?", [ingest_id])



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
