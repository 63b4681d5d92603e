"""Backups are consistent copies that restore to the same tables; a restore refuses to overwrite data or to load
a newer schema; the decision log exports as JSONL and replays into a fresh database of the same corpus."""
from __future__ import annotations

import json

import duckdb
import pytest
from helpers import make_cut, write_jsonl

from curation import store
from curation.admin.backup import BackupError, backup_database, restore_database
from curation.audit.campaigns import create_campaign, next_item, submit
from curation.cli.main import main
from curation.errors import SchemaVersionError
from curation.ingest.ingest import ingest_path
from curation.vocabulary.decision_log import DecisionLogError, export_decision_log, replay_decision_log
from curation.vocabulary.decisions import Decision, list_decisions, record_decision, replay
from curation.vocabulary.suggestions import MergeSuggestion, reject_suggestion

TABLES = ("clips", "captions", "tags", "clip_tags", "decisions", "audit_campaigns", "audit_slots",
          "audit_verdicts", "audit_caption_ratings", "caption_postings", "schema_migrations", "suggestion_verdicts")


def _manifest(tmp_path, n=8):
    cuts = [make_cut(f"c{i}", tags=("drum", "drums", "hihat", "hi-hat", "music") if i % 2 else ("rain", "music"),
                     domain="music" if i % 2 else "environment") for i in range(n)]
    return write_jsonl(tmp_path / "cuts.jsonl", cuts)


def _curate(con):
    record_decision(con, Decision.merge(["drums"], into="drum"), by="ana", reason="plural")
    record_decision(con, Decision.rename("hihat", to="hi-hat"), by="ana")
    record_decision(con, Decision.prune(["rain"]), by="bo")
    record_decision(con, Decision.clip_add("c1", "thunder"), by="bo")
    record_decision(con, Decision.clip_remove("c3", "music"), by="ana")
    record_decision(con, Decision.undo(3), by="ana", reason="rain is fine")
    record_decision(con, Decision.merge(["thunder"], into="storm"), by="ana")
    reject_suggestion(con, MergeSuggestion(tags=("music", "drum"), canonical="music", score=0.4,
                                           reasons=("co-occur",)), by="ana")


def _contents(con):
    return {table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall() for table in TABLES}


@pytest.fixture
def curated(con, tmp_path):
    ingest_path(con, _manifest(tmp_path))
    _curate(con)
    campaign = create_campaign(con, "pilot", sample_size=4, by="ana", annotators_per_clip=1)
    item = next_item(con, campaign, "bo")
    submit(con, item, "bo", {tag: "correct" for tag in item.tags}, rating=5, note="<script>x</script>")
    return con


def test_backup_then_restore_gives_the_same_tables(curated, tmp_path):
    out = tmp_path / "backups" / "uts-backup.duckdb"
    summary = backup_database(curated, out)
    assert summary.schema_version == store.SCHEMA_VERSION and summary.rows > 0 and out.stat().st_size > 0
    assert not list(out.parent.glob(".*partial*"))
    with pytest.raises(BackupError, match="exists already"):
        backup_database(curated, out)
    expected = _contents(curated)
    target = tmp_path / "restored.duckdb"
    restored = restore_database(out, target)
    assert restored.rows == summary.rows
    con = store.connect(target)
    try:
        assert _contents(con) == expected
        assert replay(list_decisions(con)) == replay(list_decisions(curated))
    finally:
        con.close()


def test_restore_refuses_to_overwrite_data_without_force(curated, tmp_path):
    out = tmp_path / "b.duckdb"
    backup_database(curated, out)
    other = tmp_path / "other.duckdb"
    con = store.connect(other)
    ingest_path(con, write_jsonl(tmp_path / "one.jsonl", [make_cut("only-one")]))
    con.close()
    with pytest.raises(BackupError, match="holds data .*clips 1.*--force"):
        restore_database(out, other)
    con = store.connect(other)
    assert con.execute("SELECT clip_id FROM clips").fetchall() == [("only-one",)]  # untouched
    con.close()
    restore_database(out, other, force=True)
    con = store.connect(other)
    try:
        assert con.execute("SELECT count(*) FROM clips").fetchall() == [(8,)]
    finally:
        con.close()


def test_restore_checks_the_schema_version_and_the_file_kind(tmp_path):
    newer = tmp_path / "newer.duckdb"
    con = store.connect(newer)
    con.execute("INSERT INTO schema_migrations VALUES (?, 'from the future', now())", [store.SCHEMA_VERSION + 5])
    con.close()
    with pytest.raises(SchemaVersionError, match=f"version {store.SCHEMA_VERSION + 5} is newer"):
        restore_database(newer, tmp_path / "target.duckdb")
    plain = tmp_path / "plain.duckdb"
    raw = duckdb.connect(str(plain))
    raw.execute("CREATE TABLE t (x INTEGER)")
    raw.close()
    with pytest.raises(BackupError, match="not a UTS Studio database"):
        restore_database(plain, tmp_path / "target.duckdb")
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(BackupError, match="DuckDB cannot open"):
        restore_database(junk, tmp_path / "target.duckdb")
    assert not (tmp_path / "target.duckdb").exists() or store.connect(tmp_path / "target.duckdb")


def test_backup_and_restore_from_the_command_line(curated, db_path, tmp_path, capsys):
    curated.close()
    out = tmp_path / "cli-backup.duckdb"
    assert main(["backup", "--db", str(db_path), "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(out)
    assert main(["restore", str(out), "--db", str(db_path)]) == 2
    assert "holds data" in capsys.readouterr().err
    assert main(["restore", str(out), "--db", str(tmp_path / "fresh.duckdb")]) == 0


def test_the_decision_log_replays_into_a_fresh_database_of_the_same_corpus(curated, tmp_path):
    log = tmp_path / "log.jsonl"
    summary = export_decision_log(curated, log)
    assert (summary.decisions, summary.suggestion_verdicts) == (7, 1)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines[0]["kind"] == "header" and lines[1]["decided_by"] == "ana" and lines[1]["reason"] == "plural"
    fresh = store.connect(tmp_path / "fresh.duckdb")
    try:
        ingest_path(fresh, _manifest(tmp_path))
        replay_decision_log(fresh, log)
        original = [(r.decision_id, r.decided_at, r.decided_by, r.action, r.payload, r.reason)
                     for r in list_decisions(curated)]
        assert [(r.decision_id, r.decided_at, r.decided_by, r.action, r.payload, r.reason)
                for r in list_decisions(fresh)] == original
        assert replay(list_decisions(fresh)) == replay(list_decisions(curated))
        assert fresh.execute("SELECT verdict, decided_by FROM suggestion_verdicts").fetchall() == [("rejected", "ana")]
        with pytest.raises(DecisionLogError, match="already holds decisions"):
            replay_decision_log(fresh, log)
    finally:
        fresh.close()


def test_a_log_naming_a_missing_clip_is_refused_with_its_line_and_nothing_is_written(curated, tmp_path):
    log = tmp_path / "log.jsonl"
    export_decision_log(curated, log)
    other = store.connect(tmp_path / "other.duckdb")
    try:
        # The same corpus but without clip c1, which decision #4 (add thunder on c1, line 5) names.
        cuts = [make_cut(f"c{i}", tags=("drum", "drums", "hihat", "hi-hat", "music") if i % 2 else ("rain", "music"))
                for i in range(8) if i != 1]
        cuts.append(make_cut("c9", tags=("drum", "drums", "hihat", "hi-hat", "music")))
        ingest_path(other, write_jsonl(tmp_path / "other.jsonl", cuts))
        with pytest.raises(DecisionLogError, match=r"log.jsonl:5: decision #4 \(clip_add\).*clip 'c1'"):
            replay_decision_log(other, log)
        assert other.execute("SELECT count(*) FROM decisions").fetchall() == [(0,)]
        bad = tmp_path / "bad.jsonl"
        bad.write_text(log.read_text().splitlines()[0] + "\n{broken\n")
        with pytest.raises(DecisionLogError, match="bad.jsonl:2: expected one JSON object per line"):
            replay_decision_log(other, bad)
        with pytest.raises(DecisionLogError, match="header"):
            replay_decision_log(other, _manifest(tmp_path))
    finally:
        other.close()


def test_decisions_export_and_replay_from_the_command_line(curated, db_path, tmp_path, capsys):
    curated.close()
    log = tmp_path / "log.jsonl"
    assert main(["decisions", "export", "--db", str(db_path), "--out", str(log)]) == 0
    fresh = tmp_path / "fresh.duckdb"
    assert main(["ingest", str(_manifest(tmp_path)), "--db", str(fresh)]) == 0
    assert main(["decisions", "replay", str(log), "--db", str(fresh)]) == 0
    assert "replay: 7 decisions, 1 suggestion verdicts" in capsys.readouterr().out


def test_backup_and_restore_on_a_database_another_process_holds_say_so(curated, db_path, tmp_path, capsys):
    import subprocess
    import sys

    from helpers import PROJECT

    curated.close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from curation import store; con = store.connect(sys.argv[1]); "
                               "print('held', flush=True); sys.stdin.read()", str(db_path)],
        cwd=PROJECT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        spare = tmp_path / "spare.duckdb"
        store.connect(spare).close()
        assert main(["backup", "--db", str(db_path), "--out", str(tmp_path / "never.duckdb")]) == 2
        assert main(["restore", str(spare), "--db", str(db_path), "--force"]) == 2
        errors = capsys.readouterr().err
        assert errors.count("in use by another process") == 2
        assert not (tmp_path / "never.duckdb").exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    con = store.connect(db_path)  # untouched by the refused restore
    try:
        assert con.execute("SELECT count(*) FROM clips").fetchall() == [(8,)]
    finally:
        con.close()
