"""Merge and prune suggestions: groups of current canonical tags that are likely one concept, best first.

Place in the flow: decide. It reads the replayed decision log and the vocabulary (canonical tags, their clips)
and proposes; a curator accepts (one ordinary merge decision plus an 'accepted' verdict) or rejects (a verdict
that keeps every pair inside the group from being linked again). Nothing changes until a verdict.

Candidate pairs of current canonical tags come from
1. surface: the same letters ignoring case, '-', '_' and spaces; a run of three or more repeated letters
   (``hisss``); one typing edit inside a long word when the rarer form is much rarer;
2. inflection: plural/singular (-s, -es, -ies), derivations sharing a stem (``reverberant`` /
   ``reverberation``), clippings (``reverb`` / ``reverberation``: one a prefix of the other, 3+ letters more);
3. meaning: sentence-transformer nearest neighbours over all tag embeddings (row blocks, never n x n at once).
Each pair is then weighed by its embedding cosine and by the corpus: the cosine of the two tags' co-occurrence
profiles (discounted positive PMI with every other tag over clips) and how seldom they share a clip (an LLM
extractor names a concept once per clip).
Guards: opposites and neighbours are never proposed. An antonym lexicon (``high`` / ``low``), a tag equal to
the other plus a short prefix (``fe-male``, ``un-``, ``non-``), different numbers (``8-bit`` / ``16-bit``) and
narrower compounds (``faint-hiss`` / ``hiss``, ``birdsong`` / ``birds``) keep two tags apart outright; every
relation weaker than a surface variant needs support from meaning plus company, and the corpus can veto
alone (``pop`` keeps company with music and song, ``pops`` with crackle and vinyl). Accepted pairs are grouped
by union-find, and a union that would put two kept-apart tags in one group is refused.

Cost: candidate pairs depend only on the tag texts and the model, so they are built once per process and kept
in memory keyed by model + hash of the tag texts (a merge into an existing tag keeps the key; a new name adds a
tag and rebuilds). At 20,000 tags on 2 cores: ~32 s the first time (model load + embedding ~25 s of it), ~5 s
in a new process once the vectors are cached in DuckDB; every call then re-reads the vocabulary and weighs the
candidates against the current corpus and decisions in ~0.5 s (bench/suggest_scale.py).

Example::

    suggestions = suggest_merges(con, top=20)
    for s in suggestions:
        print(s.canonical, s.tags, s.score, s.reasons)
    accept_suggestion(con, suggestions[0], by="ana")       # one merge decision + an 'accepted' verdict
    accept_suggestions(con, [(suggestions[2], None), (suggestions[3], "hi hat")], by="ana")  # all or none
    reject_suggestion(con, suggestions[1], by="ana")       # never proposed again
    suggest_prunes(con, k=1000)                            # [{'tag': ..., 'df': 1, 'reason': ...}, ...]
"""
from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import duckdb
import numpy as np
from scipy import sparse

from curation import store
from curation.admin import permissions
from curation.store import vocabulary as store_vocabulary
from curation.vocabulary.decisions import (
    Decision,
    DecisionError,
    DecisionRecord,
    list_decisions,
    record_decision,
    record_decisions,
    replay,
)
from curation.vocabulary.embeddings import embed_tags, model_name
from curation.vocabulary.ranking import TagMatrix, VocabularyView, compute_vocabulary, load_tag_matrix

# --- relations, strongest first (a pair found by several rules keeps the first) -------------------------------
SURFACE, REPEAT, PLURAL, TYPO, DERIVATION, CLIPPING, SEMANTIC = range(7)
# How much each relation alone says the two tags are one concept (the score's lexical part).
LEXICAL_STRENGTH = np.array([0.95, 0.9, 0.8, 0.7, 0.55, 0.5, 0.0])

# --- thresholds: measured with all-MiniLM-L6-v2 on the published 3k UTS list, each label placed in the clips
# whose AudioCaps/Clotho/MusicCaps captions mention it (the corpus tests/test_suggestions.py builds) ----------
# Neither signal decides alone. MiniLM puts derivations and typos low (percussion/percussive 0.30,
# percussion/percusion 0.25) and opposites high (male/female 0.73, high-/low-fidelity 0.93); the corpus gives
# the same company to opposites (male/female) and to one-edit neighbours (talking/walking). So every rule
# below the surface level needs "support" = embedding cosine + profile cosine, where a pair without corpus
# evidence counts PROFILE_PRIOR for its profile, and the corpus can veto on its own (pop/pops).
SUPPORT_NEEDED = np.array([0.0, 0.0, 1.0, 0.8, 1.0, 1.1, 1.3])  # per relation, SURFACE .. SEMANTIC
PROFILE_PRIOR = 0.4  # so that, without corpus evidence, a plural needs cosine >= 0.6 and a typo >= 0.4
PROFILE_DISAGREE = 0.12  # below: the two tags keep different company (pop/pops 0.09, drum/drums 0.92)
MIN_EVIDENCE_DF = 5  # below this many clips a profile is noise, not evidence
EMBED_SIGNAL = 0.6  # cosine worth naming among a link's reasons
PROFILE_SIGNAL = 0.3  # profile cosine worth naming among a link's reasons
SEMANTIC_MIN = 0.82  # embedding neighbours with no lexical relation are candidates from this cosine ...
SELDOM_TOGETHER = 0.2  # ... and are accepted only if they share at most this share of the rarer tag's clips
TYPO_MIN_LENGTH = 6  # single-edit typos only between long words: short words one edit apart are other words
TYPO_DF_RATIO = 20  # ... and only when the rarer form is this many times rarer (chords/chorus: 12x, both real)
NEIGHBOURS_PER_TAG = 10
BLOCK_ROWS = 1024  # rows of the tag x tag cosine block: 1024 x 20,000 float32 = 80 MB at a time
MAX_SHORT_PREFIX = 3  # "fe"+"male", "un"+"usual", "non"+"verbal", "sub"+"bass": a short prefix changes meaning

_SEPARATORS = re.compile(r"[\s_\-]+")
_TRIPLE = re.compile(r"(.)\1{2,}")
_DIGIT = re.compile(r"\d")
_NUMBER = re.compile(r"\d+")

# Common opposites of audio descriptions; a pair is opposed when one equals the other with one word of a pair
# swapped for its opposite (whole tag, a token, or the start/end of a tag written without separators).
_ANTONYM_PAIRS = (
    ("high", "low"), ("higher", "lower"), ("hi", "lo"), ("male", "female"), ("man", "woman"), ("men", "women"),
    ("boy", "girl"), ("masculine", "feminine"), ("indoor", "outdoor"), ("indoors", "outdoors"),
    ("interior", "exterior"), ("inside", "outside"), ("in", "out"), ("on", "off"), ("loud", "quiet"),
    ("loud", "soft"), ("fast", "slow"), ("major", "minor"), ("wet", "dry"), ("hot", "cold"), ("warm", "cold"),
    ("bright", "dark"), ("light", "dark"), ("light", "heavy"), ("hard", "soft"), ("open", "closed"),
    ("near", "far"), ("close", "distant"), ("left", "right"), ("up", "down"), ("upward", "downward"),
    ("ascending", "descending"), ("rising", "falling"), ("start", "end"), ("beginning", "ending"),
    ("intro", "outro"), ("acoustic", "electric"), ("acoustic", "electronic"), ("analog", "digital"),
    ("analogue", "digital"), ("mono", "stereo"), ("monophonic", "polyphonic"), ("live", "studio"),
    ("old", "new"), ("old", "young"), ("day", "night"), ("daytime", "nighttime"), ("morning", "evening"),
    ("happy", "sad"), ("positive", "negative"), ("clean", "dirty"), ("clean", "distorted"), ("rough", "smooth"),
    ("sharp", "dull"), ("long", "short"), ("big", "small"), ("large", "small"), ("wide", "narrow"),
    ("deep", "shallow"), ("thick", "thin"), ("early", "late"), ("front", "back"), ("upper", "lower"),
    ("treble", "bass"), ("forward", "backward"), ("inhale", "exhale"), ("inhalation", "exhalation"),
    ("accelerate", "decelerate"), ("acceleration", "deceleration"), ("accelerating", "decelerating"),
    ("upshift", "downshift"), ("crescendo", "decrescendo"), ("crescendo", "diminuendo"),
    ("consonant", "dissonant"), ("consonance", "dissonance"), ("natural", "artificial"), ("organic", "synthetic"),
    ("amateur", "professional"), ("north", "south"), ("east", "west"), ("northern", "southern"),
    ("eastern", "western"), ("push", "pull"), ("entry", "exit"), ("arrival", "departure"), ("win", "lose"),
    ("victory", "defeat"), ("more", "less"), ("increase", "decrease"), ("maximal", "minimal"),
    ("maximalist", "minimalist"), ("calm", "tense"), ("strong", "weak"), ("full", "empty"), ("solo", "ensemble"),
    ("vocal", "instrumental"), ("with", "without"), ("plus", "minus"), ("before", "after"), ("first", "last"),
)


def _antonym_lexicon(pairs: tuple[tuple[str, str], ...]) -> dict[str, frozenset[str]]:
    lexicon: dict[str, set[str]] = {}
    for x, y in pairs:
        lexicon.setdefault(x, set()).add(y)
        lexicon.setdefault(y, set()).add(x)
    return {word: frozenset(opposites) for word, opposites in lexicon.items()}


ANTONYMS = _antonym_lexicon(_ANTONYM_PAIRS)

# Suffixes whose removal leaves a stem shared by derivations of one meaning (reverber-ant / reverber-ation).
_DERIVATIONAL_SUFFIXES = ("ations", "ation", "ically", "ical", "ions", "ion", "ance", "ence", "ant", "ent", "ally",
                          "al", "ics", "ic", "ia", "ive", "ness", "ment", "ity", "ous", "ism", "ist", "ists",
                          "ized", "ize", "ised", "ise", "ing", "ers", "er", "ed", "es", "y", "e")
MIN_STEM = 4  # "tens-e"/"tens-ion" yes; shorter stems join unrelated words


@dataclass(frozen=True)
class MergeSuggestion:
    tags: tuple[str, ...]  # every member, canonical included, most frequent first
    canonical: str  # the name the group would merge into (the most frequent member)
    score: float  # 0..1: the weakest link of the group (each link combines its signals)
    reasons: tuple[str, ...]  # per link, "a ~ b: <signal>" for each signal that fired

    @property
    def group_key(self) -> str:
        """Stable identity of the member set (the verdict table remembers it)."""
        return "|".join(sorted(self.tags))

    def as_dict(self) -> dict:
        return {"tags": list(self.tags), "canonical": self.canonical, "score": self.score,
                "reasons": list(self.reasons)}


# ---------------------------------------------------------------------------------------------- public API

def suggest_merges(con: duckdb.DuckDBPyConnection, *, top: int | None = None, model_path: str | None = None,
                   matrix: TagMatrix | None = None) -> list[MergeSuggestion]:
    """Groups of current canonical tags likely to be one concept, best first (score, then total df).
    ``matrix``: the corpus's tag matrix when the caller holds it already (the app caches it); else loaded."""
    if top is not None and top < 0:
        raise ValueError(f"top={top}: expected a number of suggestions >= 0, or None for all")
    matrix = matrix if matrix is not None else load_tag_matrix(con)
    view = compute_vocabulary(matrix, replay(list_decisions(con)), rank_by="df")
    texts = matrix.tag_texts
    candidates = _candidates(con, texts, model_path)
    clips_by_tag = _clip_tag_matrix(view, len(texts))
    df = np.asarray(clips_by_tag.sum(axis=0)).ravel().astype(np.int64)
    # Only current canonical tags present in some clip: merged-away and pruned tags have df 0 here.
    live = (df[candidates.a] > 0) & (df[candidates.b] > 0) & ~_rejected_pairs(con, candidates)
    pairs = _score_pairs(candidates, np.flatnonzero(live), clips_by_tag, df)
    accepted = np.flatnonzero(pairs.accepted)
    accepted = accepted[np.lexsort((-(df[pairs.a[accepted]] + df[pairs.b[accepted]]), -pairs.score[accepted]))]
    groups = _group([(int(pairs.a[i]), int(pairs.b[i])) for i in accepted],
                    lambda u, v: _kept_apart(texts[u], texts[v], candidates.words))
    suggestions = [_suggestion(members, [accepted[e] for e in edges], pairs, texts, df)
                   for members, edges in groups]
    suggestions.sort(key=lambda s: (-s.score, -sum(int(df[candidates.id_of[t]]) for t in s.tags), s.group_key))
    return suggestions if top is None else suggestions[:top]


def accept_suggestion(con: duckdb.DuckDBPyConnection, suggestion: MergeSuggestion, *, by: str,
                      canonical: str | None = None, reason: str | None = None) -> DecisionRecord:
    """Merge every member into the suggested (or edited) canonical name and remember the verdict."""
    decision, reason, verdict = _acceptance(suggestion, canonical, reason, by=by)
    return record_decision(con, decision, by=by, reason=reason, also=verdict)


def accept_suggestions(con: duckdb.DuckDBPyConnection,
                       accepted: Sequence[tuple[MergeSuggestion, str | None]], *, by: str) -> list[DecisionRecord]:
    """Accept several suggestions as ONE write: each ``(suggestion, canonical or None)`` becomes its merge
    decision plus its 'accepted' verdict, all of them or none. Each merge is checked against the log including
    the ones before it in the list, so a refusal half-way (a stale suggestion, a cycle made by edited canonical
    names, a missing permission) rolls back every earlier one too. The records come back in the given order."""
    return record_decisions(con, [_acceptance(suggestion, canonical, None, by=by)
                                  for suggestion, canonical in accepted], by=by)


def _acceptance(suggestion: MergeSuggestion, canonical: str | None, reason: str | None, *, by: str):
    """(merge decision, reason, also) for accepting ``suggestion`` under ``canonical``: ``also(con, decision_id)``
    writes the 'accepted' verdict inside the decision's transaction (record_decision's ``also``)."""
    # Decision.merge spells the target (normalize_tag); the sources and the verdict use that spelling too.
    target = Decision.merge([], into=(suggestion.canonical if canonical is None else canonical).strip()).payload["into"]
    sources = [tag for tag in suggestion.tags if tag != target]

    def verdict(con: duckdb.DuckDBPyConnection, _decision_id: int) -> None:
        # Runs after record_decision has authorized and refused an empty name, so by.strip() is safe here.
        store_vocabulary.record_suggestion_verdict(con, suggestion.group_key, "accepted", by.strip(),
                                                   list(suggestion.tags), target)

    return (Decision.merge(sources, into=target), reason or "merge suggestion: " + "; ".join(suggestion.reasons),
            verdict)


def reject_suggestion(con: duckdb.DuckDBPyConnection, suggestion: MergeSuggestion, *, by: str) -> None:
    """Remember that these tags are not one concept: the group and every pair inside it are never proposed again."""
    by = permissions.authorize("decide", by)
    if not isinstance(by, str) or not by.strip():
        raise DecisionError("every verdict names who made it: expected a non-empty --by / display name")
    with store.transaction(con):
        store_vocabulary.record_suggestion_verdict(con, suggestion.group_key, "rejected", by.strip(), list(suggestion.tags),
                                        None)


@dataclass(frozen=True)
class PruneContext:
    """What a prune rule may look at."""

    con: duckdb.DuckDBPyConnection
    view: VocabularyView  # current vocabulary, TF-IDF ranked
    k: int  # vocabulary size being prepared
    min_df: int  # fewer clips than this is "too rare to learn"


def _rare_tags(context: PruneContext) -> list[dict]:
    ranking = context.view.ranking
    rare = ranking[ranking.df < context.min_df]
    out = []
    for tag, df, rank in zip(rare.tag.tolist(), rare.df.tolist(), rare["rank"].tolist()):
        where = (f"in the top {context.k} (rank {rank}): takes a vocabulary slot" if rank <= context.k
                 else f"outside the top {context.k} (rank {rank})")
        out.append({"tag": tag, "df": int(df), "rank": int(rank), "in_top_k": rank <= context.k, "rule": "rare",
                    "reason": f"in {df} clip{'s' if df != 1 else ''}, fewer than {context.min_df}; {where}"})
    return out


# Each rule proposes tags to prune with a reason; audit-based rules (captioner bias, hallucinated tags) are
# added here as further functions of a PruneContext.
PRUNE_RULES: tuple[Callable[[PruneContext], list[dict]], ...] = (_rare_tags,)


def suggest_prunes(con: duckdb.DuckDBPyConnection, *, k: int, min_df: int = 2,
                   matrix: TagMatrix | None = None) -> list[dict]:
    """Tags worth pruning before an export at K: each {tag, df, rank, in_top_k, rule, reason}, top-K ones first."""
    if k < 1 or min_df < 1:
        raise ValueError(f"k={k}, min_df={min_df}: expected a vocabulary size >= 1 and a clip count >= 1")
    view = compute_vocabulary(matrix if matrix is not None else load_tag_matrix(con), replay(list_decisions(con)))
    context = PruneContext(con=con, view=view, k=k, min_df=min_df)
    proposals = [proposal for rule in PRUNE_RULES for proposal in rule(context)]
    return sorted(proposals, key=lambda p: (not p["in_top_k"], p["rank"]))


# ---------------------------------------------------------------------------------------------- candidates

@dataclass(frozen=True)
class _Candidates:
    """Pairs of raw tag ids (a < b) related by some rule and not opposed; depends on tag texts + model only."""

    a: np.ndarray  # int64 raw tag ids
    b: np.ndarray
    relation: np.ndarray  # int8, SURFACE .. SEMANTIC
    cosine: np.ndarray  # float32 embedding cosine
    detail: tuple[str, ...]  # per pair: the shared stem of a derivation, else ""
    shares_word: np.ndarray  # bool: the two tags have a word in common ("drum-beat" / "drum-machine")
    id_of: dict[str, int]
    words: frozenset[str]  # the corpus's own word list (see _known_words)


_CACHE: dict[tuple[str, str], _Candidates] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_ENTRIES = 4  # a few databases open in one process; each entry is a few MB at 20k tags


def _candidates(con: duckdb.DuckDBPyConnection, texts: tuple[str, ...], model_path: str | None) -> _Candidates:
    key = (model_name(model_path), hashlib.sha1("\n".join(texts).encode()).hexdigest())
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached
    ids = [i for i, text in enumerate(texts) if text]
    vectors = np.zeros((len(texts), 0), dtype=np.float32)
    if ids:
        embedded = embed_tags(con, [texts[i] for i in ids], model_path=model_path)
        vectors = np.zeros((len(texts), embedded.shape[1]), dtype=np.float32)
        vectors[ids] = embedded
    found = _lexical_pairs(texts, ids)
    neighbours_a, neighbours_b = _embedding_neighbours(vectors[ids], min_cosine=SEMANTIC_MIN,
                                                      per_tag=NEIGHBOURS_PER_TAG)
    id_array = np.asarray(ids, dtype=np.int64)
    for u, v in zip(id_array[neighbours_a].tolist(), id_array[neighbours_b].tolist()):
        found.setdefault((u, v), (SEMANTIC, ""))
    words = _known_words([texts[i] for i in ids])
    kept = [(pair, rel) for pair, rel in found.items() if not _kept_apart(texts[pair[0]], texts[pair[1]], words)]
    a = np.array([p[0] for p, _ in kept], dtype=np.int64)
    b = np.array([p[1] for p, _ in kept], dtype=np.int64)
    cosine = (np.einsum("ij,ij->i", vectors[a], vectors[b]) if len(kept) else np.zeros(0)).astype(np.float32)
    shares_word = np.array([bool(_word_set(texts[u]) & _word_set(texts[v])) for (u, v), _ in kept], dtype=bool)
    candidates = _Candidates(a=a, b=b, relation=np.array([r[0] for _, r in kept], dtype=np.int8), cosine=cosine,
                             detail=tuple(r[1] for _, r in kept), shares_word=shares_word,
                             id_of={texts[i]: i for i in ids}, words=words)
    with _CACHE_LOCK:
        _CACHE[key] = candidates
        while len(_CACHE) > _CACHE_ENTRIES:
            _CACHE.pop(next(iter(_CACHE)))
    return candidates


def surface_key(text: str) -> str:
    """The normal form of a tag's spelling: case and '-', '_', spaces ignored (idempotent)."""
    return _SEPARATORS.sub("", text.lower())


def _tokens(text: str) -> list[str]:
    return [t for t in _SEPARATORS.split(text.lower()) if t]


def _lexical_pairs(texts: tuple[str, ...], ids: list[int]) -> dict[tuple[int, int], tuple[int, str]]:
    """(a, b) with a < b -> (relation, detail), strongest relation first; rules work on separator-free keys."""
    by_key: dict[str, list[int]] = {}
    for i in ids:
        by_key.setdefault(surface_key(texts[i]), []).append(i)
    n_words = {i: len(_tokens(texts[i])) for i in ids}
    found: dict[tuple[int, int], tuple[int, str]] = {}

    def link(key_u: str, key_v: str, relation: int, detail: str = "") -> None:
        for u in by_key[key_u]:
            for v in by_key[key_v]:
                # A stem or prefix shared across a word boundary is a compound ("metal" / "metallic-clank").
                if u != v and (relation not in (DERIVATION, CLIPPING) or n_words[u] == n_words[v]):
                    found.setdefault((min(u, v), max(u, v)), (relation, detail))

    for key in by_key:
        link(key, key, SURFACE)
    for key in by_key:
        if _TRIPLE.search(key):  # three identical letters in a row are a typo in English words
            # "hisss" is "hiss" (not "his"); a single letter only when no doubled form exists ("heeey" / "hey").
            fixed = next((f for f in (_TRIPLE.sub(r"\1\1", key), _TRIPLE.sub(r"\1", key)) if f in by_key), None)
            if fixed:
                link(fixed, key, REPEAT)
    for key in by_key:
        plurals = [key + "es"] + ([key + "s"] if not key.endswith("s") else [])
        if key.endswith("y") and len(key) > 2:
            plurals.append(key[:-1] + "ies")
        for plural in plurals:
            if plural in by_key:
                link(key, plural, PLURAL)
    long_keys = [key for key in by_key if len(key) >= TYPO_MIN_LENGTH and not _DIGIT.search(key)]
    by_deletion: dict[str, list[str]] = {}
    for key in long_keys:
        for variant in {key} | {key[:i] + key[i + 1:] for i in range(len(key))}:
            by_deletion.setdefault(variant, []).append(key)
    for keys in by_deletion.values():
        for i, key_u in enumerate(keys):
            for key_v in keys[i + 1:]:
                if _inner_edit(key_u, key_v):
                    link(key_u, key_v, TYPO)
    by_stem: dict[str, set[str]] = {}
    for key in by_key:
        for suffix in _DERIVATIONAL_SUFFIXES:
            if key.endswith(suffix) and len(key) - len(suffix) >= MIN_STEM:
                by_stem.setdefault(key[: len(key) - len(suffix)], set()).add(key)
        if len(key) >= MIN_STEM:
            by_stem.setdefault(key, set()).add(key)
    for stem, keys in by_stem.items():
        ordered = sorted(keys)
        for i, key_u in enumerate(ordered):
            for key_v in ordered[i + 1:]:
                link(key_u, key_v, DERIVATION, stem)
    for key in by_key:
        for length in range(3, len(key) - 2):
            if key[:length] in by_key:
                link(key[:length], key, CLIPPING)
    return found


def _inner_edit(u: str, v: str) -> bool:
    """One substitution, adjacent swap or insertion, never at the last letter (where English inflects:
    concert/concerto, tone/toned)."""
    if len(u) == len(v):
        diff = [i for i in range(len(u)) if u[i] != v[i]]
        if len(diff) == 1:
            return diff[0] < len(u) - 1
        return (len(diff) == 2 and diff[1] == diff[0] + 1 and u[diff[0]] == v[diff[1]] and u[diff[1]] == v[diff[0]]
                and diff[1] < len(u) - 1)
    longer, shorter = (u, v) if len(u) > len(v) else (v, u)
    if len(longer) != len(shorter) + 1:
        return False
    positions = [i for i in range(len(longer)) if longer[:i] + longer[i + 1:] == shorter]
    return bool(positions) and len(longer) - 1 not in positions


def _embedding_neighbours(vectors: np.ndarray, *, min_cosine: float, per_tag: int,
                          block_rows: int = BLOCK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Row index pairs (a < b): each row's per_tag nearest rows at or above min_cosine.

    One block of rows against all rows at a time: never the whole n x n matrix.
    """
    found_a, found_b = [], []
    for start in range(0, len(vectors), block_rows):
        block = vectors[start:start + block_rows] @ vectors.T
        rows, cols = np.nonzero(block >= min_cosine)
        cos = block[rows, cols]
        rows = rows + start
        off_diagonal = rows != cols
        rows, cols, cos = rows[off_diagonal], cols[off_diagonal], cos[off_diagonal]
        order = np.lexsort((-cos, rows))
        rows, cols, cos = rows[order], cols[order], cos[order]
        rank_in_row = np.arange(len(rows)) - np.searchsorted(rows, rows)
        nearest = rank_in_row < per_tag
        found_a.append(np.minimum(rows, cols)[nearest])
        found_b.append(np.maximum(rows, cols)[nearest])
    if not found_a:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    pair_code = np.unique(np.concatenate(found_a).astype(np.int64) * len(vectors) + np.concatenate(found_b))
    return pair_code // len(vectors), pair_code % len(vectors)


# ---------------------------------------------------------------------------------------------- guards

def _opposed_words(x: str, y: str) -> str | None:
    if y in ANTONYMS.get(x, ()):
        return f"opposites '{x}' / '{y}'"
    for shorter, longer in ((x, y), (y, x)):
        prefix = longer[: len(longer) - len(shorter)]
        if longer.endswith(shorter) and prefix and (len(prefix) <= MAX_SHORT_PREFIX or prefix == "anti"):
            return f"'{longer}' is '{shorter}' with the prefix '{prefix}-'"
    return None


@lru_cache(maxsize=200_000)
def _opposition(u: str, v: str) -> str | None:
    """Why u and v name opposite or neighbouring concepts, or None: never in one group."""
    ku, kv = surface_key(u), surface_key(v)
    if ku == kv:
        return None
    if _NUMBER.sub("#", ku) == _NUMBER.sub("#", kv):
        return "different numbers"  # 8-bit / 16-bit, 1980s / 1990s
    why = _opposed_words(ku, kv)
    if why:
        return why
    tu, tv = _tokens(u), _tokens(v)
    if len(tu) == len(tv):
        differing = [(x, y) for x, y in zip(tu, tv) if x != y]
        if len(differing) == 1:
            why = _opposed_words(*differing[0])
            if why:
                return why
    # Compounds written without separators: "highfidelity" / "lowfidelity", "majorkey" / "minorkey".
    for first, second in ((ku, kv), (kv, ku)):
        for length in range(1, len(first)):
            head, tail = first[:length], first[length:]
            for opposite in ANTONYMS.get(head, ()):
                if second == opposite + tail:
                    return f"opposites '{head}' / '{opposite}'"
            for opposite in ANTONYMS.get(tail, ()):
                if second == head + opposite:
                    return f"opposites '{tail}' / '{opposite}'"
    return None


def _singular(token: str) -> str:
    return token[:-1] if len(token) > 3 and token.endswith("s") and not token.endswith("ss") else token


def _kept_apart(u: str, v: str, words: frozenset[str]) -> bool:
    """Opposites, neighbours and narrower compounds never share a group, even through other links."""
    return _opposition(u, v) is not None or _narrower(u, v, words) is not None


def _word_set(text: str) -> set[str]:
    return {_singular(t) for t in _tokens(text)}


def _narrower(u: str, v: str, words: frozenset[str]) -> str | None:
    """Why one tag is a narrower compound of the other, or None: "faint-hiss" / "hiss" (a modifier added),
    "metalcore" / "metal" and "birdsong" / "birds" (the rest of the longer tag is a word of its own)."""
    tu, tv = _word_set(u), _word_set(v)
    if tu < tv or tv < tu:
        broad, narrow = (u, v) if tu < tv else (v, u)
        return f"'{narrow}' is a kind of '{broad}'"
    ku, kv = surface_key(u), surface_key(v)
    shorter, longer = sorted((ku, kv), key=len)
    if longer.startswith(shorter):
        rests = [longer[len(shorter):]] + ([longer[len(shorter) - 1:]] if shorter.endswith("s") else [])
    elif longer.endswith(shorter):
        rests = [longer[: len(longer) - len(shorter)]]
    else:
        return None
    rest = next((r for r in rests if len(r) >= 3 and r in words), None)
    return f"'{longer}' is a compound of '{shorter}' and '{rest}'" if rest else None


def _known_words(texts: list[str]) -> frozenset[str]:
    """Every tag written without separators, and every word of a multi-word tag: the corpus's own word list."""
    words = set()
    for text in texts:
        tokens = _tokens(text)
        words.add("".join(tokens))
        if len(tokens) > 1:
            words.update(tokens)
    return frozenset(words)


def _rejected_pairs(con: duckdb.DuckDBPyConnection, candidates: _Candidates) -> np.ndarray:
    """Per candidate: does a rejected group hold both tags? (Those pairs are never linked again.)"""
    codes = set()
    width = max(candidates.id_of.values(), default=0) + 1
    for members in store_vocabulary.rejected_suggestion_members(con):
        ids = sorted(candidates.id_of[t] for t in members if t in candidates.id_of)
        codes.update(u * width + v for i, u in enumerate(ids) for v in ids[i + 1:])
    if not codes:
        return np.zeros(len(candidates.a), dtype=bool)
    return np.isin(candidates.a * width + candidates.b, np.fromiter(codes, dtype=np.int64, count=len(codes)))


# ---------------------------------------------------------------------------------------------- corpus evidence

def _clip_tag_matrix(view: VocabularyView, n_ids: int) -> sparse.csr_matrix:
    """Binary clips x canonical tag ids (ids beyond the raw texts, i.e. unknown names, are left out)."""
    rows = view.canonical_rows
    clip = np.repeat(np.arange(rows.shape[0]), rows.shape[1])
    tag = rows.ravel()
    present = (tag >= 0) & (tag < n_ids)
    return sparse.csr_matrix((np.ones(int(present.sum()), dtype=np.float64), (clip[present], tag[present])),
                             shape=(rows.shape[0], n_ids))


@dataclass(frozen=True)
class _Pairs:
    """Live candidate pairs with their evidence and verdict (arrays aligned)."""

    a: np.ndarray
    b: np.ndarray
    relation: np.ndarray
    detail: list[str]
    cosine: np.ndarray
    profile: np.ndarray  # co-occurrence profile cosine (0 without evidence)
    evidence: np.ndarray  # bool: both tags frequent enough for the profile to mean something
    together: np.ndarray  # clips holding both
    either: np.ndarray  # clips holding one or both
    score: np.ndarray
    accepted: np.ndarray


def _profiles(clips_by_tag: sparse.csr_matrix, df: np.ndarray, a: np.ndarray,
              b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(profile cosine, together, both have a profile) per pair.

    A tag's profile is its row of positive pointwise mutual information with every other tag over clips:
    log(P(t, c) / (P(t) P(c))), kept when above 0. Raw counts would make every pair of frequent tags look alike
    (all keep company with "music" or "speech"); PMI keeps only the company a tag keeps more than chance does.
    The two tags' own columns are left out, so that appearing together does not count as sharing company.
    Only rows of tags in some candidate pair are built, never the full tag x tag matrix.
    """
    involved = np.unique(np.concatenate([a, b]))
    n_clips = clips_by_tag.shape[0]
    counts = (clips_by_tag.tocsc()[:, involved].T @ clips_by_tag).tocsr()  # |involved| x n_ids
    row_a, row_b = np.searchsorted(involved, a), np.searchsorted(involved, b)
    together = np.asarray(counts[row_a, b]).ravel()
    counts = counts.tocoo()
    row_df, col_df = df[involved[counts.row]], df[counts.col]
    # Discounted (Pantel & Lin 2002): a PMI resting on one or two clips is mostly chance.
    rarest = np.minimum(row_df, col_df)
    pmi = (np.log(counts.data * n_clips / (row_df * col_df))
           * counts.data / (counts.data + 1) * rarest / (rarest + 1))
    positive = pmi > 0
    ppmi = sparse.csr_matrix((pmi[positive], (counts.row[positive], counts.col[positive])), shape=counts.shape)
    a_at_a, a_at_b = np.asarray(ppmi[row_a, a]).ravel(), np.asarray(ppmi[row_a, b]).ravel()
    b_at_a, b_at_b = np.asarray(ppmi[row_b, a]).ravel(), np.asarray(ppmi[row_b, b]).ravel()
    dot = np.asarray(ppmi[row_a].multiply(ppmi[row_b]).sum(axis=1)).ravel() - a_at_a * b_at_a - a_at_b * b_at_b
    squares = np.asarray(ppmi.multiply(ppmi).sum(axis=1)).ravel()
    norm_a = np.maximum(squares[row_a] - a_at_a ** 2 - a_at_b ** 2, 0.0)
    norm_b = np.maximum(squares[row_b] - b_at_a ** 2 - b_at_b ** 2, 0.0)
    has_profile = (norm_a > 1e-12) & (norm_b > 1e-12)
    cosine = np.where(has_profile, np.maximum(dot, 0.0) / np.sqrt(np.maximum(norm_a * norm_b, 1e-24)), 0.0)
    return np.minimum(cosine, 1.0), together.astype(np.int64), has_profile


def _score_pairs(candidates: _Candidates, live: np.ndarray, clips_by_tag: sparse.csr_matrix,
                 df: np.ndarray) -> _Pairs:
    a, b = candidates.a[live], candidates.b[live]
    relation, cosine = candidates.relation[live], candidates.cosine[live].astype(np.float64)
    if len(a):
        profile, together, has_profile = _profiles(clips_by_tag, df, a, b)
    else:
        profile, together, has_profile = np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    dfa, dfb = df[a], df[b]
    rarer, commoner = np.minimum(dfa, dfb), np.maximum(dfa, dfb)
    evidence = has_profile & (rarer >= MIN_EVIDENCE_DF)
    profile = np.where(evidence, profile, 0.0)
    together_share = together / np.maximum(rarer, 1)
    support = cosine + np.where(evidence, profile, PROFILE_PRIOR)
    accepted = (support >= SUPPORT_NEEDED[relation]) & ~(evidence & (profile < PROFILE_DISAGREE))
    accepted |= np.isin(relation, (SURFACE, REPEAT))
    accepted &= (relation != TYPO) | (rarer * TYPO_DF_RATIO <= commoner)
    # LLM extractors name a concept once per clip: two tags often in one clip are two concepts.
    accepted &= (relation != SEMANTIC) | (together_share <= SELDOM_TOGETHER)
    # Tags sharing a word look alike to the embedding because of that word (drum-beat / drum-machine,
    # people-talk / people-walk): without a relation stronger than a typo, only the corpus can vouch for them.
    accepted &= ~np.isin(relation, (TYPO, SEMANTIC)) | ~candidates.shares_word[live] | evidence
    semantic_strength = np.clip((cosine - 0.5) / 0.5, 0.0, 1.0)
    corpus_strength = profile * (1.0 - np.minimum(together_share, 1.0))
    score = 1.0 - (1.0 - LEXICAL_STRENGTH[relation]) * (1.0 - 0.6 * semantic_strength) * (1.0 - 0.5 * corpus_strength)
    return _Pairs(a=a, b=b, relation=relation, detail=[candidates.detail[i] for i in live], cosine=cosine,
                  profile=profile, evidence=evidence, together=together,
                  either=dfa + dfb - together, score=score, accepted=accepted.astype(bool))


# ---------------------------------------------------------------------------------------------- grouping

def _group(edges: list[tuple[int, int]],
           kept_apart: Callable[[int, int], bool]) -> list[tuple[list[int], list[int]]]:
    """Union-find over edges (strongest first): (members, indices of the edges that joined them) per group.

    An edge whose union would put two kept-apart tags in one group is skipped, so no group ever holds
    opposites even through a chain of individually harmless links.
    """
    root: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    joined_by: dict[int, list[int]] = {}

    def find(x: int) -> int:
        root.setdefault(x, x)
        while root[x] != x:
            root[x] = root[root[x]]
            x = root[x]
        return x

    for index, (u, v) in enumerate(edges):
        ru, rv = find(u), find(v)
        if ru == rv:
            continue
        group_u, group_v = members.get(ru, [u]), members.get(rv, [v])
        if any(kept_apart(x, y) for x in group_u for y in group_v):
            continue
        if len(group_u) < len(group_v):
            ru, rv, group_u, group_v = rv, ru, group_v, group_u
        root[rv] = ru
        members[ru] = group_u + group_v
        joined_by[ru] = joined_by.get(ru, []) + joined_by.pop(rv, []) + [index]
        members.pop(rv, None)
    return [(members[r], joined_by[r]) for r in members]


def _canonical_order(text: str, df: int) -> tuple:
    """Most frequent first; ties: written without separators, then shortest, then alphabetical."""
    return (-df, bool(_SEPARATORS.search(text)), len(text), text)


def _suggestion(members: list[int], edges: list[int], pairs: _Pairs, texts: tuple[str, ...],
                df: np.ndarray) -> MergeSuggestion:
    ordered = sorted(members, key=lambda i: _canonical_order(texts[i], int(df[i])))
    reasons = []
    for e in sorted(edges, key=lambda e: -pairs.score[e]):
        u, v = sorted((int(pairs.a[e]), int(pairs.b[e])), key=lambda i: _canonical_order(texts[i], int(df[i])))
        reasons.extend(f"{texts[u]} ~ {texts[v]}: {signal}" for signal in _signals(pairs, e, texts, df))
    return MergeSuggestion(tags=tuple(texts[i] for i in ordered), canonical=texts[ordered[0]],
                           score=round(float(min(pairs.score[e] for e in edges)), 4), reasons=tuple(reasons))


def _signals(pairs: _Pairs, e: int, texts: tuple[str, ...], df: np.ndarray) -> list[str]:
    """The signals that fired for one accepted link, in words."""
    u, v = int(pairs.a[e]), int(pairs.b[e])
    short, long_ = sorted((texts[u], texts[v]), key=lambda t: (len(surface_key(t)), t))
    rare, common = sorted((u, v), key=lambda i: (int(df[i]), texts[i]))
    relation = int(pairs.relation[e])
    signals = []
    if relation == SURFACE:
        signals.append("surface variant: same letters ignoring case, '-', '_', spaces")
    elif relation == REPEAT:
        signals.append(f"repeated-letter typo: '{long_}' for '{short}'")
    elif relation == PLURAL:
        signals.append(f"plural of '{short}'")
    elif relation == TYPO:
        signals.append(f"typo: '{texts[rare]}' is one edit from '{texts[common]}' and "
                       f"{int(df[common]) // max(int(df[rare]), 1)}x rarer")
    elif relation == DERIVATION:
        signals.append(f"derivation: shares stem '{pairs.detail[e]}'")
    elif relation == CLIPPING:
        signals.append(f"clipping: '{short}' is '{long_}' shortened")
    if pairs.cosine[e] >= EMBED_SIGNAL:
        signals.append(f"embedding cosine {pairs.cosine[e]:.2f}")
    if pairs.evidence[e] and pairs.profile[e] >= PROFILE_SIGNAL:
        signals.append(f"co-occurrence profiles cosine {pairs.profile[e]:.2f}, together in {int(pairs.together[e])} "
                       f"of {int(pairs.either[e])} clips")
    return signals
