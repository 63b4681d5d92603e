"""The one owner of the DuckDB schema: connect, migrate, and every SQL statement of the library.

Place in the flow: every step reads and writes through here (ingest -> clips/captions/tags, later decisions,
audits, runs). Numbered migrations bring any older database up to ``SCHEMA_VERSION``; a database written by
newer code is refused with both versions named.

Example::

    con = connect("data/uts.duckdb")
    print(corpus_stats(con))
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import duckdb

from curation.errors import ManifestError, SchemaVersionError, StoreBusyError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB_PATH = PROJECT_ROOT / "data" / "uts.duckdb"
DB_ENV_VAR = "UTS_DB"


@dataclass(frozen=True)
class Migration:
    version: int  # applied in increasing order, each exactly once
    name: str  # one line saying what it adds
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "foundation: clips, captions, interned tags, clip-tag rows, decisions, ingest log", (
        """CREATE TABLE ingests (
            ingest_id INTEGER PRIMARY KEY, path VARCHAR NOT NULL, format VARCHAR NOT NULL,
            on_bad_row VARCHAR NOT NULL, started_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ,
            clips INTEGER, captions INTEGER, tag_rows INTEGER, distinct_tags INTEGER,
            skipped_rows INTEGER, missing_audio INTEGER, seconds DOUBLE)""",
        # Rows a tolerant (--on-bad-row skip) ingest left out, with the reason: tolerance is counted.
        "CREATE TABLE ingest_bad_rows (ingest_id INTEGER NOT NULL, line INTEGER, field VARCHAR, reason VARCHAR NOT NULL)",
        "CREATE TABLE ingest_missing_audio (ingest_id INTEGER NOT NULL, clip_id VARCHAR NOT NULL, audio_path VARCHAR, reason VARCHAR NOT NULL)",
        # clip_key is an integer surrogate so that tag statistics group over integers only.
        """CREATE TABLE clips (
            clip_key INTEGER PRIMARY KEY, clip_id VARCHAR NOT NULL UNIQUE, source VARCHAR, domain VARCHAR,
            audio_path VARCHAR, audio_ok BOOLEAN NOT NULL, duration_s DOUBLE, sample_rate_hz INTEGER,
            ingest_id INTEGER NOT NULL)""",
        """CREATE TABLE captions (
            clip_key INTEGER NOT NULL, kind VARCHAR NOT NULL CHECK (kind IN ('generated', 'original')),
            captioner VARCHAR NOT NULL, position INTEGER NOT NULL, text VARCHAR NOT NULL, ingest_id INTEGER)""",
        "CREATE TABLE tags (tag_id INTEGER PRIMARY KEY, tag VARCHAR NOT NULL UNIQUE)",
        # No key constraint here on purpose: 4M rows; ingest replaces a clip's rows per extractor as a unit.
        "CREATE TABLE clip_tags (clip_key INTEGER NOT NULL, tag_id INTEGER NOT NULL, extractor VARCHAR NOT NULL, ingest_id INTEGER)",
        """CREATE TABLE decisions (
            decision_id BIGINT PRIMARY KEY, decided_at TIMESTAMPTZ NOT NULL, decided_by VARCHAR NOT NULL,
            action VARCHAR NOT NULL, payload JSON NOT NULL, reason VARCHAR)""",
    )),
    Migration(2, "corpus metadata and ground truth (demo corpus captioner biases)", (
        "CREATE TABLE corpus_meta (key VARCHAR PRIMARY KEY, value JSON NOT NULL)",
        """CREATE TABLE clip_truth (
            clip_id VARCHAR PRIMARY KEY, true_tags VARCHAR[] NOT NULL, caption_tags VARCHAR[] NOT NULL,
            applied_biases VARCHAR[] NOT NULL, attributes JSON NOT NULL)""",
    )),
    Migration(3, "vocabulary exports: which decisions, K and ranking made each exported vocabulary", (
        """CREATE TABLE exports (
            export_id INTEGER PRIMARY KEY, created_at TIMESTAMPTZ NOT NULL, created_by VARCHAR,
            k INTEGER NOT NULL, ranking VARCHAR NOT NULL, last_decision_id BIGINT NOT NULL,
            content_hash VARCHAR NOT NULL, out_dir VARCHAR NOT NULL, vocabulary_size INTEGER NOT NULL,
            clips_kept INTEGER NOT NULL, clips_dropped INTEGER NOT NULL)""",
    )),
    Migration(4, "tag embeddings cache, merge-suggestion verdicts, tag map projections", (
        # float32 vectors as bytes: 20k tags load in ~0.1 s, a LIST column would cost several times that.
        "CREATE TABLE tag_embeddings (model VARCHAR NOT NULL, tag VARCHAR NOT NULL, vector BLOB NOT NULL, "
        "PRIMARY KEY (model, tag))",
        # A rejected group is remembered as its sorted member list; accepted ones become merge decisions.
        """CREATE TABLE suggestion_verdicts (
            group_key VARCHAR NOT NULL, verdict VARCHAR NOT NULL CHECK (verdict IN ('accepted', 'rejected')),
            decided_by VARCHAR NOT NULL, decided_at TIMESTAMPTZ NOT NULL, members JSON NOT NULL,
            canonical VARCHAR)""",
        # One projection per (model, tag set, parameters): computed once over all raw tags.
        """CREATE TABLE tag_projections (
            projection_key VARCHAR NOT NULL, tag VARCHAR NOT NULL, x DOUBLE NOT NULL, y DOUBLE NOT NULL,
            PRIMARY KEY (projection_key, tag))""",
        "CREATE TABLE projection_meta (projection_key VARCHAR PRIMARY KEY, model VARCHAR NOT NULL, "
        "params JSON NOT NULL, n_tags INTEGER NOT NULL, seconds DOUBLE NOT NULL, created_at TIMESTAMPTZ NOT NULL)",
    )),
    Migration(5, "captioner audit: campaigns, annotator slots, per-tag verdicts, added tags, caption ratings", (
        """CREATE TABLE audit_campaigns (
            campaign_id INTEGER PRIMARY KEY, name VARCHAR NOT NULL UNIQUE, created_at TIMESTAMPTZ NOT NULL,
            created_by VARCHAR NOT NULL, sample_size INTEGER NOT NULL, annotators_per_clip INTEGER NOT NULL,
            seed INTEGER NOT NULL, design JSON NOT NULL, kind VARCHAR NOT NULL DEFAULT 'listening')""",
        # One row per (clip, slot): claiming a slot is an UPDATE of a free row, so two annotators racing for
        # it conflict in DuckDB and one retries; the same annotator never holds two slots of one clip.
        """CREATE TABLE audit_slots (
            campaign_id INTEGER NOT NULL, position INTEGER NOT NULL, clip_key INTEGER NOT NULL,
            slot INTEGER NOT NULL, stratum VARCHAR, annotator VARCHAR, claimed_at TIMESTAMPTZ,
            submitted_at TIMESTAMPTZ, PRIMARY KEY (campaign_id, clip_key, slot))""",
        """CREATE TABLE audit_verdicts (
            campaign_id INTEGER NOT NULL, clip_key INTEGER NOT NULL, annotator VARCHAR NOT NULL,
            tag VARCHAR NOT NULL, verdict VARCHAR NOT NULL CHECK (verdict IN ('correct', 'wrong', 'unsure')),
            judged_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (campaign_id, clip_key, annotator, tag))""",
        """CREATE TABLE audit_added_tags (
            campaign_id INTEGER NOT NULL, clip_key INTEGER NOT NULL, annotator VARCHAR NOT NULL,
            tag VARCHAR NOT NULL, added_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (campaign_id, clip_key, annotator, tag))""",
        """CREATE TABLE audit_caption_ratings (
            campaign_id INTEGER NOT NULL, clip_key INTEGER NOT NULL, annotator VARCHAR NOT NULL,
            rating INTEGER CHECK (rating BETWEEN 1 AND 5), note VARCHAR, seconds_spent DOUBLE,
            rated_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (campaign_id, clip_key, annotator))""",
    )),
    Migration(6, "caption text index: terms and postings for fast free-text search", (
        "CREATE TABLE caption_terms (term_id INTEGER PRIMARY KEY, term VARCHAR NOT NULL UNIQUE)",
        "CREATE TABLE caption_postings (term_id INTEGER NOT NULL, clip_key INTEGER NOT NULL)",
    )),
    Migration(7, "the folder each ingest resolved audio against (the default audio roots the app may serve)", (
        "ALTER TABLE ingests ADD COLUMN audio_root VARCHAR",
    )),
    Migration(8, "tagging and captioning jobs: job log, per-clip attempts (resumable), prompt hash on tag rows", (
        """CREATE TABLE extraction_jobs (
            job_id INTEGER PRIMARY KEY, task VARCHAR NOT NULL CHECK (task IN ('tags', 'captions')),
            backend VARCHAR NOT NULL, model VARCHAR, producer VARCHAR NOT NULL, prompt_hash VARCHAR NOT NULL,
            settings JSON NOT NULL, started_by VARCHAR, started_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ,
            status VARCHAR NOT NULL, planned INTEGER, done INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0, skipped INTEGER NOT NULL DEFAULT 0, tag_rows INTEGER NOT NULL DEFAULT 0,
            seconds DOUBLE, message VARCHAR)""",
        # The last attempt per (clip, task, producer, prompt): a success is never redone unless forced; a
        # failure keeps the raw answer so that a person can see what the model said.
        """CREATE TABLE extraction_attempts (
            clip_key INTEGER NOT NULL, task VARCHAR NOT NULL, producer VARCHAR NOT NULL, prompt_hash VARCHAR NOT NULL,
            job_id INTEGER NOT NULL, ok BOOLEAN NOT NULL, n_outputs INTEGER NOT NULL, raw_answer VARCHAR,
            error VARCHAR, attempted_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (clip_key, task, producer, prompt_hash))""",
        "ALTER TABLE clip_tags ADD COLUMN prompt_hash VARCHAR",
        "ALTER TABLE captions ADD COLUMN settings JSON",
    )),
    Migration(9, "training runs: launched jobs, imported metrics, probe results, per-tag AP, import offsets", (
        # One row per run directory (launched from the app/CLI, or imported). backend_id: pid or Slurm job id;
        # backend_meta: what re-attaching needs (process group, start time, driver script).
        """CREATE TABLE runs (
            run_id VARCHAR PRIMARY KEY, export_id INTEGER, k INTEGER, objective VARCHAR, size VARCHAR,
            config JSON NOT NULL, backend VARCHAR NOT NULL, backend_id VARCHAR, backend_meta JSON, command VARCHAR,
            env JSON, run_dir VARCHAR NOT NULL, state VARCHAR NOT NULL
                CHECK (state IN ('queued', 'running', 'finished', 'failed', 'cancelled')),
            created_by VARCHAR, created_at TIMESTAMPTZ NOT NULL, started_at TIMESTAMPTZ, ended_at TIMESTAMPTZ,
            updated_at TIMESTAMPTZ NOT NULL, message VARCHAR, sweep_id VARCHAR, train_config JSON,
            last_step INTEGER, final_val_map DOUBLE, n_parameters BIGINT, world_size INTEGER, git_commit VARCHAR)""",
        """CREATE TABLE run_metrics (
            run_id VARCHAR NOT NULL, step INTEGER NOT NULL, kind VARCHAR NOT NULL, time_s DOUBLE, loss DOUBLE,
            loss_mtc DOUBLE, loss_par DOUBLE, lr DOUBLE, audio_s_per_s DOUBLE, grad_norm DOUBLE, val_map DOUBLE,
            val_loss DOUBLE, extra JSON, PRIMARY KEY (run_id, step, kind))""",
        """CREATE TABLE probe_results (
            run_id VARCHAR NOT NULL, task VARCHAR NOT NULL, encoder VARCHAR NOT NULL, pooling VARCHAR NOT NULL,
            metric VARCHAR NOT NULL, mean DOUBLE, std DOUBLE, folds JSON, n_clips INTEGER, n_classes INTEGER,
            task_file VARCHAR, checkpoint VARCHAR, created_at VARCHAR, PRIMARY KEY (run_id, task, encoder, pooling))""",
        """CREATE TABLE run_tag_ap (
            run_id VARCHAR NOT NULL, step INTEGER NOT NULL, tag VARCHAR NOT NULL, ap DOUBLE, positives INTEGER,
            PRIMARY KEY (run_id, tag))""",
        # How far each appended file of a run directory has been read (byte offset of the first unread line).
        """CREATE TABLE run_files (
            run_id VARCHAR NOT NULL, name VARCHAR NOT NULL, byte_offset BIGINT NOT NULL, lines BIGINT NOT NULL,
            size BIGINT, mtime_ns BIGINT, PRIMARY KEY (run_id, name))""",
    )),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def resolve_db_path(cli_value: str | os.PathLike | None = None) -> Path:
    """--db wins, then $UTS_DB, then data/uts.duckdb in the project."""
    if cli_value:
        return Path(cli_value)
    if os.environ.get(DB_ENV_VAR):
        return Path(os.environ[DB_ENV_VAR])
    return DEFAULT_DB_PATH


def connect(db_path: str | os.PathLike | None = None, *, read_only: bool = False,
            memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """Open (creating and migrating if needed) the store; refuse a newer schema or a file held elsewhere."""
    path = resolve_db_path(db_path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    config = {"memory_limit": memory_limit} if memory_limit else {}
    try:
        con = duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StoreBusyError(str(path), str(exc).splitlines()[0]) from None
        raise
    try:
        version = schema_version(con)
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(str(path), version, SCHEMA_VERSION)
        if version < SCHEMA_VERSION and not read_only:
            migrate(con)
    except BaseException:
        con.close()
        raise
    return con


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'").fetchall()[0][0]
    if not exists:
        return 0
    return con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()[0][0]


def migrate(con: duckdb.DuckDBPyConnection, target: int = SCHEMA_VERSION) -> int:
    """Apply every migration above the current version up to ``target``, each in its own transaction."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
                "applied_at TIMESTAMPTZ NOT NULL)")
    current = schema_version(con)
    for migration in MIGRATIONS:
        if current < migration.version <= target:
            with transaction(con):
                for statement in migration.statements:
                    con.execute(statement)
                con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                            [migration.version, migration.name, now_utc()])
            current = migration.version
    return current


class transaction:
    """One logical write: everything or nothing."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        self.con.execute("BEGIN TRANSACTION")
        return self.con

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.con.execute("COMMIT")
        else:
            self.con.execute("ROLLBACK")


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


# Per-clip subqueries shared by the store modules (``c`` is the clips row): a clip's first generated caption
# (by captioner, then position), its original captions in order, and its distinct raw tags.
FIRST_GENERATED_CAPTION_SQL = """(SELECT first(text ORDER BY captioner, position) FROM captions g
                WHERE g.clip_key = c.clip_key AND g.kind = 'generated')"""
ORIGINAL_CAPTIONS_SQL = """(SELECT list(text ORDER BY position) FROM captions o
                WHERE o.clip_key = c.clip_key AND o.kind = 'original')"""
RAW_TAGS_SQL = """(SELECT list(DISTINCT t.tag ORDER BY t.tag) FROM clip_tags ct JOIN tags t USING (tag_id)
                WHERE ct.clip_key = c.clip_key)"""


# ---------------------------------------------------------------------------------------------- ingest writes

# Every format is first turned into this staging table; one set of statements then writes it.
STAGING_COLUMNS = (
    ("line", "INTEGER"), ("clip_id", "VARCHAR"), ("source", "VARCHAR"), ("domain", "VARCHAR"),
    ("audio_ref", "VARCHAR"), ("duration_s", "DOUBLE"), ("sample_rate_hz", "INTEGER"), ("caption", "VARCHAR"),
    ("captioner", "VARCHAR"), ("original_captions", "VARCHAR[]"), ("tags", "VARCHAR[]"),
)

# Lhotse fields are read as JSON so that the type checks below are exact (DuckDB would quietly cast 12 to '12').
_LHOTSE_READ = """
    SELECT id, duration,
           json_extract(supervisions, '$[0].custom') AS custom,
           json_type(supervisions) AS supervisions_type, json_array_length(supervisions) AS supervisions_len,
           json_extract(recording, '$.sources[0].source') AS audio_ref_json,
           json_extract(recording, '$.sampling_rate') AS sampling_rate_json
    FROM read_json(?, format = 'newline_delimited', maximum_object_size = 67108864,
                   columns = {id: 'JSON', duration: 'JSON', supervisions: 'JSON', recording: 'JSON'})
"""

_ALL_STRINGS = "list_bool_and(list_transform(json_extract({x}, '$[*]'), lambda e: json_type(e) = 'VARCHAR'))"


def stage_lhotse_fast(con: duckdb.DuckDBPyConnection, manifest_path: Path, max_caption_chars: int,
                      max_tag_chars: int) -> int:
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


def staged_audio_refs(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str | None, str | None]]:
    return con.execute("SELECT clip_id, audio_ref, source FROM staging").fetchall()


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
                   s.duration_s, s.sample_rate_hz, s.caption, coalesce(s.captioner, ?) AS captioner,
                   s.original_captions, s.tags
            FROM staging s JOIN staged_audio a USING (clip_id)""", [default_captioner])
    finally:
        con.unregister("staged_audio")
    con.execute("""
        UPDATE clips SET source = s.source, domain = s.domain, audio_path = s.audio_path, audio_ok = s.audio_ok,
               duration_s = s.duration_s, sample_rate_hz = s.sample_rate_hz, ingest_id = ?
        FROM staged s WHERE clips.clip_id = s.clip_id""", [ingest_id])
    con.execute("""
        INSERT INTO clips
        SELECT (SELECT coalesce(max(clip_key), 0) FROM clips) + CAST(row_number() OVER (ORDER BY s.line) AS INTEGER),
               s.clip_id, s.source, s.domain, s.audio_path, s.audio_ok, s.duration_s, s.sample_rate_hz, ?
        FROM staged s WHERE NOT EXISTS (SELECT 1 FROM clips c WHERE c.clip_id = s.clip_id)""", [ingest_id])
    con.execute("""
        CREATE OR REPLACE TEMP TABLE staged_keys AS
        SELECT c.clip_key, s.caption, s.captioner, s.original_captions, s.tags
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
                FROM staged_keys),
               (SELECT count(*) FROM staged_tags),
               (SELECT count(DISTINCT tag) FROM staged_tags)""").fetchall()[0]
    return StagedCounts(clips, captions, tag_rows, distinct_tags)


def drop_staging(con: duckdb.DuckDBPyConnection) -> None:
    for table in ("lhotse_raw", "staging", "staged", "staged_keys", "staged_tags"):
        con.execute(f"DROP TABLE IF EXISTS {table}")


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


def set_corpus_meta(con: duckdb.DuckDBPyConnection, key: str, value: object) -> None:
    con.execute("INSERT OR REPLACE INTO corpus_meta VALUES (?, ?)", [key, json.dumps(value)])


def corpus_meta(con: duckdb.DuckDBPyConnection, key: str) -> object | None:
    rows = con.execute("SELECT value FROM corpus_meta WHERE key = ?", [key]).fetchall()
    return json.loads(rows[0][0]) if rows else None


def write_clip_truth(con: duckdb.DuckDBPyConnection, rows: list[tuple[str, list, list, list, str]]) -> None:
    con.executemany("INSERT OR REPLACE INTO clip_truth VALUES (?, ?, ?, ?, ?)", rows)


# ---------------------------------------------------------------------------------------------- decisions

def decision_rows(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute("SELECT decision_id, decided_at, decided_by, action, payload, reason FROM decisions "
                       "ORDER BY decision_id").fetchall()


def append_decision(con: duckdb.DuckDBPyConnection, action: str, payload_json: str, by: str,
                    reason: str | None) -> int:
    decision_id = con.execute("SELECT coalesce(max(decision_id), 0) + 1 FROM decisions").fetchall()[0][0]
    con.execute("INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?)",
                [decision_id, now_utc(), by, action, payload_json, reason])
    return decision_id


def known_tag_texts(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {row[0] for row in con.execute("SELECT tag FROM tags").fetchall()}


def intern_tags(con: duckdb.DuckDBPyConnection, texts: list[str]) -> None:
    """Give new tag texts (e.g. a merge target that did not exist) an integer id."""
    for text in texts:
        con.execute("""INSERT INTO tags SELECT (SELECT coalesce(max(tag_id), 0) + 1 FROM tags), ?
                       WHERE NOT EXISTS (SELECT 1 FROM tags WHERE tag = ?)""", [text, text])


def raw_tag_texts(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Tags some clip carries from ingest or extraction (not names that exist only as merge targets)."""
    return [row[0] for row in con.execute(
        "SELECT tag FROM tags WHERE tag_id IN (SELECT DISTINCT tag_id FROM clip_tags) ORDER BY tag").fetchall()]


def clips_with_tags(con: duckdb.DuckDBPyConnection, tags: list[str], limit: int) -> list[dict]:
    """A few clips carrying any of these raw tags, with their first generated caption and all raw tags."""
    result = con.execute(f"""
        WITH hits AS (
            SELECT DISTINCT ct.clip_key FROM clip_tags ct JOIN tags t USING (tag_id)
            WHERE t.tag IN (SELECT unnest(?)) ORDER BY ct.clip_key LIMIT ?)
        SELECT c.clip_id, c.audio_path, c.audio_ok,
               {FIRST_GENERATED_CAPTION_SQL} AS caption,
               {RAW_TAGS_SQL} AS raw_tags
        FROM clips c JOIN hits USING (clip_key) ORDER BY c.clip_key""", [tags, limit])
    names = [d[0] for d in result.description]
    return [dict(zip(names, row)) for row in result.fetchall()]


def clip_exists(con: duckdb.DuckDBPyConnection, clip_id: object) -> bool:
    if not isinstance(clip_id, str):
        return False
    return con.execute("SELECT count(*) FROM clips WHERE clip_id = ?", [clip_id]).fetchall()[0][0] > 0


def tag_matrix_inputs(con: duckdb.DuckDBPyConnection) -> dict:
    """Everything the vocabulary engine needs, as numpy arrays over integer ids (distinct clip-tag pairs)."""
    pairs = con.execute("SELECT DISTINCT clip_key, tag_id FROM clip_tags ORDER BY clip_key, tag_id").fetchnumpy()
    clips = con.execute("SELECT clip_key, clip_id, coalesce(domain, 'unknown') AS domain, "
                        "coalesce(source, 'unknown') AS source FROM clips ORDER BY clip_key").fetchnumpy()
    tags = con.execute("SELECT tag_id, tag FROM tags ORDER BY tag_id").fetchnumpy()
    return {"pairs": pairs, "clips": clips, "tags": tags, "version": corpus_version(con)}


def corpus_version(con: duckdb.DuckDBPyConnection) -> tuple:
    """Changes whenever ingest or a new tag text changes what the vocabulary engine loaded."""
    return tuple(con.execute("SELECT coalesce(max(ingest_id), 0), (SELECT count(*) FROM clip_tags), "
                             "(SELECT max(tag_id) FROM tags) FROM ingests").fetchall()[0])


def export_clip_rows(con: duckdb.DuckDBPyConnection):
    """Every clip with what a Lhotse cut needs, in clip_key order (streamed in chunks)."""
    result = con.execute(f"""
        SELECT c.clip_id, c.audio_path, c.source, c.domain, c.duration_s, c.sample_rate_hz,
               {FIRST_GENERATED_CAPTION_SQL} AS caption,
               {ORIGINAL_CAPTIONS_SQL} AS originals
        FROM clips c ORDER BY c.clip_key""")
    names = [d[0] for d in result.description]
    while True:
        chunk = result.fetchmany(10_000)
        if not chunk:
            break
        for row in chunk:
            yield dict(zip(names, row))


def record_export(con: duckdb.DuckDBPyConnection, *, by: str | None, k: int, rank_by: str, last_decision_id: int,
                  content_hash: str, out_dir: str, vocabulary_size: int, clips_kept: int, clips_dropped: int) -> int:
    export_id = con.execute("SELECT coalesce(max(export_id), 0) + 1 FROM exports").fetchall()[0][0]
    con.execute("INSERT INTO exports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [export_id, now_utc(), by, k, rank_by, last_decision_id, content_hash, out_dir, vocabulary_size,
                 clips_kept, clips_dropped])
    return export_id


# ---------------------------------------------------------------------------------------------- embeddings, suggestions, projections

def cached_embeddings(con: duckdb.DuckDBPyConnection, model: str, tags: list[str]) -> dict[str, bytes]:
    import pyarrow as pa

    con.register("wanted_tags", pa.table({"tag": pa.array(tags, pa.string())}))
    try:
        rows = con.execute("SELECT e.tag, e.vector FROM tag_embeddings e JOIN wanted_tags w USING (tag) "
                           "WHERE e.model = ?", [model]).fetchall()
    finally:
        con.unregister("wanted_tags")
    return dict(rows)


def store_embeddings(con: duckdb.DuckDBPyConnection, model: str, tags: list[str], vectors: list[bytes]) -> None:
    import pyarrow as pa

    con.register("new_embeddings", pa.table({"tag": pa.array(tags, pa.string()),
                                             "vector": pa.array(vectors, pa.binary())}))
    try:
        con.execute("INSERT OR REPLACE INTO tag_embeddings SELECT ?, tag, vector FROM new_embeddings", [model])
    finally:
        con.unregister("new_embeddings")


def record_suggestion_verdict(con: duckdb.DuckDBPyConnection, group_key: str, verdict: str, by: str,
                              members: list[str], canonical: str | None) -> None:
    con.execute("INSERT INTO suggestion_verdicts VALUES (?, ?, ?, ?, ?, ?)",
                [group_key, verdict, by, now_utc(), json.dumps(members), canonical])


def rejected_suggestion_members(con: duckdb.DuckDBPyConnection) -> list[list[str]]:
    return [json.loads(row[0]) for row in con.execute(
        "SELECT members FROM suggestion_verdicts WHERE verdict = 'rejected' ORDER BY decided_at").fetchall()]


def projection(con: duckdb.DuckDBPyConnection, projection_key: str):
    """(tags, xs, ys) of a cached projection, or None."""
    meta = con.execute("SELECT count(*) FROM projection_meta WHERE projection_key = ?", [projection_key]).fetchall()
    if not meta[0][0]:
        return None
    data = con.execute("SELECT tag, x, y FROM tag_projections WHERE projection_key = ? ORDER BY tag",
                       [projection_key]).fetchnumpy()
    return data["tag"], data["x"], data["y"]


def store_projection(con: duckdb.DuckDBPyConnection, projection_key: str, model: str, params: dict,
                     tags: list[str], xs, ys, seconds: float) -> None:
    import pyarrow as pa

    con.register("new_projection", pa.table({"tag": pa.array(tags, pa.string()), "x": xs, "y": ys}))
    try:
        con.execute("DELETE FROM tag_projections WHERE projection_key = ?", [projection_key])
        con.execute("INSERT INTO tag_projections SELECT ?, tag, x, y FROM new_projection", [projection_key])
        con.execute("INSERT OR REPLACE INTO projection_meta VALUES (?, ?, ?, ?, ?, ?)",
                    [projection_key, model, json.dumps(params), len(tags), seconds, now_utc()])
    finally:
        con.unregister("new_projection")


# ---------------------------------------------------------------------------------------------- reads

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
