"""Real browser + real `streamlit run`: a curator adds a tag to a clip and an annotator submits audit verdicts,
each acknowledged by the app's own message; one more submission is clicked and the server is SIGKILLed while it
may be writing. Every acknowledged decision and verdict is in the database afterwards and the file opens.
(tests/test_trust_durability.py does the same at a higher rate through the library path the pages call.)"""
from __future__ import annotations

import json
import re
import signal

import pytest
from e2e_helpers import StreamlitServer, fill_text_input, wait_for_app_idle, wait_for_rerun
from helpers import make_cut, write_jsonl
from playwright.sync_api import expect

from curation import store
from curation.audit.campaigns import create_campaign
from curation.ingest.ingest import ingest_path

VERDICTS = 3


@pytest.fixture
def live_server(tmp_path):
    db = tmp_path / "live.duckdb"
    con = store.connect(db)
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl",
                                 [make_cut(f"clip{i}", tags=("music", f"t{i % 3}")) for i in range(12)]))
    create_campaign(con, "live", sample_size=12, by="ana", annotators_per_clip=1)
    con.close()
    server = StreamlitServer(db, tmp_path / "streamlit.log")
    server.wait_healthy()
    yield server, db
    if server.process.poll() is None:
        server.stop()
    else:
        server.log.close()


def _submit_verdicts(page) -> None:
    wait_for_app_idle(page)
    # One judging form: on a loaded machine the previous clip's form was seen lingering beside the new one for a
    # moment after the run ended; answer and submit only once it is gone.
    form = page.locator('[data-testid="stForm"]').filter(has_text="Is each tag in the audio?")
    expect(form).to_have_count(1, timeout=30_000)
    choices = []
    for group in form.locator('[data-testid="stRadio"]').all():
        choice = group.get_by_role("radio", name="correct")
        choices.append((choice if choice.count() else group.get_by_role("radio", name="4")).first)
    for choice in choices:
        choice.check(force=True)  # the inputs are visually hidden behind their styled labels, hence force
    for choice in choices:
        expect(choice).to_be_checked()
    form.get_by_role("button", name="Submit and next").click()


def test_sigkill_after_acknowledged_ui_writes_loses_none(page, live_server):
    server, db = live_server
    # A curator's decision: add a tag to a clip on Browse, acknowledged by "Decision #1".
    page.goto(f"{server.url}/browse")
    page.wait_for_selector('[data-testid="stPopover"]', timeout=60_000)
    wait_for_app_idle(page)
    fill_text_input(page, "Working as", "ana")
    page.get_by_role("button", name="Edit this clip's tags").first.click()
    box = page.get_by_label("Add a tag").first
    box.fill("burst-1")
    box.press("Enter")
    wait_for_rerun(page)
    page.get_by_role("button", name="Add", exact=True).first.click()
    page.get_by_text(re.compile(r"Decision #1: add burst-1 on clip")).wait_for(timeout=30_000)
    wait_for_app_idle(page)

    # An annotator's verdicts, each acknowledged by "Saved your verdicts on <clip>".
    page.goto(f"{server.url}/audit")  # a new session: the name is asked again
    page.wait_for_selector('[data-testid="stDataFrame"]', timeout=60_000)
    wait_for_app_idle(page)
    fill_text_input(page, "Working as", "bo")
    acknowledged_clips = []
    for _ in range(VERDICTS):
        page.get_by_text("Is each tag in the audio?").first.wait_for(timeout=30_000)
        _submit_verdicts(page)
        message = page.get_by_text(re.compile(r"Saved your verdicts on clip\d+"))
        message.wait_for(timeout=30_000)
        acknowledged_clips.append(re.search(r"clip\d+", message.inner_text()).group(0))
        wait_for_app_idle(page)

    # One more submission in flight, then the process dies without any chance to flush or clean up.
    _submit_verdicts(page)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=30)

    con = store.connect(db)  # the file opens after the kill
    try:
        decisions = [(row[0], row[1], json.loads(row[2])["tag"]) for row in
                     con.execute("SELECT decision_id, decided_by, payload FROM decisions").fetchall()]
        judged = {row[0] for row in con.execute(
            "SELECT DISTINCT c.clip_id FROM audit_verdicts v JOIN clips c USING (clip_key)").fetchall()}
        annotators = con.execute("SELECT DISTINCT annotator FROM audit_verdicts").fetchall()
    finally:
        con.close()
    assert decisions == [(1, "ana", "burst-1")]
    assert len(acknowledged_clips) == VERDICTS and set(acknowledged_clips) <= judged
    assert annotators == [("bo",)]
