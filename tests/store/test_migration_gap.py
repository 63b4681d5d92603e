"""A database that skipped a migration (made by a build whose numbering had a gap, e.g. 14 before 13) gets the
missing one on the next open instead of failing later on a missing column; each migration is applied once."""
from __future__ import annotations

import duckdb

from curation import store
from curation.store.schema import MIGRATIONS, SCHEMA_VERSION, migrate, missing_migrations, now_utc


def test_a_skipped_migration_is_applied_on_the_next_open(tmp_path):
    path = tmp_path / "gap.duckdb"
    con = duckdb.connect(str(path))
    skipped = MIGRATIONS[-2]
    migrate(con, target=skipped.version - 1)
    for migration in MIGRATIONS[-1:]:  # the newest applied, the one before it not: a gap
        for statement in migration.statements:
            con.execute(statement)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [migration.version, migration.name, now_utc()])
    assert [m.version for m in missing_migrations(con)] == [skipped.version]
    con.close()
    con = store.connect(path)
    versions = [row[0] for row in con.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()]
    assert versions == [m.version for m in MIGRATIONS] and missing_migrations(con) == []
    assert store.schema_version(con) == SCHEMA_VERSION
    con.close()
    store.connect(path).close()  # a second open applies nothing again (no duplicate version row)
