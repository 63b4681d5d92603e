"""The lexicon tag extractor: deterministic tags from caption text, no model needed.

Place in the flow: extract (``--backend lexicon``; the default ``offline`` backend is the open-vocabulary extractor
in curation/extraction/open_vocab.py, which uses this module's lexicon only to fold variants). Caption words are lowercased, lemmatised by a
few suffix rules (plural -s/-es/-ies, -ing, -ed, possessive 's) and matched, two-word phrases first, against the
audio lexicon (curation/extraction/lexicon.py, synonyms already collapsed) and then, optionally, against the
corpus's current tag vocabulary. Labels come in the paper's aspect order (scene, sources, events, traits,
function), at most 10, without duplicates.

Example::

    tag_caption("Two dogs are barking loudly in a small room")  # ('room', 'dog', 'bark', 'loud')
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from curation.extraction.lexicon import ASPECT_RANK, FORMS

MAX_LABELS = 10
_WORD = re.compile(r"[a-z][a-z0-9\-]*")
_VOWELS = set("aeiou")
# Caption words that are never labels even when a vocabulary carries them.
STOP_WORDS = frozenset("""
a an the and or but of in on at to from by with without for as is are was were be been being it its this that
these those there here then than so very too also into onto over under while during after before through
some any each every other another such one two three several many much more most few less least lot lots
sound sounds sounding heard hear hearing can could may might will would should audio clip recording plays
playing played followed followed by along together throughout again begins starts ends end start
""".split())


# A label implied by others: music by instruments and musical structure, speech by talking sources.
IMPLIED = {
    "music": frozenset("guitar bass piano organ synth drums snare kick hi-hat cymbal percussion violin cello strings "
                       "harp flute saxophone trumpet trombone brass clarinet harmonica ukulele sitar vocals singer "
                       "choir orchestra band melody chord riff beat instrumental tambourine".split()),
}


def lemma_candidates(word: str) -> list[str]:
    """``word`` and the base forms it may be an inflection of, most literal first."""
    out = [word]
    if word.endswith("'s"):
        word = word[:-2]
        out.append(word)
    if word.endswith("ies") and len(word) > 4:
        out.append(word[:-3] + "y")
    if word.endswith("es") and len(word) > 3:
        out.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        out.append(word[:-1])
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            base = word[: -len(suffix)]
            out += [base, base + "e"]
            if len(base) > 2 and base[-1] == base[-2] and base[-1] not in _VOWELS:
                out.append(base[:-1])  # running -> run, tapped -> tap
            if base.endswith("i"):
                out.append(base[:-1] + "y")  # cried -> cry
    return out


def _lookup(word: str, table) -> str | None:
    for candidate in lemma_candidates(word):
        if candidate in table:
            return candidate
    return None


def tag_caption(caption: str, vocabulary: Iterable[str] | "VocabularyTable" | None = None) -> tuple[str, ...]:
    """The labels of one caption (possibly none, e.g. for an empty or off-topic text).

    ``vocabulary``: extra single-word tags to match; pass a ``VocabularyTable`` when tagging many captions so
    that it is prepared once, not per caption.
    """
    words = _WORD.findall(caption.lower().replace("\u2019", "'"))
    if vocabulary is None:
        vocab: dict[str, str] = {}
    else:
        vocab = vocabulary.table if isinstance(vocabulary, VocabularyTable) else VocabularyTable(vocabulary).table
    found: dict[str, tuple[int, int]] = {}  # label -> (aspect rank, first position)
    i = 0
    while i < len(words):
        matched = 1
        if i + 1 < len(words) and words[i] in _PHRASE_STARTS:
            phrase = f"{words[i]} {words[i + 1]}"
            hit = FORMS.get(phrase) or FORMS.get(f"{words[i]} {_lemma_or_self(words[i + 1])}")
            if hit:
                found.setdefault(hit[0], (ASPECT_RANK[hit[1]], i))
                matched = 2
        if matched == 1:
            word = words[i]
            key = _form_key(word)
            if key is not None and word not in STOP_WORDS:
                canonical, aspect = FORMS[key]
                found.setdefault(canonical, (ASPECT_RANK[aspect], i))
            elif vocab and word not in STOP_WORDS:
                key = _lookup(word, vocab)
                if key is not None:
                    found.setdefault(vocab[key], (len(ASPECT_RANK), i))
        i += matched
    for implied, cues in IMPLIED.items():
        # What a person (or an LLM) would say of the whole clip even when the caption never names it.
        if implied not in found and any(label in cues for label in found):
            found[implied] = (ASPECT_RANK["function"], -1)
    return _select(found)


def _select(found: dict[str, tuple[int, int]]) -> tuple[str, ...]:
    """At most MAX_LABELS labels, taken round-robin over the aspects (each in caption order) so that a caption
    rich in sources still keeps its scene, traits and function; returned in aspect order."""
    by_aspect: dict[int, list[tuple[int, str]]] = {}
    for label, (aspect, position) in found.items():
        by_aspect.setdefault(aspect, []).append((position, label))
    queues = [sorted(items) for _, items in sorted(by_aspect.items())]
    chosen: set[str] = set()
    while len(chosen) < MAX_LABELS and any(queues):
        for queue in queues:
            if queue and len(chosen) < MAX_LABELS:
                chosen.add(queue.pop(0)[1])
    return tuple(label for label, _ in sorted(found.items(), key=lambda item: item[1]) if label in chosen)


_PHRASE_STARTS = frozenset(form.split()[0] for form in FORMS if " " in form)


@lru_cache(maxsize=200_000)
def _form_key(word: str) -> str | None:
    """The lexicon form ``word`` is an inflection of (captions repeat their words: cached)."""
    return _lookup(word, FORMS)


@lru_cache(maxsize=200_000)
def _lemma_or_self(word: str) -> str:
    for candidate in lemma_candidates(word)[1:]:
        if candidate in FORMS:
            return candidate
    return word


class VocabularyTable:
    """A corpus vocabulary prepared for matching: surface form -> tag, for single-word tags the lexicon does not
    already cover (the lexicon's canonical form wins over a variant spelling in the corpus)."""

    def __init__(self, vocabulary: Iterable[str]) -> None:
        self.table: dict[str, str] = {}
        for tag in vocabulary:
            if not tag or len(tag) < 3 or tag in STOP_WORDS or not _WORD.fullmatch(tag):
                continue
            if _form_key(tag) is None:
                self.table.setdefault(tag, tag)

    def __len__(self) -> int:
        return len(self.table)
