"""A real browser against a real `streamlit run`: Debian's chromium driven by Playwright, on a free loopback port."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from e2e_helpers import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, PROJECT, StreamlitServer

from curation import store
from curation.store import vocabulary as store_vocabulary


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium chromium-driver)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e")
    db = folder / "demo.duckdb"
    subprocess.run([sys.executable, "-m", "curation", "demo", "--db", str(db), "--clips", "60", "--seed", "3"],
                   cwd=PROJECT, check=True, capture_output=True, timeout=300)
    stats = json.loads(subprocess.run([sys.executable, "-m", "curation", "stats", "--db", str(db), "--json"],
                                      cwd=PROJECT, check=True, capture_output=True, text=True).stdout)
    # Read before the app starts: while it runs, the app is the only process that may open the file.
    con = store.connect(db, read_only=True)
    stats["raw_tags"] = store_vocabulary.raw_tag_texts(con)
    con.close()
    return db, stats


@pytest.fixture(scope="session")
def server(demo_db, tmp_path_factory):
    db, _stats = demo_db
    instance = StreamlitServer(db, tmp_path_factory.mktemp("logs") / "streamlit.log")
    instance.wait_healthy()
    yield instance
    instance.stop()
