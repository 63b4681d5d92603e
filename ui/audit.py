"""Streamlit helpers of the annotator screen: which question the number keys answer, and opening each clip at
its top (Streamlit keeps the scroll position across reruns, so after a submit the next clip would otherwise open
wherever the previous form's Submit button was)."""
from __future__ import annotations

import json
import math

import streamlit as st


def current_question(verdict_keys: dict[str, str], rating_key: str) -> str | None:
    """The first tag without a verdict, then "rating" until the caption is rated; None when all is answered."""
    for tag, key in verdict_keys.items():
        if st.session_state.get(key) is None:
            return tag
    return "rating" if st.session_state.get(rating_key) is None else None


def answer_current(verdict_keys: dict[str, str], rating_key: str, value) -> None:
    """Callback of the number-key buttons: answer the current question (runs before the page, so setting the
    widgets' state is allowed)."""
    question = current_question(verdict_keys, rating_key)
    if question == "rating" and isinstance(value, int):
        st.session_state[rating_key] = value
    elif question not in (None, "rating") and isinstance(value, str):
        st.session_state[verdict_keys[question]] = value


def scroll_to_clip_top(token: str) -> None:
    """Scroll so that the element after this one (the clip's header) is at the top of the view, once per
    ``token`` (a new clip): the snippet's text changes with the token, so Streamlit mounts it again."""
    anchor = "uts-clip-top-" + "".join(ch if ch.isalnum() else "-" for ch in token)
    # A container keyed by the token is a new element for each clip: its script runs when it mounts (an updated
    # element keeps its old script, which does not run again).
    st.container(key=anchor.replace("-", "_")).html(f"""<div id="{anchor}" data-uts-clip-top="1"></div>
<script data-uts-app="scroll-to-clip">
(function () {{
  // The previous clip's elements are removed only after the new run is drawn, which moves everything below
  // them up, and how long that takes depends on the machine: scroll again on every change of the page for a
  // few seconds, and stop at once when the person scrolls, clicks or types (never pull them back).
  const anchorId = {json.dumps(anchor)};
  const top = () => {{
    const anchor = document.getElementById(anchorId);
    if (!anchor) {{ return; }}
    anchor.scrollIntoView({{block: "start"}});
    // Streamlit's header bar overlays the top of the page: keep the clip's title below it.
    const main = anchor.closest('[data-testid="stMain"]');
    if (main) {{ main.scrollBy(0, -90); }}
  }};
  const anchor = document.getElementById(anchorId);
  const main = anchor && anchor.closest('[data-testid="stMain"]');
  const observer = new MutationObserver(top);
  const events = ["wheel", "touchstart", "mousedown", "keydown"];
  const stop = () => {{
    observer.disconnect();
    events.forEach((name) => window.removeEventListener(name, stop, true));
  }};
  if (main) {{ observer.observe(main, {{childList: true, subtree: true}}); }}
  events.forEach((name) => window.addEventListener(name, stop, true));
  setTimeout(stop, 6000);
  top();
}})();
</script>""", unsafe_allow_javascript=True)


# ------------------------------------------------------------------ the model's view beside the audit (issue 18)

AUDITED_LABEL = "audited precision (95% Wilson interval)"
MODEL_INSIDE_LABEL = "model's estimate: inside the audit's interval (agrees)"
MODEL_OUTSIDE_LABEL = "model's estimate: outside the audit's interval (disagrees)"


def agreement_words(agrees) -> str:
    """The 'agrees' column of ``precision_comparison`` in words (None/NaN: the audit did not judge the tag)."""
    if agrees is None or (isinstance(agrees, float) and math.isnan(agrees)):
        return "not audited"
    return "agrees" if bool(agrees) else "disagrees"


def model_vs_audit_figure(comparison):
    """Per tag (judged by the audit): the audited precision with its 95% interval as a bar, and the model's
    estimate as a marker coloured by whether it lies inside that interval. ``comparison``: the rows of
    ``curation.audit.model_audit.precision_comparison`` with judged > 0."""
    import plotly.graph_objects as go

    frame = comparison.sort_values("audited_precision", kind="mergesort")
    figure = go.Figure()
    figure.add_trace(go.Scatter(
        x=frame["audited_precision"], y=frame["tag"], mode="markers", name=AUDITED_LABEL,
        marker={"symbol": "circle", "size": 9, "color": "#4c78a8"},
        error_x={"type": "data", "symmetric": False, "array": frame["precision_high"] - frame["audited_precision"],
                 "arrayminus": frame["audited_precision"] - frame["precision_low"], "color": "#4c78a8",
                 "thickness": 2},
        customdata=frame[["judged", "precision_low", "precision_high"]].to_numpy(),
        hovertemplate="%{y}: audited %{x:.0%} (%{customdata[1]:.0%}-%{customdata[2]:.0%}), "
                      "%{customdata[0]} verdicts<extra></extra>"))
    inside = frame["agrees"].map(lambda value: bool(value) if value is not None else False)
    for mask, label, color, symbol in ((inside, MODEL_INSIDE_LABEL, "#2ca02c", "diamond"),
                                       (~inside, MODEL_OUTSIDE_LABEL, "#d62728", "x")):
        part = frame[mask]
        figure.add_trace(go.Scatter(
            x=part["estimated_precision"], y=part["tag"], mode="markers", name=label,
            marker={"symbol": symbol, "size": 11, "color": color, "line": {"width": 1, "color": color}},
            customdata=part[["hallucinations", "asserted"]].to_numpy(),
            hovertemplate="%{y}: model %{x:.0%} (%{customdata[0]} of %{customdata[1]} asserted clips "
                          "disputed)<extra></extra>"))
    # Lowest audited precision at the top: where the captioner is worst, and where the two disagree most often.
    figure.update_yaxes(type="category", tickmode="linear", dtick=1, automargin=True, title_text="",
                        categoryorder="array", categoryarray=frame["tag"].tolist()[::-1])
    figure.update_xaxes(range=[0, 1.02], tickformat=".0%",
                        title_text="captioner's precision on the tag (share of its assertions that are right)")
    figure.update_layout(height=max(320, 24 * len(frame) + 140),
                         legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    return figure


def model_vs_audit_table(comparison):
    """The comparison as a table a person reads: words for columns and for agreement, tags the audit did not
    judge last."""
    import pandas as pd

    table = pd.DataFrame({
        "Tag": comparison["tag"],
        "Model's estimate": comparison["estimated_precision"],
        "Audited precision": comparison["audited_precision"],
        "Audit interval low": comparison["precision_low"],
        "Audit interval high": comparison["precision_high"],
        "Agreement": [agreement_words(v) for v in comparison["agrees"]],
        "Verdicts": comparison["judged"].fillna(0).astype(int),
        "Clips asserting it (export)": comparison["asserted"].astype(int),
        "Disputed by the model": comparison["hallucinations"].astype(int),
    })
    order = table["Agreement"].map({"disagrees": 0, "agrees": 1, "not audited": 2})
    return table.assign(_order=order).sort_values(["_order", "Tag"], kind="mergesort").drop(columns="_order")


SUSPECT_WORDS = {"hallucination": "suspected hallucination (asserted, the model finds it unlikely)",
                 "miss": "suspected miss (not asserted, the model finds it likely)"}


def model_disputes(con, run_id: str, clip_keys: list[int], min_score: float | None = None,
                   most: int = 3) -> dict[int, str]:
    """Per clip of a Browse page: one Markdown line naming the (at most ``most``) tags the run's model audit
    disputes there most confidently, at least ``min_score``, with kind and score (how confidently the model
    disputes it, 0-1), and how many more. Clips without such a suspect are absent."""
    from curation.store import model_audit as store_model_audit
    from ui.text import escape_markdown

    suspects = store_model_audit.suspects_of_clips(con, run_id, clip_keys, min_score=min_score)
    lines: dict[int, list[str]] = {}
    for row in suspects.itertuples(index=False):
        lines.setdefault(int(row.clip_key), []).append(
            f"**{escape_markdown(row.tag)}**: {SUSPECT_WORDS.get(row.kind, row.kind)}, score {row.score:.2f}")
    return {key: f"Model (run {escape_markdown(run_id)}) disputes: " + " · ".join(parts[:most])
            + (f" · and {len(parts) - most} more" if len(parts) > most else "")
            for key, parts in lines.items()}
