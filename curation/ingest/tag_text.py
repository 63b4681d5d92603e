"""The one spelling rule for tag text that a person or a model creates: ``normalize_tag``.

Place in the flow: every route that creates tag text goes through it: curation decisions (merge into, rename to,
add a tag to a clip; curation/vocabulary/decisions.py) and labels parsed from a model's answer
(curation/extraction/prompt.py). So "Drum" typed in the app and "Drum" given to the CLI both become "drum".
Example: ``normalize_tag("  Hi  Hat ") == "hi hat"``.
"""
from __future__ import annotations

import unicodedata


def normalize_tag(text: str) -> str:
    """NFC, lowercase, outer spaces stripped, inner runs of whitespace collapsed to one space. Idempotent."""
    return " ".join(unicodedata.normalize("NFC", text).lower().split())
