"""Real browser against a real `serve`: a decision made through the API appears in the page a curator has open
(the UI and the API share the server's database)."""
from __future__ import annotations

import json
import os
import re
import urllib.request

import pytest
from e2e.e2e_helpers import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, metric_value, wait_for_app_idle, wait_for_rerun


@pytest.fixture
def page(request):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium chromium-driver)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        try:
            yield page
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
            raise
        finally:
            context.close()
            browser.close()


def test_a_decision_made_through_the_api_appears_in_the_open_page(serve, page):
    page.goto(f"{serve.url}/vocabulary")
    page.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
    wait_for_app_idle(page)
    assert metric_value(page, "Decisions") == "0 in effect"
    before = int(metric_value(page, "Canonical tags").replace(",", ""))

    body = json.dumps({"action": "merge", "tags": ["dog", "dogs"], "into": "dog", "by": "api-script",
                       "reason": "from a notebook"}).encode()
    request = urllib.request.Request(f"{serve.url}/api/v1/decisions", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201

    page.get_by_role("tab", name="Decisions").click()  # the tab reruns the page, which reads the shared log
    wait_for_rerun(page)
    assert metric_value(page, "Decisions") == "1 in effect"
    assert int(metric_value(page, "Canonical tags").replace(",", "")) == before - 1
    undo_choice = page.locator('[data-testid="stSelectbox"]').filter(has_text="Decision to undo")
    undo_choice.click()
    page.get_by_role("option", name=re.compile(r"#1: merge dog, dogs (->|→) dog \(by api-script\)")).wait_for()
