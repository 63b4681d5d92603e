"""Tag map: every raw tag placed by a UMAP of its embedding (computed once, cached), drawn by its current
state; search highlights a tag and its neighbours; a box or lasso selection becomes a bulk merge or prune."""
import streamlit as st

from curation.vocabulary.decisions import Decision
from curation.vocabulary.tagmap import (
    cached_tag_projection,
    merge_targets,
    neighbours_on_map,
    projection_estimate_s,
    tag_map_frame,
    tag_projection,
)
from ui.db import db_cursor
from ui.decide import decide
from ui.state import FORGET, selected_k, show_flash, vocabulary_view
from ui.tag_map_figure import map_figure, selected_tags
from ui.text import escape_markdown, inline_code

st.title("Tag map")
show_flash()
matrix, state, view = vocabulary_view(st.session_state.get("rank_by") or "tfidf")
if len(view.ranking) == 0:
    st.info("No tags yet: ingest a tagged manifest or build the demo corpus (`python -m curation demo`).")
    st.stop()
points, n_raw = cached_tag_projection(db_cursor())
if points is None:
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
left, right = st.columns([1, 2])
colour_by = left.radio("Colour by", ["state", "main_domain"], horizontal=True, key="map_colour",
                       format_func={"state": "in top K / merged / pruned", "main_domain": "domain"}.get)
search = right.text_input("Find a tag", key="map_search", placeholder="e.g. reverb")

# The frame and figure take seconds at 100,000 tags; a rerun that changes none of their inputs (a box or lasso
# selection, typing a reason) reuses this session's last ones. Decisions change active_ids / last_decision_id.
signature = (points.key, matrix.version, state.active_ids, state.last_decision_id, view.rank_by, k, colour_by,
             search.strip())
cached_map = st.session_state.get("_tag_map_built")
if cached_map is not None and cached_map[0] == signature:
    frame, highlight, figure, traces = cached_map[1]
else:
    frame = tag_map_frame(points, matrix, view, state, k)
    highlight = neighbours_on_map(frame, search.strip()) if search.strip() else []
    # Built for 100,000 points (ui/tag_map_figure.py): WebGL markers with binary positions, names written only on
    # the most frequent and the searched tags; a selection is read back by (trace, point index).
    figure, traces = map_figure(frame, colour_by=colour_by, highlight=highlight)
    st.session_state["_tag_map_built"] = (signature, (frame, highlight, figure, traces))
if search.strip() and not highlight:
    right.warning(f"No tag {escape_markdown(repr(search.strip()))} on the map.")
event = st.plotly_chart(figure, width="stretch", on_select="rerun", selection_mode=("box", "lasso"),
                        key="tag_map_chart")

selected = selected_tags(traces, event.selection.points) if event and event.selection else []
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
