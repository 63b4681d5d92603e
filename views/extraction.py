"""Tagging jobs: tag captions (offline lexicon, an OpenAI-compatible server or a local model) or caption audio,
watch the job's progress, and read what failed with the model's raw answer."""
import streamlit as st

from curation.errors import UtsError
from curation.extraction.backends import DEFAULT_CONCURRENCY, build_backend
from curation.store.extraction import failures_frame, jobs_frame, work_summary
from ui.db import db_cursor
from ui.jobs import current_job, start_job
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
    backend = b1.selectbox("Backend", ["offline", "openai", "transformers"], key="job_backend",
                           help="offline: lexicon rules, no model (tags only); openai: an OpenAI-compatible server "
                                "(vLLM, Ollama, llama.cpp, TGI); transformers: a model folder on this machine")
    base_url = b2.text_input("Server URL", placeholder="http://127.0.0.1:8000/v1", key="job_base_url")
    model = b3.text_input("Model (server name or local folder)", key="job_model")
    o1, o2, o3, o4 = st.columns(4)
    concurrency = o1.number_input("Requests in flight", 1, 512, DEFAULT_CONCURRENCY, key="job_concurrency")
    limit = o2.number_input("At most N clips (0: all)", 0, 10_000_000, 0, key="job_limit")
    captioner = o3.selectbox("Tag the captions of", ["(first of each clip)", *summary["captioners"]],
                             key="job_captioner")
    force = o4.checkbox("Redo clips already done", key="job_force",
                        help="Without it, clips this backend + prompt version already did are skipped.")
    submitted = st.form_submit_button("Start", type="primary", disabled=running)

if submitted:
    name = require_name()
    if name is not None:
        try:
            new_backend = build_backend(backend, task, base_url=base_url.strip() or None,
                                        model=model.strip() or None, concurrency=int(concurrency))
            start_job(new_backend, task=task, limit=int(limit) or None, force=force, by=name,
                      captioner=None if captioner.startswith("(") else captioner)
            st.rerun()
        except UtsError as exc:
            st.error(str(exc))


@st.fragment(run_every="1s")
def job_progress() -> None:
    job = current_job()
    if job is None:
        st.caption("No job started in this app session yet.")
        return
    progress = job.progress
    if progress is not None:
        share = progress.finished / progress.planned if progress.planned else 1.0
        eta = f", about {progress.eta_s:,.0f} s left" if job.running and progress.eta_s is not None else ""
        st.progress(min(share, 1.0), text=f"Job {progress.job_id}: {progress.finished:,} of {progress.planned:,} "
                                          f"clips ({progress.failed:,} failed), {progress.per_second:,.1f} clips/s{eta}")
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
st.dataframe(jobs_frame(db_cursor()), hide_index=True, width="stretch")
st.subheader("Failures (the model's raw answer kept)")
failures = failures_frame(db_cursor())
if failures.empty:
    st.caption("No failed clips.")
else:
    st.dataframe(failures, hide_index=True, width="stretch")
