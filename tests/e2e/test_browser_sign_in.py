"""Real browser: with a users file beside the database the app asks for sign-in first; a wrong password is
refused; an annotator sees only Overview and Audit in the sidebar, cannot reach Vocabulary by its URL, and signs
out; a curator sees the curation pages and their name is shown instead of a free-text field."""
from __future__ import annotations

import pytest
from e2e_helpers import StreamlitServer, wait_for_app_idle, wait_for_rerun
from helpers import make_cut, write_jsonl

from curation import store
from curation.admin import users
from curation.ingest.ingest import ingest_path


@pytest.fixture(scope="module")
def signed_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("signin")
    db = folder / "uts.duckdb"
    con = store.connect(db)
    ingest_path(con, write_jsonl(folder / "cuts.jsonl", [make_cut(f"c{i}", tags=("music", "drum")) for i in range(4)]))
    con.close()
    users.add_user(folder / "users.json", "root", role="admin", password="root's long password")
    users.add_user(folder / "users.json", "bo", role="annotator", password="bo's long password")
    users.add_user(folder / "users.json", "ana", role="curator", password="ana's long password")
    server = StreamlitServer(db, folder / "streamlit.log")  # users.json beside the database: sign-in required
    server.wait_healthy()
    yield server
    server.stop()


def _sign_in(page, url: str, name: str, password: str) -> None:
    page.goto(url)
    page.get_by_label("User name").wait_for(timeout=60_000)
    wait_for_app_idle(page)
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    wait_for_rerun(page)


def _sidebar_pages(page) -> list[str]:
    # Each link reads "<icon name>\n\n<title>": keep the title.
    return [t.strip().splitlines()[-1] for t in page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]


def test_sign_in_roles_and_sign_out_in_a_real_browser(page, signed_server):
    url = signed_server.url
    _sign_in(page, url, "bo", "not the password")
    page.get_by_text("Unknown user name or wrong password.").wait_for(timeout=30_000)
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0  # nothing but the form before sign-in

    _sign_in(page, url, "bo", "bo's long password")
    page.get_by_text("Signed in as").wait_for(timeout=30_000)
    assert _sidebar_pages(page) == ["Overview", "Audit"]
    assert page.get_by_label("Working as").count() == 0
    # A deep link to a page the role may not use: a fresh session signs in again and still does not get it.
    _sign_in(page, f"{url}/vocabulary", "bo", "bo's long password")
    page.get_by_text("Signed in as").wait_for(timeout=30_000)
    wait_for_app_idle(page)
    assert page.get_by_role("heading", name="Vocabulary").count() == 0
    page.get_by_role("heading", name="Overview").wait_for(timeout=30_000)  # the default page instead
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("User name").wait_for(timeout=30_000)

    _sign_in(page, url, "ana", "ana's long password")
    page.get_by_text("Signed in as").wait_for(timeout=30_000)
    assert {"Overview", "Browse", "Vocabulary", "Tag map", "Audit", "Captioner bias"} <= set(_sidebar_pages(page))
    assert not {"Runs", "Compare runs", "Tagging jobs"} & set(_sidebar_pages(page))
