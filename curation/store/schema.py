"""The one owner of the DuckDB schema: connect, numbered migrations, transactions.

Place in the flow: every step reads and writes through ``curation/store/`` (this module and one SQL module per
area beside it: ingest, corpus, decisions, vocabulary, exports, browse, extraction, audit, runs, backup). Numbered
migrations bring any older database up to ``SCHEMA_VERSION``; a database written by newer code is refused with
both versions named.

Example::

    con = connect("data/uts.duckdb")
    with transaction(con):
        ...
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from curation import settings
from curation.errors import SchemaVersionError, StoreBusyError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DB_PATH = PROJECT_ROOT / "data" / "uts.duckdb"


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
        # One row per (clip, slot): claiming a slot is an UPDATE of a free row (claims are serialised in the
        # process that owns the file: store/audit.py WRITE_LOCK); the same annotator never holds two slots of one clip.
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
    Migration(10, "audio as the files hold it (channels, frames, format, cut offset and channels) and counted "
                  "ingest notes", (
        # Read from each audio file's header (curation/ingest/audio_probe.py); NULL until the file has been read.
        "ALTER TABLE clips ADD COLUMN num_channels INTEGER",
        "ALTER TABLE clips ADD COLUMN num_frames BIGINT",
        "ALTER TABLE clips ADD COLUMN audio_format VARCHAR",
        "ALTER TABLE clips ADD COLUMN probed_at TIMESTAMPTZ",
        # A Lhotse cut may be a segment of its recording and may use some of its channels: kept for the export.
        "ALTER TABLE clips ADD COLUMN start_s DOUBLE DEFAULT 0",
        "ALTER TABLE clips ADD COLUMN cut_channels INTEGER[]",
        # Everything an ingest changed or decided by policy, counted with a few examples (nothing silent).
        """CREATE TABLE ingest_notes (
            ingest_id INTEGER NOT NULL, kind VARCHAR NOT NULL, n BIGINT NOT NULL, message VARCHAR NOT NULL,
            examples JSON NOT NULL, PRIMARY KEY (ingest_id, kind))""",
    )),
    Migration(11, "API tokens: per user, stored hashed, revocable, with their last use", (
        # Only the SHA-256 of a token is kept (the token is shown once); prefix: its first characters, so that a
        # person can tell their tokens apart. A revoked token keeps its row (who revoked it, when).
        """CREATE TABLE api_tokens (
            token_id INTEGER PRIMARY KEY, user_name VARCHAR NOT NULL, label VARCHAR, prefix VARCHAR NOT NULL,
            token_sha256 VARCHAR NOT NULL UNIQUE, created_by VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL,
            last_used_at TIMESTAMPTZ, revoked_at TIMESTAMPTZ, revoked_by VARCHAR)""",
    )),
    Migration(12, "a seeded published vocabulary: the release's labels as preferred canonical merge targets", (
        # One seeded list at a time (seeding again replaces it); position = the label's rank in the release.
        """CREATE TABLE published_vocabulary (
            position INTEGER PRIMARY KEY, label VARCHAR NOT NULL, source VARCHAR NOT NULL,
            seeded_by VARCHAR NOT NULL, seeded_at TIMESTAMPTZ NOT NULL)""",
    )),
    Migration(13, "archived runs: hidden from the run lists and pickers, kept with their metrics and lineage", (
        "ALTER TABLE runs ADD COLUMN archived_at TIMESTAMPTZ",
    )),
    Migration(14, "model-based audit: out-of-sample tag probabilities per run, clip and tag; suspects; per-tag "
                  "estimates", (
        # One row per run audited (a new audit of the run replaces all of its rows in one transaction).
        """CREATE TABLE model_audits (
            run_id VARCHAR PRIMARY KEY, created_at TIMESTAMPTZ NOT NULL, folds INTEGER NOT NULL,
            features VARCHAR NOT NULL, method VARCHAR NOT NULL, scores_file VARCHAR NOT NULL,
            n_clips INTEGER NOT NULL, n_tags INTEGER NOT NULL, stored_pairs BIGINT NOT NULL,
            omitted_pairs BIGINT NOT NULL, min_stored_probability DOUBLE NOT NULL, unknown_clips INTEGER NOT NULL,
            seconds DOUBLE)""",
        # Out-of-sample P(tag | clip) from a head that never saw the clip (for an asserted pair, the probability the
        # audit judged it by: the context head's where the run's scores were made with context=discount,
        # training/oos_scores.py CONTEXT_MODES). Every asserted pair is kept; an
        # unasserted pair only above min_stored_probability (the rest are counted in model_audits.omitted_pairs and
        # stay in the run's scores matrix, model_audit/oos_scores.scores.npy): 400k clips x 800 tags would
        # otherwise be 320M rows of near-zeros.
        """CREATE TABLE model_audit_scores (
            run_id VARCHAR NOT NULL, clip_key INTEGER NOT NULL, tag VARCHAR NOT NULL, asserted BOOLEAN NOT NULL,
            probability DOUBLE NOT NULL, fold INTEGER NOT NULL, PRIMARY KEY (run_id, clip_key, tag))""",
        """CREATE TABLE model_audit_suspects (
            run_id VARCHAR NOT NULL, clip_key INTEGER NOT NULL, tag VARCHAR NOT NULL,
            kind VARCHAR NOT NULL CHECK (kind IN ('hallucination', 'miss')), score DOUBLE NOT NULL,
            rank INTEGER NOT NULL, PRIMARY KEY (run_id, clip_key, tag))""",
        """CREATE TABLE model_audit_tags (
            run_id VARCHAR NOT NULL, tag VARCHAR NOT NULL, asserted INTEGER NOT NULL, omitted INTEGER NOT NULL,
            threshold_asserted DOUBLE, threshold_omitted DOUBLE, hallucinations INTEGER NOT NULL,
            misses INTEGER NOT NULL, mean_probability_asserted DOUBLE, estimated_precision DOUBLE,
            PRIMARY KEY (run_id, tag))""",
    )),
    Migration(17, "tagging jobs over several model servers: per-server answers and drops of each job", (
        # JSON list, one object per server: url, state, answered, errors, mean_ms, drops, rejoins, reason.
        "ALTER TABLE extraction_jobs ADD COLUMN servers JSON",
    )),
    Migration(18, "ingests committed chunk by chunk: progress, and the rows a re-ingest replaced (kept for undo)", (
        # An ingest commits every chunk (one open transaction over a 4M-clip file held ~15 GB); finished_at stays
        # NULL until its last commit. lines_done: the manifest lines committed so far; tag_id_before: max(tag_id)
        # when it began, so that an undo removes the tags it created and nothing else.
        "ALTER TABLE ingests ADD COLUMN lines_done BIGINT",
        "ALTER TABLE ingests ADD COLUMN tag_id_before INTEGER",
        # A clip that an unfinished ingest re-ingested keeps its earlier rows here until the ingest finishes (then
        # they are dropped) or is undone (then they go back). Same columns as clips / captions / clip_tags plus
        # the ingest that replaced them; a later migration adding a column to those tables adds it here too.
        "CREATE TABLE ingest_replaced_clips AS SELECT CAST(NULL AS INTEGER) AS replaced_by, * FROM clips LIMIT 0",
        "CREATE TABLE ingest_replaced_captions AS "
        "SELECT CAST(NULL AS INTEGER) AS replaced_by, * FROM captions LIMIT 0",
        "CREATE TABLE ingest_replaced_clip_tags AS "
        "SELECT CAST(NULL AS INTEGER) AS replaced_by, * FROM clip_tags LIMIT 0",
    )),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def resolve_db_path(cli_value: str | os.PathLike | None = None) -> Path:
    """--db wins, then $UTS_DB, then data/uts.duckdb in the project."""
    if cli_value:
        return Path(cli_value)
    if settings.DB.value():
        return Path(settings.DB.value())
    return DEFAULT_DB_PATH


# Files this process holds read-write for its whole life (the server: ``hold_in_this_process``). DuckDB allows one
# instance per file and process, with one configuration, so a read-only open of such a file in this process (a
# forwarded `stats`) gets a connection of that instance; the caller still only reads.
_HELD_IN_THIS_PROCESS: set[Path] = set()


def hold_in_this_process(db_path: str | os.PathLike) -> None:
    """Declare that this process keeps ``db_path`` open read-write (the server does, before it opens it)."""
    _HELD_IN_THIS_PROCESS.add(resolve_db_path(db_path).resolve())


def connect(db_path: str | os.PathLike | None = None, *, read_only: bool = False,
            memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """Open (creating and migrating if needed) the store; refuse a newer schema or a file held elsewhere."""
    path = resolve_db_path(db_path)
    if read_only and path.resolve() in _HELD_IN_THIS_PROCESS:
        read_only, memory_limit = False, None
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    config = {"memory_limit": memory_limit} if memory_limit else {}
    try:
        con = duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StoreBusyError(str(path), str(exc).splitlines()[0]) from None
        raise
    except duckdb.ConnectionException as exc:
        # This process already holds the file with another configuration (the server holds it read-write, and
        # a forwarded `stats` asks read-only): DuckDB allows one instance per file and process, so the caller gets
        # a connection of that instance. A read-only caller still only reads.
        if "different configuration" not in str(exc):
            raise
        con = duckdb.connect(str(path))
    try:
        version = schema_version(con)
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(str(path), version, SCHEMA_VERSION)
        if not read_only and missing_migrations(con):
            migrate(con)
    except BaseException:
        con.close()
        raise
    return con


def database_path(con: duckdb.DuckDBPyConnection) -> Path | None:
    """The file this connection has open (None for an in-memory database): what "beside the database" means."""
    rows = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
    return Path(rows[0][0]).resolve() if rows and rows[0][0] else None


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'").fetchall()[0][0]
    if not exists:
        return 0
    return con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()[0][0]


def missing_migrations(con: duckdb.DuckDBPyConnection, target: int = SCHEMA_VERSION) -> list[Migration]:
    """Migrations up to ``target`` this database has not applied: those above its version, and any below it that
    a database made by a build with a gap in the numbering skipped (each migration is applied exactly once)."""
    if not schema_version(con):
        return [m for m in MIGRATIONS if m.version <= target]
    applied = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    return [m for m in MIGRATIONS if m.version <= target and m.version not in applied]


def migrate(con: duckdb.DuckDBPyConnection, target: int = SCHEMA_VERSION) -> int:
    """Apply every migration up to ``target`` that the database lacks, in order, each in its own transaction."""
    missing = missing_migrations(con, target)
    con.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
                "applied_at TIMESTAMPTZ NOT NULL)")
    for migration in MIGRATIONS:
        if migration in missing:
            with transaction(con):
                for statement in migration.statements:
                    con.execute(statement)
                con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                            [migration.version, migration.name, now_utc()])
    return schema_version(con)


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



