"""The API through FastAPI's test client on a real DuckDB file: the same answers as the CLI, validation that names
the field and writes nothing, and every area (vocabulary, decisions, suggestions, exports, audit, jobs, runs)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from chat_server import ScriptedChatServer
from conftest import cli
from fastapi.testclient import TestClient

from curation import store
from curation.api.app import create_api
from curation.extraction.backends import build_backend
from curation.extraction.jobs import start_background_job

LOOPBACK = ("127.0.0.1", 50000)


@pytest.fixture
def api(demo_db):
    with TestClient(create_api(demo_db), client=LOOPBACK) as client:
        yield client


def _count(api, table: str) -> int:
    con = api.app.state.uts.cursor()
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    finally:
        con.close()


def test_stats_is_the_json_of_the_stats_command(demo_db):
    expected = json.loads(cli("stats", "--db", str(demo_db), "--json").stdout)
    with TestClient(create_api(demo_db), client=LOOPBACK) as client:
        assert client.get("/stats").json() == expected


def test_without_a_users_file_only_this_machine_is_served(demo_db):
    with TestClient(create_api(demo_db), client=("10.1.2.3", 40000)) as client:
        response = client.get("/stats")
    assert response.status_code == 403
    assert "loopback" in response.json()["detail"]


def test_a_merge_is_recorded_listed_and_undone(api):
    response = api.post("/decisions", json={"action": "merge", "tags": ["dog", "dogs"], "into": "dog", "by": "ana",
                                            "reason": "plural"})
    assert response.status_code == 201, response.text
    decision = response.json()
    assert decision["description"] == "merge dog, dogs -> dog" and decision["decided_by"] == "ana"
    log = api.get("/decisions").json()["decisions"]
    assert [(d["decision_id"], d["action"], d["in_effect"]) for d in log] == [(decision["decision_id"], "merge", True)]
    vocabulary = api.get("/vocabulary", params={"k": 500}).json()
    dog = next(row for row in vocabulary["ranking"] if row["tag"] == "dog")
    assert dog["members"] == ["dogs"] and "dogs" not in {row["tag"] for row in vocabulary["ranking"]}
    undo = api.post(f"/decisions/{decision['decision_id']}/undo", json={"by": "ana"})
    assert undo.status_code == 201, undo.text
    log = api.get("/decisions").json()["decisions"]
    assert [d["in_effect"] for d in log] == [False, False]  # the merge is undone; an undo is never "in effect"


@pytest.mark.parametrize("body, field", [
    ({"action": "merge", "tags": ["dog"], "into": "dog", "by": "ana", "colour": "red"}, "colour"),
    ({"action": "merge", "into": "dog", "by": "ana"}, "tags"),
    ({"action": "merge", "tags": [], "into": "dog", "by": "ana"}, "tags"),
    ({"action": "merge", "tags": "dogs", "into": "dog", "by": "ana"}, "tags"),
    ({"action": "explode", "tags": ["dog"], "by": "ana"}, "action"),
    ({"action": "undo", "decision_id": "one", "by": "ana"}, "decision_id"),
    ({"action": "clip_add", "clip_id": "x", "by": "ana"}, "tag"),
])
def test_bad_bodies_are_refused_naming_the_field_and_nothing_is_written(api, body, field):
    response = api.post("/decisions", json=body)
    assert response.status_code == 422
    assert field in response.json()["detail"]
    assert _count(api, "decisions") == 0


def test_a_decision_the_library_refuses_is_a_4xx_with_its_message_and_writes_nothing(api):
    response = api.post("/decisions", json={"action": "merge", "tags": ["no-such-tag"], "into": "dog", "by": "ana"})
    assert response.status_code == 400
    assert "unknown tag 'no-such-tag'" in response.json()["detail"]
    missing_name = api.post("/decisions", json={"action": "prune", "tags": ["dog"]})
    assert missing_name.status_code == 422 and missing_name.json()["detail"].startswith("by:")
    assert _count(api, "decisions") == 0 and _count(api, "tags") > 0


def test_vocabulary_at_k_coverage_and_the_two_k_diff(api):
    at_5 = api.get("/vocabulary", params={"k": 5}).json()
    assert [row["rank"] for row in at_5["ranking"]] == [1, 2, 3, 4, 5]
    assert all(row["in_top_k"] for row in at_5["ranking"]) and at_5["coverage_at_k"]["k"] == 5
    coverage = api.get("/vocabulary/coverage", params={"ks": "5,10"}).json()["coverage"]
    assert [row["k"] for row in coverage] == [5, 10]
    assert coverage[0]["clips_kept"] <= coverage[1]["clips_kept"]
    diff = api.get("/vocabulary/diff", params={"k_small": 5, "k_large": 10}).json()
    top_10 = [row["tag"] for row in api.get("/vocabulary", params={"k": 10}).json()["ranking"]]
    assert diff["tags_entering"] == top_10[5:]
    assert diff["n_clips_lost"] == coverage[1]["clips_kept"] - coverage[0]["clips_kept"]
    assert api.get("/vocabulary", params={"k": 0}).status_code == 422
    assert api.get("/vocabulary/diff", params={"k_small": 10, "k_large": 5}).status_code == 400


def test_per_clip_edits_and_prune_suggestions(api):
    con = api.app.state.uts.cursor()
    clip_id = con.execute("SELECT clip_id FROM clips ORDER BY clip_key LIMIT 1").fetchall()[0][0]
    con.close()
    added = api.post("/decisions", json={"action": "clip_add", "clip_id": clip_id, "tag": "Brand New", "by": "ana"})
    assert added.status_code == 201 and added.json()["payload"]["tag"] == "brand new"
    rare = api.get("/suggestions/prunes", params={"k": 50, "min_df": 2}).json()["suggestions"]
    assert rare and all(row["df"] < 2 for row in rare)
    accepted = api.post("/suggestions/prunes/accept", json={"tags": [rare[0]["tag"]], "k": 50, "by": "ana"})
    assert accepted.status_code == 201 and accepted.json()["action"] == "prune"
    # Rejecting a prune suggestion (keep the tag) removes it from the list for good, and prunes nothing.
    rare = api.get("/suggestions/prunes", params={"k": 50, "min_df": 2}).json()["suggestions"]
    kept = rare[0]["tag"]
    rejected = api.post("/suggestions/prunes/reject", json={"tags": [kept], "by": "ana"})
    assert rejected.status_code == 200 and rejected.json() == {"kept": [kept]}
    again = api.get("/suggestions/prunes", params={"k": 50, "min_df": 2}).json()["suggestions"]
    assert kept not in [row["tag"] for row in again] and len(again) == len(rare) - 1
    assert kept in [row["tag"] for row in api.get("/vocabulary", params={"k": 5000}).json()["ranking"]]
    assert api.post("/suggestions/prunes/reject", json={"tags": [], "by": "ana"}).status_code == 422


def test_merge_suggestions_are_listed_accepted_and_rejected(api):
    suggestions = api.get("/suggestions/merges", params={"top": 5}).json()["suggestions"]
    assert suggestions, "the demo corpus has surface variants"
    first = suggestions[0]
    accepted = api.post("/suggestions/merges/accept", json={"tags": first["tags"], "by": "ana"})
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["payload"]["into"] == first["tags"][0]
    if len(suggestions) > 1:
        rejected = api.post("/suggestions/merges/reject", json={"tags": suggestions[1]["tags"], "by": "ana"})
        assert rejected.status_code == 200
        again = api.get("/suggestions/merges").json()["suggestions"]
        assert sorted(suggestions[1]["tags"]) not in [sorted(s["tags"]) for s in again]
    assert _count(api, "suggestion_verdicts") == (2 if len(suggestions) > 1 else 1)


def test_an_export_is_created_listed_and_its_files_downloaded(api):
    created = api.post("/exports", json={"k": 20, "by": "ana"})
    assert created.status_code == 201, created.text
    export_id = created.json()["export_id"]
    assert [e["export_id"] for e in api.get("/exports").json()["exports"]] == [export_id]
    files = api.get(f"/exports/{export_id}/files").json()["files"]
    assert "label_20.json" in files
    labels = api.get(f"/exports/{export_id}/files/label_20.json")
    assert labels.status_code == 200 and len(json.loads(labels.content)) == 20
    assert api.get(f"/exports/{export_id}/files/..%2Fdemo.duckdb").status_code == 404
    assert api.get("/exports/999/files").status_code == 404


def test_an_audit_campaign_serves_clips_takes_verdicts_and_reports(api):
    created = api.post("/audit/campaigns", json={"name": "api", "size": 4, "annotators": 1, "by": "ana"})
    assert created.status_code == 201, created.text
    campaign_id = created.json()["campaign_id"]
    item = api.post(f"/audit/campaigns/{campaign_id}/next", json={"annotator": "bo"}).json()["item"]
    assert item["tags"]
    wrong = api.post(f"/audit/campaigns/{campaign_id}/submit",
                     json={"annotator": "bo", "clip_id": "not-this-one", "verdicts": {}})
    assert wrong.status_code == 400 and "clip_id" in wrong.json()["detail"]
    verdicts = {tag: "correct" for tag in item["tags"]}
    done = api.post(f"/audit/campaigns/{campaign_id}/submit",
                    json={"annotator": "bo", "clip_id": item["clip_id"], "verdicts": verdicts, "rating": 4})
    assert done.status_code == 201, done.text
    assert _count(api, "audit_verdicts") == len(verdicts)
    again = api.post(f"/audit/campaigns/{campaign_id}/submit",
                     json={"annotator": "bo", "clip_id": item["clip_id"], "verdicts": verdicts})
    assert again.status_code == 400 and _count(api, "audit_verdicts") == len(verdicts)
    report = api.get(f"/audit/campaigns/{campaign_id}/report").json()
    assert {row["tag"] for row in report["precision"]} == set(item["tags"])
    assert api.get("/audit/campaigns/77/report").status_code == 404


def test_a_tagging_job_starts_reports_progress_and_finishes(api):
    started = api.post("/jobs", json={"task": "tags", "backend": "offline", "limit": 10, "force": True,
                                      "by": "ana"})
    assert started.status_code == 201, started.text
    deadline = time.monotonic() + 120
    status = api.get("/jobs/current").json()["job"]
    while status["running"] and time.monotonic() < deadline:
        time.sleep(0.2)  # polling the job's own state
        status = api.get("/jobs/current").json()["job"]
    assert not status["running"] and status["error"] is None, status
    assert status["report"]["done"] + status["report"]["failed"] + status["report"]["skipped"] >= 1
    assert api.get("/jobs").json()["jobs"][0]["status"] == status["report"]["status"]
    assert api.post("/jobs/current/stop").status_code == 404  # nothing running any more


def test_a_job_started_on_the_tagging_page_is_seen_refused_and_stopped_through_the_api(api):
    """One server, one job per database: the API follows, refuses a second and stops a job the app started."""
    chat = ScriptedChatServer(latency_s=0.3).start()
    try:
        state = api.app.state.uts
        backend = build_backend("openai", "tags", base_url=chat.base_url, model="scripted", concurrency=1)
        # What ui/jobs.start_job does when the Tagging page's button is pressed.
        page_job = start_background_job(str(Path(state.db_path).resolve()), state.cursor(), backend, task="tags",
                                        force=True, by="ana")
        status = api.get("/jobs/current").json()["job"]
        assert status["running"] is True
        refused = api.post("/jobs", json={"task": "tags", "backend": "offline", "limit": 5, "force": True,
                                          "by": "ana"})
        assert refused.status_code == 400 and "already running" in refused.json()["detail"]
        assert api.post("/jobs/current/stop").status_code == 200
        page_job._thread.join(timeout=60)
        assert not page_job.running and api.get("/jobs/current").json()["job"]["running"] is False
        assert api.get("/jobs").json()["jobs"][0]["status"] == "stopped"
    finally:
        chat.stop()


def test_runs_list_and_unknown_runs(api):
    assert api.get("/runs").json() == {"runs": []}
    assert api.get("/runs/nope/metrics").status_code == 400
    assert api.post("/runs/nope/cancel", json={"by": "ana"}).status_code == 400
    refused = api.post("/runs", json={"ks": [5], "export_id": 1, "by": "ana"})
    assert refused.status_code == 400 and "not both" in refused.json()["detail"]
    assert api.get("/runs").json() == {"runs": []}


def test_the_openapi_schema_lists_the_versioned_routes(api):
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/stats", "/vocabulary", "/decisions", "/suggestions/merges", "/exports", "/audit/campaigns", "/jobs",
            "/runs", "/tokens", "/cli"} <= set(paths)
    assert store.SCHEMA_VERSION == api.get("/health").json()["schema_version"]


def test_vocabulary_after_decisions_that_intern_new_tags_equals_a_fresh_computation(api):
    from curation.vocabulary.decisions import list_decisions, replay
    from curation.vocabulary.ranking import compute_vocabulary, load_tag_matrix

    api.get("/vocabulary", params={"k": 10})  # the API has loaded its tag matrix now
    con = api.app.state.uts.cursor()
    clip_ids = [str(c) for c in load_tag_matrix(con).clip_ids[:3]]
    for clip_id in clip_ids:  # each a new tag text, interned by the decision
        assert api.post("/decisions", json={"action": "clip_add", "clip_id": clip_id, "tag": "zz new",
                                            "by": "ana"}).status_code == 201
    assert api.post("/decisions", json={"action": "merge", "tags": ["dog", "dogs"], "into": "canine",
                                        "by": "ana"}).status_code == 201
    served = api.get("/vocabulary", params={"k": 50, "limit": 10_000}).json()
    fresh = compute_vocabulary(load_tag_matrix(con), replay(list_decisions(con)))
    con.close()
    expected = fresh.ranking
    assert [(r["tag"], r["df"]) for r in served["ranking"]] == list(zip(expected["tag"], expected["df"].tolist()))
    assert {"zz new", "canine"} <= {r["tag"] for r in served["ranking"]}
    coverage = fresh.coverage[fresh.coverage["k"] == 50]
    assert served["coverage_at_k"]["clips_kept"] == int(coverage["clips_kept"].iloc[0])
