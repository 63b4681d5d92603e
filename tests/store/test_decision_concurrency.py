"""Decisions from several sessions of the process that holds the file (app pages, API requests) at the same
moment: none fails, none is lost, ids stay unique (curation/store/decisions.py WRITE_LOCK)."""
from __future__ import annotations

import threading

from helpers import make_cut, write_jsonl

from curation import store
from curation.ingest.ingest import ingest_path
from curation.vocabulary.decisions import Decision, list_decisions, record_decision


def test_two_sessions_deciding_at_once_lose_nothing(tmp_path):
    con = store.connect(tmp_path / "uts.duckdb")
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", [make_cut(f"c{i}") for i in range(4)]))
    errors: list[BaseException] = []

    def session(name: str) -> None:
        cursor = con.cursor()  # as each app session / API request does
        try:
            for i in range(40):
                record_decision(cursor, Decision.clip_add(f"c{i % 4}", f"{name}-{i}"), by=name)
        except BaseException as exc:  # noqa: BLE001 - any failure is what the test reports
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(name,)) for name in ("page", "api")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    records = list_decisions(con)
    assert len(records) == 80 and len({r.decision_id for r in records}) == 80
    assert sorted(r.payload["tag"] for r in records) == sorted(f"{n}-{i}" for n in ("page", "api") for i in range(40))
