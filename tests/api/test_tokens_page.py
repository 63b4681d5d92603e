"""The tokens section of the Users page (ui/tokens.py) under AppTest: an admin creates a token for a user, sees it
once, finds it listed with its last use, revokes it; and the command line does the same."""
from __future__ import annotations

from helpers import open_app_page

from curation import store
from curation.admin import tokens as admin_tokens
from curation.admin import users
from curation.admin.users import users_file_path
from curation.cli.main import main


def test_an_admin_creates_and_revokes_a_token_on_the_users_page(demo_db, monkeypatch):
    path = users_file_path(demo_db)
    users.add_user(path, "root", role="admin", password="root's long password")
    users.add_user(path, "ana", role="curator", password="ana's long password")
    app = open_app_page(demo_db, monkeypatch)
    app.text_input(key="sign_in_name").input("root")
    app.text_input(key="sign_in_password").input("root's long password")
    app.button(key="FormSubmitter:sign_in-Sign in").click().run()
    app.switch_page("views/users.py").run()
    assert not app.exception, app.exception
    app.selectbox(key="token_user").select("ana")
    app.text_input(key="token_label").input("notebook")
    app.button(key="token_create").click().run()
    assert not app.exception, app.exception
    shown = [block.value for block in app.code]
    assert len(shown) == 1 and shown[0].startswith("uts_")
    con = store.connect(demo_db)
    try:
        actor = admin_tokens.actor_for_token(con, path, shown[0])
        assert (actor.name, actor.role) == ("ana", "curator")
        [record] = admin_tokens.list_tokens(con)
        assert record.created_by == "root" and record.label == "notebook"
    finally:
        con.close()
    app.run()  # the next rerun no longer shows the token
    assert not app.code
    app.button(key="token_revoke").click().run()
    assert not app.exception, app.exception
    con = store.connect(demo_db)
    try:
        assert not admin_tokens.list_tokens(con)[0].active
    finally:
        con.close()


def test_the_tokens_commands(demo_db, capsys):
    path = users_file_path(demo_db)
    users.add_user(path, "root", role="admin", password="root's long password")
    assert main(["tokens", "create", "root", "--label", "cron", "--db", str(demo_db)]) == 0
    created = capsys.readouterr().out
    secret = created.split(": ", 1)[1].split()[0]
    assert secret.startswith("uts_") and "shown once" in created
    assert main(["tokens", "list", "--db", str(demo_db)]) == 0
    listed = capsys.readouterr().out
    assert "root" in listed and secret[:10] in listed and secret not in listed and "active" in listed
    assert main(["tokens", "revoke", "1", "--db", str(demo_db), "--by", "root"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["tokens", "create", "nobody", "--db", str(demo_db)]) == 2
    assert "'nobody'" in capsys.readouterr().err
