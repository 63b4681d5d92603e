"""The Tagging jobs page under AppTest: start an offline job, watch it finish, see the job and its failures."""
from __future__ import annotations

import re
import time

from helpers import open_app_page, write_jsonl

from curation import store
from curation.ingest.ingest import ingest_path
from curation.vocabulary.decisions import list_decisions


def test_start_an_offline_tagging_job_from_the_page(db_path, tmp_path, monkeypatch):
    con = store.connect(db_path)
    rows = [{"id": f"c{i}", "caption": f"A dog barks in the rain, take {i}"} for i in range(30)]
    rows.append({"id": "odd", "caption": "The weather report"})
    ingest_path(con, write_jsonl(tmp_path / "c.jsonl", rows))
    con.close()
    app = open_app_page(db_path, monkeypatch, "views/extraction.py", name="ana")
    assert [m.value for m in app.metric][:2] == ["31", "31"]  # clips, clips without any tag
    app.button(key="FormSubmitter:job_form-Start").click().run()
    assert not app.exception
    # Start only plans: the review says what the job would do, and nothing runs until Confirm.
    assert any("It would ask about **31 clips**" in m.value for m in app.markdown)
    assert app.dataframe[0].value.empty  # no job row yet
    app.button(key="job_confirm").click().run()
    assert not app.exception
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the job runs in a thread; the page reruns as a person would
        app.run()
        if any(" finished: done " in s.value for s in app.success):
            break
        time.sleep(0.2)
    report = next((s.value for s in app.success if " finished: done " in s.value), None)
    assert report is not None, [s.value for s in app.success]
    done, failed = (int(n) for n in re.search(r"done (\d+), failed (\d+)", report).groups())
    assert done + failed == 31 and done >= 30  # every clip answered; the dog clips all get tags
    jobs = app.dataframe[0].value
    assert list(jobs["status"]) == ["finished"] and list(jobs["started_by"]) == ["ana"]
    failures = app.dataframe[1].value if failed else None
    if failed:  # a failure keeps the model's answer and says why
        assert list(failures["clip_id"]) == ["odd"] and "no usable label" in failures["error"][0]
    app.run()  # the run that showed the report may have counted before the last batch was written
    assert [m.value for m in app.metric][1] == str(failed)  # only failed clips are still without tags


def test_start_asks_first_and_a_later_visitor_is_not_greeted_by_the_old_outcome(db_path, tmp_path, monkeypatch):
    con = store.connect(db_path)
    rows = [{"id": f"c{i}", "caption": f"A dog barks in the rain, take {i}", "tags": ["animal"]} for i in range(8)]
    ingest_path(con, write_jsonl(tmp_path / "c.jsonl", rows), extractor="curated-v1")
    con.close()
    app = open_app_page(db_path, monkeypatch, "views/extraction.py", name="ana")
    app.button(key="FormSubmitter:job_form-Start").click().run()
    assert any("8 of these clips already have tags" in w.value for w in app.warning)
    assert any("tag rows added" in m.value for m in app.markdown)
    app.button(key="job_cancel").click().run()
    assert not any("Review the job" in h.value for h in app.subheader)
    app.button(key="FormSubmitter:job_form-Start").click().run()
    assert app.radio(key="job_feed").value == "keep"  # the safe default: the vocabulary keeps its sources
    app.button(key="job_confirm").click().run()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any("finished" in s.value for s in app.success):
        app.run()
        time.sleep(0.2)
    assert any("finished" in s.value for s in app.success)
    con = store.connect(db_path)
    records = list_decisions(con)
    con.close()
    # Recorded before the job started: the vocabulary stays on the curated tags; undoable like any decision.
    assert [(r.action, r.payload, r.decided_by) for r in records] == [
        ("use_extractors", {"extractors": ["curated-v1"]}, "ana")]
    later = open_app_page(db_path, monkeypatch, "views/extraction.py", name="bo")  # another session
    assert not any("finished" in s.value for s in later.success)
    assert not later.error


def test_a_tagging_job_over_several_servers_from_the_page_reports_each_server(db_path, tmp_path, monkeypatch):
    import socket

    from chat_server import ScriptedChatServer

    with socket.socket() as sock:  # a port nobody listens on once closed: a server that is down
        sock.bind(("127.0.0.1", 0))
        down_url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    con = store.connect(db_path)
    rows = [{"id": f"c{i}", "caption": f"A dog barks in the rain, take {i}"} for i in range(40)]
    ingest_path(con, write_jsonl(tmp_path / "c.jsonl", rows))
    con.close()
    fast = ScriptedChatServer(latency_s=0.0).start()
    try:
        app = open_app_page(db_path, monkeypatch, "views/extraction.py", name="ana")
        app.selectbox(key="job_backend").set_value("openai")
        app.text_input(key="job_base_url").input(f"{fast.base_url}, {down_url}")  # several, comma separated
        app.text_input(key="job_model").input("scripted")
        app.number_input(key="job_concurrency").set_value(2)
        app.button(key="FormSubmitter:job_form-Start").click().run()
        assert not app.exception and not app.error, [e.value for e in app.error]
        app.button(key="job_confirm").click().run()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(" finished: done " in s.value for s in app.success):
            app.run()
            time.sleep(0.2)
        assert any("finished: done 40, failed 0" in s.value for s in app.success), [s.value for s in app.success]
        servers = next(d.value for d in app.dataframe if "server" in d.value.columns)
        assert list(servers["server"]) == [fast.base_url, down_url]
        assert list(servers["answered"]) == [40, 0] and list(servers["state"]) == ["live", "dropped"]
        assert servers["why taken out"][1].startswith("not reachable at the start: GET /models")
        jobs = next(d.value for d in app.dataframe if "status" in d.value.columns)
        assert jobs["servers"][0] == f"{fast.base_url} 40; {down_url} 0 (dropped)"
    finally:
        fast.stop()
