"""Durability: a process writing a burst of decisions and audit verdicts through the library path the app uses
(record_decision / next_item / submit on a cursor of one shared connection, with a signed-in actor bound, as
ui/db.py and the router do) is SIGKILLed mid-burst; every write it acknowledged is in the database afterwards
and the file opens. Twice in a row, the second burst starting from the recovered file.

Why this is the app's code path: a page acknowledges a write (the "Decision #n" / "Saved your verdicts"
message) only after record_decision / submit returned, i.e. after their transaction's COMMIT; the subprocess
prints its ACK at the same point, on the same functions, over the same kind of connection.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from helpers import PROJECT, make_cut, write_jsonl

from curation import store
from curation.audit.campaigns import create_campaign
from curation.ingest.ingest import ingest_path

WRITER = textwrap.dedent("""
    import sys
    from curation import store
    from curation.admin import permissions
    from curation.audit.campaigns import next_item, submit
    from curation.vocabulary.decisions import Decision, record_decision

    db, campaign, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    connection = store.connect(db)           # what ui/db.py caches for the app
    permissions.bind(permissions.Actor("ana", "admin", signed_in=True))  # what the router binds
    print("READY", flush=True)
    for i in range(start, start + 10_000):
        cursor = connection.cursor()         # a cursor per rerun, as db_cursor() gives the pages
        record = record_decision(cursor, Decision.clip_add(f"c{i % 40}", f"burst-{i}"), by="ana")
        print(f"ACK decision {record.decision_id} burst-{i}", flush=True)
        item = next_item(cursor, campaign, "ana")
        if item is not None:
            submit(cursor, item, "ana", {tag: "correct" for tag in item.tags}, rating=3, note=f"n{i}")
            print(f"ACK verdict {item.clip_key} {len(item.tags)}", flush=True)
""")


@pytest.fixture
def burst_db(tmp_path):
    db = tmp_path / "uts.duckdb"
    con = store.connect(db)
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl",
                                 [make_cut(f"c{i}", tags=("music", f"t{i % 5}")) for i in range(40)]))
    campaign = create_campaign(con, "burst", sample_size=40, by="ana", annotators_per_clip=1)
    con.close()
    return db, campaign


def _burst_then_kill(db, campaign: int, start: int, acks_before_kill: int) -> tuple[list[tuple], list[tuple]]:
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(campaign), str(start)], cwd=PROJECT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    decisions, verdicts = [], []
    try:
        assert writer.stdout.readline().strip() == "READY", writer.stderr.read()
        while len(decisions) + len(verdicts) < acks_before_kill:
            line = writer.stdout.readline()
            assert line, f"the writer stopped early: {writer.stderr.read()}"
            kind, *fields = line.split()
            if kind == "ACK" and fields[0] == "decision":
                decisions.append((int(fields[1]), fields[2]))
            elif kind == "ACK":
                verdicts.append((int(fields[1]), int(fields[2])))
        os.kill(writer.pid, signal.SIGKILL)  # mid-burst: it is writing the next one now
    finally:
        writer.kill()
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    return decisions, verdicts


def _check_acknowledged(db, decisions, verdicts) -> int:
    con = store.connect(db)  # the file opens (and the WAL is replayed) after the kill
    try:
        stored = {row[0]: json.loads(row[1])["tag"] for row in
                  con.execute("SELECT decision_id, payload FROM decisions").fetchall()}
        for decision_id, tag in decisions:
            assert stored.get(decision_id) == tag, f"acknowledged decision #{decision_id} ({tag}) lost"
        judged = dict(con.execute("SELECT clip_key, count(*) FROM audit_verdicts GROUP BY clip_key").fetchall())
        for clip_key, n_tags in verdicts:
            assert judged.get(clip_key) == n_tags, f"acknowledged verdicts on clip_key {clip_key} lost"
        assert con.execute("SELECT count(*) FROM clips").fetchall() == [(40,)]
        return len(stored)
    finally:
        con.close()


def test_sigkill_mid_burst_loses_no_acknowledged_write(burst_db):
    db, campaign = burst_db
    decisions, verdicts = _burst_then_kill(db, campaign, start=0, acks_before_kill=30)
    first = _check_acknowledged(db, decisions, verdicts)
    assert len(decisions) >= 15 and len(verdicts) >= 14
    # The recovered file takes a second burst (ids continue) and survives a second kill.
    more_decisions, more_verdicts = _burst_then_kill(db, campaign, start=1000, acks_before_kill=20)
    assert min(d for d, _ in more_decisions) > max(d for d, _ in decisions)
    total = _check_acknowledged(db, decisions + more_decisions, verdicts + more_verdicts)
    assert total >= first + len(more_decisions)
