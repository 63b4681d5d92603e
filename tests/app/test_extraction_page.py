"""The Tagging jobs page under AppTest: start an offline job, watch it finish, see the job and its failures."""
from __future__ import annotations

import time

from helpers import open_app_page, write_jsonl

from curation import store
from curation.ingest.ingest import ingest_path


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
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the job runs in a thread; the page reruns as a person would
        app.run()
        if any("finished: done 30, failed 1" in s.value for s in app.success):
            break
        time.sleep(0.2)
    assert any("finished: done 30, failed 1" in s.value for s in app.success), [s.value for s in app.success]
    jobs = app.dataframe[0].value
    assert list(jobs["status"]) == ["finished"] and list(jobs["started_by"]) == ["ana"]
    failures = app.dataframe[1].value
    assert list(failures["clip_id"]) == ["odd"] and "no usable label" in failures["error"][0]
    app.run()  # the run that showed the report may have counted before the last batch was written
    assert [m.value for m in app.metric][1] == "1"  # only the odd clip is still without tags
