"""Playing a clip: only files under the configured audio roots reach the browser."""
from __future__ import annotations

import streamlit as st

from curation.ingest.audio_access import AudioAccessError, clip_picture_png, servable_audio_path
from ui.db import db_cursor
from ui.text import escape_markdown


def play_clip(audio_path: str | None, *, picture: bool = False) -> None:
    try:
        path = servable_audio_path(db_cursor(), audio_path)
    except AudioAccessError as exc:
        st.caption(f"No audio: {escape_markdown(exc)}")
        return
    st.audio(str(path))
    if picture:
        st.image(clip_picture_png(path), caption="waveform and log-mel spectrogram", width="stretch")
