"""Tag map: every raw tag placed by a UMAP of its embedding (computed once, cached), drawn by its current
state; search highlights a tag and its neighbours; a box or lasso selection becomes a bulk merge or prune."""
import plotly.express as px
import streamlit as st

from curation.vocabulary.decisions import Decision
from curation.vocabulary.tagmap import (
    merge_targets,
    neighbours_on_map,
    projection_estimate_s,
    projection_is_cached,
    tag_map_frame,
    tag_projection,
)
from ui.db import db_cursor
from ui.decide import decide
from ui.state import FORGET, selected_k, show_flash, vocabulary_view
from ui.text import escape_markdown, inline_code

st.title("Tag map")
show_flash()
matrix, state, view = vocabulary_view(st.session_state.get("rank_by") or "tfidf")
if len(view.ranking) == 0:
    st.info("No tags yet: ingest a tagged manifest or build the demo corpus (`python -m curation demo`).")
    st.stop()
cached, n_raw = projection_is_cached(db_cursor())
if cached:
    points = tag_projection(db_cursor())
else:
    # The first visit for a tag set computes the map: say the stages and about how long each takes.
    embed_s, project_s = projection_estimate_s(n_raw)
    with st.status(f"Computing the tag map for {n_raw:,} tags (once per tag set; about "
                   f"{embed_s + project_s:,.0f} s on 2 cores)...", expanded=True) as status:
        def on_stage(stage: str, n_tags: int) -> None:
            if stage == "embedding":
                status.write(f"1/2 embedding {n_tags:,} tag texts (about {embed_s:,.0f} s)")
            else:
                status.write(f"2/2 projecting them to 2-D with UMAP (about {project_s:,.0f} s, most of it the "
                             "first compilation in this app process)")
        points = tag_projection(db_cursor(), on_stage=on_stage)
        status.update(label=f"Tag map ready ({n_raw:,} tags); later visits read it from the database.",
                      state="complete", expanded=False)
k = st.slider("Vocabulary size K", 1, len(view.ranking), selected_k(len(view.ranking)), key="vocab_k")
frame = tag_map_frame(points, matrix, view, state, k)

left, right = st.columns([1, 2])
colour_by = left.radio("Colour by", ["state", "main_domain"], horizontal=True, key="map_colour",
                       format_func={"state": "in top K / merged / pruned", "main_domain": "domain"}.get)
search = right.text_input("Find a tag", key="map_search", placeholder="e.g. reverb")
highlight = neighbours_on_map(frame, search.strip()) if search.strip() else []
if search.strip() and not highlight:
    right.warning(f"No tag {escape_markdown(repr(search.strip()))} on the map.")
frame["highlighted"] = frame["tag"].isin(highlight)

# Every point stays visible: the marker grows with the square root of its clips from a floor, so a merged
# variant with a handful of clips is not a speck; states have fixed, distinct colours and symbols.
frame["marker_size"] = 5 + frame["df"].clip(lower=0) ** 0.5
STATE_COLOURS = {"in top K": "#1f77b4", "outside top K": "#9aa5b1", "merged": "#ff7f0e", "pruned": "#d62728"}
figure = px.scatter(frame, x="x", y="y", color=colour_by, size="marker_size", size_max=22, render_mode="webgl",
                    hover_name="tag", custom_data=["tag"],
                    color_discrete_map=STATE_COLOURS if colour_by == "state" else None,
                    symbol="state" if colour_by == "state" else None,
                    symbol_map={"in top K": "circle", "outside top K": "circle", "merged": "diamond",
                                "pruned": "x"},
                    category_orders={"state": list(STATE_COLOURS)},
                    hover_data={"x": False, "y": False, "marker_size": False, "df": True, "canonical": True,
                                "rank": True, "state": True, "domain_mix": True})
figure.update_traces(marker={"opacity": 0.85, "line": {"width": 0}})
# Labels on the most frequent tags (and every highlighted one below): the map reads without hovering.
labelled = frame.nlargest(min(40, len(frame)), "df")
figure.add_scatter(x=labelled["x"], y=labelled["y"], mode="text", text=labelled["tag"], textposition="top center",
                   textfont={"size": 11, "color": "#333"}, name="labels", hoverinfo="skip", showlegend=False)
if highlight:
    marked = frame[frame["highlighted"]]
    figure.add_scatter(x=marked["x"], y=marked["y"], mode="markers+text", text=marked["tag"],
                       textposition="top center", marker={"size": 14, "symbol": "circle-open", "color": "black"},
                       name="search", hoverinfo="skip")
figure.update_layout(height=650, dragmode="lasso", xaxis_visible=False, yaxis_visible=False)
event = st.plotly_chart(figure, width="stretch", on_select="rerun", selection_mode=("box", "lasso"),
                        key="tag_map_chart")

selected = sorted({point["customdata"][0] for point in event.selection.points if point.get("customdata")}
                  ) if event and event.selection else []
if selected:
    st.write(f"{len(selected)} tags selected: " + ", ".join(inline_code(t) for t in selected[:60]))
    # Never a pruned tag as the target; the default is the most frequent in-vocabulary member.
    targets = merge_targets(frame, selected)
    NEW_NAME = "(a new name)"
    target_col, new_col = st.columns(2)
    picked = target_col.selectbox("Merge them into", [*targets, NEW_NAME], key="map_merge_target",
                                  help="Only tags that are not pruned; the most frequent one in the top K first.")
    target = new_col.text_input("New tag name", key="map_merge_new", disabled=picked != NEW_NAME)
    target = target if picked == NEW_NAME else picked
    # Pruned tags stay out of a merge (merging one would prune the target); the prune button still takes them.
    mergeable = frame.loc[frame["tag"].isin(selected) & ~frame["pruned"], "tag"].tolist()
    left_out = len(selected) - len(mergeable)
    if left_out:
        st.caption(f"{left_out} pruned tag{'s' if left_out != 1 else ''} of the selection stay out of a merge.")
    if not targets:
        st.caption("Every selected tag is pruned: there is nothing to merge.")
    reason = st.text_input("Reason", key="map_reason")
    merge_col, prune_col = st.columns(2)
    action = None
    if merge_col.button("Merge selection", key="map_merge", disabled=not (target or "").strip() or not mergeable):
        action = Decision.merge(mergeable, into=target.strip())
    if prune_col.button("Prune selection", key="map_prune"):
        action = Decision.prune(sorted({state.canonical(t) for t in selected} - set(state.pruned)))
    if action is not None:
        decide(action, reason, clear={"map_merge_target": FORGET, "map_merge_new": "", "map_reason": "", "tag_map_chart": FORGET})
st.caption(f"{len(frame):,} raw tags · projection {points.key[:8]} "
           f"({'computed now' if points.computed_now else 'from the cache'})")
