"""Audit: annotators listen to one clip at a time from their own queue and judge every tag the captioner's
caption produced (correct / wrong / can't tell), add what is missing, and rate the caption.

Each clip opens at its top with "clip 3 of 24 in your queue"; keys 1/2/3 answer the highlighted tag (then 1-5
rate the caption), Ctrl+Enter submits, S skips the clip (it comes back last), B goes back to revise the clip
submitted last."""
import streamlit as st

from curation.audit.campaigns import (
    AuditError,
    campaign_table,
    create_campaign,
    next_item,
    previous_item,
    queue_progress,
    skip_item,
    submit,
)
from ui.audio import play_clip
from ui.audit import answer_current, current_question, scroll_to_clip_top
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
skipped_key = f"audit_skipped_{campaign_id}_{annotator}"
revising_key = f"audit_revising_{campaign_id}_{annotator}"  # a past submission being revised, or None
skipped = st.session_state.setdefault(skipped_key, [])
revising = st.session_state.get(revising_key)
if revising is None and st.session_state.get(queue_key) is None:
    st.session_state[queue_key] = next_item(db_cursor(), int(campaign_id), annotator, avoid_clip_keys=skipped)
item = revising.item if revising is not None else st.session_state[queue_key]
progress = queue_progress(db_cursor(), int(campaign_id), annotator)


def go_back() -> None:
    past = previous_item(db_cursor(), int(campaign_id), annotator,
                         before=revising.item if revising is not None else None)
    if past is None:
        flash("Nothing earlier to go back to.")
    else:
        st.session_state[revising_key] = past
        prefix = f"{past.item.clip_key}_{past.item.slot}"
        for tag, verdict in past.verdicts.items():  # the form opens with what was answered
            st.session_state[f"verdict_{prefix}_{tag}"] = verdict
        st.session_state[f"rating_{prefix}"] = past.rating
        st.session_state[f"added_{prefix}"] = ", ".join(past.added)
        st.session_state[f"note_{prefix}"] = past.note or ""


if item is None:
    st.success(f"Your queue for this campaign is empty: you judged {progress.submitted:,} clips. Thank you!")
    if progress.submitted:
        st.button("Back to the last clip", key="audit_back", shortcut="B", on_click=go_back)
    st.stop()

prefix = f"{item.clip_key}_{item.slot}"
scroll_to_clip_top(f"{campaign_id}_{prefix}_{revising is not None}")
st.subheader(f"Clip {escape_markdown(item.clip_id)}")
st.caption(f"{escape_markdown(item.domain or 'unknown domain')} · {escape_markdown(item.source or 'unknown source')}"
           f" · slot {item.slot}")
if revising is not None:
    st.info("You are revising a clip you already submitted: submitting replaces your earlier answers on it.")
else:
    st.progress(min(progress.position / max(progress.total, 1), 1.0),
                text=f"Clip {progress.position:,} of {progress.total:,} in your queue")
nav = st.columns([1, 1, 4])
if revising is None:
    if nav[0].button("Skip this clip", key="audit_skip", shortcut="S",
                     help="Give the clip back (someone else may take it); it comes back to you last."):
        try:
            if item.clip_key not in skipped:
                skipped.append(item.clip_key)
            st.session_state[queue_key] = skip_item(db_cursor(), item, annotator, avoid_clip_keys=skipped)
            flash(f"Skipped {item.clip_id}.")
            st.rerun()
        except AuditError as exc:
            st.error(str(exc))
    nav[1].button("Back to the last clip", key="audit_back", shortcut="B", on_click=go_back,
                  disabled=progress.submitted == 0, help="Revise what you submitted last.")
else:
    if nav[0].button("Back to my queue", key="audit_resume", shortcut="Esc"):
        st.session_state.pop(revising_key, None)
        st.rerun()
    nav[1].button("One clip earlier", key="audit_back", shortcut="B", on_click=go_back)

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

verdict_keys = {tag: f"verdict_{prefix}_{tag}" for tag in item.tags}
rating_key = f"rating_{prefix}"
question = current_question(verdict_keys, rating_key)
with st.form(f"judge_{prefix}_{revising is not None}"):
    st.markdown("**Is each tag in the audio?**")
    verdicts = {}
    for tag in item.tags:
        label = escape_markdown(tag)
        if question == tag:
            label = f"**▶ {label}**"  # the tag the number keys answer
        verdicts[tag] = st.radio(label, list(VERDICT_LABELS), format_func=VERDICT_LABELS.get, index=None,
                                 horizontal=True, key=verdict_keys[tag])
    added = st.text_input("Tags the audio has but the list misses (comma-separated)", key=f"added_{prefix}")
    rating = st.radio("**▶ Caption quality**" if question == "rating" else "Caption quality", [1, 2, 3, 4, 5],
                      index=None, horizontal=True, key=rating_key,
                      help="1 = wrong or misleading, 5 = accurate and complete")
    note = st.text_area("Note (optional)", key=f"note_{prefix}")
    keys = st.columns(6)
    if question == "rating":
        for value in range(1, 6):
            keys[value - 1].form_submit_button(f"rate {value}", key=f"key_rate_{value}", shortcut=str(value),
                                               on_click=answer_current, args=(verdict_keys, rating_key, value))
    elif question is not None:
        for index, verdict in enumerate(VERDICT_LABELS, start=1):
            keys[index - 1].form_submit_button(f"{VERDICT_LABELS[verdict].split(' (')[0]}", key=f"key_{verdict}",
                                               shortcut=str(index), on_click=answer_current,
                                               args=(verdict_keys, rating_key, verdict))
    if st.form_submit_button("Submit and next" if revising is None else "Save the revision", type="primary",
                             shortcut="Ctrl+Enter"):
        unanswered = [tag for tag, verdict in verdicts.items() if verdict is None]
        if unanswered or rating is None:
            st.error("Answer every tag and rate the caption: "
                     + ", ".join(map(escape_markdown, unanswered + (["rating"] if rating is None else []))))
        else:
            try:
                submit(db_cursor(), item, annotator, verdicts, added=added.split(","), rating=int(rating), note=note,
                       revise=revising is not None)
                if revising is not None:
                    st.session_state.pop(revising_key, None)
                    flash(f"Revised your verdicts on {item.clip_id}.")
                else:
                    st.session_state[queue_key] = None
                    flash(f"Saved your verdicts on {item.clip_id}.")
                st.rerun()
            except AuditError as exc:
                st.error(str(exc))
st.caption("Keys: 1 / 2 / 3 answer the ▶ tag (correct / wrong / can't tell), then 1-5 rate the caption; "
           "Ctrl+Enter submits; S skips; B goes back to the last clip.")
