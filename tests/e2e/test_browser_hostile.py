"""Real browser: a corpus whose captions, tags, clip ids, source names, file names and annotator notes carry
<script>, <img onerror>, <svg onload>, javascript: links, markdown directives, very long strings and control
characters. On Overview, Browse, Vocabulary (with the tag examples open), Audit and Captioner bias no dialog
opens, no payload runs (each would set window.__pwned) and no javascript: link exists; the payloads are shown
as text."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile
from e2e_helpers import StreamlitServer, fill_text_input, pick_in_multiselect, wait_for_app_idle
from helpers import make_cut, write_jsonl

from curation import store
from curation.audit.campaigns import create_campaign, next_item, submit
from curation.ingest.ingest import ingest_path

PAYLOADS = [
    "<script>window.__pwned=1</script>",
    "<img src=x onerror=window.__pwned=2>",
    "<svg onload=alert(3)>",
    "[click me](javascript:window.__pwned=4)",
    "<a href=\"javascript:alert(5)\">link</a>",
    ":red[styled] :material/warning: $x^2$",
]
CONTROL = "bell\x07 escape\x1b[31m rtl\u202eevil nul-free tab\tend"
HOSTILE_TAG = "<img src=x onerror=alert(7)>"


def _hostile_cuts():
    cuts = []
    for i, payload in enumerate(PAYLOADS):
        cuts.append(make_cut(
            f"clip{i}-{payload}",
            caption=f"A dog barks. {payload} then {CONTROL}. " + ("long words " * 4000 if i == 0 else ""),
            tags=(HOSTILE_TAG, "dog", f"tag{i} {payload}"[:100]),
            original=(f"human {payload}",), source="audio/tone.wav", domain=f"dom{i % 2} {payload}"[:80]))
    # A file that exists but lies outside the corpus folder (the audio root): refused, not served.
    cuts.append(make_cut("path-escape", caption="path", tags=("dog",), source="../secret.wav"))
    return cuts


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    (folder / "corpus" / "audio").mkdir(parents=True)
    tone = np.sin(np.arange(16000) / 8).astype(np.float32) * 0.1
    soundfile.write(folder / "corpus" / "audio" / "tone.wav", tone, 16000)
    soundfile.write(folder / "secret.wav", tone, 16000)
    db = folder / "hostile.duckdb"
    con = store.connect(db)
    ingest_path(con, write_jsonl(folder / "corpus" / "cuts.jsonl", _hostile_cuts()))
    campaign = create_campaign(con, f"pilot {PAYLOADS[0]}", sample_size=len(PAYLOADS) + 1, by=PAYLOADS[1],
                               annotators_per_clip=2)
    item = next_item(con, campaign, "mallory")
    submit(con, item, "mallory", {tag: "wrong" for tag in item.tags}, added=[PAYLOADS[2]], rating=1,
           note=" ".join(PAYLOADS))
    con.close()
    server = StreamlitServer(db, folder / "streamlit.log")
    server.wait_healthy()
    yield server
    server.stop()


@pytest.fixture
def watched(page):
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    return page, dialogs


def _assert_inert(page, dialogs, where: str) -> None:
    wait_for_app_idle(page)
    assert dialogs == [], f"{where}: a dialog opened: {dialogs}"
    assert page.evaluate("window.__pwned") is None, f"{where}: a payload ran"
    assert page.locator("a[href^='javascript' i]").count() == 0, f"{where}: a javascript: link exists"
    # The app's own scripts carry data-uts-app (e.g. the annotator screen's scroll to the clip's top); a payload
    # shown as text cannot add that attribute, and any other script element would be an injection.
    assert page.locator("[data-testid='stMain'] script:not([data-uts-app])").count() == 0, \
        f"{where}: a script element was injected"


def test_hostile_text_is_inert_on_every_page(watched, hostile_server):
    page, dialogs = watched
    url = hostile_server.url
    page.goto(f"{url}/")
    page.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
    _assert_inert(page, dialogs, "Overview")

    page.goto(f"{url}/browse")
    page.wait_for_selector("audio", timeout=60_000)
    _assert_inert(page, dialogs, "Browse")
    main = page.locator("[data-testid='stMain']")
    assert main.get_by_text("<script>window.__pwned=1</script>", exact=False).count() > 0  # shown as text
    assert main.get_by_text("[click me](javascript:window.__pwned=4)", exact=False).count() > 0
    assert main.get_by_text("outside the configured audio roots", exact=False).count() > 0  # ../ path refused

    page.goto(f"{url}/vocabulary")
    page.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
    wait_for_app_idle(page)
    fill_text_input(page, "Working as", "ana")
    pick_in_multiselect(page, "Tags to act on", HOSTILE_TAG)
    page.get_by_text("What", exact=False).filter(has_text="stands for").first.wait_for(timeout=30_000)
    _assert_inert(page, dialogs, "Vocabulary")
    assert main.locator("[data-testid='stHtml']").filter(has_text="window.__pwned=1").count() > 0

    page.goto(f"{url}/audit")
    page.wait_for_selector('[data-testid="stDataFrame"]', timeout=60_000)
    wait_for_app_idle(page)
    fill_text_input(page, "Working as", "bo")
    page.get_by_text("Is each tag in the audio?").wait_for(timeout=30_000)
    _assert_inert(page, dialogs, "Audit")
    assert main.get_by_text(HOSTILE_TAG, exact=False).count() > 0  # a verdict label (the marked one starts with ▸), as text

    page.goto(f"{url}/audit_dashboard")
    page.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
    _assert_inert(page, dialogs, "Captioner bias")
