"""Real browser, a large Tag map (issue 17): 20,000 tags draw as WebGL points, and a box selection drawn with the
mouse lists exactly the tags inside it (the page reads a selection back by trace and point index, so a wrong
mapping would name other tags). The positions are stored as the cached projection, so no UMAP runs here.
A screenshot is written to test-artifacts/tagmap-20k-box.png."""
from __future__ import annotations

import re

import numpy as np
from e2e_helpers import ARTIFACTS, StreamlitServer, wait_for_app_idle
from helpers import make_cut, write_jsonl

from curation import store
from curation.ingest.ingest import ingest_path
from curation.store import vocabulary as store_vocabulary
from curation.vocabulary.embeddings import model_name
from curation.vocabulary.tagmap import UMAP_PARAMS, projection_key

SIDE = 142  # a lattice of SIDE x SIDE places, the first 20,000 of them used
N_TAGS = 20_000


def _large_map(tmp_path):
    tags = [f"t{i:05d}" for i in range(N_TAGS)]
    cuts = [make_cut(f"c{i}", tags=tuple(tags[j] for j in range(i, N_TAGS, N_TAGS // 5))) for i in range(N_TAGS // 5)]
    db = tmp_path / "map.duckdb"
    con = store.connect(db)
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
    raw = sorted(store_vocabulary.raw_tag_texts(con))
    assert len(raw) == N_TAGS
    rng = np.random.default_rng(0)
    index = np.array([int(t[1:]) for t in raw])
    # Points on a lattice with a little jitter: a box with half-integer edges has no point on its border.
    xs = (index % SIDE + rng.uniform(-0.2, 0.2, N_TAGS)).astype(np.float64)
    ys = (index // SIDE + rng.uniform(-0.2, 0.2, N_TAGS)).astype(np.float64)
    key = projection_key(model_name(), raw, dict(UMAP_PARAMS))
    with store.transaction(con):
        store_vocabulary.store_projection(con, key, model_name(), dict(UMAP_PARAMS), raw, xs, ys, 0.0)
    con.close()
    return db, dict(zip(raw, zip(xs, ys)))


def test_a_20k_tag_map_draws_and_a_box_selection_lists_exactly_the_tags_inside(page, tmp_path):
    db, places = _large_map(tmp_path)
    server = StreamlitServer(db, tmp_path / "streamlit.log")
    try:
        server.wait_healthy()
        page.goto(f"{server.url}/tag_map?display_name=ana")
        page.wait_for_selector(".js-plotly-plot canvas", timeout=120_000)
        wait_for_app_idle(page, timeout_ms=120_000)
        page.get_by_text(re.compile(r"20,000 raw tags")).wait_for(timeout=30_000)
        plot = page.locator(".js-plotly-plot").first
        plot.hover()
        page.locator('.modebar-btn[data-title="Box Select"]').first.click()
        x0, x1, y0, y1 = 60.5, 70.5, 40.5, 47.5  # data coordinates: 10 x 7 lattice places
        corners = plot.evaluate("""(gd, box) => { const fl = gd._fullLayout, r = gd.getBoundingClientRect();
            const px = x => r.left + fl.xaxis._offset + fl.xaxis.l2p(x);
            const py = y => r.top + fl.yaxis._offset + fl.yaxis.l2p(y);
            return [px(box[0]), py(box[2]), px(box[1]), py(box[3])]; }""", [x0, x1, y0, y1])
        page.mouse.move(corners[0], corners[1])
        page.mouse.down()
        page.mouse.move(corners[2], corners[3], steps=8)
        page.mouse.up()
        listed = page.get_by_text(re.compile(r"\d+ tags selected"))
        listed.wait_for(timeout=60_000)
        wait_for_app_idle(page, timeout_ms=60_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "tagmap-20k-box.png"), full_page=True)
        inside = sorted(t for t, (x, y) in places.items() if x0 < x < x1 and y0 < y < y1)
        assert len(inside) == 70
        text = listed.inner_text()
        assert text.startswith(f"{len(inside)} tags selected"), text
        assert all(tag in text for tag in inside[:60]), (text, inside[:5])  # the page lists the first 60 names
        assert page.locator(".st-key-map_merge_target").count() == 1  # the bulk merge form is offered
    finally:
        server.stop()
