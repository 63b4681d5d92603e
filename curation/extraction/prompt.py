"""The tag-extraction prompt (the paper's contract) and the parser for what a model answers.

Place in the flow: extract (curation/extraction/jobs.py) sends ``messages_for(caption)`` to a backend and turns the
answer into tags with ``parse_labels``. The prompt text is versioned: ``PROMPT_HASH`` is stored with every tag
row and every attempt, so changing a word of the prompt makes every clip eligible again (and nothing else does).

Example::

    parsed = parse_labels('```json\\n{"labels": ["Dog", "barking", "outdoor"]}\\n```')
    parsed.labels  # ('dog', 'barking', 'outdoor')
"""
from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass

from curation.errors import UtsError
from curation.ingest.tag_text import normalize_tag

PROMPT_VERSION = "uts-tags-v1"

SYSTEM_PROMPT = """You turn a detailed description of an audio clip into training labels.
Answer with JSON only, exactly of the form {"labels": ["label1", "label2", ...]}.
Rules:
- 5 to 10 labels, each a single lowercase word (a hyphenated compound such as "hi-hat" counts as one word).
- Use canonical, reusable terms that would label many clips: "dog", not "terrier barking twice".
- Collapse synonyms and variants to one term; no duplicates; singular nouns.
- Cover, where the description supports them: the scene or environment, the sound sources, the sound types or
  events, audio or production traits (e.g. reverberant, distorted, lo-fi), and the semantic function or intent
  (e.g. speech, music, alarm, notification).
- Only labels the description supports; do not guess."""

USER_TEMPLATE = "Description of the audio clip:\n{caption}\n\nAnswer with the JSON object only."

PROMPT_HASH = hashlib.sha256(
    json.dumps([PROMPT_VERSION, SYSTEM_PROMPT, USER_TEMPLATE]).encode()).hexdigest()[:16]

MAX_LABELS = 10
MAX_WORDS_PER_LABEL = 3  # a label of 2-3 words is joined with '-' ("dog bark" -> "dog-bark"); longer is a phrase
MAX_LABEL_CHARS = 40


def messages_for(caption: str) -> list[dict]:
    """The chat messages for one caption."""
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_TEMPLATE.format(caption=caption)}]


class LabelParseError(UtsError):
    """A model's answer held no usable labels; ``reason`` says why (stored with the raw answer)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ParsedLabels:
    labels: tuple[str, ...]  # normalised, deduplicated, at most MAX_LABELS, in the model's order
    dropped: tuple[str, ...]  # items left out, each with why ("42: not a string", "a b c d: phrase")


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
# Characters kept in a label: letters, combining marks and digits of any script ('café', 'música', Devanagari
# vowel signs), '-' and the space that later becomes '-'; everything else (punctuation, symbols, the reserved ';')
# splits words.
_LABEL_CHAR_CATEGORIES = frozenset("LMN")


def parse_labels(answer: str | None) -> ParsedLabels:
    """The labels in a model's answer, or ``LabelParseError``.

    Tolerated: code fences, prose around the JSON, trailing commas, single quotes when the JSON does not parse
    otherwise, a bare list instead of the object, non-string items (dropped and listed), more than 10 labels
    (the first 10 kept), case and surrounding punctuation. Rule for multi-word labels: 2-3 words are joined
    with '-' (the contract's one-word form); 4 or more words are a phrase, not a label, and are dropped.
    """
    if answer is None or not answer.strip():
        raise LabelParseError("empty answer")
    value = _first_json_value(answer)
    if isinstance(value, dict):
        items = next((value[k] for k in ("labels", "tags", "Labels", "Tags") if k in value), None)
        if items is None:
            raise LabelParseError(f"JSON object without a 'labels' key (keys: {sorted(value)[:5]})")
    else:
        items = value
    if not isinstance(items, list):
        raise LabelParseError(f"'labels' is a {type(items).__name__}, expected a list of strings")
    labels: list[str] = []
    dropped: list[str] = []
    for item in items:
        if not isinstance(item, str):
            dropped.append(f"{item!r}: not a string")
            continue
        label, why = normalise_label(item)
        if label is None:
            dropped.append(f"{item[:60]}: {why}")
        elif label in labels:
            dropped.append(f"{item[:60]}: duplicate")
        elif len(labels) >= MAX_LABELS:
            dropped.append(f"{item[:60]}: beyond {MAX_LABELS} labels")
        else:
            labels.append(label)
    if not labels:
        raise LabelParseError(f"no usable label in {len(items)} item(s)"
                              + (f": {'; '.join(dropped[:3])}" if dropped else ""))
    return ParsedLabels(tuple(labels), tuple(dropped))


def normalise_label(text: str) -> tuple[str | None, str]:
    """(label, "") or (None, why): the tag spelling rule (normalize_tag), then inner spaces/underscores -> '-',
    at most 3 words; letters of every script survive ('café'), other symbols split words."""
    cleaned = "".join(c if c in "- " or unicodedata.category(c)[0] in _LABEL_CHAR_CATEGORIES else " "
                      for c in normalize_tag(text).replace("_", " "))
    words = [w for w in re.split(r"[\s]+", cleaned) if w]
    words = [w.strip("-") for w in words if w.strip("-")]
    if not words:
        return None, "no letters or digits"
    if len(words) > MAX_WORDS_PER_LABEL:
        return None, f"phrase of {len(words)} words"
    label = "-".join(words)
    if len(label) > MAX_LABEL_CHARS:
        return None, f"longer than {MAX_LABEL_CHARS} characters"
    if not any(c.isalpha() for c in label):
        return None, "no letters"
    return label, ""


def _first_json_value(answer: str):
    """The first JSON object or list in ``answer`` (fenced or embedded in prose)."""
    candidates = [m.group(1) for m in _FENCE.finditer(answer)] + [answer]
    for text in candidates:
        for opener in ("{", "["):
            start = text.find(opener)
            while start != -1:
                chunk = _balanced(text, start)
                if chunk is not None:
                    value = _loads_lenient(chunk)
                    if value is not None:
                        return value
                start = text.find(opener, start + 1)
    raise LabelParseError("no JSON object or list in the answer")


def _balanced(text: str, start: int) -> str | None:
    """The bracketed span starting at ``start`` (brackets inside strings ignored), or None if unclosed."""
    closer = {"{": "}", "[": "]"}
    stack: list[str] = []
    in_string: str | None = None
    escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == in_string:
                in_string = None
        elif ch in "\"'":
            # A quote inside a word ("dog's") is an apostrophe, not a string start.
            if ch == '"' or not (i > 0 and text[i - 1].isalnum()):
                in_string = ch
        elif ch in closer:
            stack.append(closer[ch])
        elif ch in "}]":
            if not stack or stack.pop() != ch:
                return None
            if not stack:
                return text[start:i + 1]
    return None


def _loads_lenient(chunk: str):
    for attempt in (chunk, _TRAILING_COMMA.sub(r"\1", chunk)):
        try:
            return json.loads(attempt)
        except json.JSONDecodeError:
            pass
    # Python-style quotes ({'labels': ['a']}) are common from small models.
    swapped = _TRAILING_COMMA.sub(r"\1", chunk).replace("'", '"')
    try:
        return json.loads(swapped)
    except json.JSONDecodeError:
        return None
