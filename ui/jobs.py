"""The app's background tagging/captioning job: one per database, kept across reruns and sessions and shared with
the API of the same server (curation/extraction/jobs.py keeps it); the review
a job gets before it starts (what it will change, and whether its tags feed the vocabulary); and the per-server
table of a job spread over several model servers."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from curation.extraction import jobs as extraction_jobs
from curation.extraction.backends import build_backend
from curation.extraction.jobs import BackgroundJob, JobPreview, preview_job, producer_of
from curation.store.extraction import jobs_frame
from curation.vocabulary.decisions import Decision, record_decision
from curation.vocabulary.ranking import vocabulary_sources
from ui.db import db_cursor, db_path
from ui.state import curation_state, flash
from ui.text import inline_code

# What the vocabulary uses once a tagging job has written its rows.
FEED_CHOICES = {
    "keep": "only its current sources: the job's tags are stored, the ranking and the tag map do not change",
    "add": "its current sources and this job's tags",
    "only": "only this job's tags",
}


def current_job() -> BackgroundJob | None:
    """The job of this database in this process, whether started here, in another session or through the API."""
    return extraction_jobs.current_job(str(Path(db_path()).resolve()))


def start_job(backend, **job_kwargs) -> BackgroundJob:
    """Start a job in a thread with a cursor of its own; refuses while another runs on this database."""
    job = extraction_jobs.start_background_job(str(Path(db_path()).resolve()), db_cursor(), backend, **job_kwargs)
    st.session_state["job_started_here"] = id(job)
    return job


def job_outcome_is_mine(job: BackgroundJob) -> bool:
    """Whether this browser session started ``job`` (its outcome box is shown to that session only)."""
    return st.session_state.get("job_started_here") == id(job)


def _backend(args: dict):
    return build_backend(args["backend"], args["task"], base_url=args["base_url"], model=args["model"],
                         concurrency=args["concurrency"])


def _preview(args: dict) -> JobPreview:
    """Planned once per review (kept with it in session state): radio clicks do not plan again."""
    if args.get("_preview") is None:
        args["_preview"] = preview_job(db_cursor(), _backend(args), task=args["task"], limit=args["limit"],
                                       force=args["force"], captioner=args["captioner"])
    return args["_preview"]


def render_job_review(args: dict) -> str | None:
    """What the job will change, and the vocabulary choice; returns that choice once Confirm is clicked."""
    with st.container(border=True, key="job_review_box"):
        st.subheader("Review the job before it starts")
        with st.spinner("Planning the job (nothing is written)..."):
            preview = _preview(args)
        st.markdown(f"It would ask about **{preview.planned:,} clips** as {inline_code(preview.producer)} "
                    f"({preview.skipped:,} skipped: this extractor already did them; {preview.not_eligible:,} "
                    "not eligible).")
        if preview.task != "tags":
            st.caption("Captioning adds captions beside the existing ones; no tag changes.")
            feed = None
        else:
            _render_tag_changes(preview)
            feed = _feed_choice(preview)
        go, cancel = st.columns([1, 4])
        if cancel.button("Cancel", key="job_cancel"):
            st.session_state.pop("job_review", None)
            st.rerun()
        if go.button("Confirm and start", type="primary", key="job_confirm", disabled=preview.planned == 0):
            return feed or "none"
    return None


def _render_tag_changes(preview: JobPreview) -> None:
    if preview.clips_tagged_by_others:
        st.warning(f"**{preview.clips_tagged_by_others:,} of these clips already have tags** from another "
                   "extractor; this job adds its own tag rows beside them (nothing is deleted).")
        table = pd.DataFrame(preview.tags_by_extractor).rename(columns={
            "extractor": "extractor", "tag_rows": "tag rows on these clips", "clips": "clips",
            "distinct_tags": "distinct tags"})
        st.dataframe(table, hide_index=True, width="content", key="job_review_extractors")
    if preview.estimated_tag_rows is not None:
        st.markdown(f"Estimated from {preview.sampled:,} clips: about **{preview.estimated_tag_rows:,} tag rows "
                    f"added**, **{preview.estimated_new_tags:,} tag texts** the corpus does not have yet (in that "
                    "sample).")
    else:
        st.caption("How many tags it adds is known only as it runs (a model decides); the job page shows it live.")


def _feed_choice(preview: JobPreview) -> str:
    sources = vocabulary_sources(db_cursor(), curation_state())
    if preview.producer in sources:
        st.info(f"{inline_code(preview.producer)} already feeds the vocabulary: its new tags change the ranking "
                "as they are written (choose its sources on the Vocabulary page).")
        return "none"
    current = ", ".join(inline_code(s) for s in sources) or "(no tags yet)"
    st.markdown(f"The vocabulary uses the tags of {current}. After the job, use:")
    options = list(FEED_CHOICES) if sources else ["only"]
    choice = st.radio("Tags that feed the vocabulary", options, key="job_feed", label_visibility="collapsed",
                      format_func=FEED_CHOICES.get)
    st.caption("Recorded in the decision log; undo it on the Vocabulary page (Decisions tab).")
    return choice


def start_reviewed_job(args: dict, feed: str, *, by: str) -> None:
    """Record the vocabulary choice (one decision) and start the job; flash what was done."""
    backend = _backend(args)
    producer = producer_of(backend)
    con = db_cursor()
    state = curation_state()
    sources = vocabulary_sources(con, state)
    wanted = {"keep": sources, "add": sorted({*sources, producer}), "only": [producer]}.get(feed)
    needs_decision = wanted is not None and (state.extractors is None or set(wanted) != set(state.extractors))
    # A name the log does not know yet (a first job of this extractor) is recorded once the job row exists.
    record_now = needs_decision and producer not in wanted
    if record_now:
        record_decision(con, Decision.use_extractors(wanted), by=by,
                        reason=f"before tagging job {producer}: keep the vocabulary on its sources")
    job = start_job(backend, task=args["task"], limit=args["limit"], force=args["force"], by=by,
                    captioner=args["captioner"])
    message = f"Started the job ({producer})."
    if needs_decision and not record_now:
        deadline = time.monotonic() + 30
        while job.progress is None and job.running and time.monotonic() < deadline:
            time.sleep(0.05)  # the job's row is written first thing in its thread
        record_decision(con, Decision.use_extractors(wanted), by=by, reason=f"tagging job {producer}")
    if needs_decision:
        message += f" The vocabulary uses the tags of {', '.join(wanted)} (undo on the Vocabulary page)."
    flash(message)


def server_table(servers) -> pd.DataFrame:
    """One row per model server of a job: who answered how many requests, who was taken out of rotation and why."""
    return pd.DataFrame([{"server": s["url"], "state": s["state"], "answered": s["answered"],
                          "failed requests": s["errors"], "mean ms": s["mean_ms"],
                          "taken out": s["drops"], "rejoined": s["rejoins"], "why taken out": s["reason"] or ""}
                         for s in servers],
                        columns=["server", "state", "answered", "failed requests", "mean ms", "taken out", "rejoined",
                                 "why taken out"])


def _servers_in_one_line(stored: str | None) -> str:
    if not stored:
        return ""
    servers = json.loads(stored)
    return "; ".join(f"{s['url']} {s['answered']:,}" + (" (dropped)" if s["state"] == "dropped" else "")
                     for s in servers)


def jobs_table(con) -> pd.DataFrame:
    """The jobs log for the page: the per-server report as one readable line (url answered, dropped ones marked)."""
    frame = jobs_frame(con)
    frame["servers"] = [_servers_in_one_line(v) for v in frame["servers"]]
    return frame
