"""Tagging jobs: tag captions (offline extractors, one or several OpenAI-compatible servers, or a local model) or
caption audio, watch the job's progress (per server when there are several), and read what failed with the model's
raw answer.

A job that would change many clips is never started by one click: Start shows what it will change (clips it
takes, clips that already carry another extractor's tags, the tag rows it would add) and whether its tags may
feed the vocabulary (a use_extractors decision, undoable on the Vocabulary page); Confirm starts it."""
import streamlit as st

from curation.errors import UtsError
from curation.extraction.backends import DEFAULT_CONCURRENCY, TAG_BACKENDS, build_backend
from curation.store.extraction import failures_frame, work_summary
from ui.db import db_cursor
from ui.jobs import current_job, job_outcome_is_mine, jobs_table, render_job_review, server_table, start_reviewed_job
from ui.state import require_name, show_flash

st.title("Tagging jobs")
show_flash()
summary = work_summary(db_cursor())
c1, c2, c3 = st.columns(3)
c1.metric("Clips", f"{summary['clips']:,}")
c2.metric("Without any tag", f"{summary['untagged']:,}")
c3.metric("Without a generated caption", f"{summary['uncaptioned']:,}")

job = current_job()
running = job is not None and job.running

with st.form("job_form"):
    task_label = st.radio("Job", ["Tag captions", "Caption audio"], horizontal=True, key="job_task")
    task = "tags" if task_label == "Tag captions" else "captions"
    b1, b2, b3 = st.columns(3)
    backend = b1.selectbox("Backend", list(TAG_BACKENDS), key="job_backend",
                           help="offline: open-vocabulary tags from spaCy, no model server (tags only, the default); "
                                "lexicon: the closed audio lexicon (tags only); openai: an OpenAI-compatible server "
                                "(vLLM, Ollama, llama.cpp, TGI); transformers: a model folder on this machine")
    base_url = b2.text_input("Server URL(s)", placeholder="http://127.0.0.1:8000/v1", key="job_base_url",
                             help="Several servers (e.g. one vLLM per GPU node): separate them with commas. Requests "
                                  "go to whichever server is free; one that fails is taken out of rotation and its "
                                  "requests are sent to the others.")
    model = b3.text_input("Model (server name or local folder)", key="job_model")
    o1, o2, o3, o4 = st.columns(4)
    concurrency = o1.number_input("Requests in flight per server", 1, 512, DEFAULT_CONCURRENCY,
                                  key="job_concurrency")
    limit = o2.number_input("At most N clips (0: all)", 0, 10_000_000, 0, key="job_limit")
    captioner = o3.selectbox("Tag the captions of", ["(first of each clip)", *summary["captioners"]],
                             key="job_captioner")
    force = o4.checkbox("Redo clips already done", key="job_force",
                        help="Without it, clips this backend + prompt version already did are skipped.")
    submitted = st.form_submit_button("Start", type="primary", disabled=running)

if submitted:
    try:  # the backend is built now so that a missing setting is reported before anything is asked
        build_backend(backend, task, base_url=base_url.strip() or None, model=model.strip() or None,
                      concurrency=int(concurrency))
        st.session_state["job_review"] = {
            "backend": backend, "task": task, "base_url": base_url.strip() or None, "model": model.strip() or None,
            "concurrency": int(concurrency), "limit": int(limit) or None, "force": force,
            "captioner": None if captioner.startswith("(") else captioner}
    except UtsError as exc:
        st.error(str(exc))

if st.session_state.get("job_review") and not running:
    confirmed = render_job_review(st.session_state["job_review"])
    if confirmed:
        name = require_name()
        if name is not None:
            try:
                start_reviewed_job(st.session_state.pop("job_review"), confirmed, by=name)
                st.rerun()
            except UtsError as exc:
                st.error(str(exc))


@st.fragment(run_every="1s")
def job_progress() -> None:
    job = current_job()
    if job is None:
        st.caption("No job started in this app session yet.")
        return
    if job.running:
        st.session_state["job_seen_running"] = id(job)
    elif st.session_state.pop("job_seen_running", None) == id(job):
        st.rerun(scope="app")  # the job just ended: redraw the whole page (Start, counts, the jobs table)
    if not job.running and not job_outcome_is_mine(job):
        # Somebody else's (or an earlier session's) finished job: its row is in the Jobs table below; its
        # outcome box is for whoever started it, not for every later visitor.
        return
    progress = job.progress
    if progress is not None:
        share = progress.finished / progress.planned if progress.planned else 1.0
        eta = f", about {progress.eta_s:,.0f} s left" if job.running and progress.eta_s is not None else ""
        st.progress(min(share, 1.0), text=f"Job {progress.job_id}: {progress.finished:,} of {progress.planned:,} "
                                          f"clips ({progress.failed:,} failed), {progress.per_second:,.1f} clips/s{eta}")
    if progress is not None and progress.servers:
        st.dataframe(server_table(progress.servers), hide_index=True, width="content", key="job_servers")
    if job.running:
        if st.button("Stop the job", key="job_stop"):
            job.stop()
    elif job.error:
        st.error(f"The job stopped with an error: {job.error}")
    elif job.report is not None:
        r = job.report
        st.success(f"Job {r.job_id} {r.status}: done {r.done:,}, failed {r.failed:,}, skipped {r.skipped:,} "
                   f"(already done), not eligible {r.not_eligible:,}"
                   + (f"; {r.tags_per_clip:.1f} tags per clip" if r.task == "tags" else ""))


job_progress()

st.subheader("Jobs")
st.dataframe(jobs_table(db_cursor()), hide_index=True, width="stretch")
st.subheader("Failures (the model's raw answer kept)")
failures = failures_frame(db_cursor())
if failures.empty:
    st.caption("No failed clips.")
else:
    st.dataframe(failures, hide_index=True, width="stretch")
