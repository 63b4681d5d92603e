"""Streamlit helpers of the annotator screen: which question the number keys answer, and opening each clip at
its top (Streamlit keeps the scroll position across reruns, so after a submit the next clip would otherwise open
wherever the previous form's Submit button was)."""
from __future__ import annotations

import json

import streamlit as st


def current_question(verdict_keys: dict[str, str], rating_key: str) -> str | None:
    """The first tag without a verdict, then "rating" until the caption is rated; None when all is answered."""
    for tag, key in verdict_keys.items():
        if st.session_state.get(key) is None:
            return tag
    return "rating" if st.session_state.get(rating_key) is None else None


def answer_current(verdict_keys: dict[str, str], rating_key: str, value) -> None:
    """Callback of the number-key buttons: answer the current question (runs before the page, so setting the
    widgets' state is allowed)."""
    question = current_question(verdict_keys, rating_key)
    if question == "rating" and isinstance(value, int):
        st.session_state[rating_key] = value
    elif question not in (None, "rating") and isinstance(value, str):
        st.session_state[verdict_keys[question]] = value


def scroll_to_clip_top(token: str) -> None:
    """Scroll so that the element after this one (the clip's header) is at the top of the view, once per
    ``token`` (a new clip): the snippet's text changes with the token, so Streamlit mounts it again."""
    anchor = "uts-clip-top-" + "".join(ch if ch.isalnum() else "-" for ch in token)
    # A container keyed by the token is a new element for each clip: its script runs when it mounts (an updated
    # element keeps its old script, which does not run again).
    st.container(key=anchor.replace("-", "_")).html(f"""<div id="{anchor}" data-uts-clip-top="1"></div>
<script data-uts-app="scroll-to-clip">
(function () {{
  // The previous clip's elements are removed only after the new run is drawn, which moves everything below
  // them up, and how long that takes depends on the machine: scroll again on every change of the page for a
  // few seconds, and stop at once when the person scrolls, clicks or types (never pull them back).
  const anchorId = {json.dumps(anchor)};
  const top = () => {{
    const anchor = document.getElementById(anchorId);
    if (!anchor) {{ return; }}
    anchor.scrollIntoView({{block: "start"}});
    // Streamlit's header bar overlays the top of the page: keep the clip's title below it.
    const main = anchor.closest('[data-testid="stMain"]');
    if (main) {{ main.scrollBy(0, -90); }}
  }};
  const anchor = document.getElementById(anchorId);
  const main = anchor && anchor.closest('[data-testid="stMain"]');
  const observer = new MutationObserver(top);
  const events = ["wheel", "touchstart", "mousedown", "keydown"];
  const stop = () => {{
    observer.disconnect();
    events.forEach((name) => window.removeEventListener(name, stop, true));
  }};
  if (main) {{ observer.observe(main, {{childList: true, subtree: true}}); }}
  events.forEach((name) => window.addEventListener(name, stop, true));
  setTimeout(stop, 6000);
  top();
}})();
</script>""", unsafe_allow_javascript=True)
