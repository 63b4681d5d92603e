"""Idempotent re-ingest, schema migrations, refusal of newer databases, and the CLI contract."""
from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import pytest
from helpers import PROJECT, make_cut, table_snapshot, write_jsonl

from curation import settings, store
from curation.cli.main import main
from curation.errors import SchemaVersionError
from curation.ingest.ingest import ingest_path
from curation.store import corpus as store_corpus


def test_reingest_is_idempotent(con, tmp_path):
    cuts = [make_cut(f"c{i}", tags=("music", f"tag{i}"), original=("one", "two")) for i in range(10)]
    path = write_jsonl(tmp_path / "cuts.jsonl.gz", cuts)
    ingest_path(con, path)
    first = table_snapshot(con)
    ingest_path(con, path)
    second = table_snapshot(con)
    # Everything but the ingest that wrote a row stays the same.
    for table in ("clips", "captions", "tags", "clip_tags"):
        ingest_column = [d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description].index(
            "ingest_id") if table != "tags" else None
        def without_ingest(rows, i=ingest_column):
            return [r if i is None else r[:i] + r[i + 1:] for r in rows]
        assert without_ingest(second[table]) == without_ingest(first[table])
    assert len(second["ingests"]) == 2


def test_reingest_with_changed_tags_replaces_them(con, tmp_path):
    ingest_path(con, write_jsonl(tmp_path / "v1.jsonl", [make_cut("a", tags=("drum", "drums"))]))
    ingest_path(con, write_jsonl(tmp_path / "v2.jsonl", [make_cut("a", tags=("drums", "hihat"))]))
    tags = sorted(r[0] for r in con.execute(
        "SELECT tag FROM clip_tags JOIN tags USING (tag_id)").fetchall())
    assert tags == ["drums", "hihat"]
    # Interned ids are stable: "drum" keeps its id though no clip uses it any more.
    assert con.execute("SELECT tag FROM tags ORDER BY tag_id").fetchall() == [("drum",), ("drums",), ("hihat",)]


def test_tags_from_another_extractor_are_kept_apart(con, tmp_path):
    path = write_jsonl(tmp_path / "cuts.jsonl", [make_cut("a", tags=("rain",))])
    ingest_path(con, path)
    ingest_path(con, path, extractor="llm-v2")
    assert con.execute("SELECT extractor, count(*) FROM clip_tags GROUP BY 1 ORDER BY 1").fetchall() == [
        ("llm-v2", 1), ("manifest", 1)]


def test_fresh_database_is_at_the_current_version(con):
    assert store.schema_version(con) == store.SCHEMA_VERSION
    versions = con.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [v[0] for v in versions] == [m.version for m in store.MIGRATIONS]


def test_older_database_is_migrated_and_keeps_its_data(db_path, tmp_path):
    raw = duckdb.connect(str(db_path))
    store.migrate(raw, target=1)
    raw.close()
    old = store.connect(db_path, read_only=True)  # read-only: no migration, old version visible
    assert store.schema_version(old) == 1
    old.close()
    # Write data at version 1 with a version-1 connection (migrate stops at 1).
    raw = duckdb.connect(str(db_path))
    assert store.schema_version(raw) == 1
    raw.close()
    con = store.connect(db_path)
    assert store.schema_version(con) == store.SCHEMA_VERSION
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", [make_cut("a")]))
    store_corpus.set_corpus_meta(con, "k", {"v": 1})
    con.close()
    con = store.connect(db_path)
    assert store_corpus.corpus_meta(con, "k") == {"v": 1}
    assert con.execute("SELECT clip_id FROM clips").fetchall() == [("a",)]
    con.close()


def test_data_written_at_version_1_survives_migration(db_path):
    raw = duckdb.connect(str(db_path))
    store.migrate(raw, target=1)
    raw.execute("INSERT INTO clips VALUES (1, 'old-clip', 'src', 'music', NULL, false, 2.0, 16000, 1)")
    raw.close()
    con = store.connect(db_path)
    assert con.execute("SELECT clip_id FROM clips").fetchall() == [("old-clip",)]
    assert con.execute("SELECT count(*) FROM clip_truth").fetchall()[0][0] == 0  # table from migration 2
    con.close()


def test_newer_database_is_refused_with_both_versions(db_path):
    con = store.connect(db_path)
    con.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', now())")
    con.close()
    with pytest.raises(SchemaVersionError) as caught:
        store.connect(db_path)
    assert "99" in str(caught.value) and str(store.SCHEMA_VERSION) in str(caught.value)


def test_second_process_gets_a_clear_busy_message(db_path):
    holder = store.connect(db_path)
    try:
        child = subprocess.run([sys.executable, "-m", "curation", "stats", "--db", str(db_path)],
                               cwd=PROJECT, capture_output=True, text=True, timeout=60)
    finally:
        holder.close()
    assert child.returncode == 2
    assert "in use by another process" in child.stderr and "Traceback" not in child.stderr


def test_cli_ingest_and_stats(db_path, tmp_path, capsys):
    path = write_jsonl(tmp_path / "cuts.jsonl.gz", [make_cut("a", domain="music", source="audioset"),
                                                     make_cut("b", domain="speech", source="audioset")])
    assert main(["ingest", str(path), "--db", str(db_path)]) == 0
    capsys.readouterr()
    assert main(["stats", "--db", str(db_path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats == {"clips": 2, "captions": 4, "tag_rows": 4, "distinct_tags": 2,
                     "domains": {"music": 1, "speech": 1}, "sources": {"audioset": 2}}


def test_cli_rejects_broken_file_naming_the_line(db_path, tmp_path):
    path = tmp_path / "broken.jsonl.gz"
    write_jsonl(path, [make_cut("a"), json.dumps(make_cut("b"))[:30]])
    child = subprocess.run([sys.executable, "-m", "curation", "ingest", str(path), "--db", str(db_path)],
                           cwd=PROJECT, capture_output=True, text=True, timeout=60)
    assert child.returncode != 0
    assert f"{path}:2" in child.stderr and "Traceback" not in child.stderr
    con = store.connect(db_path)
    assert con.execute("SELECT count(*) FROM clips").fetchall()[0][0] == 0
    con.close()


def test_db_path_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(settings.DB.name, str(tmp_path / "env.duckdb"))
    assert store.resolve_db_path() == tmp_path / "env.duckdb"
    assert store.resolve_db_path(tmp_path / "cli.duckdb") == tmp_path / "cli.duckdb"
