"""Real browser: Browse shows clips with <audio> elements whose media URL serves the audio; a text filter
narrows the list."""
from __future__ import annotations

from e2e_helpers import fill_text_input, wait_for_app_idle


def test_browse_plays_audio_and_filters(page, server, demo_db):
    page.goto(f"{server.url}/browse")
    page.wait_for_selector("audio", timeout=60_000)
    wait_for_app_idle(page)
    audio = page.locator("audio").first
    source = audio.get_attribute("src") or audio.locator("source").first.get_attribute("src")
    assert source and "/media/" in source
    response = page.request.get(source if source.startswith("http") else f"{server.url}{source}")
    assert response.ok and response.headers["content-type"].startswith("audio/")
    assert response.body()[:4] == b"RIFF"
    before = page.locator("audio").count()
    word = next(w for w in ("siren", "dog", "rain", "piano", "guitar") if w in demo_db[1]["raw_tags"])
    fill_text_input(page, "Caption text", word)
    after = page.locator("audio").count()
    assert 0 < after < before
    # Every clip left on the page has the word in its generated caption.
    assert page.locator('[data-testid="stHtml"]', has_text=word).count() >= after
