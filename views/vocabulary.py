"""Vocabulary: canonical tags ranked by TF-IDF, merge / rename / prune / restore, merge suggestions, the K
explorer with coverage curves, the tag sources (which extractors' tags feed the vocabulary), and the decision log
with undo. Every action is one decision row; the open tab stays open after it and its selection is cleared."""
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from curation.vocabulary.decisions import Decision, decision_log_frame, list_decisions
from curation.vocabulary.ranking import K_MARKS, ranking_table, tag_source_table
from curation.vocabulary.tag_details import tag_examples
from ui.audio import play_clip
from ui.db import db_cursor
from ui.decide import decide
from ui.state import FORGET, selected_k, show_flash, vocabulary_view
from ui.text import escape_markdown, inline_code

st.title("Vocabulary")
show_flash()
rank_by = st.segmented_control("Rank by", ["tfidf", "df"], default="tfidf", key="rank_by",
                               format_func={"tfidf": "TF-IDF score", "df": "document frequency"}.get) or "tfidf"
matrix, state, view = vocabulary_view(rank_by)
n_tags = len(view.ranking)
if n_tags == 0:
    st.info("No tags yet: ingest a tagged manifest or build the demo corpus (`python -m curation demo`).")
    st.stop()

k = st.slider("Vocabulary size K", 1, n_tags, selected_k(n_tags), key="vocab_k")
coverage_at_k = view.coverage.iloc[k - 1]
cols = st.columns(5)
cols[0].metric("Canonical tags", f"{n_tags:,}")
cols[1].metric(f"Clips kept at K={k:,}", f"{coverage_at_k.share_kept:.1%}")
cols[2].metric("Mean tags per kept clip", f"{coverage_at_k.mean_tags:.2f}")
cols[3].metric("Pruned tags", f"{len(view.pruned):,}")
log = decision_log_frame(list_decisions(db_cursor()), state)
n_undone = int(log["status"].str.startswith("undone").sum()) if not log.empty else 0
cols[4].metric("Decisions", f"{int((log['status'] == 'in effect').sum()) if not log.empty else 0:,} in effect",
               help=f"{n_undone:,} undone" if n_undone else None)

# Keyed tabs remember the open one across the rerun that follows every action.
tags_tab, suggestions_tab, k_tab, sources_tab, log_tab = st.tabs(
    ["Tags", "Merge suggestions", "K explorer", "Tag sources", "Decisions"], key="vocabulary_tab", on_change="rerun")
# What an action on the Tags tab used up, cleared for the next one (ui.state.reset_widgets_next_run).
TAG_ACTION_STATE = {"tag_pick": [], "tag_table": FORGET, "decision_reason": "", "merge_target": FORGET,
                    "rename_to": ""}

with tags_tab:
    query = st.text_input("Search tags", key="tag_search", placeholder="e.g. drum")
    table = ranking_table(view, matrix, k, query.strip())
    selection = st.dataframe(
        table, hide_index=True,
        width="stretch", height=380, on_select="rerun", selection_mode="multi-row", key="tag_table",
        column_config={"score": st.column_config.NumberColumn(format="%.1f")})
    from_table = table.iloc[selection.selection.rows]["tag"].tolist() if selection.selection.rows else []
    typed = st.multiselect("Tags to act on (or select rows above)", view.ranking["tag"].tolist(), key="tag_pick")
    chosen = list(dict.fromkeys(from_table + typed))
    if chosen:
        st.write("Selected: " + ", ".join(inline_code(tag) for tag in chosen))
        reason = st.text_input("Reason (stored with the decision)", key="decision_reason")
        merge_col, rename_col, prune_col = st.columns(3)
        with merge_col:
            target = st.text_input("Merge into", value=chosen[0], key="merge_target")
            if st.button("Merge", disabled=len(chosen) < 2 and target == chosen[0], key="merge_button"):
                decide(Decision.merge(chosen, into=target.strip()), reason, clear=TAG_ACTION_STATE)
        with rename_col:
            new_name = st.text_input("Rename to", key="rename_to", disabled=len(chosen) != 1)
            if st.button("Rename", disabled=len(chosen) != 1 or not new_name.strip(), key="rename_button"):
                decide(Decision.rename(chosen[0], to=new_name.strip()), reason, clear=TAG_ACTION_STATE)
        with prune_col:
            st.write("Exclude from every vocabulary")
            if st.button("Prune", key="prune_button"):
                decide(Decision.prune(chosen), reason, clear=TAG_ACTION_STATE)
        st.subheader(f"What {inline_code(chosen[0])} stands for")
        for example in tag_examples(db_cursor(), chosen[0], state, limit=4):
            with st.container(border=True):
                st.caption(f"{escape_markdown(example.clip_id)} · raw tags: "
                           f"{', '.join(map(escape_markdown, example.raw_tags))}")
                st.html(f"<div style='font-size:0.9rem'>{example.caption_html}</div>")
                if example.audio_path:
                    play_clip(example.audio_path)
    if view.pruned:
        with st.expander(f"Pruned tags ({len(view.pruned)})"):
            restore = st.multiselect("Restore", view.pruned, key="restore_choice")
            if st.button("Restore selected", disabled=not restore, key="restore_button"):
                decide(Decision.restore(restore), clear={"restore_choice": []})

with suggestions_tab:
    from ui.suggestions import render_prune_suggestions, render_suggestions

    render_suggestions()
    with st.expander("Prune suggestions"):
        render_prune_suggestions(k, decide)
    with st.expander("Compare with a published vocabulary (label_K.json)"):
        from ui.published import render_published_compare

        render_published_compare()

with k_tab:
    coverage = view.coverage
    marks = [m for m in K_MARKS if m <= n_tags]
    figure = go.Figure()
    figure.add_scatter(x=coverage["k"], y=coverage["share_kept"], name="all clips", mode="lines")
    for domain in matrix.domains:
        figure.add_scatter(x=view.coverage_by_domain["k"], y=view.coverage_by_domain[domain], name=domain,
                           mode="lines", line={"dash": "dot"})
    for mark in marks:
        figure.add_vline(x=mark, line_dash="dash", line_color="grey", annotation_text=f"{mark:,}")
    figure.add_vline(x=k, line_color="red", annotation_text=f"K={k:,}")
    figure.update_layout(title="Share of clips that keep at least one tag", xaxis_title="K",
                         yaxis_title="share of clips kept", yaxis_tickformat=".0%")
    st.plotly_chart(figure, width="stretch")
    left, right = st.columns(2)
    with left:
        st.plotly_chart(px.line(coverage, x="k", y=["mean_tags", "median_tags"],
                                title="Tags per kept clip"), width="stretch")
    with right:
        st.plotly_chart(px.line(coverage, x="k", y="df_at_k", log_y=True,
                                title="Document frequency of the K-th tag"), width="stretch")
    with st.expander("Coverage per source dataset"):
        st.plotly_chart(px.line(view.coverage_by_source, x="k", y=list(matrix.sources)), width="stretch")
    st.subheader("Compare two vocabulary sizes")
    a_col, b_col = st.columns(2)
    k_small = a_col.number_input("Smaller K", 1, n_tags, min(marks[0] if marks else max(1, n_tags // 2), n_tags),
                                 key="k_small")
    k_large = b_col.number_input("Larger K", 1, n_tags, min(marks[1] if len(marks) > 1 else n_tags, n_tags),
                                 key="k_large")
    k_small, k_large = sorted((int(k_small), int(k_large)))
    entering = view.tags_entering(k_small, k_large)
    lost = view.clips_lost(k_small, k_large)
    st.write(f"Going from K={k_large:,} down to K={k_small:,} removes **{len(entering):,} tags** and loses "
             f"**{len(lost):,} clips** (they keep no tag).")
    d1, d2 = st.columns(2)
    d1.dataframe({"tags only in the larger vocabulary": entering[:500]}, hide_index=True, width="stretch")
    d2.dataframe({"clips lost at the smaller K": lost[:500]}, hide_index=True, width="stretch")

with sources_tab:
    sources = tag_source_table(db_cursor(), state)
    st.caption("Every tagging job and every ingest writes tag rows under an extractor's name. Only the extractors "
               "chosen here feed the ranking, the tag map and exports; the choice is a decision (undo it in the "
               "Decisions tab). Until one is made, every extractor's tags are used.")
    if sources.empty:
        st.info("No tag rows yet.")
    else:
        st.dataframe(sources, hide_index=True, width="stretch", key="sources_table", column_config={
            "extractor": "Extractor", "tag_rows": "Tag rows", "clips": "Clips", "distinct_tags": "Distinct tags",
            "feeds_vocabulary": st.column_config.CheckboxColumn("Feeds the vocabulary")})
        in_use = sources.loc[sources["feeds_vocabulary"], "extractor"].tolist()
        wanted = st.multiselect("Use the tags of", sources["extractor"].tolist(), default=in_use,
                                key="sources_pick")
        source_reason = st.text_input("Why these sources (stored with the decision)", key="sources_reason")
        unchanged = state.extractors is not None and set(wanted) == set(state.extractors)
        if st.button("Use these sources", disabled=not wanted or unchanged, key="sources_button"):
            decide(Decision.use_extractors(wanted), source_reason, clear={"sources_pick": FORGET, "sources_reason": ""})

with log_tab:
    if log.empty:
        st.info("No decisions yet. Merge, rename or prune tags on the Tags tab.")
    else:
        # Undone rows are greyed: nobody mistakes them for decisions in effect.
        shown = log.drop(columns=["in_effect"]).style.apply(
            lambda row: ["color: #9aa0a6" if row["status"] != "in effect" else "" for _ in row], axis=1)
        st.dataframe(shown, hide_index=True, width="stretch", key="log_table",
                     column_config={"decision_id": st.column_config.NumberColumn("#", width="small"),
                                    "status": st.column_config.TextColumn("Status", width="medium"),
                                    "when": st.column_config.DatetimeColumn("When", format="YYYY-MM-DD HH:mm"),
                                    "by": "By", "what": st.column_config.TextColumn("What", width="large"),
                                    "reason": "Reason"})
        undoable = log[log["in_effect"]]
        labels = {int(r.decision_id): f"#{r.decision_id}: {r.what} (by {r.by})" for r in undoable.itertuples()}
        choice = st.selectbox("Decision to undo", list(labels), format_func=labels.get, index=None,
                              key="undo_choice", placeholder="pick a decision")
        if st.button("Undo", disabled=choice is None, key="undo_button"):
            decide(Decision.undo(int(choice)), "undone from the decision log", clear={"undo_choice": None})
