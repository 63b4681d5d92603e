"""The merge-suggestion queue: ordered by impact (what accepting changes, weighted by confidence) or by
confidence; each group shows its effect before it is accepted; accept (optionally with an edited canonical
name), reject, or accept in bulk."""
from __future__ import annotations

import streamlit as st

from curation.vocabulary.suggestions import accept_suggestion, accept_suggestions, reject_suggestion, suggest_merges
from ui.db import db_cursor
from ui.decide import apply_decision
from ui.state import tag_matrix
from ui.text import escape_markdown


def render_suggestions(top: int = 50) -> None:
    if not st.toggle("Show merge suggestions", key="show_suggestions",
                     help="Loads the text embedding model on first use (a few seconds)."):
        st.caption("Groups of tags that are likely one concept: surface variants, plurals and derivations, "
                   "and tags with the same meaning and the same company in the corpus.")
        return
    order = st.segmented_control(
        "Sort by", ["impact", "confidence"], default="impact", key="suggestion_order",
        format_func={"impact": "impact (clips changed, top-K moves) x confidence", "confidence": "confidence"}.get,
    ) or "impact"
    k = int(st.session_state.get("vocab_k", 800))
    with st.spinner("Finding likely duplicates..."):
        suggestions = suggest_merges(db_cursor(), top=top, matrix=tag_matrix(), k=k, order=order)
    if not suggestions:
        st.success("No merge suggestions left.")
        return
    st.write(f"{len(suggestions)} suggestions, by {order} (top K = {k:,}).")
    bulk = []
    for index, suggestion in enumerate(suggestions):
        with st.container(border=True):
            head, actions = st.columns([3, 2])
            with head:
                picked = st.checkbox(f"**{' · '.join(map(escape_markdown, suggestion.tags))}**  "
                                     f"(impact {suggestion.impact:,.0f} · confidence {suggestion.score:.2f}"
                                     f"{' · release label' if suggestion.seeded else ''})",
                                     key=f"bulk_{suggestion.group_key}")
                st.markdown(f"Accepting {escape_markdown(suggestion.effect)}.")
                st.caption(escape_markdown("; ".join(suggestion.reasons)))
            with actions:
                canonical = st.text_input("Canonical name", value=suggestion.canonical,
                                          key=f"canonical_{suggestion.group_key}")
                accept_col, reject_col = st.columns(2)
                # apply_decision calls these at once; the defaults bind this row's suggestion and name anyway.
                if accept_col.button("Accept", key=f"accept_{index}"):
                    apply_decision(
                        lambda name, s=suggestion, c=canonical: accept_suggestion(db_cursor(), s, by=name, canonical=c),
                        lambda _record, s=suggestion, c=canonical: f"Merged {', '.join(s.tags)} into {c}")
                if reject_col.button("Reject", key=f"reject_{index}"):
                    apply_decision(lambda name, s=suggestion: reject_suggestion(db_cursor(), s, by=name),
                                   lambda _none, s=suggestion: f"Rejected {', '.join(s.tags)}: not proposed again")
            if picked:
                bulk.append((suggestion, canonical))
    if bulk and st.button(f"Accept the {len(bulk)} selected suggestions", key="accept_bulk"):
        # One transaction for the whole selection: a refused merge leaves none of the others applied.
        apply_decision(lambda name: accept_suggestions(db_cursor(), bulk, by=name),
                       lambda records: f"Accepted {len(records)} suggestions")


def render_prune_suggestions(k: int, decide) -> None:
    """Tags too rare to carry signal at this K; pruning them is one decision."""
    from curation.vocabulary.decisions import Decision
    from curation.vocabulary.suggestions import suggest_prunes

    min_df = st.number_input("A tag is too rare below this many clips", 1, 1000, 2, key="prune_min_df")
    rows = suggest_prunes(db_cursor(), k=k, min_df=int(min_df), matrix=tag_matrix())
    if not rows:
        st.success(f"No tag has fewer than {min_df} clips.")
        return
    st.dataframe(rows, hide_index=True, width="stretch", key="prune_table")
    chosen = st.multiselect("Prune", [row["tag"] for row in rows], key="prune_pick")
    if st.button(f"Prune {len(chosen)} tags", disabled=not chosen, key="prune_suggested"):
        decide(Decision.prune(chosen), f"rare: fewer than {min_df} clips at K={k}")
