"""The one spelling rule for tag text, whoever creates it: ``normalize_tag`` and ``tag_text_problem``.

Place in the flow: every route that creates tag text goes through it: ingest (tags inside manifests, counted per
ingest), curation decisions (merge into, rename to, add a tag to a clip; curation/vocabulary/decisions.py), labels
parsed from a model's answer (curation/extraction/prompt.py) and tags an annotator adds in an audit. So "Drum",
"drum\\t", NFD "café" and "dog" with a zero-width space typed anywhere all become one tag.

The rule, in order: Unicode NFC; invisible format characters (zero-width spaces and joiners, bidi embeddings,
overrides and isolates, the byte-order mark, soft hyphens: Unicode category Cf) and control characters removed;
every kind of whitespace (tabs, newlines, no-break and ideographic spaces) collapsed to one space and stripped
at the ends; case folded (``str.casefold``: the release's vocabularies are lower case). Then a tag is refused
(``tag_text_problem``) when it is empty, longer than MAX_TAG_CHARS, or holds a character that exporters reserve:
the UTS recipe joins a clip's tags with ';' and splits them again, so a tag holding ';' would turn into two.

Example: ``normalize_tag("  Hi\\u200b  Hat ") == "hi hat"``; ``tag_text_problem("rock;pop")`` names the ';'.
"""
from __future__ import annotations

import unicodedata

MAX_TAG_CHARS = 100  # the longest real tag in the published 3k list has 31; 100 leaves room for any language
MAX_TAGS_PER_CLIP = 64  # the paper's prompt asks for at most 10 per clip; 64 is generous and keeps exports bounded
RESERVED_TAG_CHARS = (";",)  # the UTS recipe's tag separator (examples/uts/data_module.py joins with ';')


def _visible(char: str) -> str:
    category = unicodedata.category(char)
    if category == "Cf":
        return ""  # zero-width, bidi control, BOM, soft hyphen: invisible, so never part of a tag's identity
    if category == "Cc":
        return " " if char.isspace() else ""  # tab/newline separate words; other controls are junk
    return char


def normalize_tag(text: str) -> str:
    """NFC, invisible and control characters removed, whitespace collapsed, case folded. Idempotent; never raises."""
    text = unicodedata.normalize("NFC", text)
    if not (text.isascii() and text.isprintable()):  # the common case (plain ASCII) skips the per-character pass
        text = "".join(_visible(char) for char in text)
    # casefold can produce decomposed sequences (e.g. for some Greek letters): NFC again keeps the rule idempotent.
    return unicodedata.normalize("NFC", " ".join(text.casefold().split()))


def tag_text_problem(tag: str) -> str | None:
    """Why ``tag`` (already normalised) cannot be a tag, as 'expected ...' text, or None when it can."""
    if not tag:
        return "a non-empty tag (it is empty once spaces and invisible characters are removed)"
    if len(tag) > MAX_TAG_CHARS:
        return f"a tag of at most {MAX_TAG_CHARS} characters (found {len(tag):,})"
    reserved = [char for char in RESERVED_TAG_CHARS if char in tag]
    if reserved:
        return (f"a tag without {' or '.join(repr(c) for c in reserved)} (the UTS recipe joins and splits a clip's "
                "tags on ';'; give several tags as separate list items)")
    return None
