"""The tag spelling rule: one function, idempotent, folding case, Unicode composition and whitespace."""
from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from curation.extraction.prompt import normalise_label
from curation.ingest.tag_text import normalize_tag


def test_case_composition_and_spaces_fold():
    assert normalize_tag("  Hi \t Hat ") == "hi hat"
    assert normalize_tag(unicodedata.normalize("NFD", "Café")) == normalize_tag("café") == "café"


@given(st.text(max_size=40))
def test_normalize_tag_is_idempotent(text):
    once = normalize_tag(text)
    assert normalize_tag(once) == once


def test_model_labels_follow_the_same_rule_before_their_own():
    assert normalise_label("  Hi \t HAT ") == ("hi-hat", "")
