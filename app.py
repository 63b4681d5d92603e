"""UTS Studio: the router. Pages live in views/; this file declares them and draws the shared sidebar.

The folder is not called pages/ on purpose: Streamlit auto-discovers a pages/ folder, and a first visit to a
deep link (e.g. /vocabulary) then runs that file directly, without this router, its sidebar or (later) its
sign-in checks. Streamlit's own advice for st.navigation apps is to keep page files elsewhere.
"""
# pandas and plotly are imported up front: a click during the first run's lazy import can break a page.
import pandas  # noqa: F401
import plotly.express  # noqa: F401
import streamlit as st

from curation.admin.permissions import PermissionDeniedError
from ui.auth import render_account, sign_in, visible_pages
from ui.db import db_path

st.set_page_config(page_title="UTS Studio", layout="wide")

pages = [
    st.Page("views/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("views/browse.py", title="Browse", icon=":material/library_music:"),
    st.Page("views/vocabulary.py", title="Vocabulary", icon=":material/label:"),
    st.Page("views/tag_map.py", title="Tag map", icon=":material/scatter_plot:"),
    st.Page("views/export.py", title="Export", icon=":material/download:"),
    st.Page("views/audit.py", title="Audit", icon=":material/hearing:"),
    st.Page("views/audit_dashboard.py", title="Captioner bias", icon=":material/insights:"),
    st.Page("views/extraction.py", title="Tagging jobs", icon=":material/auto_awesome:"),
    st.Page("views/runs.py", title="Runs", icon=":material/model_training:"),
    st.Page("views/compare.py", title="Compare runs", icon=":material/compare_arrows:"),
    st.Page("views/users.py", title="Users", icon=":material/group:"),
]
# Sign-in (when configured) before any page runs; a role sees only its pages (ui/auth.PAGE_ABILITIES).
actor = sign_in()
navigation = st.navigation(visible_pages(pages, actor))

with st.sidebar:
    st.caption(f"Database: `{db_path()}`")
    render_account(actor)

try:
    navigation.run()
except PermissionDeniedError as exc:  # the library refused a write this role may not make: nothing was written
    st.error(str(exc))
