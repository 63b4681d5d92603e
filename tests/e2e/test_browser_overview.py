"""Real browser: `streamlit run` on a small demo corpus; the Overview shows the corpus's own figures and charts."""
from __future__ import annotations

from e2e_helpers import metric_value, wait_for_app_idle


def test_overview_in_a_real_browser(page, server, demo_db):
    _db, stats = demo_db
    page.goto(server.url)
    page.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
    wait_for_app_idle(page)
    assert metric_value(page, "Clips") == f"{stats['clips']:,}"
    assert metric_value(page, "Distinct raw tags") == f"{stats['distinct_tags']:,}"
    assert metric_value(page, "Tag rows") == f"{stats['tag_rows']:,}"
    # The demo's audio exists on disk, so every clip is playable.
    assert metric_value(page, "Clips with playable audio") == f"{stats['clips']:,}"
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
    assert page.locator(".js-plotly-plot").count() == 5
    assert page.get_by_text("Ingest history").is_visible()
    for domain in stats["domains"]:
        assert page.locator(".js-plotly-plot").first.get_by_text(domain).count() >= 1
