"""What the server process relies on from the library: decision writes of every session take turns (no
duplicate-id failure when a page and an API client decide at the same moment: curation/store/decisions.WRITE_LOCK),
and a read-only open of the file the process already holds shares that database (store.connect)."""
from __future__ import annotations

import threading

from curation import store
from curation.vocabulary.decisions import Decision, list_decisions, record_decision
from curation.vocabulary.ranking import load_tag_matrix


def _race(con, clip_id: str) -> list[str]:
    errors = []

    def writer(index: int) -> None:
        cursor = con.cursor()  # one session each, as the app's pages and the API's requests have
        for _ in range(15):
            try:
                record_decision(cursor, Decision.clip_add(clip_id, "dog"), by=f"w{index}")
            except Exception as exc:  # noqa: BLE001 - counted: the point of the test
                errors.append(type(exc).__name__)
        cursor.close()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_concurrent_decision_writes_take_turns_in_the_server(demo_db):
    con = store.connect(demo_db)
    try:
        clip_id = str(load_tag_matrix(con).clip_ids[0])
        assert _race(con, clip_id) == []
        assert len(list_decisions(con)) == 45
        assert [r.decision_id for r in list_decisions(con)] == list(range(1, 46))
    finally:
        con.close()


def test_a_read_only_open_of_the_held_file_shares_the_servers_database(demo_db):
    held = store.connect(demo_db)
    try:
        reader = store.connect(demo_db, read_only=True)  # as `stats` opens it
        assert reader.execute("SELECT count(*) FROM clips").fetchall()[0][0] == 60
        reader.close()
    finally:
        held.close()


def test_a_file_the_server_declares_held_is_shared_without_a_refused_read_only_open(demo_db, monkeypatch):
    from curation.store import schema

    monkeypatch.setattr(schema, "_HELD_IN_THIS_PROCESS", set())
    store.hold_in_this_process(demo_db)
    held = store.connect(demo_db)
    opened = []
    real_connect = schema.duckdb.connect
    monkeypatch.setattr(schema.duckdb, "connect", lambda *a, **k: opened.append(k) or real_connect(*a, **k))
    try:
        reader = store.connect(demo_db, read_only=True)  # as a forwarded `stats` in the server opens it
        assert reader.execute("SELECT count(*) FROM clips").fetchall()[0][0] == 60
        reader.close()
        assert [k.get("read_only") for k in opened] == [False]  # no refused read-only attempt first
    finally:
        held.close()
