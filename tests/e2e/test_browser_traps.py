"""Real browser, the traps a new user fell into (issue 15), each on a demo corpus of its own:
1. Tagging jobs -> Start with the defaults asks first, showing what the job would change; the vocabulary keeps its
   sources unless the person chooses otherwise, and that choice is an undoable decision.
2. The first user is an admin: adding them turns sign-in on and they can still reach Users.
3. The Tag map's lasso never proposes a pruned tag as the merge target.
4. The annotator screen opens each clip at its top, says where the queue stands, answers by keyboard, skips and
   goes back.
5. The Vocabulary page keeps its tab after an action, clears the used selection, and shows undone decisions as
   undone.
Screenshots of each screen are written to test-artifacts/traps-*.png."""
from __future__ import annotations

import re
import subprocess
import sys

from e2e_helpers import ARTIFACTS, PROJECT, StreamlitServer, metric_value, wait_for_app_idle, wait_for_rerun
from playwright.sync_api import expect

from curation import store
from curation.store import vocabulary as store_vocabulary
from curation.vocabulary.decisions import Decision, list_decisions, record_decision, replay
from curation.vocabulary.ranking import compute_vocabulary, load_tag_matrix


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"traps-{name}.png"), full_page=True)


def _demo(tmp_path, clips: int = 40, seed: int = 5):
    db = tmp_path / "traps.duckdb"
    subprocess.run([sys.executable, "-m", "curation", "demo", "--db", str(db), "--clips", str(clips), "--seed",
                    str(seed)], cwd=PROJECT, check=True, capture_output=True, timeout=300)
    return db


def _serve(db, tmp_path) -> StreamlitServer:
    server = StreamlitServer(db, tmp_path / "streamlit.log")
    server.wait_healthy()
    return server


def _open(page, url: str, wait_for: str = '[data-testid="stMetric"]') -> None:
    page.goto(url)
    page.wait_for_selector(wait_for, timeout=90_000)
    wait_for_app_idle(page)


def _tab_selected(page, name: str) -> bool:
    return page.get_by_role("tab", name=name).get_attribute("aria-selected") == "true"


# ------------------------------------------------------------------------------------------------ trap 1

def test_a_tagging_job_asks_first_and_keeps_the_vocabulary_on_its_sources(page, tmp_path):
    db = _demo(tmp_path)
    server = _serve(db, tmp_path)
    try:
        _open(page, f"{server.url}/vocabulary?display_name=ana")
        tags_before = metric_value(page, "Canonical tags")

        _open(page, f"{server.url}/extraction?display_name=ana")
        page.get_by_role("button", name="Start").click()  # the defaults: offline tagger, every clip
        review = page.locator(".st-key-job_review_box")
        review.get_by_text(re.compile(r"of these clips already have tags")).wait_for(timeout=60_000)
        wait_for_app_idle(page)
        expect(review.get_by_text(re.compile(r"tag rows added"))).to_be_visible()
        expect(review.get_by_text(re.compile(r"It would ask about 40 clips"))).to_be_visible()
        _shot(page, "1-job-review")
        # Nothing ran yet: no job row.
        expect(page.get_by_text(re.compile(r"Job \d+ finished"))).to_have_count(0)

        keep = review.get_by_text("only its current sources", exact=False)
        expect(keep).to_be_visible()
        page.get_by_role("button", name="Confirm and start").click()
        page.get_by_text(re.compile(r"Job \d+ finished: done")).wait_for(timeout=120_000)
        wait_for_app_idle(page)
        expect(page.get_by_role("button", name="Start")).to_be_enabled()  # not stale after the job ended
        _shot(page, "1-job-finished")

        _open(page, f"{server.url}/vocabulary?display_name=ana")
        assert metric_value(page, "Canonical tags") == tags_before  # the ranking did not change
        page.get_by_role("tab", name="Decisions").click()
        wait_for_rerun(page)
        undo = page.locator('[data-testid="stSelectbox"]').filter(has_text="Decision to undo")
        undo.click()
        expect(page.get_by_role("option", name=re.compile(r"use the tags of sim-extractor-v1"))).to_be_visible()
        page.keyboard.press("Escape")
        _shot(page, "1-decision-logged")
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------ trap 2

def test_the_first_user_is_an_admin_and_keeps_the_users_page(page, tmp_path):
    db = _demo(tmp_path, clips=20)
    server = _serve(db, tmp_path)
    try:
        _open(page, f"{server.url}/users?display_name=owner", wait_for='[data-testid="stForm"]')
        role = page.locator('[data-testid="stSelectbox"]').filter(has_text="Role")
        role.get_by_role("combobox").click()
        page.get_by_role("option").first.wait_for(timeout=10_000)
        options = page.get_by_role("option").all_inner_texts()
        page.keyboard.press("Escape")
        assert [o.strip() for o in options] == ["admin"], options  # the first user cannot be anything else
        page.get_by_label("User name (or the email the identity provider reports)").fill("owner")
        page.get_by_label("Password (leave empty for identity-provider sign-in only)").fill("owner's password")
        page.get_by_label("Password again").fill("owner's password")
        _shot(page, "2-first-user-form")
        page.get_by_role("button", name="Add user").click()
        wait_for_rerun(page)
        page.get_by_text("Added owner (admin). Sign-in is on: you are signed in as owner.").wait_for(timeout=30_000)
        wait_for_app_idle(page)
        expect(page.get_by_text("Signed in as owner (admin)")).to_be_visible()  # the same session goes on
        expect(page.get_by_role("heading", name="Users")).to_be_visible()
        _shot(page, "2-first-user-added")

        # Sign-in is on from now on: a fresh visit asks for it, and the owner reaches Users again.
        page.goto(server.url)
        page.get_by_label("User name").wait_for(timeout=60_000)
        wait_for_app_idle(page)
        page.get_by_label("User name").fill("owner")
        page.get_by_label("Password", exact=True).fill("owner's password")
        page.get_by_role("button", name="Sign in").click()
        wait_for_rerun(page)
        page.get_by_text("Signed in as").wait_for(timeout=30_000)
        page.locator('[data-testid="stSidebarNav"] a', has_text="Users").click()
        wait_for_rerun(page)
        page.get_by_role("heading", name="Users").wait_for(timeout=30_000)
        expect(page.get_by_text("Add a user")).to_be_visible()  # the admin can still manage users
        _shot(page, "2-admin-signed-in")
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------ trap 3

def test_the_tag_map_lasso_never_proposes_a_pruned_target(page, tmp_path):
    db = _demo(tmp_path, clips=40)
    con = store.connect(db)
    view = compute_vocabulary(load_tag_matrix(con), replay(list_decisions(con)))
    most_frequent = view.ranking.sort_values(["df", "rank"], ascending=[False, True])["tag"].tolist()
    pruned, expected = most_frequent[0], most_frequent[1]
    record_decision(con, Decision.prune([pruned]), by="setup", reason="too generic")
    n_raw = len(store_vocabulary.raw_tag_texts(con))
    con.close()
    server = _serve(db, tmp_path)
    try:
        _open(page, f"{server.url}/tag_map?display_name=ana", wait_for=".js-plotly-plot")
        plot = page.locator(".js-plotly-plot").first
        box = plot.locator(".nsewdrag").first.bounding_box()
        # A lasso around the whole plot area selects every tag, the pruned one included.
        left, top, right, bottom = box["x"] + 2, box["y"] + 2, box["x"] + box["width"] - 2, box["y"] + box["height"] - 2
        page.mouse.move(left, top)
        page.mouse.down()
        for x, y in ((right, top), (right, bottom), (left, bottom), (left, top + 1)):
            page.mouse.move(x, y, steps=8)
        page.mouse.up()
        page.get_by_text(re.compile(r"\d+ tags selected")).wait_for(timeout=60_000)
        wait_for_app_idle(page)
        assert f"{n_raw} tags selected" in page.get_by_text(re.compile(r"\d+ tags selected")).inner_text()
        target = page.locator(".st-key-map_merge_target")
        # The selection panel draws its widgets after the count; on a loaded machine the box can still be empty.
        expect(target.get_by_role("combobox")).to_be_visible(timeout=30_000)
        assert f'combobox "Merge them into": {expected}' in target.aria_snapshot(), target.aria_snapshot()
        _shot(page, "3-lasso-target")
        target.get_by_role("combobox").scroll_into_view_if_needed()
        target.get_by_role("combobox").click()
        page.get_by_role("option").first.wait_for(timeout=10_000)
        offered = [o.strip() for o in page.get_by_role("option").all_inner_texts()]
        page.keyboard.press("Escape")
        assert pruned not in offered and offered[0] == expected, offered
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------ trap 4

def _answer_by_keyboard(page) -> None:
    """1 answers the marked tag 'correct' until every tag is answered, then 4 rates the caption."""
    for _ in range(40):
        wait_for_app_idle(page)
        form = page.locator('[data-testid="stForm"]').filter(has_text="Is each tag in the audio?")
        if form.get_by_role("button", name="rate 4").count():
            page.locator("body").press("4")
            wait_for_rerun(page)
            return
        page.locator("body").press("1")
        wait_for_rerun(page)
    raise AssertionError("the keyboard never reached the rating")


def _clip_heading_in_view(page) -> bool:
    heading = page.locator("h3", has_text=re.compile(r"^Clip ")).first
    # Below Streamlit's header bar (~60 px, drawn over the page) and in the upper half of the window.
    return page.evaluate("""el => { const r = el.getBoundingClientRect();
                                    return r.top >= 60 && r.top < window.innerHeight / 2; }""", heading.element_handle())


def test_the_annotator_screen_keeps_the_annotators_place(page, tmp_path):
    db = _demo(tmp_path, clips=30)
    server = _serve(db, tmp_path)
    try:
        _open(page, f"{server.url}/audit?display_name=ann", wait_for='[data-testid="stForm"]')
        page.get_by_label("Name", exact=True).fill("keys")
        page.get_by_label("Clips to sample", exact=True).fill("6")
        page.get_by_label("Annotators per clip", exact=True).fill("1")
        page.get_by_role("button", name="Create campaign").click()
        page.get_by_text("Campaign 'keys' created").wait_for(timeout=30_000)
        wait_for_app_idle(page)
        page.get_by_text("Clip 1 of 6 in your queue").wait_for(timeout=30_000)
        first = page.locator("h3", has_text=re.compile(r"^Clip ")).first.inner_text()

        _answer_by_keyboard(page)
        page.mouse.wheel(0, 5000)  # the person is at the bottom of the form when they submit
        page.keyboard.press("Control+Enter")
        page.get_by_text(re.compile(r"Saved your verdicts on")).wait_for(timeout=30_000)
        page.get_by_text("Clip 2 of 6 in your queue").wait_for(timeout=30_000)
        wait_for_app_idle(page)
        second = page.locator("h3", has_text=re.compile(r"^Clip ")).first.inner_text()
        assert second != first
        assert _clip_heading_in_view(page), "the next clip did not open at its top"
        _shot(page, "4-next-clip-at-top")

        page.locator("body").press("s")  # skip: another clip, the queue position does not move
        page.get_by_text(re.compile(r"Skipped ")).wait_for(timeout=30_000)
        wait_for_app_idle(page)
        third = page.locator("h3", has_text=re.compile(r"^Clip ")).first.inner_text()
        assert third not in (first, second)
        expect(page.get_by_text("Clip 2 of 6 in your queue")).to_be_visible()

        page.locator("body").press("b")  # back: the clip submitted last, with its answers
        page.get_by_text("You are revising a clip you already submitted").wait_for(timeout=30_000)
        wait_for_app_idle(page)
        assert page.locator("h3", has_text=re.compile(r"^Clip ")).first.inner_text() == first
        form = page.locator('[data-testid="stForm"]').filter(has_text="Is each tag in the audio?")
        expect(form.get_by_role("radio", name="4", exact=True)).to_be_checked()
        _shot(page, "4-revising")
        form.get_by_role("button", name="Save the revision").click()
        page.get_by_text(re.compile(r"Revised your verdicts on")).wait_for(timeout=30_000)
        wait_for_app_idle(page)
        assert page.locator("h3", has_text=re.compile(r"^Clip ")).first.inner_text() == third
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------ trap 5

def test_the_vocabulary_page_keeps_its_tab_and_shows_undone_decisions(page, tmp_path):
    db = _demo(tmp_path, clips=30)
    con = store.connect(db)
    view = compute_vocabulary(load_tag_matrix(con), replay(list_decisions(con)))
    rare = view.ranking["tag"].tolist()[-3:]
    for tag in rare:
        record_decision(con, Decision.prune([tag]), by="setup", reason="rare")
    con.close()
    server = _serve(db, tmp_path)
    try:
        _open(page, f"{server.url}/vocabulary?display_name=ana")
        page.get_by_role("tab", name="Decisions").click()
        wait_for_rerun(page)
        undo = page.locator('[data-testid="stSelectbox"]').filter(has_text="Decision to undo")
        undo.click()
        page.get_by_role("option", name=re.compile(r"^#3: prune")).click()
        wait_for_rerun(page)
        page.get_by_role("button", name="Undo", exact=True).click()
        page.get_by_text(re.compile(r"Decision #4: undo #3")).wait_for(timeout=30_000)
        wait_for_app_idle(page)
        assert _tab_selected(page, "Decisions"), "the page jumped away from the Decisions tab"
        expect(undo.get_by_role("button", name="Clear value")).to_have_count(0)  # the used selection is cleared
        assert metric_value(page, "Decisions") == "2 in effect"  # the undone prune no longer counts
        _shot(page, "5-undo-stays-on-decisions")

        # A second action from the same tab: undo again without re-opening it.
        undo.click()
        page.get_by_role("option", name=re.compile(r"^#2: prune")).click()
        wait_for_rerun(page)
        page.get_by_role("button", name="Undo", exact=True).click()
        page.get_by_text(re.compile(r"Decision #5: undo #2")).wait_for(timeout=30_000)
        wait_for_app_idle(page)
        assert _tab_selected(page, "Decisions")
        assert metric_value(page, "Decisions") == "1 in effect"

        page.get_by_role("tab", name="Tags").click()
        wait_for_rerun(page)
        assert _tab_selected(page, "Tags")

        page.reload()  # who is working survives a reload (it is kept in the page address)
        page.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
        wait_for_app_idle(page)
        expect(page.get_by_label("Working as", exact=True)).to_have_value("ana")
    finally:
        server.stop()
