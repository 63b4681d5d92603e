"""Overview: what is in the corpus (clips by domain and source, durations, captions, tags, ingest history)."""
import plotly.express as px
import streamlit as st

from curation.explore.overview import load_overview
from ui.db import db_cursor

st.title("Overview")
overview = load_overview(db_cursor())

if overview.is_empty:
    st.info("No clips yet. Build the demo corpus with `python -m curation demo`, or ingest a manifest with "
            "`python -m curation ingest PATH`.")
    st.stop()

cols = st.columns(6)
cols[0].metric("Clips", f"{overview.clips:,}")
cols[1].metric("Hours of audio", f"{overview.hours:,.2f}")
cols[2].metric("Captions", f"{overview.captions:,}")
cols[3].metric("Distinct raw tags", f"{overview.distinct_tags:,}")
cols[4].metric("Tag rows", f"{overview.tag_rows:,}")
cols[5].metric("Clips with playable audio", f"{overview.playable_clips:,}")

left, right = st.columns(2)
with left:
    st.plotly_chart(px.bar(overview.by_domain_source, x="domain", y="clips", color="source",
                           title="Clips by domain and source dataset"), width="stretch")
    st.plotly_chart(px.histogram(overview.caption_lengths, x="words", color="kind", barmode="overlay", nbins=60,
                                 title="Caption length (words)"), width="stretch")
with right:
    st.plotly_chart(px.histogram(overview.durations, x="duration_s", color="domain", nbins=40,
                                 title="Clip durations (s)"), width="stretch")
    st.plotly_chart(px.histogram(overview.tags_per_clip, x="tags", color="domain", barmode="stack",
                                 title="Raw tags per clip"), width="stretch")

st.plotly_chart(px.bar(overview.top_tags, x="tag", y="clips", title=f"The {len(overview.top_tags)} most frequent raw tags"),
                width="stretch")
st.subheader("Ingest history")
st.dataframe(overview.ingests, hide_index=True, width="stretch")
