"""The "record a decision" flow every page shares: ask who is working, run the write under that name, then
either confirm it on the next rerun or show why the library refused it, in place.

Example (in a view)::

    if st.button("Prune"):
        decide(Decision.prune(["hisss"]), reason="rare")
    if st.button("Reject"):
        apply_decision(lambda name: reject_suggestion(db_cursor(), suggestion, by=name), lambda _: "Rejected")
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

import streamlit as st

from curation.errors import UtsError
from curation.vocabulary.decisions import Decision, DecisionRecord, record_decision
from ui.db import db_cursor
from ui.state import FORGET, flash, require_name, reset_widgets_next_run

T = TypeVar("T")


def apply_decision(action: Callable[[str], T], message: Callable[[T], str], *,
                   clear: Mapping[str, object] | Iterable[str] = ()) -> None:
    """Run ``action(name)`` for the person working; on success forget the widget state named in ``clear`` (the
    selection and reason the action used up: a mapping of widget key -> value to show next, e.g. None for a
    selectbox, [] for a multiselect, "" for a text box, or plain keys to forget), flash ``message(result)`` and rerun, so every page redraws from
    the new log; tabs keep their place (keyed tabs). A typed refusal (DecisionError, PermissionDeniedError, any UtsError) wrote
    nothing: it is shown where the button was and the page goes on rendering. Without a name, only the warning
    that asks for one."""
    name = require_name()
    if name is None:
        return
    try:
        result = action(name)
    except UtsError as exc:
        st.error(str(exc))
        return
    reset_widgets_next_run(dict(clear) if isinstance(clear, Mapping) else dict.fromkeys(clear, FORGET))
    # Outside the try: st.rerun() raises Streamlit's own control-flow exception.
    flash(message(result))
    st.rerun()


def decide(decision: Decision, reason: str | None = None, *,
           message: Callable[[DecisionRecord], str] | None = None,
           clear: Mapping[str, object] | Iterable[str] = ()) -> None:
    """Record one decision through apply_decision; the confirmation names the decision unless ``message`` says
    otherwise. An empty reason is stored as none."""
    apply_decision(lambda name: record_decision(db_cursor(), decision, by=name, reason=reason or None),
                   message or described, clear=clear)


def described(record: DecisionRecord) -> str:
    return f"Decision #{record.decision_id}: {record.describe()}"
