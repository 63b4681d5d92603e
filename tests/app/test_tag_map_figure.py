"""The Tag map's figure at scale: light enough to send 100,000 points, and a lasso reads back the right tags."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ui.tag_map_figure import LABELLED, map_figure, selected_tags


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    states = np.array(["in top K", "outside top K", "merged", "pruned"])[rng.integers(0, 4, n)]
    tags = [f"tag-{i:06d}" for i in range(n)]
    return pd.DataFrame({
        "tag": tags, "x": rng.normal(size=n), "y": rng.normal(size=n), "df": rng.zipf(1.6, n).clip(max=50_000),
        "canonical": [t if s != "merged" else "tag-000000" for t, s in zip(tags, states)],
        "rank": rng.integers(0, 5_000, n), "state": states,
        "main_domain": np.where(rng.random(n) < 0.5, "sound", "music"),
        "domain_mix": ["sound 60%, music 40%"] * n,
    })


def test_a_hundred_thousand_points_travel_as_binary_arrays_with_few_text_labels():
    frame = _frame(100_000)
    figure, traces = map_figure(frame, highlight=["tag-000001", "tag-000002"])
    payload = figure.to_json()
    data = json.loads(payload)["data"]
    point_traces = data[: len(traces)]  # the search marks follow them
    assert sum(len(t) for t in traces) == len(frame)
    # Positions and sizes are typed arrays (base64), not JSON lists of 100,000 numbers.
    assert all(isinstance(t["x"], dict) and t["x"]["dtype"] == "f4" for t in point_traces)
    assert all(isinstance(t["marker"]["size"], dict) for t in point_traces)
    # Names written only on the most frequent tags and the searched ones: the page stays responsive.
    notes = json.loads(payload)["layout"]["annotations"]
    assert len(notes) == LABELLED + 2
    assert {n["text"] for n in notes[:LABELLED]} == set(frame.nlargest(LABELLED, "df")["tag"])
    assert [n["text"] for n in notes[LABELLED:]] == ["<b>tag-000001</b>", "<b>tag-000002</b>"]
    # The many tags outside the top K are drawn first, so every other state is drawn above them.
    assert point_traces[0]["name"].startswith("outside top K")
    # Measured ~70 bytes a point here (name, domain mix, 20 bytes of binary numbers); px sent ~3x that.
    assert len(payload) / len(frame) < 120, len(payload) / len(frame)


def test_states_keep_their_colours_and_symbols_and_hover_says_where_a_merged_tag_went():
    frame = _frame(200, seed=1)
    figure, traces = map_figure(frame)
    by_name = {t.name.split(" (")[0]: t for t in figure.data if t.type == "scattergl"}
    assert by_name["pruned"].marker.symbol == "x" and by_name["merged"].marker.symbol == "diamond"
    assert by_name["in top K"].marker.color == "#1f77b4"
    assert by_name["merged"].hovertext[0].startswith("→ tag-000000 · ") and "merged" in by_name["merged"].hovertemplate
    assert "rank" in by_name["in top K"].hovertemplate and "rank" not in by_name["pruned"].hovertemplate
    for trace, tags in zip((t for t in figure.data if t.type == "scattergl"), traces):
        assert list(trace.text) == list(tags)  # hover names the very tag a selection of that point reads back
        assert [int(d) for d in trace.customdata[:, 0]] == frame.set_index("tag").loc[list(tags), "df"].tolist()


def test_domain_colouring_has_one_trace_per_domain():
    figure, _ = map_figure(_frame(300, seed=2), colour_by="main_domain")
    assert sorted(t.name.split(" (")[0] for t in figure.data if t.type == "scattergl") == ["music", "sound"]
    with pytest.raises(ValueError, match="colour_by"):
        map_figure(_frame(10), colour_by="df")


def test_a_selection_names_the_tags_under_its_points_and_nothing_for_search_marks():
    frame = _frame(500, seed=3)
    _, traces = map_figure(frame, highlight=["tag-000007"])
    search_curve = len(traces)  # the search marks follow the point traces
    points = [{"curve_number": 0, "point_index": 3}, {"curve_number": 1, "point_index": 0},
              {"curve_number": 0, "point_index": 3},  # a point selected twice counts once
              {"curve_number": search_curve, "point_index": 0},  # a search mark names nothing
              {"curve_number": 0, "point_index": 10_000_000}]  # an index the figure does not hold
    assert selected_tags(traces, points) == sorted({traces[0][3], traces[1][0]})
    assert selected_tags(traces, []) == []
