"""The merge-suggestion queue: ordered by impact (what accepting changes, weighted by confidence) or by
confidence; each group shows its effect before it is accepted; accept (optionally with an edited canonical
name), reject, or accept in bulk. With a run's model audit picked, the model's evidence joins in: whether it tells
a group's tags apart, the pairs it cannot tell apart (merge), the tags it cannot predict (prune);
curation/audit/model_overlap.py."""
from __future__ import annotations

import streamlit as st

from curation.vocabulary.suggestions import accept_suggestion, accept_suggestions, reject_suggestion, suggest_merges
from ui.db import db_cursor
from ui.decide import apply_decision
from ui.state import curation_state, tag_matrix
from ui.text import escape_markdown

MODEL_RUN_KEY = "model_evidence_run"


@st.cache_resource(show_spinner="Reading the run's out-of-sample scores...", max_entries=2)
def _model_evidence(path: str, run_id: str, audited_at: str, decisions: int):
    """The run's model evidence in today's vocabulary; recomputed when the run is audited again or a decision
    changes the vocabulary (``audited_at``, ``decisions``)."""
    from curation.audit.model_overlap import model_evidence

    return model_evidence(db_cursor(), run_id, state=curation_state())


def model_evidence_picker():
    """The run whose model audit adds evidence to the merge and prune suggestions (None: none picked, or no run
    has a model audit); the prune panel reads the same choice."""
    from curation.store import model_audit as store_model_audit

    runs = store_model_audit.audited_runs(db_cursor())
    if runs.empty:
        st.caption("Model evidence: no run has a model audit yet (`python -m curation model-audit --run RUN_ID`); "
                   "with one, the suggestions also say which tags the trained model cannot tell apart or predict.")
        return None
    return st.selectbox("Model evidence from run", runs["run_id"].tolist(), index=None, key=MODEL_RUN_KEY,
                        placeholder="none: text evidence only",
                        help="A run with a model audit: its out-of-sample scores say which tags the model cannot "
                             "tell apart (merge evidence) and which it cannot predict at all (prune evidence).")


def current_model_evidence():
    """The picked run's evidence, or None (none picked, or its scores file is gone: the error is shown)."""
    from curation.audit.model_audit import ModelAuditError
    from curation.store import model_audit as store_model_audit
    from ui.db import db_path

    run_id = st.session_state.get(MODEL_RUN_KEY)
    if not run_id:
        return None
    audit = store_model_audit.audit_row(db_cursor(), run_id)
    if audit is None:
        return None
    try:
        return _model_evidence(db_path(), run_id, str(audit["created_at"]), curation_state().last_decision_id)
    except ModelAuditError as exc:
        st.error(str(exc))
        return None


def render_model_merge_evidence(evidence) -> None:
    """Pairs the model cannot tell apart (cleanlab's overlapping classes), with a merge per pair."""
    from curation.vocabulary.decisions import Decision
    from ui.decide import decide

    pairs = evidence.cannot_tell_apart()
    with st.expander(f"Tags the model cannot tell apart (run {evidence.run_id}): {len(pairs)} pairs"):
        st.caption("On the clips tagged with only one of the two, the model (which never saw those clips' labels) "
                   "does not tell which one the captioner used: separability 0.5 is a coin toss, 1.0 always right. "
                   "Synonyms and renamed concepts land here, but so do tags the model is too weak to hear apart "
                   "(e.g. musical key): evidence to weigh, not a verdict.")
        if pairs.empty:
            st.caption("None at this run's evidence.")
            return
        table = pairs.rename(columns={"tag_a": "Tag A", "tag_b": "Tag B", "separability": "Separability",
                                      "a_only": "Clips with A only", "b_only": "Clips with B only",
                                      "both": "Clips with both", "mutual_confusion": "Mutual confusion"})
        st.dataframe(table[["Tag A", "Tag B", "Separability", "Clips with A only", "Clips with B only",
                            "Clips with both", "Mutual confusion"]],
                     hide_index=True, width="stretch", key="model_merge_table",
                     column_config={"Separability": st.column_config.NumberColumn(format="%.2f"),
                                    "Mutual confusion": st.column_config.NumberColumn(format="%.2f")})
        labels = [f"{r.tag_a} + {r.tag_b}" for r in pairs.itertuples()]
        picked = st.selectbox("Merge a pair", labels, index=None, key="model_merge_pick", placeholder="pick a pair")
        if picked is None:
            return
        row = pairs.iloc[labels.index(picked)]
        # The tag on more clips is the usual canonical name.
        default = row["tag_a"] if row["a_only"] >= row["b_only"] else row["tag_b"]
        into = st.text_input("Into", value=default, key=f"model_merge_into_{picked}")
        if st.button(f"Merge {escape_markdown(picked)}", key="model_merge_button", disabled=not into.strip()):
            decide(Decision.merge([row["tag_a"], row["tag_b"]], into=into.strip()),
                   f"model (run {evidence.run_id}) cannot tell them apart (separability "
                   f"{row['separability']:.2f} on {row['a_only']} + {row['b_only']} clips)")


def render_suggestions(top: int = 50) -> None:
    model_evidence_picker()
    evidence = current_model_evidence()
    if evidence is not None:
        render_model_merge_evidence(evidence)
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
                if evidence is not None:
                    from curation.audit.model_overlap import group_evidence

                    for line in group_evidence(evidence, suggestion.tags, curation_state()):
                        st.caption(escape_markdown(line))
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
    else:
        st.dataframe(rows, hide_index=True, width="stretch", key="prune_table")
        chosen = st.multiselect("Prune", [row["tag"] for row in rows], key="prune_pick")
        if st.button(f"Prune {len(chosen)} tags", disabled=not chosen, key="prune_suggested"):
            decide(Decision.prune(chosen), f"rare: fewer than {min_df} clips at K={k}")
    evidence = current_model_evidence()
    if evidence is not None:
        render_model_prune_evidence(evidence, decide)


def render_model_prune_evidence(evidence, decide) -> None:
    """Tags the model predicts no better than chance: nothing in the audio it hears goes with them."""
    from curation.vocabulary.decisions import Decision

    st.markdown(f"**Tags the model cannot predict (run {escape_markdown(evidence.run_id)})**")
    st.caption("Out of sample, the model tells the clips with the tag from those without it no better than chance "
               "(the 95% interval of its AUC reaches 0.5). A tag the audio does not carry (a captioner's habit, "
               "a systematic hallucination) lands here; so may a subtle one the model is too weak to hear.")
    unpredictable = evidence.unpredictable()
    current = curation_state()
    unpredictable = unpredictable[[not current.is_pruned(current.canonical(t)) for t in unpredictable["tag"]]]
    if unpredictable.empty:
        st.caption("None: every tag with enough clips is predicted above chance.")
        return
    table = unpredictable.rename(columns={"tag": "Tag", "asserted": "Clips", "auc": "AUC", "auc_low": "AUC low (95%)",
                                          "auc_high": "AUC high (95%)", "verdict": "Model"})
    st.dataframe(table, hide_index=True, width="stretch", key="model_prune_table",
                 column_config={c: st.column_config.NumberColumn(format="%.2f")
                                for c in ("AUC", "AUC low (95%)", "AUC high (95%)")})
    chosen = st.multiselect("Prune", unpredictable["tag"].tolist(), key="model_prune_pick")
    if st.button(f"Prune {len(chosen)} tags the model cannot predict", disabled=not chosen, key="model_prune_button"):
        by_tag = unpredictable.set_index("tag")
        reasons = ", ".join(f"{t} AUC {by_tag.loc[t, 'auc']:.2f}" for t in chosen)
        decide(Decision.prune(chosen), f"model (run {evidence.run_id}) predicts no better than chance: {reasons}")
