"""Word knowledge for merge suggestions: spelling keys, English inflection, and which spelling is well formed.

Place in the flow: used by merge suggestions (curation/vocabulary/suggestions.py) and published vocabularies
(curation/vocabulary/published.py); reads nothing from the database.

Two lexical resources, both shipped inside their PyPI packages (nothing is downloaded at run time):
- lemminflect (MIT): English lemmas and inflections from a lexicon. It confirms that ``guitars`` is the plural of
  ``guitar`` and refuses ``electronics`` / ``acoustics`` / ``news`` as plurals (words with a lemma of their own),
  and it knows irregular plurals (``men``, ``children``, ``mice``).
- wordfreq (Apache-2.0; word lists CC BY-SA): how common a word is in English. A canonical name should be a
  dictionary word (``ukulele`` over ``ukele``) and words written apart (``banjo-music`` over ``banjomusic``).

Example::

    surface_key("Hi_Hat") == "hihat"
    inflection_pair("guitar", "guitars")   # True
    inflection_pair("electronic", "electronics")   # False: 'electronics' is a word of its own
    well_formed("banjomusic"), well_formed("banjo-music")   # False, True
"""
from __future__ import annotations

import re
from functools import lru_cache

_SEPARATORS = re.compile(r"[\s_\-]+")
_LETTERS = re.compile(r"^[a-z]+$")
DICTIONARY_ZIPF = 1.0  # wordfreq's Zipf scale: 1 = once per 100 million words; typos and run-ons are below
COMMON_ZIPF = 2.5
RUN_TOGETHER_MAX_ZIPF = 2.0  # a one-word form rarer than this, made of two common words, is a run-on  # both halves of a run-together form are common words ("banjo" 3.3, "music" 5.5)


def surface_key(text: str) -> str:
    """The normal form of a tag's spelling: case and '-', '_', spaces ignored (idempotent)."""
    return _SEPARATORS.sub("", text.lower())


def tokens(text: str) -> list[str]:
    return [t for t in _SEPARATORS.split(text.lower()) if t]


@lru_cache(maxsize=1)
def _lemminflect():
    import lemminflect

    return lemminflect


@lru_cache(maxsize=200_000)
def noun_lemmas(word: str) -> tuple[str, ...] | None:
    """The lexicon's noun lemmas of ``word``, or None when the lexicon does not know it as a noun."""
    if not _LETTERS.match(word):
        return None
    return _lemma_entry(word).get("NOUN")


def _lemma_entry(word: str) -> dict:
    """{upos: lemmas} from the lexicon. Read from its tables directly where they are reachable: the public call
    deep-copies each entry, which costs seconds over the 20,000 tags of a corpus."""
    lemmatizer = _lemminflect().Lemmatizer()
    try:
        entry = dict(lemmatizer._getLemmaDict().get(word, {}))
        entry.update(lemmatizer._getOverridesDict().get(word, {}))
        return entry
    except AttributeError:  # another lemminflect version: the public (slower) call
        return _lemminflect().getAllLemmas(word)


def inflection_pair(singular: str, plural: str) -> bool | None:
    """Is ``plural`` (separator-free key) the plural of ``singular``? True / False where the lexicon knows the
    longer word; None where it does not (compounds like 'mouseclicks'), so the caller's spelling rule decides."""
    lemmas = noun_lemmas(plural)
    if lemmas is None:
        return None
    return singular in lemmas


@lru_cache(maxsize=200_000)
def irregular_plurals(word: str) -> tuple[str, ...]:
    """Plural forms the lexicon gives a known noun that are not the word + s / es ('man' -> 'men')."""
    if not _LETTERS.match(word) or noun_lemmas(word) is None or word not in noun_lemmas(word):
        return ()
    forms = _lemminflect().getAllInflections(word, upos="NOUN").get("NNS", ())
    return tuple(f for f in forms if f not in (word, word + "s", word + "es"))


@lru_cache(maxsize=1)
def _wordfreq():
    try:
        from wordfreq import zipf_frequency
    except ImportError:  # the name rule then falls back to frequency alone
        return None
    return zipf_frequency


@lru_cache(maxsize=200_000)
def zipf(word: str) -> float:
    """How common ``word`` is in English (0 = unknown, 3 = once per million words, 7 = 'the')."""
    frequency = _wordfreq()
    return float(frequency(word, "en")) if frequency and _LETTERS.match(word) else 0.0


@lru_cache(maxsize=200_000)
def run_together(word: str) -> bool:
    """Two common words written as one that English does not write as one ('banjomusic', 'hihat')."""
    if not _LETTERS.match(word) or len(word) < 5:
        return False
    own = zipf(word)
    if own >= RUN_TOGETHER_MAX_ZIPF:
        return False  # English writes it as one word ('waterfall', 'soundscape', 'footstep')
    for cut in range(2, len(word) - 1):
        head, tail = word[:cut], word[cut:]
        if min(zipf(head), zipf(tail)) >= COMMON_ZIPF and own < min(zipf(head), zipf(tail)) - 1.5:
            return True
    return False


@lru_cache(maxsize=200_000)
def well_formed(text: str) -> bool:
    """A spelling worth naming a concept by: lowercase, words joined by hyphens (the UTS release's style), every
    word a dictionary word and no two words run together. Digits and unknown words are judged by the lexicon
    only when it is installed; without wordfreq only case and separators count."""
    if text != text.lower() or "_" in text or " " in text or text.startswith("-") or text.endswith("-"):
        return False
    if _wordfreq() is None:
        return True
    for word in text.split("-"):
        if word.isdigit() or not word.isalpha():
            continue
        if zipf(word) < DICTIONARY_ZIPF or run_together(word):
            return False
    return True


@lru_cache(maxsize=200_000)
def verb_lemmas(word: str) -> tuple[str, ...]:
    """Verb lemmas of an -ing / -ed form the lexicon knows ('rustling' -> 'rustle', 'humming' -> 'hum')."""
    if not _LETTERS.match(word) or not word.endswith(("ing", "ed")):
        return ()
    return tuple(lemma for lemma in _lemma_entry(word).get("VERB", ()) if lemma != word)
