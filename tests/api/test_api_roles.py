"""Who may do what through the API: tokens per user (hashed, revocable, last use), the app's role rules checked
server-side before anything is written, and the role x endpoint matrix."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import add_users
from fastapi.testclient import TestClient

from curation import store
from curation.admin import tokens as admin_tokens
from curation.admin.users import users_file_path
from curation.api.app import create_api
from curation.extraction.jobs import current_job

REMOTE = ("10.0.0.7", 41000)  # with a users file, the API serves other machines too (with a token)
WRITE_TABLES = ("decisions", "suggestion_verdicts", "exports", "audit_campaigns", "extraction_jobs", "api_tokens")


@pytest.fixture
def shared_db(demo_db):
    add_users(demo_db, root="admin", ana="curator", bo="annotator")
    con = store.connect(demo_db)
    secrets = {name: admin_tokens.create_token(con, users_file_path(demo_db), name, label="test")[0]
               for name in ("root", "ana", "bo")}
    con.close()
    return demo_db, secrets


def _client(db):
    return TestClient(create_api(db), client=REMOTE)


def _counts(client) -> dict:
    con = client.app.state.uts.cursor()
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in WRITE_TABLES}
    finally:
        con.close()


def _auth(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


# (method, path, body, the ability it needs; None: any signed-in user)
MATRIX = [
    ("GET", "/stats", None, None),
    ("GET", "/vocabulary?k=5", None, "browse"),
    ("GET", "/vocabulary/coverage", None, "browse"),
    ("GET", "/decisions", None, "browse"),
    ("POST", "/decisions", {"action": "merge", "tags": ["dog", "dogs"], "into": "dog"}, "decide"),
    ("POST", "/decisions/1/undo", {}, "decide"),
    ("GET", "/suggestions/prunes?k=5", None, "decide"),
    ("POST", "/suggestions/merges/reject", {"tags": ["bird", "birds"]}, "decide"),
    ("POST", "/suggestions/prunes/accept", {"tags": ["dog"], "k": 5}, "decide"),
    ("POST", "/suggestions/prunes/reject", {"tags": ["dog"]}, "decide"),
    ("GET", "/exports", None, "browse"),
    ("POST", "/exports", {"k": 5}, "export"),
    ("GET", "/audit/campaigns", None, "audit"),
    ("POST", "/audit/campaigns", {"name": "matrix", "size": 3, "annotators": 1}, "campaign"),
    ("GET", "/jobs", None, "runs"),
    ("POST", "/jobs", {"limit": 1, "force": True}, "runs"),
    ("GET", "/jobs/current", None, "runs"),
    ("GET", "/runs", None, "runs"),
    ("POST", "/runs/none/cancel", {}, "runs"),
    ("GET", "/runs/compare?run_id=none", None, "runs"),
    ("GET", "/tokens", None, None),
]
ROLES = {"root": {"audit", "browse", "decide", "campaign", "export", "runs", "users", "backup"},
         "ana": {"audit", "browse", "decide", "campaign", "export"}, "bo": {"audit"}}


@pytest.mark.parametrize("user", ["root", "ana", "bo"])
def test_role_by_endpoint_matrix(shared_db, user):
    db, secrets = shared_db
    with _client(db) as client:
        for method, path, body, ability in MATRIX:
            before = _counts(client)
            response = client.request(method, path, json=body, headers=_auth(secrets[user]))
            allowed = ability is None or ability in ROLES[user]
            if allowed:
                assert response.status_code not in (401, 403), (user, method, path, response.text)
            else:
                assert response.status_code == 403, (user, method, path, response.text)
                assert f"may not {ability}" in response.json()["detail"]
                assert _counts(client) == before, (user, method, path)  # refused before anything was written
        job = current_job(str(Path(db).resolve()))
        if job is not None:
            job._thread.join(timeout=60)


def test_an_annotator_audits_through_the_api_as_themselves_only(shared_db):
    db, secrets = shared_db
    with _client(db) as client:
        created = client.post("/audit/campaigns", json={"name": "c", "size": 3, "annotators": 1},
                              headers=_auth(secrets["ana"]))
        campaign_id = created.json()["campaign_id"]
        assert created.json()["campaign_id"] and client.get("/audit/campaigns", headers=_auth(
            secrets["ana"])).json()["campaigns"][0]["created_by"] == "ana"
        as_other = client.post(f"/audit/campaigns/{campaign_id}/next", json={"annotator": "ana"},
                               headers=_auth(secrets["bo"]))
        assert as_other.status_code == 403 and "acts as 'bo'" in as_other.json()["detail"]
        item = client.post(f"/audit/campaigns/{campaign_id}/next", json={}, headers=_auth(secrets["bo"])).json()["item"]
        done = client.post(f"/audit/campaigns/{campaign_id}/submit", headers=_auth(secrets["bo"]),
                           json={"clip_id": item["clip_id"], "verdicts": {t: "wrong" for t in item["tags"]}})
        assert done.status_code == 201 and done.json()["annotator"] == "bo"


def test_a_decision_is_recorded_under_the_tokens_user_and_cannot_name_another(shared_db):
    db, secrets = shared_db
    with _client(db) as client:
        spoofed = client.post("/decisions", headers=_auth(secrets["ana"]),
                              json={"action": "merge", "tags": ["dog", "dogs"], "into": "dog", "by": "root"})
        assert spoofed.status_code == 403 and _counts(client)["decisions"] == 0
        made = client.post("/decisions", headers=_auth(secrets["ana"]),
                           json={"action": "merge", "tags": ["dog", "dogs"], "into": "dog"})
        assert made.status_code == 201 and made.json()["decided_by"] == "ana"


def test_without_or_with_a_wrong_token_nothing_is_served(shared_db):
    db, secrets = shared_db
    with _client(db) as client:
        assert client.get("/stats").status_code == 401
        assert client.get("/stats", headers=_auth("uts_not-a-token")).status_code == 401
        assert client.get("/stats", headers={"Authorization": "Basic abc"}).status_code == 401
        assert client.get("/stats", headers={"X-UTS-Local-Key": "guess"}).status_code == 401
        assert client.get("/stats", headers=_auth(secrets["bo"])).status_code == 200


def test_a_revoked_token_is_refused_at_once_and_the_list_shows_last_use(shared_db):
    db, secrets = shared_db
    with _client(db) as client:
        assert client.get("/stats", headers=_auth(secrets["ana"])).status_code == 200
        mine = client.get("/tokens", headers=_auth(secrets["ana"])).json()["tokens"]
        assert [t["user"] for t in mine] == ["ana"]  # a curator sees only their own tokens
        assert mine[0]["last_used_at"] is not None and "token" not in mine[0]
        assert secrets["ana"].startswith(mine[0]["prefix"])
        everyone = client.get("/tokens", headers=_auth(secrets["root"])).json()["tokens"]
        assert {t["user"] for t in everyone} == {"root", "ana", "bo"}
        not_hers = next(t for t in everyone if t["user"] == "bo")
        assert client.delete(f"/tokens/{not_hers['token_id']}", headers=_auth(secrets["ana"])).status_code == 403
        revoked = client.delete(f"/tokens/{mine[0]['token_id']}", headers=_auth(secrets["root"]))
        assert revoked.status_code == 200 and revoked.json()["revoked_by"] == "root"
        refused = client.get("/stats", headers=_auth(secrets["ana"]))
        assert refused.status_code == 401 and "revoked" in refused.json()["detail"]


def test_users_create_tokens_for_themselves_admins_for_anyone_shown_once(shared_db):
    db, secrets = shared_db
    with _client(db) as client:
        for_other = client.post("/tokens", json={"user": "bo"}, headers=_auth(secrets["ana"]))
        assert for_other.status_code == 403
        own = client.post("/tokens", json={"user": "ana", "label": "notebook"}, headers=_auth(secrets["ana"]))
        assert own.status_code == 201 and own.json()["token"].startswith("uts_")
        assert client.get("/decisions", headers=_auth(own.json()["token"])).status_code == 200
        by_admin = client.post("/tokens", json={"user": "bo"}, headers=_auth(secrets["root"]))
        assert by_admin.status_code == 201 and by_admin.json()["created_by"] == "root"
        unknown = client.post("/tokens", json={"user": "nobody"}, headers=_auth(secrets["root"]))
        assert unknown.status_code == 400 and "nobody" in unknown.json()["detail"]
        con = client.app.state.uts.cursor()
        stored = [row[0] for row in con.execute("SELECT token_sha256 FROM api_tokens").fetchall()]
        con.close()
        assert own.json()["token"] not in stored and admin_tokens.token_sha256(own.json()["token"]) in stored


def test_a_changed_role_or_a_removed_user_takes_effect_at_once(shared_db):
    from curation.admin.users import remove_user, set_role

    db, secrets = shared_db
    with _client(db) as client:
        assert client.get("/decisions", headers=_auth(secrets["ana"])).status_code == 200
        set_role(users_file_path(db), "ana", "annotator")
        assert client.get("/decisions", headers=_auth(secrets["ana"])).status_code == 403
        remove_user(users_file_path(db), "ana")
        gone = client.get("/stats", headers=_auth(secrets["ana"]))
        assert gone.status_code == 401 and "no longer in the users file" in gone.json()["detail"]
