"""Caption text index: a token index over GENERATED captions for fast free-text search on the Browse page.

Place in the flow: ingest -> (this module: ``index_ingest`` runs inside every ingest's transaction) -> browse.
A full ILIKE scan of 360k x 2.5 KB captions takes 0.3-0.7 s and DuckDB's fts extension cannot be installed
here, so each clip's captions are reduced to a set of terms in ``caption_terms`` / ``caption_postings``.

Tokenisation (one SQL definition in ``store_browse``, used for captions and queries alike): lowercase, then
split on every character that is not a Unicode letter or digit (``dog's`` -> ``dog``, ``s``;
``50%_off`` -> ``50``, ``off``; ``café`` stays whole). No stemming (``dogs`` does not find ``dog``). Words
in ``STOP_WORDS`` are not indexed.

Search semantics of a query:
  * every query word must occur as a whole token (AND); stop words alone are ignored;
  * a "quoted phrase" must also occur as a case-insensitive substring of a generated caption;
  * a word holding anything but letters and digits (``50%``, ``o'clock``, ``c++``, ``'; drop``) must also
    occur literally as a substring: quotes, ``%``, ``_`` and SQL metacharacters are plain text, never
    patterns (everything is a bound parameter and the match is ``contains``, not LIKE);
  * substrings are checked only on the clips the tokens selected; a query with no indexable word (only
    punctuation or stop words inside quotes) has no such narrowing and scans every caption (slow, correct).

Example::

    index_captions(con)                      # once for a database built before the index existed
    query = parse_query(con, 'dog "barking loudly" 50%')
    keys = search(con, 'dog "barking loudly" 50%')
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Sequence

import duckdb
import numpy as np

from curation import store
from curation.errors import UtsError
from curation.store import browse as store_browse

# Function words that would each post to nearly every clip (a third of all postings) and never narrow a search.
STOP_WORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it", "its", "of", "on",
    "or", "that", "the", "this", "to", "with",
})
_STOP_LIST = tuple(sorted(STOP_WORDS))
_PHRASE = re.compile(r'"([^"]*)"')


class TextIndexMissingError(UtsError):
    """The database holds generated captions but its caption index was never built."""

    def __init__(self) -> None:
        super().__init__(
            "caption text index: this database has generated captions but no index over them (it was ingested "
            "before the index existed); build it once with curation.ingest.text_index.index_captions(con) "
            "(~25 s for 360k clips); every later ingest keeps it current")


@dataclass(frozen=True)
class IndexReport:
    clips: int  # clips whose postings were (re)written
    new_terms: int
    postings: int  # postings written
    terms: int  # terms in the index afterwards
    total_postings: int
    seconds: float


def tokenize(con: duckdb.DuckDBPyConnection, text: str) -> list[str]:
    """The index terms of a text, in order, repeats kept (stop words and empty pieces dropped)."""
    [(_lowered, tokens)] = store_browse.raw_tokens(con, [text])
    return [t for t in tokens if t not in STOP_WORDS]


def index_captions(con: duckdb.DuckDBPyConnection, clip_keys: Sequence[int] | np.ndarray | None = None) -> IndexReport:
    """(Re)build the postings of ``clip_keys`` (None: every clip, a full rebuild) in one transaction.

    Call after anything other than ingest writes or replaces generated captions. A full rebuild also restores
    the term-clustered layout that many small re-ingests wear down.
    """
    started = time.perf_counter()
    keys = None if clip_keys is None else np.unique(np.asarray(clip_keys, dtype=np.int64))
    with store.transaction(con):
        write = store_browse.replace_postings(con, _STOP_LIST, clip_keys=keys)
    return _report(write, started)


def index_clips(con: duckdb.DuckDBPyConnection, clip_keys: Sequence[int]) -> IndexReport:
    """Reindex the captions of ``clip_keys``; call inside the transaction that wrote those captions."""
    started = time.perf_counter()
    keys = np.unique(np.asarray(clip_keys, dtype=np.int64))
    return _report(store_browse.replace_postings(con, _STOP_LIST, clip_keys=keys), started)


def index_ingest(con: duckdb.DuckDBPyConnection, ingest_id: int) -> IndexReport:
    """Reindex the clips an ingest wrote (new and re-ingested ones); call inside that ingest's transaction."""
    started = time.perf_counter()
    return _report(store_browse.replace_postings(con, _STOP_LIST, ingest_id=ingest_id), started)


def _report(write: store_browse.PostingsWrite, started: float) -> IndexReport:
    return IndexReport(clips=write.clips, new_terms=write.new_terms, postings=write.postings, terms=write.terms,
                       total_postings=write.total_postings, seconds=time.perf_counter() - started)


@dataclass(frozen=True)
class TextQuery:
    """A parsed free-text query."""

    text: str
    terms: tuple[str, ...]  # index terms that must all occur (AND), distinct, in query order
    literals: tuple[str, ...]  # case-insensitive substrings that must occur (phrases, words with punctuation)

    @property
    def is_empty(self) -> bool:
        """Nothing to match (blank, or stop words only): the query restricts nothing."""
        return not self.terms and not self.literals


def parse_query(con: duckdb.DuckDBPyConnection, text: str) -> TextQuery:
    phrases = [p.strip() for p in _PHRASE.findall(text)]
    # An unbalanced quote stays in the remaining text and is matched literally like any punctuation.
    items = [(word, False) for word in _PHRASE.sub(" ", text).split()] + [(p, True) for p in phrases if p]
    terms: list[str] = []
    literals: list[str] = []
    for (item, is_phrase), (lowered, tokens) in zip(items, store_browse.raw_tokens(con, [i[0] for i in items])):
        terms += [t for t in tokens if t not in STOP_WORDS]
        if tokens != [lowered]:  # the token alone would not say everything the user typed
            literals.append(item)
    return TextQuery(text=text, terms=tuple(dict.fromkeys(terms)), literals=tuple(dict.fromkeys(literals)))


def candidate_clip_keys(con: duckdb.DuckDBPyConnection, query: TextQuery, *, low: int | None = None,
                        high: int | None = None) -> np.ndarray | None:
    """Sorted clip keys holding every term of the query (None when it has no term: every clip is a candidate),
    only those with low <= clip_key <= high when given (a page reads a window of keys at a time).

    Literals are not checked here; ``search`` and ``browse`` check them on these candidates only.
    """
    if not query.terms:
        return None
    ids = store_browse.term_ids(con, query.terms)
    keys = np.array([], dtype=np.int64)
    if len(ids) == len(query.terms):
        # AND in numpy over sorted key arrays: ~5 ms per common term, where a SQL GROUP BY ... HAVING over three
        # terms found in every clip takes ~100 ms.
        postings = sorted((store_browse.clips_with_term(con, term_id, low=low, high=high)
                           for term_id in ids.values()), key=len)
        keys = postings[0]
        for other in postings[1:]:
            if not len(keys):
                break
            keys = intersect_sorted(keys, other)
    if not len(keys) and store_browse.index_is_missing(con):
        raise TextIndexMissingError()
    return keys


def search(con: duckdb.DuckDBPyConnection, text: str) -> np.ndarray:
    """Every clip key matching a query, sorted (terms via the index, then literals on those clips only)."""
    query = parse_query(con, text)
    if query.is_empty:
        raise ValueError(f"search: {text!r} holds no word to search for (blank or stop words only)")
    keys = candidate_clip_keys(con, query)
    if query.literals and (keys is None or len(keys)):
        keys = store_browse.clips_holding_literals(con, query.literals, keys)
    return keys


def intersect_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Values present in both sorted, duplicate-free arrays (binary search of the shorter one in the longer)."""
    if len(a) > len(b):
        a, b = b, a
    if not len(a):
        return a
    position = np.searchsorted(b, a)
    found = position < len(b)
    found[found] = b[position[found]] == a[found]
    return a[found]
