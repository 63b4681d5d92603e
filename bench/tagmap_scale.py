"""Tag map at scale: cold (embed + exact kNN + UMAP, including numba's first-call JIT) and warm (read from DuckDB),
proof that a merge triggers no recomputation, and (``--browser``) how fast a real browser draws the page and
answers pan, zoom and lasso.

Targets: issue 3, <= 60 s cold and <= 1 s warm at 20,000 tags; issue 17, <= 5 min cold at 100,000 tags, drawn in
the browser in <= 2 s and usable (pan, zoom, lasso) without freezing.

Corpora (``--corpus``):
- ``words`` (the issue-3 figures): every distinct word of the human captions in ../shared/data/captions
  (AudioCaps, Clotho, MusicCaps) plus the published UTS 3k labels, cut to ``--tags``; each tag in two clips.
- ``captions``: bench/suggest_scale.py's corpus (caption words and word pairs with their own Zipf-like
  frequencies, UTS labels, extractor-style variants): at 100,000 tags ~189,000 clips and ~1.06 M tag rows, so
  the page also shows real document frequencies (marker sizes, labels, the top K).

``--browser`` then starts ``streamlit run app.py`` on the database (loopback, headless Debian chromium through
Playwright, as tests/e2e does) and times: the first visit of the Tag map page (the app's caches cold: tag
matrix and vocabulary loaded), a second visit (caches warm), a zoom, a pan and a lasso over part of the map
(until the page lists the selection), the longest main-thread task seen in the browser during each, and the
plot alone drawn by plotly.js outside the app from the figure the page sends. Screenshots go to ``--shots``.
The browser runs with --disable-gpu as the tests do: WebGL is rendered in software (SwiftShader), so every redraw
(each move of a pan or lasso) costs far more than in a browser with a GPU; the figures are an upper bound.

    .venv/bin/python bench/tagmap_scale.py [--tags 20000] [--corpus words|captions] [--keep DIR] [--reuse]
        [--browser] [--shots DIR]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
SHARED = PROJECT.parent / "shared" / "data"
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "bench"))

from curation import store
from curation.ingest.ingest import ingest_path
from curation.vocabulary.decisions import Decision, record_decision
from curation.vocabulary.tagmap import tag_projection


def realistic_tags(n: int) -> list[str]:
    words: dict[str, None] = {}
    labels = json.loads((SHARED / "uts_vocab" / "label_3k.json").read_text())
    for tag in labels.values():
        words[tag] = None
    files = [SHARED / "captions" / "audiocaps_v1" / f"{s}.csv" for s in ("train", "val", "test")]
    files += [SHARED / "captions" / "clotho" / f"{s}.csv" for s in ("train", "val", "test")]
    files += [SHARED / "captions" / "musiccaps" / "musiccaps-public.csv"]
    for file in files:
        with open(file, encoding="utf-8") as handle:
            for row in csv.reader(handle):
                for cell in row:
                    for word in re.findall(r"[a-z][a-z\-]{2,20}", cell.lower()):
                        words[word] = None
                        if len(words) >= n:
                            return list(words)
    return list(words)


def write_manifest(path: Path, corpus: str, n_tags: int) -> None:
    with open(path, "w", encoding="utf-8") as out:
        if corpus == "captions":
            import suggest_scale

            out.writelines(json.dumps(cut) + "\n" for cut in suggest_scale.build_cuts(n_tags, seed=0))
            return
        tags = realistic_tags(n_tags)
        out.writelines(json.dumps({"id": f"t{i}", "audio_path": "none.wav", "caption": "x",
                                  "tags": [tags[i], tags[(i * 7 + 1) % len(tags)]], "duration": 1.0}) + "\n" for i in range(len(tags)))


# --------------------------------------------------------------------------------------------- the browser

# Counts the main thread's long tasks (>= 50 ms, what makes a page feel frozen) from page load on.
LONG_TASKS_JS = """
window.__longTasks = [];
new PerformanceObserver(list => { for (const e of list.getEntries()) window.__longTasks.push(e.duration); })
  .observe({entryTypes: ['longtask']});
"""
PLOT_DRAWN_JS = """() => { const gd = document.querySelector('.js-plotly-plot');
  return !!(gd && gd._fullData && gd._fullData.length && gd.querySelector('canvas')
            && !document.querySelector('[data-testid="stStatusWidget"]')); }"""


def _longest_task(page, since: int) -> float:
    tasks = page.evaluate("window.__longTasks")
    return round(max(tasks[since:], default=0.0), 1)


def _await_afterplot(page, act, timeout_ms: int = 60_000) -> float:
    """Seconds from ``act()`` until plotly has drawn the plot again."""
    page.evaluate("""() => { const gd = document.querySelector('.js-plotly-plot'); window.__plotted = false;
                             gd.once ? gd.once('plotly_afterplot', () => { window.__plotted = true; })
                                     : gd.on('plotly_afterplot', () => { window.__plotted = true; }); }""")
    t0 = time.perf_counter()
    act()
    page.wait_for_function("() => window.__plotted === true", timeout=timeout_ms, polling="raf")
    return time.perf_counter() - t0


def browser_figures(db: Path, shots: Path) -> dict:
    """Visit the Tag map page twice, zoom, pan and lasso; time each and note the longest main-thread task."""
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(PROJECT / "tests" / "e2e"))
    from e2e_helpers import CHROMIUM, CHROMIUM_ARGS, StreamlitServer, wait_for_app_idle

    shots.mkdir(parents=True, exist_ok=True)
    server = StreamlitServer(db, shots / "streamlit.log")
    out: dict = {}
    try:
        server.wait_healthy()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.add_init_script(LONG_TASKS_JS)
            for visit in ("first_visit_s", "second_visit_s"):
                t0 = time.perf_counter()
                page.goto(f"{server.url}/tag_map?display_name=bench")
                page.wait_for_function(PLOT_DRAWN_JS, timeout=300_000, polling="raf")
                out[visit] = round(time.perf_counter() - t0, 2)
                wait_for_app_idle(page, timeout_ms=300_000)
                out[visit.replace("_s", "_longest_task_ms")] = _longest_task(page, 0)
            page.screenshot(path=str(shots / "tagmap-100k.png"), full_page=True)
            plot = page.locator(".js-plotly-plot").first
            area = plot.locator(".nsewdrag").first.bounding_box()
            cx, cy = area["x"] + area["width"] / 2, area["y"] + area["height"] / 2
            plot.hover()
            n = len(page.evaluate("window.__longTasks"))
            zoom_button = page.locator('.modebar-btn[data-title="Zoom in"]').first
            out["zoom_in_s"] = round(_await_afterplot(page, zoom_button.click), 3)
            out["zoom_longest_task_ms"] = _longest_task(page, n)
            n = len(page.evaluate("window.__longTasks"))
            page.locator('.modebar-btn[data-title="Pan"]').first.click()

            def pan() -> None:  # a drag of 10 moves: plotly redraws the points at each
                page.mouse.move(cx, cy)
                page.mouse.down()
                page.mouse.move(cx + 150, cy + 80, steps=10)
                page.mouse.up()

            out["pan_s"] = round(_await_afterplot(page, pan), 3)
            out["pan_longest_task_ms"] = _longest_task(page, n)
            page.screenshot(path=str(shots / "tagmap-100k-zoomed.png"), full_page=True)
            page.locator('.modebar-btn[data-title="Reset axes"]').first.click()
            page.locator('.modebar-btn[data-title="Lasso Select"]').first.click()
            n = len(page.evaluate("window.__longTasks"))
            # A lasso around a small region near the centre (a few hundred tags at 100,000).
            r = min(area["width"], area["height"]) * 0.06
            t0 = time.perf_counter()
            page.mouse.move(cx - r, cy - r)
            page.mouse.down()
            for x, y in ((cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r), (cx - r, cy - r + 1)):
                page.mouse.move(x, y, steps=6)
            out["lasso_gesture_s"] = round(time.perf_counter() - t0, 2)  # 24 moves, each redrawn by plotly
            t0 = time.perf_counter()
            page.mouse.up()
            page.get_by_text(re.compile(r"\d+ tags selected")).wait_for(timeout=120_000)
            out["lasso_release_to_listed_s"] = round(time.perf_counter() - t0, 2)
            wait_for_app_idle(page, timeout_ms=120_000)
            out["lasso_selected"] = page.get_by_text(re.compile(r"\d+ tags selected")).inner_text().split(" tags")[0]
            out["lasso_longest_task_ms"] = _longest_task(page, n)
            page.screenshot(path=str(shots / "tagmap-100k-lasso.png"), full_page=True)
            browser.close()
    finally:
        server.stop()
    return out


def plot_only_figure(db: Path, shots: Path) -> dict:
    """plotly.js alone drawing the figure the page builds (no Streamlit): the browser's share of a visit."""
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(PROJECT / "tests" / "e2e"))
    import plotly
    from e2e_helpers import CHROMIUM, CHROMIUM_ARGS

    from curation.vocabulary.decisions import list_decisions, replay
    from curation.vocabulary.ranking import compute_vocabulary, load_tag_matrix
    from curation.vocabulary.tagmap import tag_map_frame
    from ui.tag_map_figure import map_figure

    con = store.connect(db, read_only=True)
    matrix = load_tag_matrix(con)
    state = replay(list_decisions(con))
    view = compute_vocabulary(matrix, state)
    t0 = time.perf_counter()
    frame = tag_map_frame(tag_projection(con), matrix, view, state, k=800)
    frame_s = time.perf_counter() - t0
    con.close()
    t0 = time.perf_counter()
    payload = map_figure(frame, colour_by="state")[0].to_json()
    figure_s = time.perf_counter() - t0
    bundle = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    shots.mkdir(parents=True, exist_ok=True)
    html = shots / "plot_only.html"
    html.write_text(f"<html><body><div id='plot' style='width:1300px;height:650px'></div>"
                    f"<script src='{bundle.as_uri()}'></script><script>window.FIG = {payload};</script>"
                    "</body></html>", encoding="utf-8")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS,
                                                                             "--allow-file-access-from-files"])
        page = browser.new_page(viewport={"width": 1400, "height": 800})
        page.goto(html.as_uri())
        draw_ms = page.evaluate("""async () => { const t0 = performance.now();
            await Plotly.newPlot('plot', FIG.data, FIG.layout);
            await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
            return performance.now() - t0; }""")
        page.screenshot(path=str(shots / "plot_only.png"))
        browser.close()
    return {"frame_s": round(frame_s, 2), "figure_json_s": round(figure_s, 2),
            "figure_json_mb": round(len(payload) / 1e6, 1), "plotly_draw_only_s": round(draw_ms / 1000, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, default=20_000)
    parser.add_argument("--corpus", choices=("words", "captions"), default="words")
    parser.add_argument("--keep", help="build the database in this folder and keep it (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true", help="use the database already in --keep (no cold timing)")
    parser.add_argument("--from-db", help="copy this database (e.g. bench/suggest_scale.py --keep's, embeddings "
                                          "cached) instead of building one, and time its projection")
    parser.add_argument("--browser", action="store_true", help="also time the page in a real browser")
    parser.add_argument("--shots", default=str(PROJECT / "test-artifacts" / "tagmap-scale"),
                        help="folder for screenshots and the app's log")
    args = parser.parse_args()
    if args.reuse and not args.keep:
        parser.error("--reuse needs --keep DIR (the folder of an earlier run)")
    tmp = None if args.keep else tempfile.TemporaryDirectory()
    folder = Path(args.keep or tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "map.duckdb"
    result: dict = {"load_before": os.getloadavg()[0]}
    con = None
    if not args.reuse:
        db.unlink(missing_ok=True)
        if args.from_db:
            import shutil

            shutil.copyfile(args.from_db, db)
            con = store.connect(db)
        else:
            manifest = folder / "cuts.jsonl"
            write_manifest(manifest, args.corpus, args.tags)
            con = store.connect(db)
            ingest_path(con, manifest)
        result["embeddings_cached_before"] = con.execute("SELECT count(*) FROM tag_embeddings").fetchall()[0][0]
        t0, c0 = time.perf_counter(), time.process_time()
        cold = tag_projection(con)
        result.update(tags=len(cold.tags), cold_s=round(time.perf_counter() - t0, 1),
                      cold_cpu_s=round(time.process_time() - c0, 1))
        t0 = time.perf_counter()
        warm = tag_projection(con)
        result.update(warm_s=round(time.perf_counter() - t0, 3), cached_first=not warm.computed_now)
        tags = cold.tags.tolist()
        record_decision(con, Decision.merge([tags[1], tags[2]], into=tags[1]), by="bench")
        t0 = time.perf_counter()
        after_merge = tag_projection(con)
        result.update(after_merge_s=round(time.perf_counter() - t0, 3),
                      recomputed_after_merge=after_merge.computed_now, load_after_cold=os.getloadavg()[0])
        con.close()
        print(json.dumps(result), flush=True)  # the projection's figures, before the browser's
    if args.browser:
        shots = Path(args.shots).resolve()
        result.update(plot_only_figure(db, shots))
        result.update(browser_figures(db, shots))
    result.update(load_after=os.getloadavg()[0],
                  machine=f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(json.dumps(result))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
