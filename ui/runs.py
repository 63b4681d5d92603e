"""Streamlit helpers of the run pages: re-attach once per app process, training-curve figures, the run picker."""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from curation.runs.follow import refresh_runs
from ui.db import db_cursor, db_path

# (column of run_metrics, kind of line, title, log scale)
CURVES = (("loss", "train", "Training loss", False), ("lr", "train", "Learning rate", False),
          ("audio_s_per_s", "train", "Throughput (audio seconds per second)", False),
          ("val_map", "val", "Validation mAP", False))
STATE_ICONS = {"queued": "⏳", "running": "▶️", "finished": "✅", "failed": "❌", "cancelled": "⏹️"}


@st.cache_resource(show_spinner=False)
def _reattached(path: str) -> list[tuple[str, str, str]]:
    """Runs the first page that shows runs in this app process: alive jobs stay running, dead ones are marked."""
    return refresh_runs(db_cursor())


def reattach_runs() -> None:
    changes = _reattached(db_path())
    if changes and not st.session_state.get("_reattach_shown"):
        st.session_state["_reattach_shown"] = True
        st.info("Since the app last ran: " + "; ".join(f"{run_id} {old} -> {new}" for run_id, old, new in changes))


def curve_figures(metrics: pd.DataFrame, color: str | None = None, columns: int = 2) -> None:
    """One chart per curve that has data; lines per run when ``color`` is "run_id"."""
    shown = []
    for column, kind, title, log_y in CURVES:
        data = metrics[(metrics["kind"] == kind) & metrics[column].notna()] if not metrics.empty else metrics
        if data.empty:
            continue
        # Markers while a curve has few points: the first logged steps are visible, not an empty-looking chart.
        few = data.groupby(color)["step"].count().max() <= 30 if color else len(data) <= 30
        figure = px.line(data, x="step", y=column, color=color, markers=kind == "val" or bool(few), log_y=log_y,
                         title=title)
        figure.update_layout(height=300 if color is None else 380, margin={"t": 40, "b": 10 if color is None else 110},
                             legend={"orientation": "h", "yanchor": "top", "y": -0.35, "title_text": ""})
        low, high = float(data[column].min()), float(data[column].max())
        if column == "lr" or low == high:
            # A learning rate (or any flat start) gets an axis from 0 to just above its largest value, in
            # scientific notation, instead of Plotly's -0.5 .. 1 around a single point.
            figure.update_yaxes(range=[min(0.0, low), (high * 1.15) if high > 0 else 1.0],
                                tickformat=".1e" if column == "lr" else None)
        shown.append(figure)
    if not shown:
        st.caption("No metrics yet: the first lines appear once training logs its first step.")
        return
    cols = st.columns(columns)
    for index, figure in enumerate(shown):
        cols[index % columns].plotly_chart(figure, width="stretch", key=f"curve_{color}_{index}")


def run_label(row) -> str:
    return f"{STATE_ICONS.get(row['state'], '')} {row['run_id']}"
