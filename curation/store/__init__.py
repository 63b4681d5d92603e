"""The store: one DuckDB file. ``schema`` owns connect, migrations and transactions (re-exported here, so that
``store.connect(path)`` and ``store.transaction(con)`` read naturally); every other module beside it holds the SQL
of one area of the flow and is imported by name (``from curation.store import decisions as store_decisions``)."""
from curation.store.schema import (
                                   DEFAULT_DB_PATH,
                                   FIRST_GENERATED_CAPTION_SQL,
                                   MIGRATIONS,
                                   ORIGINAL_CAPTIONS_SQL,
                                   PROJECT_ROOT,
                                   RAW_TAGS_SQL,
                                   SCHEMA_VERSION,
                                   Migration,
                                   connect,
                                   database_path,
                                   hold_in_this_process,
                                   migrate,
                                   now_utc,
                                   resolve_db_path,
                                   schema_version,
                                   transaction,
)

__all__ = ["DEFAULT_DB_PATH", "FIRST_GENERATED_CAPTION_SQL", "MIGRATIONS", "ORIGINAL_CAPTIONS_SQL", "PROJECT_ROOT",
           "RAW_TAGS_SQL", "SCHEMA_VERSION", "Migration", "connect", "database_path", "hold_in_this_process", "migrate", "now_utc",
           "resolve_db_path", "schema_version", "transaction"]
