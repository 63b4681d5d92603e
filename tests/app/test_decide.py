"""ui.decide.apply_decision, the one "record a decision" flow of every page: a name first, then either a flash
on the rerun that follows, or the library's typed refusal shown in place with the page going on."""
from __future__ import annotations

from helpers import PROJECT
from streamlit.testing.v1 import AppTest


def _script(outcome: str) -> None:
    import streamlit as st

    from curation.admin.permissions import PermissionDeniedError
    from curation.vocabulary.decisions import DecisionError
    from ui.decide import apply_decision
    from ui.state import show_flash

    show_flash()
    calls = st.session_state.setdefault("calls", [])

    def action(name: str) -> int:
        calls.append(name)
        if outcome == "denied":
            raise PermissionDeniedError("'bo' (role annotator) may not decide")
        if outcome == "refused":
            raise DecisionError("prune 'hiss': 'hiss' is already pruned")
        return len(calls)

    if st.button("Act", key="act"):
        apply_decision(action, lambda count: f"Done {count} times as {calls[-1]}")
    st.write("after the button")


def _app(monkeypatch, outcome: str, name: str) -> AppTest:
    monkeypatch.chdir(PROJECT)
    app = AppTest.from_function(_script, args=(outcome,), default_timeout=60)
    app.session_state["display_name"] = name
    return app.run()


def test_success_flashes_once_after_a_rerun(monkeypatch):
    app = _app(monkeypatch, "ok", "ana")
    app.button(key="act").click().run()
    assert not app.exception, app.exception
    assert [s.value for s in app.success] == ["Done 1 times as ana"]
    assert app.session_state["calls"] == ["ana"]
    app.run()
    assert not app.success  # shown once


def test_typed_refusals_are_shown_in_place(monkeypatch):
    for outcome, text in (("denied", "may not decide"), ("refused", "already pruned")):
        app = _app(monkeypatch, outcome, "ana")
        app.button(key="act").click().run()
        assert not app.exception, app.exception
        assert any(text in e.value for e in app.error) and not app.success
        assert any("after the button" in m.value for m in app.markdown)


def test_no_name_no_action(monkeypatch):
    app = _app(monkeypatch, "ok", "")
    app.button(key="act").click().run()
    assert any("Working as" in w.value for w in app.warning)
    assert app.session_state["calls"] == []
