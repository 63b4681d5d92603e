"""The app's background tagging/captioning job: one per database, kept across reruns and sessions."""
from __future__ import annotations

import streamlit as st

from curation.errors import UsageError
from curation.extraction.jobs import BackgroundJob
from ui.db import db_cursor, db_path


@st.cache_resource(show_spinner=False)
def _jobs() -> dict[str, BackgroundJob]:
    return {}


def current_job() -> BackgroundJob | None:
    return _jobs().get(db_path())


def start_job(backend, **job_kwargs) -> BackgroundJob:
    """Start a job in a thread with a cursor of its own; refuses while another runs on this database."""
    running = current_job()
    if running is not None and running.running:
        raise UsageError("a job is already running on this database: stop it or wait for it to finish")
    job = BackgroundJob(db_cursor(), backend, **job_kwargs)
    _jobs()[db_path()] = job
    return job
