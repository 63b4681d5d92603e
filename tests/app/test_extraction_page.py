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
