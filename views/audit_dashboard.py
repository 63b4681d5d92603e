"""Bias dashboards: per-tag precision with 95% intervals, beside a trained model's estimate of it (model-based
audit of a run), hallucination rates by domain / source / tag frequency / caption length, where the captioner
over-asserts compared with human captions, annotator agreement and campaign progress. From a tag: prune it, or
list its audited clips."""
import plotly.express as px
import streamlit as st

from curation.audit.campaigns import AuditError, campaign_table
from curation.audit.model_audit import ModelAuditError, precision_comparison
from curation.audit.report import campaign_report, tag_clip_ids
from curation.store import model_audit as store_model_audit
from curation.vocabulary.decisions import Decision
from ui.audit import model_vs_audit_figure, model_vs_audit_table
from ui.auth import can
from ui.db import db_cursor
from ui.decide import decide
from ui.state import curation_state, show_flash, tag_matrix
from ui.text import escape_markdown, readable_columns

st.title("Captioner bias")
show_flash()
campaigns = campaign_table(db_cursor())
if campaigns.empty:
    st.info("No audit campaign yet: create one on the Audit page, or import reference labels with "
            "`python -m curation audit import-reference`.")
    st.stop()
labels = dict(zip(campaigns["campaign_id"], campaigns["name"]))
campaign_id = st.selectbox("Campaign", list(labels), format_func=labels.get, key="dashboard_campaign")
try:
    report = campaign_report(db_cursor(), int(campaign_id), matrix=tag_matrix())
except AuditError as exc:
    st.error(str(exc))
    st.stop()

row = report.campaign
cols = st.columns(5)
cols[0].metric("Slots submitted", f"{row['submitted']:,} / {row['slots']:,}")
cols[1].metric("Verdicts", f"{len(report.verdicts):,}")
cols[2].metric("Tags judged", f"{len(report.precision):,}")
cols[3].metric("Tags flagged", f"{int(report.flags['biased'].sum()):,}")
cols[4].metric("Krippendorff's alpha", "n/a" if report.alpha_overall != report.alpha_overall
               else f"{report.alpha_overall:.2f}")
if report.verdicts.empty:
    st.info("No verdicts yet in this campaign.")
    st.stop()

min_judged = st.slider("Show tags judged at least this often", 1, 50, 3, key="dashboard_min_judged")
flags = report.flags[report.flags["judged"] >= min_judged].sort_values("precision").copy()
FLAGGED, NOT_FLAGGED = "flagged: below the reference", "not flagged"
flags["verdict"] = [FLAGGED if biased else NOT_FLAGGED for biased in flags["biased"]]
st.subheader("Tags ranked by precision (95% Wilson intervals)")
st.caption(f"Flagged (red): the whole interval lies below the reference band (green: {report.clean_reference}, "
           f"{flags['clean_low'].iloc[0]:.2f}-{flags['clean_high'].iloc[0]:.2f})." if not flags.empty else "")
figure = px.scatter(flags, x="precision", y="tag", color="verdict", symbol="verdict",
                    color_discrete_map={FLAGGED: "#d62728", NOT_FLAGGED: "#4c78a8"},
                    symbol_map={FLAGGED: "diamond", NOT_FLAGGED: "circle"},
                    category_orders={"verdict": [FLAGGED, NOT_FLAGGED]},
                    error_x=flags["precision_high"] - flags["precision"],
                    error_x_minus=flags["precision"] - flags["precision_low"], hover_data=["judged", "correct"],
                    labels={"precision": "precision (share of verdicts 'correct')", "tag": "", "verdict": ""},
                    height=max(320, 22 * len(flags) + 120))
if not flags.empty:
    # A visible band (filled, labelled) for the reference level every tag is compared with.
    figure.add_vrect(x0=flags["clean_low"].iloc[0], x1=flags["clean_high"].iloc[0], fillcolor="#2ca02c",
                     opacity=0.18, line_width=1, line_color="#2ca02c", layer="below",
                     annotation_text=f"reference: {report.clean_reference}", annotation_position="top left")
# Every tag gets its label (Plotly thins crowded category labels otherwise).
figure.update_yaxes(type="category", tickmode="linear", dtick=1, automargin=True)
figure.update_xaxes(range=[0, 1.02], tickformat=".0%")
figure.update_layout(legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "title_text": ""})
st.plotly_chart(figure, width="stretch")

tag = st.selectbox("A tag", flags["tag"].tolist(), index=None, key="dashboard_tag", placeholder="pick a tag")
if tag:
    prune_col, clips_col = st.columns(2)
    if can("decide") and prune_col.button(f"Prune {escape_markdown(repr(tag))} from every vocabulary",
                                          key="dashboard_prune"):
        decide(Decision.prune([tag]), f"audit {labels[campaign_id]}: precision interval below the reference",
               message=lambda _record: f"Pruned {tag!r}.")
    tag_pruned = curation_state().is_pruned(curation_state().canonical(tag))
    if tag_pruned:
        clips_col.caption(f"{escape_markdown(tag)} is pruned: Browse filters by tags of the vocabulary, so it would "
                          "show no clip. Restore it on the Vocabulary page to browse its clips; its audited clips "
                          "judged wrong are listed below.")
    if clips_col.button(f"Open the clips tagged {escape_markdown(repr(tag))} in Browse", key="dashboard_open_clips",
                        disabled=tag_pruned):
        st.session_state["browse_tags"] = [tag]
        st.session_state["browse_audited"] = "yes"
        st.switch_page("views/browse.py")
    disputing = store_model_audit.runs_disputing(db_cursor(), tag)
    if disputing and clips_col.button(f"Open the clips where the model (run {escape_markdown(disputing[0])}) "
                                      f"disputes {escape_markdown(repr(tag))} in Browse",
                                      key="dashboard_open_disputed"):
        st.session_state["browse_disputed_run"] = disputing[0]
        st.session_state[f"browse_disputed_tag_{disputing[0]}"] = tag
        st.session_state["browse_disputed_min"] = 0.0   # every dispute of the tag, not only the most confident
        st.switch_page("views/browse.py")
    wrong = tag_clip_ids(report, tag, "wrong")
    clips_col.write(f"{len(wrong)} audited clips judged **wrong** for {escape_markdown(tag)}")
    clips_col.dataframe({"clip_id": wrong}, hide_index=True, height=200, key="dashboard_tag_clips")

st.subheader("The model's view: precision estimated from a trained encoder, beside the audit")
model_runs = store_model_audit.audited_runs(db_cursor())
if model_runs.empty:
    st.caption("No run has a model audit yet. `python -m curation model-audit --run RUN_ID` scores every clip of a "
               "finished run's export with a model that never saw its labels; the run then appears here.")
else:
    model_run = st.selectbox("Run (runs with a model audit)", model_runs["run_id"].tolist(), key="dashboard_model_run",
                             help="The model's estimate of the captioner's precision on a tag: 1 - the share of the "
                                  "tag's clips where this run's out-of-sample scores dispute it.")
    try:
        comparison = precision_comparison(db_cursor(), model_run, int(campaign_id), precision=report.precision)
    except ModelAuditError as exc:
        st.error(str(exc))
        comparison = None
    if comparison is not None:
        both = comparison[comparison["judged"].fillna(0) >= min_judged]
        agree = int(sum(bool(v) for v in both["agrees"] if v is not None))
        mcols = st.columns(3)
        mcols[0].metric("Tags in both (judged at least this often)", f"{len(both):,}")
        mcols[1].metric("Model agrees with the audit", f"{agree:,} of {len(both):,}")
        mcols[2].metric("Tags only the model estimates", f"{int((comparison['judged'].fillna(0) == 0).sum()):,}")
        strategy = store_model_audit.campaign_strategy(db_cursor(), int(campaign_id))
        if strategy and strategy.startswith("suspects first"):
            st.warning(f"This campaign was sampled '{escape_markdown(strategy)}': its precision describes the clips "
                       "the model disputes, not the corpus, so it will sit below the model's estimate. Compare "
                       "with a stratified campaign.")
        st.caption("Blue dot and bar: the precision the audit measured, with its 95% interval. Green diamond: "
                   "the model's estimate lies inside that interval (they agree); red cross: outside (they "
                   "disagree). The model finds sporadic errors (a tag asserted at random), but passes a "
                   "systematic bias as correct (it learns it from the labels): there the audit is right and the "
                   "model's estimate sits too high.")
        if both.empty:
            st.info("No tag of this run's export was judged that often in this campaign.")
        else:
            st.plotly_chart(model_vs_audit_figure(both), width="stretch", key="model_vs_audit_chart")
        st.dataframe(model_vs_audit_table(comparison), hide_index=True, width="stretch", key="model_vs_audit_table",
                     column_config={name: st.column_config.NumberColumn(format="percent")
                                    for name in ("Model's estimate", "Audited precision", "Audit interval low",
                                                 "Audit interval high")})

st.subheader("Hallucination rate (share of judged tags that were wrong)")
by = st.segmented_control("By", list(report.rates), default="domain", key="dashboard_by") or "domain"
rates = report.rates[by]
st.plotly_chart(px.bar(rates, x=by, y="hallucination_rate", error_y=rates["rate_high"] - rates["hallucination_rate"],
                       error_y_minus=rates["hallucination_rate"] - rates["rate_low"], hover_data=["judged", "clips"],
                       labels={"hallucination_rate": "hallucination rate (wrong / judged)",
                               by: by.replace("_", " ")}).update_yaxes(tickformat=".0%"),
                width="stretch")
heat = report.domain_by_tag[report.domain_by_tag["judged"] >= min_judged]
if not heat.empty:
    st.plotly_chart(px.density_heatmap(heat, x="domain", y="tag", z="hallucination_rate", histfunc="avg",
                                       title="Hallucination rate by domain x tag", height=max(300, 14 * heat["tag"].nunique())),
                    width="stretch")

st.subheader("Where the captioner says more than people did")
st.caption("Share of audited clips whose generated caption mentions the tag minus the share whose original "
           "human captions do (lexical, with the tag's merged variants).")
st.dataframe(readable_columns(report.over_assertion.head(200)), hide_index=True, width="stretch", key="over_assertion_table")

left, right = st.columns(2)
with left:
    st.subheader("Agreement")
    st.dataframe(readable_columns(report.pairwise_kappa), hide_index=True, width="stretch", key="kappa_table")
    st.dataframe(readable_columns(report.alpha_by_tag.sort_values("items", ascending=False)), hide_index=True, width="stretch",
                 key="alpha_table")
with right:
    st.subheader("Annotators")
    st.dataframe(readable_columns(report.quality), hide_index=True, width="stretch", key="quality_table")
    st.dataframe(readable_columns(report.progress), hide_index=True, width="stretch", key="progress_table")
st.subheader("Missed tags (added by annotators)")
st.dataframe(readable_columns(report.miss.sort_values("added", ascending=False)), hide_index=True, width="stretch", key="miss_table")
