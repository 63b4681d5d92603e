"""Browse: page through clips with combined filters (among them: the tags a run's model audit disputes); listen,
see the waveform and spectrogram, read the generated caption with its tags highlighted beside the original
captions and what the model disputes, and add or remove a tag on a clip."""
import streamlit as st

from curation.explore.browse import BrowseError, BrowseFilters, browse_page, count_matching
from curation.store import model_audit as store_model_audit
from curation.store import vocabulary as store_vocabulary
from curation.vocabulary.decisions import Decision
from curation.vocabulary.tag_details import highlight, surface_forms, tag_chips_html
from ui.audio import play_clip
from ui.audit import model_disputes
from ui.auth import can
from ui.db import db_cursor
from ui.decide import decide
from ui.state import selected_k, show_flash, vocabulary_view
from ui.text import escape_markdown

PAGE_SIZE = 20


@st.cache_data(show_spinner=False, ttl=300)
def _duration_span(path: str, version: tuple) -> tuple[float, float]:
    import math

    import numpy as np

    values = store_vocabulary.clip_durations(db_cursor())["duration_s"]
    known = values[np.isfinite(values)]
    if not len(known):
        return 0.0, 60.0
    low, high = math.floor(float(known.min()) * 10) / 10, math.ceil(float(known.max()) * 10) / 10
    return (low, high) if high > low else (low, low + 0.1)


def duration_span() -> tuple[float, float]:
    from ui.db import db_path

    return _duration_span(db_path(), store_vocabulary.corpus_version(db_cursor()))

st.title("Browse clips")
show_flash()
matrix, state, view = vocabulary_view(st.session_state.get("rank_by") or "tfidf")

with st.container(border=True):
    text = st.text_input("Caption text", key="browse_text", placeholder='e.g. dog barking, or "exact phrase"')
    c1, c2, c3 = st.columns([3, 1, 2])
    tags = c1.multiselect("Canonical tags", view.ranking["tag"].tolist(), key="browse_tags")
    mode = c2.radio("Match", ["any", "all"], horizontal=True, key="browse_mode")
    raw_tag = c3.selectbox("Raw tag", store_vocabulary.raw_tag_texts(db_cursor()), index=None, key="browse_raw",
                           placeholder="any")
    c4, c5, c6 = st.columns(3)
    domains = c4.multiselect("Domain", list(matrix.domains), key="browse_domains")
    sources = c5.multiselect("Source dataset", list(matrix.sources), key="browse_sources")
    audited = c6.radio("Audited", ["either", "yes", "no"], horizontal=True, key="browse_audited")
    c7, c8 = st.columns(2)
    # The slider spans this corpus's durations (a 3-6 s corpus gets a 3-6 s slider, not 0-60 s).
    span_low, span_high = duration_span()
    durations = c7.slider("Duration (s)", span_low, span_high, (span_low, span_high), step=0.1,
                          key=f"browse_duration_{span_low}_{span_high}")
    k = selected_k(len(view.ranking))
    lost_only = c8.checkbox(f"Only clips that keep no tag at K={k:,}", key="browse_no_tag")
    show_pictures = c8.toggle("Show waveforms and spectrograms", key="browse_pictures")
    # Model-based audit (python -m curation model-audit): clips where a run's out-of-sample scores dispute a tag.
    model_runs = store_model_audit.audited_runs(db_cursor())["run_id"].tolist()
    c9, c10, c11 = st.columns([2, 2, 1])
    disputed_run = c9.selectbox(
        "The model disputes a tag (run)", model_runs, index=None, key="browse_disputed_run",
        placeholder="off: pick a run with a model audit" if model_runs else "no run has a model audit yet",
        disabled=not model_runs,
        help="Only clips where this run's model audit disputes a tag: asserted although the model, which never "
             "saw the clip's labels, finds it unlikely (suspected hallucination), or left out although it finds it "
             "likely (suspected miss).")
    disputed_min = c11.number_input(
        "Dispute score at least", 0.0, 1.0, 0.5, step=0.05, key="browse_disputed_min", disabled=disputed_run is None,
        help="How confidently the model disputes the tag: 1 - its probability for an asserted tag, its probability "
             "for a tag left out. Every suspect passed the tag's own confident-learning threshold; this keeps the "
             "strongest.")
    # The options are every tag the run disputes (they do not change with the score asked for, so a picked tag
    # stays picked); the counts are at that score.
    disputed_tags = (store_model_audit.suspect_tags(db_cursor(), disputed_run)["tag"].tolist()
                     if disputed_run is not None else [])
    disputed_counts = (dict(store_model_audit.suspect_tags(db_cursor(), disputed_run, disputed_min)
                            .itertuples(index=False)) if disputed_run is not None else {})
    disputed_tag = c10.selectbox(
        "Disputed tag", disputed_tags, index=None,
        # One widget per run: another run's tag list would not hold the tag picked for the previous one.
        key=f"browse_disputed_tag_{disputed_run}", placeholder="any tag", disabled=disputed_run is None,
        format_func=lambda tag: f"{tag} ({disputed_counts.get(tag, 0):,} clips)")

filters = BrowseFilters(
    canonical_tags=tuple(tags), tag_mode=mode, raw_tag=raw_tag, domains=tuple(domains), sources=tuple(sources),
    min_duration_s=durations[0] if durations[0] > span_low else None,
    max_duration_s=durations[1] if durations[1] < span_high else None, text=text.strip(),
    no_tag_at_k=k if lost_only else None, audited={"yes": True, "no": False}.get(audited),
    disputed_by_run=disputed_run, disputed_tag=disputed_tag if disputed_run is not None else None,
    disputed_min_score=disputed_min if disputed_run is not None else None)

# Keyset pagination: a stack of the clip keys each page starts after, reset whenever the filters change.
if st.session_state.get("browse_filters") != filters:
    st.session_state["browse_filters"] = filters
    st.session_state["browse_starts"] = [None]
starts = st.session_state["browse_starts"]
try:
    page = browse_page(db_cursor(), filters, view=view, state=state, after_clip_key=starts[-1], limit=PAGE_SIZE)
    # The total is counted once per filter set and vocabulary version, not again on every next page.
    count_key = (filters, view.last_decision_id, len(view.clip_ids))
    if st.session_state.get("browse_count_key") != count_key:
        st.session_state["browse_count"] = count_matching(db_cursor(), filters, view=view, state=state)
        st.session_state["browse_count_key"] = count_key
except BrowseError as exc:
    st.error(str(exc))
    st.stop()

total = st.session_state["browse_count"]
first = (len(starts) - 1) * PAGE_SIZE + 1
st.markdown(f"**{total:,} clips match**" + (f" · showing {first:,}-{first + len(page.rows) - 1:,} (page {len(starts)})"
                                            if page.rows else ""))
disputes = (model_disputes(db_cursor(), disputed_run, [row.clip_key for row in page.rows], disputed_min)
            if disputed_run is not None else {})
for row in page.rows:
    with st.container(border=True):
        st.markdown(f"**{escape_markdown(row.clip_id)}**")
        st.caption(f"{escape_markdown(row.domain or 'unknown domain')} · "
                   f"{escape_markdown(row.source or 'unknown source')} · {row.duration_s or 0:.1f} s")
        if disputes.get(row.clip_key):
            st.markdown(disputes[row.clip_key])
        left, right = st.columns([3, 2])
        with left:
            play_clip(row.audio_path if row.audio_ok else None, picture=show_pictures)
            forms = [form for tag in row.canonical_tags for form in surface_forms(tag, view.members.get(tag, []))]
            st.html(f"<div style='font-size:0.9rem'>{highlight(row.caption or '', forms)}</div>")
            st.html(tag_chips_html(row.raw_tags, state))
        with right:
            st.markdown("**Original captions**")
            for original in row.original_captions or ("(none)",):
                st.text(original)
            if not can("decide"):
                continue  # per-clip edits are decisions: curators and admins only
            with st.popover("Edit this clip's tags"):
                new_tag = st.text_input("Add a tag", key=f"add_{row.clip_key}")
                if st.button("Add", key=f"add_button_{row.clip_key}", disabled=not new_tag.strip()):
                    decision = Decision.clip_add(row.clip_id, new_tag)  # spelled by the library (normalize_tag)
                else:
                    decision = None
                gone = st.selectbox("Remove a tag", row.canonical_tags, index=None, key=f"remove_{row.clip_key}")
                if st.button("Remove", key=f"remove_button_{row.clip_key}", disabled=gone is None):
                    decision = Decision.clip_remove(row.clip_id, gone)
                if decision is not None:
                    decide(decision)

previous, following = st.columns(2)
if previous.button("Previous page", disabled=len(starts) == 1, key="browse_previous"):
    starts.pop()
    st.rerun()
if following.button("Next page", disabled=not page.has_more, key="browse_next"):
    starts.append(page.next_after)
    st.rerun()
