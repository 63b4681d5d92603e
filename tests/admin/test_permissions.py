"""Roles are enforced by the library itself: a denied role gets PermissionDeniedError and nothing is written;
the users file stores salted scrypt hashes and the CLI manages it."""
from __future__ import annotations

import io
import json
import stat

import pytest
from helpers import make_cut, write_jsonl

from curation import settings, store
from curation.admin import permissions, users
from curation.admin.permissions import Actor, PermissionDeniedError, acting_as
from curation.audit.campaigns import create_campaign, next_item, submit
from curation.cli.main import main
from curation.ingest.ingest import ingest_path
from curation.vocabulary.decisions import Decision, list_decisions, record_decision
from curation.vocabulary.export import export_vocabulary
from curation.vocabulary.suggestions import MergeSuggestion, reject_suggestion

ANNOTATOR = Actor("bo", "annotator", signed_in=True)
CURATOR = Actor("ana", "curator", signed_in=True)
ADMIN = Actor("root", "admin", signed_in=True)


@pytest.fixture
def corpus(con, tmp_path):
    cuts = [make_cut(f"c{i}", tags=("drum", "drums", "music") if i % 2 else ("rain", "music"), domain="music")
            for i in range(8)]
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
    return con


def _rows(con):
    return {table: con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
            for table in ("decisions", "suggestion_verdicts", "audit_campaigns", "audit_slots", "audit_verdicts",
                          "exports")}


def test_role_abilities_are_nested():
    assert permissions.ROLE_ABILITIES["annotator"] == {"audit"}
    assert permissions.ROLE_ABILITIES["annotator"] < permissions.ROLE_ABILITIES["curator"] \
        < permissions.ROLE_ABILITIES["admin"]
    assert {"runs", "users"} <= permissions.ROLE_ABILITIES["admin"] - permissions.ROLE_ABILITIES["curator"]
    with pytest.raises(PermissionDeniedError, match="curator or admin"):
        permissions.require(ANNOTATOR, "decide")
    with pytest.raises(PermissionDeniedError, match="sign in"):
        permissions.require(None, "audit")


def test_an_annotator_cannot_decide_export_or_create_campaigns_and_nothing_is_written(corpus, tmp_path):
    before = _rows(corpus)
    with acting_as(ANNOTATOR):
        with pytest.raises(PermissionDeniedError,
                           match=r"'bo' \(role annotator\) may not decide: making curation decisions needs"):
            record_decision(corpus, Decision.merge(["drums"], into="drum"), by="bo")
        with pytest.raises(PermissionDeniedError):
            reject_suggestion(corpus, MergeSuggestion(tags=("drum", "drums"), canonical="drum", score=1.0,
                                                      reasons=("plural",)), by="bo")
        with pytest.raises(PermissionDeniedError, match="may not export:"):
            export_vocabulary(corpus, k=2, out_dir=tmp_path / "export", by="bo")
        with pytest.raises(PermissionDeniedError, match="may not campaign:"):
            create_campaign(corpus, "pilot", sample_size=4, by="bo")
    assert _rows(corpus) == before
    assert not (tmp_path / "export").exists()


def test_a_curator_decides_under_their_own_name_only(corpus):
    with acting_as(CURATOR):
        record = record_decision(corpus, Decision.merge(["drums"], into="drum"), by="ana")
        assert record.decided_by == "ana"
        with pytest.raises(PermissionDeniedError, match="signed in as 'ana'"):
            record_decision(corpus, Decision.prune(["rain"]), by="mallory")
        with pytest.raises(PermissionDeniedError, match="may not runs:"):
            permissions.authorize("runs", "ana")
    assert [(r.decided_by, r.action) for r in list_decisions(corpus)] == [("ana", "merge")]


def test_verdicts_record_the_signed_in_annotator_and_cannot_be_forged(corpus):
    campaign = create_campaign(corpus, "pilot", sample_size=4, by="ana", annotators_per_clip=1)
    with acting_as(ANNOTATOR):
        item = next_item(corpus, campaign, "bo")
        with pytest.raises(PermissionDeniedError):
            submit(corpus, item, "ana", {tag: "correct" for tag in item.tags}, rating=4)
        assert corpus.execute("SELECT count(*) FROM audit_verdicts").fetchall()[0][0] == 0
        submit(corpus, item, "bo", {tag: "correct" for tag in item.tags}, rating=4)
    annotators = corpus.execute("SELECT DISTINCT annotator FROM audit_verdicts").fetchall()
    assert annotators == [("bo",)]


def test_nothing_bound_is_the_trusted_local_caller(corpus):
    assert permissions.bound_actor() is None
    assert record_decision(corpus, Decision.prune(["rain"]), by="cli-user").decided_by == "cli-user"


def test_users_file_holds_salted_scrypt_hashes(tmp_path):
    path = tmp_path / "users.json"
    users.add_user(path, "root", role="admin", password="correct horse")  # the first user is an admin
    users.add_user(path, "ana", role="curator", password="correct horse")
    users.add_user(path, "bo", role="annotator", password="correct horse")
    data = json.loads(path.read_text())
    ana, bo = data["users"]["ana"], data["users"]["bo"]
    assert "correct horse" not in path.read_text()
    assert ana["kdf"] == "scrypt" and ana["salt"] != bo["salt"] and ana["hash"] != bo["hash"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert users.verify_password(path, "ana", "correct horse").role == "curator"
    assert users.verify_password(path, "ana", "correct horsE") is None
    assert users.verify_password(path, "nobody", "correct horse") is None
    with pytest.raises(users.UsersFileError, match="at least 8"):
        users.add_user(path, "cy", role="admin", password="short")
    with pytest.raises(users.UsersFileError, match="expected one of annotator, curator, admin"):
        users.add_user(path, "cy", role="root", password="long enough")
    with pytest.raises(users.UsersFileError, match="exists already"):
        users.add_user(path, "ana", role="admin", password="long enough")
    users.add_user(path, "dee@example.org", role="admin", password=None)
    assert users.user_for_email(path, "DEE@example.org").name == "dee@example.org"
    path.write_text("{not json")
    with pytest.raises(users.UsersFileError, match="unreadable"):
        users.list_users(path)


def test_users_cli_add_list_set_role_remove(tmp_path, monkeypatch, capsys):
    path = tmp_path / "users.json"
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    assert main(["users", "add", "ana", "--role", "curator", "--password-stdin", "--users-file", str(path)]) == 2
    assert "the first user must be an admin" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    assert main(["users", "add", "root", "--role", "admin", "--password-stdin", "--users-file", str(path)]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    assert main(["users", "add", "ana", "--role", "curator", "--password-stdin", "--users-file", str(path)]) == 0
    assert users.verify_password(path, "ana", "a long password").role == "curator"
    assert main(["users", "set-role", "ana", "admin", "--users-file", str(path)]) == 0
    assert main(["users", "add", "eve@example.org", "--role", "annotator", "--no-password",
                 "--users-file", str(path)]) == 0
    capsys.readouterr()
    assert main(["users", "list", "--json", "--users-file", str(path)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(u["name"], u["role"], u["password"]) for u in listed] == [("ana", "admin", True),
                                                                         ("eve@example.org", "annotator", False),
                                                                         ("root", "admin", True)]
    assert main(["users", "remove", "root", "--users-file", str(path)]) == 0
    # ana is the last admin now: neither demoted nor removed, from the CLI as from the app
    assert main(["users", "set-role", "ana", "curator", "--users-file", str(path)]) == 2
    assert "last admin" in capsys.readouterr().err
    assert main(["users", "remove", "ana", "--users-file", str(path)]) == 2
    assert "last admin" in capsys.readouterr().err
    assert main(["users", "set-role", "eve@example.org", "admin", "--users-file", str(path)]) == 0
    assert main(["users", "remove", "ana", "--users-file", str(path)]) == 0
    assert main(["users", "remove", "ana", "--users-file", str(path)]) == 2
    assert "no user 'ana'" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["users", "add", "fay", "--role", "admin", "--users-file", str(path)]) == 2
    assert "--password-stdin" in capsys.readouterr().err


def test_users_file_defaults_beside_the_database(tmp_path, monkeypatch):
    monkeypatch.delenv(settings.USERS_FILE.name, raising=False)
    assert users.users_file_path(tmp_path / "x" / "uts.duckdb") == tmp_path / "x" / "users.json"
    monkeypatch.setenv(settings.USERS_FILE.name, str(tmp_path / "elsewhere.json"))
    assert users.users_file_path(tmp_path / "uts.duckdb") == tmp_path / "elsewhere.json"
    assert store.resolve_db_path(tmp_path / "uts.duckdb").parent == tmp_path


def test_sign_in_throttle_locks_a_name_after_repeated_failures():
    now = [100.0]
    throttle = users.SignInThrottle(max_failures=3, lockout_s=30, clock=lambda: now[0])
    for _ in range(2):
        throttle.failed("ana")
    assert throttle.wait_s("ana") == 0
    throttle.failed("ana")
    assert throttle.wait_s("ana") == 30 and throttle.wait_s("bo") == 0
    now[0] += 29
    assert throttle.wait_s("ana") == pytest.approx(1)
    now[0] += 1
    assert throttle.wait_s("ana") == 0
    throttle.failed("ana")  # a new series after the lockout
    assert throttle.wait_s("ana") == 0
    throttle.succeeded("ana")
    for _ in range(3):
        throttle.failed("nobody-by-this-name")  # unknown names are throttled alike
    assert throttle.wait_s("nobody-by-this-name") > 0


def test_only_admins_manage_users_in_the_app(tmp_path):
    path = tmp_path / "users.json"
    users.add_user(path, "root", role="admin", password="a long password")  # nothing bound: the CLI
    users.add_user(path, "ana", role="curator", password="a long password")
    before = path.read_bytes()
    with acting_as(CURATOR):
        for attempt in (lambda: users.add_user(path, "eve", role="admin", password="a long password"),
                        lambda: users.set_role(path, "ana", "admin"), lambda: users.remove_user(path, "ana")):
            with pytest.raises(PermissionDeniedError, match="may not users:"):
                attempt()
    assert path.read_bytes() == before
    with acting_as(ADMIN):
        users.set_role(path, "ana", "admin")
    assert users.get_user(path, "ana").role == "admin"



def test_only_admins_back_up_from_the_app(corpus, tmp_path):
    from curation.admin.backup import backup_database

    with acting_as(CURATOR):
        with pytest.raises(PermissionDeniedError, match="may not backup:"):
            backup_database(corpus, tmp_path / "b.duckdb")
    assert not (tmp_path / "b.duckdb").exists()
