"""The app's one DuckDB connection (the app is the writing process while it runs) and a cursor per rerun."""
from __future__ import annotations

import duckdb
import streamlit as st

from curation import store
from curation.errors import UtsError


@st.cache_resource(show_spinner=False)
def _shared_connection(db_path: str) -> duckdb.DuckDBPyConnection:
    return store.connect(db_path)


def db_path() -> str:
    return str(store.resolve_db_path())


def db_cursor() -> duckdb.DuckDBPyConnection:
    """A cursor of the shared connection: DuckDB 2 raises when threads share one connection object."""
    try:
        return _shared_connection(db_path()).cursor()
    except UtsError as exc:
        st.error(str(exc))
        st.stop()
        raise  # st.stop() raises; this line only tells type checkers so
