"""Runs: launch pre-training (one export or a sweep over K), follow a run live, cancel it, read its probe results,
audit the captioner with a finished run's model, per-tag AP against tag frequency and audit precision, and its
lineage back to the curation decisions."""
import plotly.express as px
import streamlit as st

from curation.audit.model_audit import run_model_audit, scores_written
from curation.errors import UtsError
from curation.runs.backends import BACKENDS, DEVICES, OBJECTIVES, SIZES
from curation.runs.compare import audit_campaign_names, exports_table, lineage, run_detail, runs_table, tag_ap_frame
from curation.runs.follow import cancel_run, refresh_runs
from curation.runs.launch import LaunchRequest, default_sweep_ks, launch_runs, parse_key_values, total_steps
from curation.runs.manage import archive_runs
from curation.store import model_audit as store_model_audit
from ui.db import db_cursor
from ui.runs import curve_figures, reattach_runs, run_label
from ui.state import flash, require_name, show_flash, tag_matrix, vocabulary_view

REFRESH_EVERY = "2s"

st.title("Runs")
show_flash()
reattach_runs()
refresh_runs(db_cursor())

with st.expander("Launch a run", expanded=st.session_state.get("launch_open", False)):
    exports = exports_table(db_cursor())
    source = st.radio("Export", ["export now at K", "sweep K", "existing export"], horizontal=True, key="launch_source",
                      help="Export now / sweep: the current vocabulary (all decisions so far) at each K.")
    export_id, ks = None, ()
    if source == "existing export":
        if exports.empty:
            st.warning("No exports yet: choose *export now at K*.")
        else:
            labels = {int(r.export_id): f"#{r.export_id}: K={r.k:,} ({r.ranking}, decision #{r.last_decision_id}, "
                                        f"{r.clips_kept:,} clips)" for r in exports.itertuples()}
            export_id = st.selectbox("Export", list(labels), format_func=labels.get, key="launch_export")
    else:
        _, _, view = vocabulary_view()
        n_tags = len(view.ranking)
        if source == "export now at K":
            ks = (int(st.number_input("K", 1, max(n_tags, 1), min(1000, max(n_tags, 1)), key="launch_k")),)
        else:
            # Defaults fitted to this vocabulary: 800..3,000 on a 99-tag vocabulary would all clip to one run.
            chosen = st.text_input("K values (comma-separated; clipped to the vocabulary size)",
                                   ", ".join(str(k) for k in default_sweep_ks(n_tags)), key="launch_ks")
            try:
                ks = tuple(int(part) for part in chosen.replace(" ", "").split(",") if part)
            except ValueError:
                st.error(f"K values {chosen!r}: expected whole numbers separated by commas")
        st.caption(f"The current vocabulary has {n_tags:,} canonical tags.")
    c1, c2, c3, c4 = st.columns(4)
    objective = c1.selectbox("Objective", OBJECTIVES, key="launch_objective")
    size = c2.selectbox("Model size", SIZES, key="launch_size")
    steps = c3.number_input("Steps", 1, 10_000_000, 1000, key="launch_steps")
    device = c4.selectbox("Device", DEVICES, key="launch_device")
    c1, c2, c3, c4 = st.columns(4)
    batch_seconds = c1.number_input("Batch seconds (per process)", 10.0, 100_000.0, 160.0, key="launch_batch_s")
    lr = c2.number_input("Learning rate", 1e-6, 1.0, 1e-3, format="%.1e", key="launch_lr")
    backend = c3.selectbox("Backend", BACKENDS, key="launch_backend")
    gpus = c4.number_input("GPUs (processes) per node", 1, 64, 1, key="launch_gpus")
    nodes, partition, time_limit, workdir, python = 1, None, None, None, None
    if backend == "slurm":
        s1, s2, s3 = st.columns(3)
        nodes = s1.number_input("Nodes", 1, 512, 1, key="launch_nodes")
        partition = s2.text_input("Partition", key="launch_partition") or None
        time_limit = s3.text_input("Time limit", placeholder="24:00:00", key="launch_time") or None
        s1, s2 = st.columns(2)
        workdir = s1.text_input("Project folder on the cluster", placeholder="this checkout",
                                key="launch_workdir") or None
        python = s2.text_input("Python on the cluster", placeholder="this app's python", key="launch_python") or None
    probes = st.text_area("Probe tasks to run afterwards (one task CSV path per line)", key="launch_probes")
    audit_folds = st.number_input(
        "Model-audit folds after training (0 = off)", 0, 100, 0, key="launch_audit_folds",
        help="k >= 2: the job also scores every clip of the export out of sample (k folds, on the job's device), "
             "so that auditing the captioner with this run afterwards reuses the scores instead of encoding the "
             "corpus on this machine.")
    a1, a2 = st.columns(2)
    env_text = a1.text_area("Environment overrides (KEY=VALUE per line)", key="launch_env")
    set_text = a2.text_area("More training settings (key=value per line, e.g. val_every=100)", key="launch_set")
    if st.button("Launch", type="primary", key="launch_button"):
        st.session_state["launch_open"] = True
        name = require_name()
        if name is not None:
            try:
                request = LaunchRequest(
                    objective=objective, size=size, steps=int(steps), device=device, gpus=int(gpus),
                    nodes=int(nodes), batch_seconds=float(batch_seconds), lr=float(lr), export_id=export_id,
                    ks=ks, probe_tasks=tuple(p.strip() for p in probes.splitlines() if p.strip()),
                    audit_folds=int(audit_folds), backend=backend,
                    env=parse_key_values(env_text, "environment overrides"),
                    extra_set=tuple(f"{k}={v}" for k, v in parse_key_values(set_text, "training settings").items()),
                    partition=partition, time_limit=time_limit, workdir=workdir, python=python, by=name)
                new_ids = launch_runs(db_cursor(), request)
            except UtsError as exc:
                st.error(str(exc))
            else:
                st.session_state["run_pick"] = new_ids[0]
                st.session_state["launch_open"] = False  # make room for the new run's live view
                flash(f"Launched {len(new_ids)} run(s): {', '.join(new_ids)}")
                st.rerun()

table = runs_table(db_cursor())
if table.empty:
    st.info("No runs yet. Launch one above, or import a run directory with `python -m curation runs import DIR`.")
    st.stop()
n_archived = int(table["archived_at"].notna().sum())
show_archived = st.toggle(f"Show archived runs ({n_archived:,})", key="runs_show_archived", disabled=not n_archived)
if not show_archived:
    table = table[table["archived_at"].isna()]
if table.empty:
    st.info("Every run is archived: turn on *Show archived runs*.")
    st.stop()
st.dataframe(table.drop(columns=["run_dir"]), hide_index=True, width="stretch", key="runs_table",
             column_config={"final_val_map": st.column_config.NumberColumn("val mAP", format="%.4f"),
                            "archived_at": st.column_config.DatetimeColumn("Archived", format="YYYY-MM-DD HH:mm")})

rows = {r["run_id"]: r for r in table.to_dict("records")}
if st.session_state.get("run_pick") not in rows:
    st.session_state["run_pick"] = table["run_id"].iloc[0]
run_id = st.selectbox("Run", list(rows), format_func=lambda r: run_label(rows[r]), key="run_pick")
started_active = rows[run_id]["state"] in ("queued", "running")


@st.fragment(run_every=REFRESH_EVERY if started_active else None)
def live_run() -> None:
    """Polls the job and imports its files on every tick while the run is active (only this part reruns)."""
    con = db_cursor()
    refresh_runs(con, [run_id])
    detail = run_detail(con, run_id)
    run = detail.run
    cols = st.columns(5)
    cols[0].metric("State", run["state"])
    cols[1].metric("Step", f"{run['last_step']:,}" if run["last_step"] is not None else "—")
    cols[2].metric("Val mAP", f"{run['final_val_map']:.4f}" if run["final_val_map"] is not None else "—")
    cols[3].metric("K", f"{run['k']:,}" if run["k"] is not None else "—")
    cols[4].metric("Backend", f"{run['backend']} {run['backend_id'] or ''}".strip())
    planned = total_steps(run)
    if planned:
        done = int(run["last_step"] or 0)
        st.progress(min(done / planned, 1.0), text=f"Step {done:,} of {planned:,} ({done / planned:.0%})")
    if run["message"] and run["state"] in ("failed", "queued", "cancelled"):
        (st.error if run["state"] == "failed" else st.info)(run["message"])
    if detail.active and st.button("Cancel run", key="cancel_button"):
        try:
            cancel_run(con, run_id, by=st.session_state.get("display_name") or None)
        except UtsError as exc:
            st.error(str(exc))
        st.rerun()
    curve_figures(detail.metrics)
    with st.expander("Log (last lines of train.log)", expanded=detail.active):
        st.code(detail.log or "(empty)", language=None)
    if started_active and not detail.active:
        st.rerun()  # the run ended: redraw the whole page once, without the timer


live_run()
detail = run_detail(db_cursor(), run_id)
run = detail.run
archived = rows[run_id].get("archived_at") is not None and rows[run_id]["archived_at"] == rows[run_id]["archived_at"]
if not detail.active and st.button("Restore this run to the lists" if archived else "Archive this run",
                                   key="archive_button",
                                   help="Archived runs are hidden from the run lists and pickers; nothing is deleted."):
    name = require_name()
    if name is not None:
        try:
            archive_runs(db_cursor(), [run_id], by=name, archived=not archived)
            flash(f"{'Restored' if archived else 'Archived'} {run_id}.")
            st.session_state.pop("run_pick", None)
            st.rerun()
        except UtsError as exc:
            st.error(str(exc))

st.subheader("Probe results")
if detail.probes.empty:
    st.caption("No probe results yet (probes run after training, when tasks were given).")
else:
    st.dataframe(detail.probes.drop(columns=["run_id"]), hide_index=True, width="stretch", key="probe_table",
                 column_config={"mean": st.column_config.NumberColumn(format="%.4f"),
                                "std": st.column_config.NumberColumn(format="%.4f")})

st.subheader("Model audit")
model_audit = store_model_audit.audit_row(db_cursor(), run_id)
if model_audit is not None:
    disputed = store_model_audit.suspect_tags(db_cursor(), run_id)
    st.write(f"Audited {model_audit['created_at']:%Y-%m-%d %H:%M} ({model_audit['folds']} folds, "
             f"{model_audit['features']} features): the model disputes {int(disputed['suspects'].sum()):,} "
             f"tag assertions or omissions on {model_audit['n_clips']:,} clips.")
    st.page_link("views/browse.py", label="Browse the clips it disputes (filter: the model disputes a tag)",
                 icon=":material/search:")
    st.page_link("views/audit_dashboard.py", label="The model's view beside an audit (Captioner bias page)",
                 icon=":material/fact_check:")
elif run["state"] != "finished":
    st.caption("Once the run has finished, its model can audit the captioner: every clip of its export scored "
               "by a head that never saw the clip's labels, the tags it disputes ranked as suspects.")
else:
    folds = int((run["config"] or {}).get("audit_folds") or 5)
    ready = scores_written(run["run_dir"], folds)
    st.caption(f"The job wrote its out-of-sample scores ({folds} folds): auditing stores them in seconds." if ready
               else f"Auditing scores every clip of the export on this machine first ({folds} folds, CPU; about "
                    "30 s for the 600-clip demo). Launch runs with model-audit folds to have the job do it.")
    if st.button("Audit the captioner with this run", key="model_audit_button"):
        try:
            with st.spinner("Scoring and storing the model audit..."):
                result = run_model_audit(db_cursor(), run_id, folds=folds)
        except UtsError as exc:
            st.error(str(exc))
        else:
            flash(f"Model audit of {run_id}: {len(result.suspects):,} suspects"
                  + (" (the job's scores reused)." if result.reused_scores else "."))
            st.rerun()

st.subheader("Per-tag AP")
campaigns = audit_campaign_names(db_cursor())
campaign = st.selectbox("Audit campaign (per-tag precision)", ["none"] + campaigns, key="ap_campaign") \
    if campaigns else "none"
tag_ap = tag_ap_frame(db_cursor(), run_id, matrix=tag_matrix(), campaign=None if campaign == "none" else campaign)
if tag_ap.empty:
    st.caption("No per-tag AP yet (written at each validation).")
else:
    left, right = st.columns(2)
    left.plotly_chart(px.scatter(tag_ap, x="df", y="ap", hover_name="tag", log_x=True,
                                 title=f"AP vs tag frequency (clips in the corpus), step {int(tag_ap['step'].iloc[0])}"),
                      width="stretch", key="ap_vs_df")
    if "audit_precision" in tag_ap and tag_ap["audit_precision"].notna().any():
        audited = tag_ap[tag_ap["audit_precision"].notna()]
        right.plotly_chart(px.scatter(audited, x="audit_precision", y="ap", hover_name="tag", size="judged",
                                      title=f"AP vs audited precision ({campaign})"), width="stretch", key="ap_vs_prec")
    else:
        right.caption("Pick an audit campaign to set AP against each tag's audited precision.")
    with st.expander("Per-tag table"):
        st.dataframe(tag_ap, hide_index=True, width="stretch", key="tag_ap_table")

st.subheader("Lineage")
trace = lineage(db_cursor(), run_id)
st.write(trace.describe())
st.page_link("views/vocabulary.py", label="Open the decision log (Vocabulary page, Decisions tab)",
             icon=":material/history:")
with st.expander(f"Decisions included ({len(trace.decisions):,})"):
    st.dataframe(trace.decisions, hide_index=True, width="stretch", key="lineage_decisions")
with st.expander("Command, environment, run directory"):
    st.code(run["command"] or "(not started)", language="bash")
    if detail.script:
        st.code(detail.script, language="bash")
    st.json({"run_dir": run["run_dir"], "backend": run["backend"], "backend_id": run["backend_id"],
             "env": run["env"], "config": run["config"], "created_by": run["created_by"]})
