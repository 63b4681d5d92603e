"""UTS Studio: the router. Pages live in pages/; this file declares them and draws the shared sidebar."""
# pandas and plotly are imported up front: a click during the first run's lazy import can break a page.
import pandas  # noqa: F401
import plotly.express  # noqa: F401
import streamlit as st

from ui.db import db_path

st.set_page_config(page_title="UTS Studio", layout="wide")

pages = [
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
]
navigation = st.navigation(pages)

with st.sidebar:
    st.caption(f"Database: `{db_path()}`")
    st.text_input("Working as", key="display_name", placeholder="your name",
                  help="Recorded with every decision and verdict you make.")

navigation.run()
