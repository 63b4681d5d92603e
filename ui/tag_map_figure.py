"""The Tag map's plotly figure, built to stay light at 100,000 tags, and the reading of a box / lasso selection.

Place in the flow: views/tag_map.py draws ``map_figure(frame)`` (``frame`` from curation.vocabulary.tagmap's
``tag_map_frame``) and turns the chart's selection event into tag names with ``selected_tags``.

Why it is built by hand rather than with plotly express: every point of a WebGL (``scattergl``) trace is cheap for
the browser, but what travels with it is not. px sends per-point custom data as JSON lists of mixed strings and
numbers and one trace per colour x symbol; here positions, sizes and numbers go as binary typed arrays (float32),
each point carries its name (numbers and state go
through the trace's hover template), and a selection is read back from (trace, point index) rather than from
per-point custom data. Names (annotations: SVG, one DOM node each, drawn above the WebGL points) are written only
for the ``LABELLED`` most frequent tags and the searched ones; every other name shows on hover.

Example::

    figure, traces = map_figure(frame, colour_by="state", highlight=["reverb", "echo"])
    event = st.plotly_chart(figure, on_select="rerun", selection_mode=("box", "lasso"))
    tags = selected_tags(traces, event.selection.points)
"""
from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

STATE_COLOURS = {"in top K": "#1f77b4", "outside top K": "#9aa5b1", "merged": "#ff7f0e", "pruned": "#d62728"}
DRAW_ORDER = ("outside top K", "in top K", "merged", "pruned")
STATE_SYMBOLS = {"in top K": "circle", "outside top K": "circle", "merged": "diamond", "pruned": "x"}
DOMAIN_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
                  "#7f7f7f", "#d62728")
LABELLED = 40  # text labels on the most frequent tags: SVG text nodes, so a fixed few whatever the map's size
SIZE_MAX = 22  # marker diameter (px) of the most frequent tag; the rest scale with sqrt(5 + sqrt(df)) from ~5 px


def marker_diameters(df: np.ndarray) -> np.ndarray:
    """Pixel diameters: area grows with 5 + sqrt(clips), so a variant with a handful of clips is no speck."""
    weight = 5.0 + np.sqrt(np.clip(np.asarray(df, dtype=np.float64), 0.0, None))
    return (SIZE_MAX * np.sqrt(weight / max(float(weight.max(initial=0.0)), 1e-9))).astype(np.float32)


def _hover_extras(part: pd.DataFrame, *, with_state: bool, several_domains: bool) -> list[str] | None:
    """Per point, what the trace's template cannot say: where a merged tag went, its state when the colour is
    the domain, the domain mix when the corpus has several domains; None when every point has nothing to add."""
    columns = [part["canonical"].to_numpy(), part["tag"].to_numpy(), part["state"].to_numpy(),
               part["domain_mix"].to_numpy()]
    extras, any_text = [], False
    for canonical, tag, state, mix in zip(*columns):
        bits = []
        if canonical != tag:
            bits.append(f"→ {html.escape(canonical)}")
        if with_state:
            bits.append(state)
        if several_domains and mix:
            bits.append(mix)
        extras.append(" · ".join(bits))
        any_text = any_text or bool(bits)
    return extras if any_text else None


def map_figure(frame: pd.DataFrame, *, colour_by: str = "state", highlight: list[str] | None = None,
               height: int = 650) -> tuple[go.Figure, list[np.ndarray]]:
    """(figure, tags of each point trace in point order). ``colour_by``: "state" (in top K / outside / merged /
    pruned, fixed colours and symbols) or "main_domain". Point traces come first, so a selected point's
    (curve_number, point_index) names its tag in the returned list; the search marks follow them."""
    if colour_by not in ("state", "main_domain"):
        raise ValueError(f"colour_by={colour_by!r}: expected 'state' or 'main_domain'")
    figure = go.Figure()
    traces: list[np.ndarray] = []
    sizes = marker_diameters(frame["df"].to_numpy())
    several_domains = frame["main_domain"].nunique() > 1
    # Drawn in this order, later on top: the many tags outside the top K first, so that the top K, merged and
    # pruned tags are never buried under them.
    groups = DRAW_ORDER if colour_by == "state" else sorted(frame["main_domain"].unique().tolist())
    for index, group in enumerate(groups):
        mask = (frame[colour_by] == group).to_numpy()
        if not mask.any():
            continue
        part = frame.loc[mask]
        colour = STATE_COLOURS[group] if colour_by == "state" else DOMAIN_COLOURS[index % len(DOMAIN_COLOURS)]
        by_state = colour_by == "state"
        extras = _hover_extras(part, with_state=not by_state, several_domains=several_domains)
        template = "<b>%{text}</b><br>clips: %{customdata[0]:,}"
        if by_state:
            template += f" · {group}" + (" · rank %{customdata[1]:,}" if group in ("in top K", "outside top K")
                                         else "")
        template += ("<br>%{hovertext}" if extras is not None else "") + "<extra></extra>"
        figure.add_trace(go.Scattergl(
            x=part["x"].to_numpy(dtype=np.float32), y=part["y"].to_numpy(dtype=np.float32), mode="markers",
            name=f"{group} ({int(mask.sum()):,})",
            marker={"size": sizes[mask], "color": colour, "opacity": 0.85, "line": {"width": 0},
                    "symbol": STATE_SYMBOLS[group] if by_state else "circle"},
            text=[html.escape(tag) for tag in part["tag"].tolist()],
            customdata=np.column_stack([part["df"].to_numpy(), part["rank"].to_numpy()]).astype(np.int32),
            hovertext=extras, hovertemplate=template))
        traces.append(part["tag"].to_numpy())
    # Names of the most frequent tags and the searched ones as annotations: drawn above the WebGL points (an SVG
    # text trace would sit under them), never selected, and a fixed few whatever the size of the map.
    labelled = frame.nlargest(min(LABELLED, len(frame)), "df")
    marked = frame[frame["tag"].isin(highlight or [])]
    if len(marked):
        figure.add_trace(go.Scattergl(x=marked["x"].to_numpy(dtype=np.float32),
                                      y=marked["y"].to_numpy(dtype=np.float32), mode="markers", name="search",
                                      hoverinfo="skip", marker={"size": 14, "symbol": "circle-open",
                                                                 "color": "black", "line": {"width": 2}}))
    notes = [{"x": float(x), "y": float(y), "text": html.escape(tag), "showarrow": False, "yshift": 10,
              "font": {"size": 11, "color": "#222"}, "bgcolor": "rgba(255,255,255,0.6)"}
             for tag, x, y in zip(labelled["tag"].tolist(), labelled["x"].tolist(), labelled["y"].tolist())]
    notes += [{"x": float(x), "y": float(y), "text": f"<b>{html.escape(tag)}</b>", "showarrow": False, "yshift": 12,
               "font": {"size": 12, "color": "black"}, "bgcolor": "rgba(255,255,255,0.8)"}
              for tag, x, y in zip(marked["tag"].tolist(), marked["x"].tolist(), marked["y"].tolist())]
    figure.update_layout(annotations=notes)
    figure.update_layout(height=height, dragmode="lasso", xaxis_visible=False, yaxis_visible=False,
                         legend={"itemsizing": "constant"}, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         hovermode="closest")
    return figure, traces


def selected_tags(traces: list[np.ndarray], points: list[dict]) -> list[str]:
    """The tags under a selection event's points, sorted and without repeats; points of the search marks (and
    any index the figure does not hold) name nothing."""
    chosen = set()
    for point in points:
        curve, index = point.get("curve_number"), point.get("point_index", point.get("point_number"))
        if isinstance(curve, int) and isinstance(index, int) and 0 <= curve < len(traces) \
                and 0 <= index < len(traces[curve]):
            chosen.add(str(traces[curve][index]))
    return sorted(chosen)
