"""Compare runs: overlaid curves, the settings that differ, the probe table with the best run per column; and the
Vocabulary size view (downstream metric against K for runs that differ only in K, beside the coverage curve)."""
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from curation.runs.compare import (
    COMMON_TAGS_MAP,
    compare_runs,
    coverage_at,
    k_groups,
    k_metric_frame,
    k_metric_options,
    runs_table,
)
from curation.runs.follow import refresh_runs
from ui.db import db_cursor
from ui.runs import curve_figures, reattach_runs
from ui.state import tag_matrix

st.title("Compare runs")
reattach_runs()
refresh_runs(db_cursor())
table = runs_table(db_cursor())
table = table[table["archived_at"].isna()]  # archived runs stay out of the pickers (Runs page: show archived)
if table.empty:
    st.info("No runs yet: launch some on the Runs page.")
    st.stop()

compare_tab, k_tab = st.tabs(["Side by side", "Vocabulary size"])

with compare_tab:
    default = table["run_id"].head(2).tolist()
    picked = st.multiselect("Runs", table["run_id"].tolist(), default=default, key="compare_runs")
    if not picked:
        st.caption("Pick two or more runs.")
    else:
        comparison = compare_runs(db_cursor(), picked)
        curve_figures(comparison.metrics, color="run_id")
        st.subheader("Settings that differ")
        if comparison.config_diff.empty:
            st.caption("These runs have the same settings.")
        else:
            st.dataframe(comparison.config_diff, width="stretch", key="config_diff")
        st.subheader("Probe results (mean over folds; best per column in bold)")
        if comparison.probe_table.empty:
            st.caption("No probe results for these runs yet.")
        else:
            best = comparison.best
            styled = comparison.probe_table.style.format("{:.4f}", na_rep="—").apply(
                lambda column: ["font-weight: bold; background-color: #d6f5d6" if best.get(column.name) == run_id
                                else "" for run_id in column.index], axis=0)
            st.dataframe(styled, width="stretch", key="probe_compare")
            st.caption("Best per column: " + "; ".join(f"{column}: **{run_id}**" for column, run_id in best.items()))
        if not comparison.baselines.empty:
            with st.expander("Baselines (random init, fbank) probed with the same tasks"):
                st.dataframe(comparison.baselines, hide_index=True, width="stretch", key="baselines")

with k_tab:
    groups = k_groups(db_cursor())
    if not groups:
        st.info("No finished runs that differ only in K yet. On the Runs page, choose *sweep K*: it exports the "
                "current vocabulary at each K and launches one run per K with everything else equal.")
    else:
        labels = {index: group.label for index, group in enumerate(groups)}
        index = st.selectbox("Runs that differ only in K", list(labels), format_func=labels.get, key="k_group")
        group = groups[index]
        metric = st.selectbox("Downstream metric", k_metric_options(db_cursor(), group), key="k_metric")
        values = k_metric_frame(db_cursor(), group, metric)
        decision_ids = set(group.last_decision_ids)
        as_of = next(iter(decision_ids)) if len(decision_ids) == 1 else None
        coverage = coverage_at(db_cursor(), group.ks, as_of, matrix=tag_matrix())
        figure = make_subplots(rows=1, cols=2, subplot_titles=(f"{metric} against K",
                                                               "Share of clips that keep a tag"))
        means = values.drop_duplicates("k")
        figure.add_trace(go.Scatter(x=values["k"], y=values["value"], mode="markers", name="runs",
                                    text=values["run_id"]), row=1, col=1)
        figure.add_trace(go.Scatter(x=means["k"], y=means["value_mean"], mode="lines+markers", name=metric),
                         row=1, col=1)
        figure.add_trace(go.Scatter(x=coverage["k"], y=coverage["share_kept"], mode="lines", name="coverage"),
                         row=1, col=2)
        marks = coverage[coverage["at_run_k"]]
        figure.add_trace(go.Scatter(x=marks["k"], y=marks["share_kept"], mode="markers", name="runs' K",
                                    marker={"size": 10}), row=1, col=2)
        figure.update_xaxes(title_text="K")
        figure.update_yaxes(tickformat=".0%", row=1, col=2)
        # The legend sits under the charts: above them it covered the first chart's axis.
        figure.update_layout(height=420, margin={"b": 110},
                             legend={"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0})
        st.plotly_chart(figure, width="stretch", key="k_chart")
        if metric == "val mAP":
            st.warning("Validation mAP is averaged over each run's own label set: a smaller K has fewer, more "
                       "frequent tags and scores higher for that reason alone, so this is not comparable across K. "
                       + (f"Choose *{COMMON_TAGS_MAP}* or a probe score to compare." if COMMON_TAGS_MAP in
                          k_metric_options(db_cursor(), group) else "A probe score is comparable across K."),
                       icon=":material/warning:")
        elif metric == COMMON_TAGS_MAP:
            st.caption(f"Average precision over the {values.attrs.get('common_tags') or 0:,} tags every compared "
                       "vocabulary has (each run's last validation): the same label set for every K.")
        st.caption("Coverage of the vocabulary as of " + (f"decision #{as_of} (the version these exports were made "
                                                          "from)" if as_of is not None else
                                                          "now (the runs' exports come from several versions)"))
        merged = values.merge(coverage[["k", "share_kept", "mean_tags"]], on="k", how="left")
        st.dataframe(merged, hide_index=True, width="stretch", key="k_table",
                     column_config={"share_kept": st.column_config.NumberColumn(format="%.3f"),
                                    "value": st.column_config.NumberColumn(metric, format="%.4f")})
        st.plotly_chart(px.bar(merged.drop_duplicates("k"), x="k", y="value_mean", text_auto=".3f",
                               title=f"{metric} per K (mean over runs)").update_xaxes(type="category"),
                        width="stretch", key="k_bars")
