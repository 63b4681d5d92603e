"""Cached accessors shared by pages: the tag matrix (reloaded only when the corpus changes), the current
curation state and vocabulary view, and who is working."""
from __future__ import annotations

import streamlit as st

from curation.store import vocabulary as store_vocabulary
from curation.vocabulary.decisions import CurationState, list_decisions, replay
from curation.vocabulary.ranking import TagMatrix, VocabularyTracker, VocabularyView, load_tag_matrix
from ui.db import db_cursor, db_path


@st.cache_resource(show_spinner="Loading the tag matrix...", max_entries=2)
def _tracker(path: str, version: tuple) -> VocabularyTracker:
    """One per corpus version, shared by every session: after a decision it redoes only the clips it touches."""
    return VocabularyTracker(load_tag_matrix(db_cursor()))


def _current_tracker() -> VocabularyTracker:
    # Keyed like the API (curation/api): a decision that interns a new name moves max(tag_id) but not the tag
    # rows, and the tracker places new names itself; reloading the matrix for it would cost seconds at scale.
    return _tracker(db_path(), store_vocabulary.corpus_version(db_cursor())[:2])


def tag_matrix() -> TagMatrix:
    return _current_tracker().matrix


def curation_state() -> CurationState:
    return replay(list_decisions(db_cursor()))


def vocabulary_view(rank_by: str = "tfidf") -> tuple[TagMatrix, CurationState, VocabularyView]:
    """Brought up to date on every rerun on purpose (the log may have grown through the API or another session):
    an unchanged state costs an update that touches nothing, a decision only the clips it touches."""
    tracker = _current_tracker()
    state = curation_state()
    return tracker.matrix, state, tracker.view(state, rank_by=rank_by)


def working_as() -> str | None:
    """The signed-in user's name when sign-in is on (never a free-text name then), else the display name."""
    from ui.auth import ensure_bound

    actor = ensure_bound()
    if actor is not None and actor.signed_in:
        return actor.name
    name = (st.session_state.get("display_name") or "").strip()
    return name or None


def require_name() -> str | None:
    """The display name, or a warning telling the user where to set it (decisions are attributed)."""
    name = working_as()
    if name is None:
        st.warning("Enter your name under **Working as** in the sidebar: every decision records who made it.")
    return name


def selected_k(n_tags: int, key: str = "vocab_k") -> int:
    """One K shared by the pages (session state), clamped to the current number of tags."""
    default = min(1000, n_tags) if n_tags else 1
    value = st.session_state.get(key, default)
    return max(1, min(int(value), max(n_tags, 1)))


def flash(message: str) -> None:
    """A confirmation shown once, on the rerun that follows an action (a toast would be lost by st.rerun)."""
    st.session_state["_flash"] = message


FORGET = object()  # in reset_widgets_next_run: drop the state (widgets with a default of their own)


def reset_widgets_next_run(values: dict) -> None:
    """After an action: give these widgets these values on the next run (None / [] / "" clear a selectbox, a
    multiselect, a text box; FORGET drops the state). Done at the top of the next run (``show_flash``), before
    the widgets exist: Streamlit then sends the new value to the browser, which a plain ``pop`` does not."""
    st.session_state.setdefault("_reset_widgets", {}).update(values)


def show_flash() -> None:
    for key, value in st.session_state.pop("_reset_widgets", {}).items():
        if value is FORGET:
            st.session_state.pop(key, None)
        else:
            st.session_state[key] = value
    message = st.session_state.pop("_flash", None)
    if message:
        from ui.text import escape_markdown

        # Flashes quote tags, clip ids and names: shown as literal text, never as markdown.
        st.success(escape_markdown(message), icon=":material/check_circle:")
