"""server.py's process-wide pieces: decision writes of every session take turns (no duplicate-id failure when a
page and an API client decide at the same moment), and a read-only open of the held file shares it."""
from __future__ import annotations

import threading

import server
from curation import store
from curation.vocabulary import decisions, suggestions
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


def test_concurrent_decision_writes_take_turns_in_the_server(demo_db, monkeypatch):
    monkeypatch.setattr(decisions, "record_decisions", decisions.record_decisions)  # restored after the test
    monkeypatch.setattr(suggestions, "record_decisions", suggestions.record_decisions)
    con = store.connect(demo_db)
    try:
        clip_id = str(load_tag_matrix(con).clip_ids[0])
        server._serialize_decision_writes(threading.RLock())
        assert _race(con, clip_id) == []
        assert len(list_decisions(con)) == 45
        assert [r.decision_id for r in list_decisions(con)] == list(range(1, 46))
    finally:
        con.close()


def test_a_read_only_open_of_the_held_file_shares_the_servers_database(demo_db, monkeypatch):
    monkeypatch.setattr(store, "connect", store.connect)
    held = store.connect(demo_db)
    try:
        server._share_held_database(demo_db.resolve())
        reader = store.connect(demo_db, read_only=True)  # as `stats` opens it
        assert reader.execute("SELECT count(*) FROM clips").fetchall()[0][0] == 60
        reader.close()
    finally:
        held.close()
