"""Audit: annotators listen to one clip at a time from their own queue and judge every tag the captioner's
caption produced (correct / wrong / can't tell), add what is missing, and rate the caption."""
import streamlit as st

from curation.audit.campaigns import AuditError, campaign_table, create_campaign, next_item, submit
from ui.audio import play_clip
from ui.auth import can
from ui.db import db_cursor
from ui.state import flash, require_name, show_flash
from ui.text import escape_markdown

VERDICT_LABELS = {"correct": "correct", "wrong": "wrong (not in the audio)", "unsure": "can't tell"}

st.title("Audit the captioner")
show_flash()
campaigns = campaign_table(db_cursor())

# Creating a campaign needs the "campaign" ability (curators, admins); annotators only judge.
if can("campaign"):
    with st.expander("New campaign", expanded=campaigns.empty):
        with st.form("new_campaign"):
            name = st.text_input("Name", key="campaign_name")
            size = st.number_input("Clips to sample", 1, 100_000, 200, key="campaign_size")
            per_clip = st.number_input("Annotators per clip", 1, 10, 2, key="campaign_annotators")
            seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="campaign_seed")
            st.caption("Stratified by domain x source dataset x frequency band of each clip's rarest tag, equal "
                       "allocation: rare tags get audited too. The same seed draws the same sample.")
            if st.form_submit_button("Create campaign"):
                creator = require_name()
                if creator:
                    try:
                        campaign_id = create_campaign(db_cursor(), name, sample_size=int(size), by=creator,
                                                      annotators_per_clip=int(per_clip), seed=int(seed))
                        flash(f"Campaign {name!r} created (#{campaign_id}).")
                        st.rerun()
                    except AuditError as exc:
                        st.error(str(exc))

if campaigns.empty:
    st.info("No audit campaign yet: " + ("create one above." if can("campaign") else "a curator creates one."))
    st.stop()

st.dataframe(campaigns[["campaign_id", "name", "created_by", "sample_size", "annotators_per_clip", "slots",
                        "submitted", "in_progress"]], hide_index=True, width="stretch")
labels = dict(zip(campaigns["campaign_id"], campaigns["name"]))
campaign_id = st.selectbox("Campaign", list(labels), format_func=labels.get, key="audit_campaign")
annotator = require_name()
if annotator is None:
    st.stop()

queue_key = f"audit_item_{campaign_id}_{annotator}"
if st.session_state.get(queue_key) is None:
    st.session_state[queue_key] = next_item(db_cursor(), int(campaign_id), annotator)
item = st.session_state[queue_key]
if item is None:
    st.success("Your queue for this campaign is empty. Thank you!")
    st.stop()

st.subheader(f"Clip {escape_markdown(item.clip_id)}")
st.caption(f"{escape_markdown(item.domain or 'unknown domain')} · {escape_markdown(item.source or 'unknown source')}"
           f" · slot {item.slot}")
if item.audio_path:
    play_clip(item.audio_path, picture=True)
else:
    st.warning("This clip's audio was not found at ingest: judge from the captions only, or answer can't tell.")
left, right = st.columns(2)
with left:
    st.markdown("**Generated caption**")
    st.text(item.caption)  # st.text renders markup as plain text
with right:
    st.markdown("**Original captions**")
    for original in item.original_captions or ("(none)",):
        st.text(original)

with st.form(f"judge_{item.clip_key}_{item.slot}"):
    st.markdown("**Is each tag in the audio?**")
    verdicts = {}
    for tag in item.tags:
        verdicts[tag] = st.radio(escape_markdown(tag), list(VERDICT_LABELS), format_func=VERDICT_LABELS.get, index=None,
                                 horizontal=True, key=f"verdict_{item.clip_key}_{tag}")
    added = st.text_input("Tags the audio has but the list misses (comma-separated)", key=f"added_{item.clip_key}")
    rating = st.radio("Caption quality", [1, 2, 3, 4, 5], index=None, horizontal=True,
                      key=f"rating_{item.clip_key}", help="1 = wrong or misleading, 5 = accurate and complete")
    note = st.text_area("Note (optional)", key=f"note_{item.clip_key}")
    if st.form_submit_button("Submit and next"):
        unanswered = [tag for tag, verdict in verdicts.items() if verdict is None]
        if unanswered or rating is None:
            st.error("Answer every tag and rate the caption: "
                     + ", ".join(map(escape_markdown, unanswered + (["rating"] if rating is None else []))))
        else:
            try:
                submit(db_cursor(), item, annotator, verdicts, added=added.split(","), rating=int(rating), note=note)
                st.session_state[queue_key] = None
                flash(f"Saved your verdicts on {item.clip_id}.")
                st.rerun()
            except AuditError as exc:
                st.error(str(exc))
