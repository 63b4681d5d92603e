"""Real browser, the whole journey in one session, as a person does it: Overview -> Browse (audio that plays,
a filter) -> merge two tags on Vocabulary -> the merged tag in Browse -> an audit verdict -> a tiny CPU
pre-training run launched from Runs, until its curve is drawn, and the captioner audited with that run's model. A
screenshot of every step is kept when the test fails (test-artifacts/journey-*.png); the model audit's section is
always kept (test-artifacts/journey-model-audit-done.png)."""
from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys

import pytest
from e2e_helpers import (
    ARTIFACTS,
    PROJECT,
    StreamlitServer,
    fill_text_input,
    metric_value,
    pick_in_multiselect,
    wait_for_app_idle,
    wait_for_rerun,
)

from curation import store
from curation.store import vocabulary as store_vocabulary

VARIANT_PAIRS = [("hihat", "hi_hat"), ("hi-hat", "hihat"), ("bird", "birds"), ("dog", "dogs"), ("siren", "sirens"),
                 ("footstep", "footsteps"), ("guitar", "guitars"), ("drum", "drums")]


@pytest.fixture
def journey(tmp_path):
    db = tmp_path / "journey.duckdb"
    subprocess.run([sys.executable, "-m", "curation", "demo", "--db", str(db), "--clips", "40", "--seed", "4"],
                   cwd=PROJECT, check=True, capture_output=True, timeout=300)
    con = store.connect(db, read_only=True)  # read before the app holds the file
    raw_tags = set(store_vocabulary.raw_tag_texts(con))
    con.close()
    server = StreamlitServer(db, tmp_path / "streamlit.log")
    server.wait_healthy()
    yield server, raw_tags
    server.stop()


class Steps:
    """Names each step; on failure the page as it was is saved under that step's name."""

    def __init__(self, page) -> None:
        self.page = page
        self.current = "start"
        self.shots: list[str] = []

    def __call__(self, name: str) -> None:
        self.current = name

    def save(self) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"journey-{self.current}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(str(path))


def _go(page, title: str) -> None:
    """Switch pages through the sidebar, in the same session (a new URL would start a new session)."""
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=True).click()
    wait_for_rerun(page)


def test_the_whole_journey_in_one_browser_session(page, journey, tmp_path):
    server, raw_tags = journey
    pair = next((p for p in VARIANT_PAIRS if set(p) <= raw_tags), None)
    assert pair is not None, f"the demo corpus has none of {VARIANT_PAIRS}"
    first, second = pair
    step = Steps(page)
    try:
        step("overview")
        page.goto(server.url)
        page.wait_for_selector('[data-testid="stMetric"]', timeout=90_000)
        wait_for_app_idle(page)
        assert metric_value(page, "Clips") == "40"
        fill_text_input(page, "Working as", "ana")

        step("browse")
        _go(page, "Browse")
        page.wait_for_selector("audio", timeout=60_000)
        audio = page.locator("audio").first
        source = audio.get_attribute("src") or audio.locator("source").first.get_attribute("src")
        response = page.request.get(source if source.startswith("http") else f"{server.url}{source}")
        assert response.ok and response.headers["content-type"].startswith("audio/")
        before = page.locator("audio").count()
        word = next(w for w in ("siren", "dog", "rain", "piano", "guitar") if w in raw_tags)
        fill_text_input(page, "Caption text", word)
        assert 0 < page.locator("audio").count() <= before

        step("vocabulary-merge")
        _go(page, "Vocabulary")
        page.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
        wait_for_app_idle(page)
        pick_in_multiselect(page, "Tags to act on", first)
        pick_in_multiselect(page, "Tags to act on", second)
        fill_text_input(page, "Merge into", first)
        page.get_by_role("button", name="Merge", exact=True).click()
        page.get_by_text(re.compile(rf"Decision #1: merge {first}, {second} (->|→) {first}")).wait_for(timeout=30_000)
        wait_for_app_idle(page)

        step("browse-merged")
        _go(page, "Browse")
        page.wait_for_selector("audio", timeout=60_000)
        fill_text_input(page, "Caption text", "")
        pick_in_multiselect(page, "Canonical tags", first)
        # The clip carrying the variant shows it with its canonical form: "second → first".
        page.get_by_text(f"{second} → {first}").first.wait_for(timeout=30_000)

        step("audit")
        _go(page, "Audit")
        page.get_by_label("Name", exact=True).fill("journey")
        page.get_by_label("Clips to sample", exact=True).fill("2")
        page.get_by_label("Annotators per clip", exact=True).fill("1")
        page.get_by_role("button", name="Create campaign").click()
        page.get_by_text("Campaign 'journey' created").wait_for(timeout=30_000)
        wait_for_app_idle(page)
        form = page.locator('[data-testid="stForm"]').filter(has_text="Is each tag in the audio?")
        for group in form.locator('[data-testid="stRadio"]').all():
            if "Caption quality" in group.inner_text():
                group.get_by_text("4", exact=True).click()
            else:
                group.get_by_text("correct", exact=True).click()
        form.get_by_role("button", name="Submit and next").click()
        page.get_by_text(re.compile(r"Saved your verdicts on demo-")).wait_for(timeout=30_000)
        wait_for_app_idle(page)

        step("export")
        _go(page, "Export")
        page.get_by_label("Vocabulary size K", exact=True).fill("20")
        page.get_by_label("Vocabulary size K", exact=True).press("Enter")
        wait_for_rerun(page)
        page.get_by_role("button", name="Write the export (K=20)").click()
        page.get_by_text(re.compile(r"export \d+: K=20")).wait_for(timeout=60_000)
        wait_for_app_idle(page)
        with page.expect_download(timeout=30_000) as download_info:
            page.locator('[data-testid="stDownloadButton"]').filter(has_text="label_20.json").locator("button").click()
        labels_path = tmp_path / "label_20.json"
        download_info.value.save_as(labels_path)
        labels = json.loads(labels_path.read_text())
        assert len(labels) == 20 and labels["0"]  # the published id-to-label format
        with page.expect_download(timeout=30_000) as download_info:
            page.locator('[data-testid="stDownloadButton"]').filter(has_text="cuts.jsonl.gz").locator("button").click()
        cuts_path = tmp_path / "cuts.jsonl.gz"
        download_info.value.save_as(cuts_path)
        with gzip.open(cuts_path, "rt") as handle:
            first_cut = json.loads(handle.readline())
        assert set(first_cut["supervisions"][0]["custom"]["audio_tag"]) <= set(labels.values())
        # The page under the export (past exports, the runs that used them) drew without an error box.
        assert page.locator('[data-testid="stException"]').count() == 0
        page.get_by_text(re.compile(r"K=20")).first.wait_for(timeout=30_000)

        step("run")
        _go(page, "Runs")
        page.get_by_text("Launch a run").click()
        page.get_by_text("export now at K", exact=True).click()
        wait_for_rerun(page)
        page.get_by_label("K", exact=True).fill("20")
        page.get_by_label("Steps", exact=True).fill("4")
        page.get_by_label("More training settings (key=value per line, e.g. val_every=100)").fill(
            "num_workers=0\nval_every=2\nlog_every=1\nval_fraction=0.1")
        page.get_by_role("spinbutton", name="Model-audit folds after training (0 = off)").fill("3")
        page.get_by_role("button", name="Launch", exact=True).click()
        page.get_by_text(re.compile(r"Launched 1 run")).wait_for(timeout=60_000)
        # The run page follows the run live; wait for the app to show it finished and the loss curve drawn.
        # .first: while the page redraws once the run ends, the old State metric can still be there beside the new.
        page.locator('[data-testid="stMetric"]').filter(has_text="State").filter(has_text="finished").first.wait_for(
            timeout=240_000)
        page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=60_000)
        assert page.locator(".js-plotly-plot").count() >= 1

        step("model-audit")
        # The job also wrote the model audit's scores; the button only stores them.
        page.get_by_text("The job wrote its out-of-sample scores (3 folds)").wait_for(timeout=60_000)
        page.get_by_role("button", name="Audit the captioner with this run").click()
        page.get_by_text(re.compile(r"the model disputes [\d,]+ tag assertions or omissions on [\d,]+ clips")).wait_for(
            timeout=120_000)
        assert page.get_by_text(re.compile(r"suspects \(the job's scores reused\)")).count() == 1
        assert page.locator('[data-testid="stException"]').count() == 0
        page.get_by_role("heading", name="Model audit").scroll_into_view_if_needed()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "journey-model-audit-done.png"))
    except BaseException:
        step.save()
        raise
