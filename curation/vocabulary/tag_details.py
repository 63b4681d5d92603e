"""What a tag stands for: example clips with their generated caption, the tag's surface forms highlighted.

Place in the flow: read-only support for the Vocabulary and Browse pages. Captions are escaped before any
highlighting, so a caption holding HTML or script is shown as text.

Example::

    for example in tag_examples(con, "drum", state, limit=3):
        print(example.clip_id, example.caption_html)
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass

import duckdb

from curation.store import vocabulary as store_vocabulary
from curation.vocabulary.decisions import CurationState


@dataclass(frozen=True)
class TagExample:
    clip_id: str
    caption: str
    caption_html: str  # escaped caption with <mark> around the tag's surface forms
    audio_path: str | None  # only when the audio file was found at ingest
    raw_tags: tuple[str, ...]


def surface_forms(tag: str, members: list[str]) -> list[str]:
    """The texts a caption may use for a tag: itself, what was merged into it, '-'/'_' read as spaces."""
    forms = set()
    for text in [tag, *members]:
        forms.add(text)
        if len(text) > 3 and text.endswith("s"):
            forms.add(text[:-1])  # a caption says "drum kit" where the tag says "drums"
        forms.add(re.sub(r"[-_]+", " ", text))
        forms.add(re.sub(r"[-_ ]+", "", text))
    return sorted((f for f in forms if f.strip()), key=len, reverse=True)


def highlight(caption: str, forms: list[str]) -> str:
    escaped = html.escape(caption)
    if not forms:
        return escaped
    # Entities (&lt; &amp; ...) are matched first and kept whole, so a form like "lt" never splits one.
    pattern = re.compile(r"(&#?\w+;)|\b(?:" + "|".join(re.escape(html.escape(f)) for f in forms) + r")\w*",
                         re.IGNORECASE)
    return pattern.sub(lambda m: m.group(0) if m.group(1) else f"<mark>{m.group(0)}</mark>", escaped)


def tag_examples(con: duckdb.DuckDBPyConnection, canonical_tag: str, state: CurationState,
                 limit: int = 5) -> list[TagExample]:
    members = state.members().get(canonical_tag, [])
    rows = store_vocabulary.clips_with_tags(con, [canonical_tag, *members], limit=limit)
    forms = surface_forms(canonical_tag, members)
    return [TagExample(clip_id=row["clip_id"], caption=row["caption"] or "",
                       caption_html=highlight(row["caption"] or "", forms),
                       audio_path=row["audio_path"] if row["audio_ok"] else None,
                       raw_tags=tuple(row["raw_tags"] or ())) for row in rows]


def tag_chips_html(raw_tags: tuple[str, ...] | list[str], state: CurationState) -> str:
    """Raw tags as chips, each with its canonical form when a merge changed it; every text escaped."""
    chips = []
    for tag in raw_tags:
        canonical = state.canonical(tag)
        label = html.escape(tag) if canonical == tag else f"{html.escape(tag)} &rarr; {html.escape(canonical)}"
        pruned = canonical in state.pruned
        style = ("background:#eee;color:#999;text-decoration:line-through" if pruned else "background:#e8f0fe")
        chips.append(f"<span style='{style};border-radius:10px;padding:1px 8px;margin:2px;"
                     f"display:inline-block;font-size:0.8rem'>{label}</span>")
    return "".join(chips)
