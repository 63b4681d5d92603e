"""Real browser: on the Vocabulary page a curator merges two surface variants; the ranking and the decision
log show it."""
from __future__ import annotations

import re

import pytest
from e2e_helpers import fill_text_input, metric_value, pick_in_multiselect, wait_for_app_idle

VARIANT_PAIRS = [("hihat", "hi_hat"), ("hi-hat", "hihat"), ("bird", "birds"), ("dog", "dogs"), ("siren", "sirens"),
                 ("footstep", "footsteps"), ("guitar", "guitars"), ("drum", "drums")]


def test_merge_two_tags_in_a_real_browser(page, server, demo_db):
    raw_tags = set(demo_db[1]["raw_tags"])
    pair = next((p for p in VARIANT_PAIRS if set(p) <= raw_tags), None)
    if pair is None:
        pytest.fail(f"the demo corpus has none of the variant pairs {VARIANT_PAIRS}: {sorted(raw_tags)}")
    first, second = pair
    page.goto(f"{server.url}/vocabulary")
    page.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
    wait_for_app_idle(page)
    before = int(metric_value(page, "Canonical tags").replace(",", ""))
    fill_text_input(page, "Working as", "ana")
    selected_line = page.locator('[data-testid="stMarkdown"]', has_text="Selected:")
    pick_in_multiselect(page, "Tags to act on", first)
    selected_line.locator("code", has_text=first).first.wait_for()
    pick_in_multiselect(page, "Tags to act on", second)
    selected_line.locator("code", has_text=second).first.wait_for()
    fill_text_input(page, "Merge into", first)
    fill_text_input(page, "Reason (stored with the decision)", "surface variants")
    page.get_by_role("button", name="Merge", exact=True).click()
    # The toast renders "->" as an arrow (Streamlit markdown), so match either.
    page.get_by_text(re.compile(rf"Decision #1: merge {first}, {second} (->|→) {first}")).wait_for(timeout=30_000)
    wait_for_app_idle(page)
    assert int(metric_value(page, "Canonical tags").replace(",", "")) == before - 1
    assert metric_value(page, "Decisions") == "1 in effect"
    page.get_by_role("tab", name="Decisions").click()
    undo_choice = page.locator('[data-testid="stSelectbox"]').filter(has_text="Decision to undo")
    undo_choice.click()
    page.get_by_role("option", name=re.compile(rf"#1: merge {first}, {second} (->|→) {first} \(by ana\)")).wait_for()
