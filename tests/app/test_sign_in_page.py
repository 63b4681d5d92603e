"""The app's sign-in and roles under Streamlit's AppTest: local mode asks only for a name; with a users file or
an identity provider sign-in is required, each role sees only its pages, and writes carry the signed-in name.
A second process holding the database gets a clear message instead of a traceback."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import PROJECT, make_cut, open_app_page, write_jsonl

from curation import settings, store
from curation.admin import users
from curation.audit.campaigns import create_campaign
from curation.ingest.ingest import ingest_path

CURATOR_PAGES = {"overview", "browse", "vocabulary", "tag_map", "export", "audit", "audit_dashboard"}
ADMIN_PAGES = {"runs", "compare", "extraction", "users"}  # abilities "runs" and "users"


@pytest.fixture
def app_db(tmp_path, monkeypatch):
    db = tmp_path / "uts.duckdb"
    con = store.connect(db)
    cuts = [make_cut(f"c{i}", tags=("drum", "drums", "music") if i % 2 else ("rain", "music"), domain="music")
            for i in range(6)]
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
    create_campaign(con, "pilot", sample_size=4, by="ana", annotators_per_clip=1)
    con.close()
    for var in ("UTS_AUTH", settings.USERS_FILE.name):
        monkeypatch.delenv(var, raising=False)
    return db


@pytest.fixture
def users_file(app_db, monkeypatch):
    path = app_db.parent / "users.json"  # the default place: beside the database
    users.add_user(path, "root", role="admin", password="root's long password")  # the first user is an admin
    users.add_user(path, "bo", role="annotator", password="bo's long password")
    users.add_user(path, "ana", role="curator", password="ana's long password", email="ana@example.org")
    return path


def _pages(app) -> set[str]:
    # AppTest keeps the pages st.navigation registered in this run (what the sidebar lists).
    return {Path(info["script_path"]).stem for info in app._registered_pages.values()
            if info.get("script_path") and Path(info["script_path"]).name != "app.py"}


def _query(db: Path, sql: str) -> list[tuple]:
    con = store.connect(db)  # the same configuration as the app's cached connection in this process
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _sign_in(app, name: str, password: str):
    app.text_input(key="sign_in_name").input(name)
    app.text_input(key="sign_in_password").input(password)
    app.button(key="FormSubmitter:sign_in-Sign in").click().run()
    assert not app.exception, app.exception
    return app


def test_local_mode_asks_only_for_a_display_name(app_db, monkeypatch):
    app = open_app_page(app_db, monkeypatch, name="ana")
    assert _pages(app) >= CURATOR_PAGES  # every page the app registers
    assert [box.label for box in app.sidebar.text_input] == ["Working as"]
    assert not [t for t in app.title if "Sign in" in t.value]


def test_a_users_file_requires_sign_in_and_rejects_a_wrong_password(app_db, users_file, monkeypatch):
    app = open_app_page(app_db, monkeypatch)
    assert [t.value for t in app.title] == ["Sign in to UTS Studio"]
    assert _pages(app) == set()  # nothing is registered before sign-in
    _sign_in(app, "ana", "not her password")
    assert [e.value for e in app.error] == ["Unknown user name or wrong password."]
    assert [t.value for t in app.title] == ["Sign in to UTS Studio"]
    _sign_in(app, "ana", "ana's long password")
    assert [t.value for t in app.title] == ["Overview"]
    assert "Signed in as **ana** (curator)" in [m.value for m in app.sidebar.markdown]
    assert "Working as" not in [box.label for box in app.sidebar.text_input]  # no free-text name when signed in


def test_repeated_wrong_passwords_lock_the_name_even_for_the_right_one(app_db, users_file, monkeypatch):
    app = open_app_page(app_db, monkeypatch)
    for _ in range(5):
        _sign_in(app, "throttled", "wrong password")
    users.add_user(users_file, "throttled", role="curator", password="the right one")
    _sign_in(app, "throttled", "the right one")
    assert any("Too many failed sign-ins" in e.value for e in app.error)
    assert [t.value for t in app.title] == ["Sign in to UTS Studio"]


def test_each_role_sees_only_its_pages(app_db, users_file, monkeypatch):
    monkeypatch.setenv("UTS_AUTH", "local")
    everything = _pages(open_app_page(app_db, monkeypatch, name="x"))
    monkeypatch.delenv("UTS_AUTH")
    seen = {}
    for name in ("bo", "ana", "root"):
        app = _sign_in(open_app_page(app_db, monkeypatch), name, f"{name}'s long password")
        seen[name] = _pages(app)
    assert seen["bo"] == {"overview", "audit"}
    assert seen["ana"] == CURATOR_PAGES
    assert seen["root"] == everything  # admins see every page the app registers (runs, tagging jobs, ...)
    assert everything - CURATOR_PAGES <= ADMIN_PAGES
    app = _sign_in(open_app_page(app_db, monkeypatch), "bo", "bo's long password")
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        app.switch_page("views/vocabulary.py")  # not registered, so no deep link reaches it either


def test_an_annotator_judges_under_the_signed_in_name_and_cannot_create_campaigns(app_db, users_file, monkeypatch):
    app = _sign_in(open_app_page(app_db, monkeypatch), "bo", "bo's long password")
    app.switch_page("views/audit.py").run()
    assert not app.exception, app.exception
    assert "New campaign" not in [e.label for e in app.expander]
    for radio in app.radio:
        radio.set_value(radio.options[0] if radio.label != "Caption quality" else 4)
    app.button(key=next(b.key for b in app.button if "judge_" in (b.key or ""))).click().run()
    assert not app.exception, app.exception
    assert _query(app_db, "SELECT DISTINCT annotator FROM audit_verdicts") == [("bo",)]


def test_a_curator_decision_records_the_signed_in_user(app_db, users_file, monkeypatch):
    app = _sign_in(open_app_page(app_db, monkeypatch), "ana", "ana's long password")
    app.session_state["display_name"] = "mallory"  # a stale free-text name must not be used
    app.switch_page("views/browse.py").run()
    add_box = next(box for box in app.text_input if (box.key or "").startswith("add_"))
    add_box.input("thunder").run()
    app.button(key=add_box.key.replace("add_", "add_button_")).click().run()
    assert not app.exception, app.exception
    assert _query(app_db, "SELECT decided_by, action FROM decisions") == [("ana", "clip_add")]


def test_a_removed_user_is_signed_out_at_the_next_rerun(app_db, users_file, monkeypatch):
    app = _sign_in(open_app_page(app_db, monkeypatch), "ana", "ana's long password")
    users.remove_user(users_file, "ana")
    app.run()
    assert [t.value for t in app.title] == ["Sign in to UTS Studio"]
    assert any("no longer in the users file" in w.value for w in app.warning)


def test_identity_provider_sign_in_maps_the_email_to_a_role(app_db, users_file, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("UTS_AUTH", "oidc")
    monkeypatch.setenv(settings.DB.name, str(app_db))
    monkeypatch.chdir(PROJECT)
    app = AppTest.from_file(str(PROJECT / "app.py"), default_timeout=120)
    app.user = {"is_logged_in": False}
    app.run()
    assert not app.exception, app.exception
    assert [b.label for b in app.button] == ["Sign in"] and _pages(app) == set()
    app.user = {"is_logged_in": True, "email": "ANA@example.org", "name": "Ana"}
    app.run()
    assert not app.exception, app.exception
    assert _pages(app) == CURATOR_PAGES
    assert "Signed in as **ana** (curator)" in [m.value for m in app.sidebar.markdown]
    app.user = {"is_logged_in": True, "email": "stranger@example.org"}
    app.run()
    assert _pages(app) == set()
    assert any("no role is assigned" in e.value for e in app.error)


def test_a_second_process_holding_the_database_gets_a_clear_message(app_db, monkeypatch):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from curation import store; con = store.connect(sys.argv[1]); "
                               "print('held', flush=True); sys.stdin.read()", str(app_db)],
        cwd=PROJECT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        app = open_app_page(app_db, monkeypatch, name="ana")
        messages = [e.value for e in app.error]
        assert any("in use by another process" in m for m in messages), messages
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_an_admin_manages_users_on_the_users_page(app_db, users_file, monkeypatch):
    app = _sign_in(open_app_page(app_db, monkeypatch), "root", "root's long password")
    app.switch_page("views/users.py").run()
    assert not app.exception, app.exception
    assert "root" not in app.selectbox(key="edit_user").options  # nobody removes or demotes themselves
    app.text_input(key="new_user_name").input("cy")
    app.selectbox(key="new_user_role").set_value("annotator")
    app.text_input(key="new_user_password").input("cy's long password")
    app.text_input(key="new_user_password_again").input("cy's long password")
    app.button(key="FormSubmitter:add_user-Add user").click().run()
    assert not app.exception, app.exception
    assert users.verify_password(users_file, "cy", "cy's long password").role == "annotator"
    app.selectbox(key="edit_user").set_value("bo")
    app.selectbox(key="edit_user_role").set_value("curator")
    app.button(key="set_role_button").click().run()
    assert users.get_user(users_file, "bo").role == "curator"
    assert any("bo is now curator" in s.value.replace("\\", "") for s in app.success)



def test_the_users_page_in_local_mode_warns_that_the_first_user_turns_sign_in_on(app_db, monkeypatch):
    app = open_app_page(app_db, monkeypatch, "views/users.py", name="ana")
    assert any("Adding the first user turns sign-in on" in w.value for w in app.warning)
    assert app.dataframe[0].value.empty


def test_an_admin_backs_up_the_database_while_the_app_holds_it(app_db, users_file, monkeypatch):
    app = _sign_in(open_app_page(app_db, monkeypatch), "root", "root's long password")
    app.switch_page("views/users.py").run()
    target = app_db.parent / "backups" / "from-the-app.duckdb"
    app.text_input(key="backup_path").input(str(target))
    app.button(key="backup_button").click().run()
    assert not app.exception, app.exception
    assert any("Backed up" in s.value for s in app.success), [e.value for e in app.error]
    con = store.connect(target)
    try:
        assert con.execute("SELECT count(*) FROM clips").fetchall() == [(6,)]
    finally:
        con.close()


def test_the_first_user_added_on_the_page_is_an_admin_who_stays_signed_in(app_db, monkeypatch):
    app = open_app_page(app_db, monkeypatch, "views/users.py", name="owner")
    assert app.selectbox(key="first_user_role").options == ["admin"]
    app.text_input(key="new_user_name").input("owner")
    app.text_input(key="new_user_password").input("owner's long password")
    app.text_input(key="new_user_password_again").input("owner's long password")
    app.button(key="FormSubmitter:add_user-Add user").click().run()
    assert not app.exception, app.exception
    assert users.get_user(app_db.parent / "users.json", "owner").role == "admin"
    assert "Signed in as **owner** (admin)" in [m.value for m in app.sidebar.markdown]
    assert [t.value for t in app.title] == ["Users"]  # not locked out: the Users page is still there
