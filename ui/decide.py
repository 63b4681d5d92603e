"""The "record a decision" flow every page shares: ask who is working, run the write under that name, then
either confirm it on the next rerun or show why the library refused it, in place.

Example (in a view)::

    if st.button("Prune"):
        decide(Decision.prune(["hisss"]), reason="rare")
    if st.button("Reject"):
        apply_decision(lambda name: reject_suggestion(db_cursor(), suggestion, by=name), lambda _: "Rejected")
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import streamlit as st

from curation.errors import UtsError
from curation.vocabulary.decisions import Decision, DecisionRecord, record_decision
from ui.db import db_cursor
from ui.state import flash, require_name

T = TypeVar("T")


def apply_decision(action: Callable[[str], T], message: Callable[[T], str]) -> None:
    """Run ``action(name)`` for the person working; on success flash ``message(result)`` and rerun, so every
    page redraws from the new log. A typed refusal (DecisionError, PermissionDeniedError, any UtsError) wrote
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
    # Outside the try: st.rerun() raises Streamlit's own control-flow exception.
    flash(message(result))
    st.rerun()


def decide(decision: Decision, reason: str | None = None, *,
           message: Callable[[DecisionRecord], str] | None = None) -> None:
    """Record one decision through apply_decision; the confirmation names the decision unless ``message`` says
    otherwise. An empty reason is stored as none."""
    apply_decision(lambda name: record_decision(db_cursor(), decision, by=name, reason=reason or None),
                   message or described)


def described(record: DecisionRecord) -> str:
    return f"Decision #{record.decision_id}: {record.describe()}"
