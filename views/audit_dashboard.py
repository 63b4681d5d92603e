"""Bias dashboards: per-tag precision with 95% intervals, hallucination rates by domain / source / tag
frequency / caption length, where the captioner over-asserts compared with human captions, annotator
agreement and campaign progress. From a tag: prune it, or list its audited clips."""
import plotly.express as px
import streamlit as st

from curation.audit.campaigns import AuditError, campaign_table
from curation.audit.report import campaign_report, tag_clip_ids
from curation.vocabulary.decisions import Decision
from ui.auth import can
from ui.db import db_cursor
from ui.decide import decide
from ui.state import show_flash, tag_matrix
from ui.text import escape_markdown

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
flags = report.flags[report.flags["judged"] >= min_judged].sort_values("precision")
st.subheader("Tags ranked by precision (95% Wilson intervals)")
st.caption(f"Flagged: the whole interval lies below the reference level ({report.clean_reference}, "
           f"{flags['clean_low'].iloc[0]:.2f}-{flags['clean_high'].iloc[0]:.2f})." if not flags.empty else "")
figure = px.scatter(flags, x="precision", y="tag", color="biased", error_x=flags["precision_high"] - flags["precision"],
                    error_x_minus=flags["precision"] - flags["precision_low"], hover_data=["judged", "correct"],
                    height=max(300, 18 * len(flags)))
if not flags.empty:
    figure.add_vrect(x0=flags["clean_low"].iloc[0], x1=flags["clean_high"].iloc[0], opacity=0.15, line_width=0)
st.plotly_chart(figure, width="stretch")

tag = st.selectbox("A tag", flags["tag"].tolist(), index=None, key="dashboard_tag", placeholder="pick a tag")
if tag:
    prune_col, clips_col = st.columns(2)
    if can("decide") and prune_col.button(f"Prune {escape_markdown(repr(tag))} from every vocabulary",
                                          key="dashboard_prune"):
        decide(Decision.prune([tag]), f"audit {labels[campaign_id]}: precision interval below the reference",
               message=lambda _record: f"Pruned {tag!r}.")
    if clips_col.button(f"Open the clips tagged {escape_markdown(repr(tag))} in Browse", key="dashboard_open_clips"):
        st.session_state["browse_tags"] = [tag]
        st.session_state["browse_audited"] = "yes"
        st.switch_page("views/browse.py")
    wrong = tag_clip_ids(report, tag, "wrong")
    clips_col.write(f"{len(wrong)} audited clips judged **wrong** for {escape_markdown(tag)}")
    clips_col.dataframe({"clip_id": wrong}, hide_index=True, height=200, key="dashboard_tag_clips")

st.subheader("Hallucination rate (share of judged tags that were wrong)")
by = st.segmented_control("By", list(report.rates), default="domain", key="dashboard_by") or "domain"
rates = report.rates[by]
st.plotly_chart(px.bar(rates, x=by, y="hallucination_rate", error_y=rates["rate_high"] - rates["hallucination_rate"],
                       error_y_minus=rates["hallucination_rate"] - rates["rate_low"], hover_data=["judged", "clips"]),
                width="stretch")
heat = report.domain_by_tag[report.domain_by_tag["judged"] >= min_judged]
if not heat.empty:
    st.plotly_chart(px.density_heatmap(heat, x="domain", y="tag", z="hallucination_rate", histfunc="avg",
                                       title="Hallucination rate by domain x tag", height=max(300, 14 * heat["tag"].nunique())),
                    width="stretch")

st.subheader("Where the captioner says more than people did")
st.caption("Share of audited clips whose generated caption mentions the tag minus the share whose original "
           "human captions do (lexical, with the tag's merged variants).")
st.dataframe(report.over_assertion.head(200), hide_index=True, width="stretch", key="over_assertion_table")

left, right = st.columns(2)
with left:
    st.subheader("Agreement")
    st.dataframe(report.pairwise_kappa, hide_index=True, width="stretch", key="kappa_table")
    st.dataframe(report.alpha_by_tag.sort_values("items", ascending=False), hide_index=True, width="stretch",
                 key="alpha_table")
with right:
    st.subheader("Annotators")
    st.dataframe(report.quality, hide_index=True, width="stretch", key="quality_table")
    st.dataframe(report.progress, hide_index=True, width="stretch", key="progress_table")
st.subheader("Missed tags (added by annotators)")
st.dataframe(report.miss.sort_values("added", ascending=False), hide_index=True, width="stretch", key="miss_table")
