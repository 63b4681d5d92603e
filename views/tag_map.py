"""Tag map: every raw tag placed by a UMAP of its embedding (computed once, cached), drawn by its current
state; search highlights a tag and its neighbours; a box or lasso selection becomes a bulk merge or prune."""
import plotly.express as px
import streamlit as st

from curation.vocabulary.decisions import Decision
from curation.vocabulary.tagmap import neighbours_on_map, tag_map_frame, tag_projection
from ui.db import db_cursor
from ui.decide import decide
from ui.state import selected_k, show_flash, vocabulary_view
from ui.text import escape_markdown, inline_code

st.title("Tag map")
show_flash()
matrix, state, view = vocabulary_view(st.session_state.get("rank_by") or "tfidf")
if len(view.ranking) == 0:
    st.info("No tags yet: ingest a tagged manifest or build the demo corpus (`python -m curation demo`).")
    st.stop()
with st.spinner("Projecting the tags (computed once per tag set, then read from the database)..."):
    points = tag_projection(db_cursor())
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

figure = px.scatter(frame, x="x", y="y", color=colour_by, size="df", size_max=18, render_mode="webgl",
                    hover_name="tag", custom_data=["tag"],
                    hover_data={"x": False, "y": False, "df": True, "canonical": True, "rank": True,
                                "state": True, "domain_mix": True})
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
    target = st.text_input("Merge them into", value=max(selected, key=lambda t: int(frame.loc[frame.tag == t, 'df'].iloc[0])),
                           key="map_merge_target")
    reason = st.text_input("Reason", key="map_reason")
    merge_col, prune_col = st.columns(2)
    action = None
    if merge_col.button("Merge selection", key="map_merge"):
        action = Decision.merge(selected, into=target.strip())
    if prune_col.button("Prune selection", key="map_prune"):
        action = Decision.prune(sorted({state.canonical(t) for t in selected} - set(state.pruned)))
    if action is not None:
        decide(action, reason)
st.caption(f"{len(frame):,} raw tags · projection {points.key[:8]} "
           f"({'computed now' if points.computed_now else 'from the cache'})")
