"""What a model answers -> labels: the parser's tolerance and its stated rules."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curation.extraction.prompt import (
    MAX_LABELS,
    PROMPT_HASH,
    SYSTEM_PROMPT,
    LabelParseError,
    messages_for,
    normalise_label,
    parse_labels,
)


def test_plain_contract_answer():
    assert parse_labels('{"labels": ["dog", "bark", "outdoor", "street", "traffic"]}').labels == (
        "dog", "bark", "outdoor", "street", "traffic")


def test_code_fence_prose_and_trailing_comma():
    answer = 'Sure! Here you go:\n```json\n{"labels": ["Dog", "BARK", "park",]}\n```\nLet me know.'
    assert parse_labels(answer).labels == ("dog", "bark", "park")


def test_prose_around_unfenced_json_with_braces_in_strings():
    answer = 'The labels {as asked} are: {"labels": ["rain", "roof {metal}"]} thanks'
    assert parse_labels(answer).labels == ("rain", "roof-metal")


def test_non_string_items_are_dropped_and_listed():
    parsed = parse_labels('{"labels": ["dog", 7, null, {"x": 1}, "cat"]}')
    assert parsed.labels == ("dog", "cat")
    assert len(parsed.dropped) == 3 and all("not a string" in d for d in parsed.dropped)


def test_more_than_ten_labels_keeps_the_first_ten():
    words = [f"tag{chr(97 + i)}" for i in range(14)]
    parsed = parse_labels('{"labels": %s}' % str(words).replace("'", '"'))
    assert parsed.labels == tuple(words[:MAX_LABELS])
    assert sum("beyond" in d for d in parsed.dropped) == 4


def test_multi_word_rule_joins_short_phrases_and_drops_long_ones():
    parsed = parse_labels('{"labels": ["hi hat", "Dog_Bark", "a man speaking loudly outside", "speech"]}')
    assert parsed.labels == ("hi-hat", "dog-bark", "speech")
    assert any("phrase of 5 words" in d for d in parsed.dropped)


def test_duplicates_collapse_after_normalisation():
    assert parse_labels('{"labels": ["Hi-Hat", "hi hat", "hi_hat", "drum"]}').labels == ("hi-hat", "drum")


def test_python_quotes_and_bare_list():
    assert parse_labels("{'labels': ['wind', 'storm']}").labels == ("wind", "storm")
    assert parse_labels('["wind", "storm"]').labels == ("wind", "storm")


@pytest.mark.parametrize("answer, reason", [
    ("", "empty answer"),
    ("I hear a dog barking.", "no JSON"),
    ('{"tags_are": ["dog"]}', "without a 'labels' key"),
    ('{"labels": "dog, bark"}', "expected a list"),
    ('{"labels": [1, 2, 3]}', "no usable label"),
    ('{"labels": ["", "!!!"]}', "no usable label"),
])
def test_unusable_answers_are_typed_failures_with_a_reason(answer, reason):
    with pytest.raises(LabelParseError) as caught:
        parse_labels(answer)
    assert reason in caught.value.reason


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_labels_or_a_typed_failure(text):
    try:
        parsed = parse_labels(text)
    except LabelParseError:
        return
    assert 1 <= len(parsed.labels) <= MAX_LABELS
    assert len(set(parsed.labels)) == len(parsed.labels)
    assert all(label == label.lower() and " " not in label for label in parsed.labels)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_normalisation_is_idempotent(text):
    label, _ = normalise_label(text)
    if label is not None:
        assert normalise_label(label) == (label, "")


def test_prompt_states_the_contract_and_is_versioned():
    messages = messages_for("A dog barks.")
    assert messages[0]["content"] == SYSTEM_PROMPT and "A dog barks." in messages[1]["content"]
    for rule in ('{"labels"', "5 to 10", "lowercase", "synonyms", "scene", "sound sources", "production",
                 "semantic function"):
        assert rule in SYSTEM_PROMPT
    assert len(PROMPT_HASH) == 16
