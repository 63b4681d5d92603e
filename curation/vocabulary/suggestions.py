"""Merge suggestions: groups of current canonical tags that are likely one concept, ordered by what accepting
them changes; and prune suggestions.

Place in the flow: decide. It reads the replayed decision log, the vocabulary (canonical tags, their clips) and
the seeded published vocabulary (if any), and proposes; a curator accepts (one ordinary merge decision plus an
'accepted' verdict) or rejects (a verdict that keeps every pair inside the group from being linked again).
Nothing changes until a verdict.

Candidate pairs of current canonical tags come from
1. surface: the same letters ignoring case, '-', '_' and spaces; a run of three or more repeated letters
   (``hisss``); one typing edit inside a long word when the rarer form is much rarer;
2. inflection: plural/singular (-s, -es, -ies and the lexicon's irregular plurals), confirmed by lemminflect's
   English lexicon where it knows the word ('electronics' is a word of its own, not a plural); derivations
   sharing a stem (``reverberant`` / ``reverberation``, ``rustle`` / ``rustling``); clippings (``reverb`` /
   ``reverberation``);
3. meaning: sentence-transformer nearest neighbours over all tag embeddings (row blocks, never n x n at once).

Corpus evidence is calibrated against chance (``_calibrated_evidence``). A tag's company is its co-occurrence
profile (discounted positive PMI with every other tag). Each tag's clips are split into two halves; two halves of
one tag show how alike the profiles of one concept look at that sample size ("same-concept" level), halves of two
random tags of matched document frequency show what chance gives ("chance" level: median and 95th percentile
per pair of log2-df bins). The pair's own cross-half similarity then
- supports the link only where it departs from chance (above the null's 95th percentile, and by a margin), in
  proportion to how close it comes to the same-concept level;
- vetoes it only where both tags have company of their own (their halves agree far beyond chance) and the pair
  stays near chance: the corpus shows clearly different use (``pop`` with music and song, ``pops`` with crackle
  and vinyl).
On a corpus without co-occurrence structure nothing departs from chance: no support and no veto, so lexical
relations stand on their own there (surface variants and confirmed inflections always; derivations and clippings
need the embedding or the corpus to vouch for them, because suffix rules also pair organ/organic, metal/metallic).
Guards: opposites and neighbours are never proposed (an antonym lexicon, a short prefix such as ``fe-male``,
``non-``, different numbers, narrower compounds).

Groups are coherent: every member is linked directly to the group's canonical tag by an accepted link (no chains
through a third tag), a member joined only by meaning must be linked to every other member too, and each member
beyond the third needs a stronger link. The canonical name is the most frequent well-formed spelling (a
dictionary word, hyphen-joined, lowercase: ``ukulele`` over ``ukele``, ``banjo-music`` over ``banjomusic``); a
label of the seeded published vocabulary comes first, and a release label no clip carries yet is proposed as the
target when a tag is its surface variant or inflection. A pruned tag is never a member nor a target.

Order ("impact", the default): what accepting changes, weighted by confidence: clips whose canonical tag set
changes, plus changes of top-K membership counted as the K-th tag's document frequency each (the canonical tag
entering the top K, slots freed by merged members). Seeded mappings come first. ``order="confidence"`` sorts by
the score alone. Each suggestion carries its effect in words ("changes 4,210 clips; 'vocals' enters the top 800").

Cost: candidate pairs depend only on the tag texts and the model, so they are built once per process and kept in
memory keyed by model + hash of the tag texts; results are kept per corpus version, decision log, verdicts and
seeded list, so an unchanged queue is answered from memory. At 20,000 tags (bench/suggest_scale.py): the first
call embeds every tag (most of the cold cost); a repeated call takes ~0.5 s; after an accept the queue is
recomputed (calibration, groups, impact) in a few seconds on a loaded 2-core machine (bench/RESULTS.md).

Example::

    suggestions = suggest_merges(con, top=20, k=800)
    for s in suggestions:
        print(s.canonical, s.tags, s.score, s.effect, s.reasons)
    accept_suggestion(con, suggestions[0], by="ana")       # one merge decision + an 'accepted' verdict
    accept_suggestions(con, [(suggestions[2], None), (suggestions[3], "hi hat")], by="ana")  # all or none
    reject_suggestion(con, suggestions[1], by="ana")       # never proposed again
    suggest_prunes(con, k=1000)                            # [{'tag': ..., 'df': 1, 'reason': ...}, ...]
"""
from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import duckdb
import numpy as np
from scipy import sparse

from curation import store
from curation.admin import permissions
from curation.ingest.tag_text import normalize_tag
from curation.store import published as store_published
from curation.store import vocabulary as store_vocabulary
from curation.vocabulary import lexical
from curation.vocabulary.decisions import (
    Decision,
    DecisionError,
    DecisionRecord,
    list_decisions,
    record_decision,
    record_decisions,
    replay,
)
from curation.vocabulary.embeddings import embed_tags, model_name, neighbours_above
from curation.vocabulary.lexical import surface_key
from curation.vocabulary.ranking import TagMatrix, VocabularyView, compute_vocabulary, load_tag_matrix

# --- relations, strongest first (a pair found by several rules keeps the first) -------------------------------
SURFACE, REPEAT, PLURAL, TYPO, DERIVATION, CLIPPING, SEMANTIC = range(7)
# How much each relation alone says the two tags are one concept (the score's lexical part).
LEXICAL_STRENGTH = np.array([0.95, 0.9, 0.8, 0.7, 0.55, 0.5, 0.0])
ORDERS = ("impact", "confidence")
DEFAULT_K = 800  # the smallest published UTS vocabulary: the top K whose membership a merge may change

# --- thresholds ------------------------------------------------------------------------------------------------
# Below the surface level a link needs "support" = embedding cosine + corpus term, where the corpus term is the
# calibrated strength when the corpus departs from chance and PROFILE_PRIOR when it says nothing either way.
# MiniLM puts derivations low (percussion/percussive 0.30) and opposites high (male/female 0.73), so neither
# signal decides alone; plurals the lexicon confirms need nothing but the absence of a veto.
SUPPORT_NEEDED = np.array([0.0, 0.0, 0.0, 0.8, 1.0, 1.0, 1.3])  # per relation, SURFACE .. SEMANTIC
PROFILE_PRIOR = 0.4  # so that, without corpus evidence, a derivation needs cosine >= 0.6 and a typo >= 0.4
MIN_EVIDENCE_DF = 5  # below this many clips a profile is noise, not evidence
NULL_QUANTILE = 0.95  # cross-half similarity above this quantile of df-matched random pairs supports a link ...
MIN_DEPARTURE = 0.08  # ... when also at least this far above their median (chance) in cosine; a tag whose two
# halves agree beyond that quantile keeps company of its own
LEXICALIZED_STRENGTH = 0.8  # 'electronics' / 'electronic': a word of its own joins only on near-identical use
VETO_SHARE = 0.25  # veto: the pair reaches less than this share of the way from chance to the same-concept level
MIN_SPREAD = 0.03  # floor of the chance spread (tiny corpora give a spread of 0)
NULL_PAIRS_PER_BIN = 48  # shuffled df-matched pairs measured per pair of log2-df bins ...
NULL_TAGS_PER_BIN = 16  # ... drawn from this many shuffled tags per bin
EMBED_SIGNAL = 0.6  # cosine worth naming among a link's reasons
SEMANTIC_MIN = 0.82  # embedding neighbours with no lexical relation are candidates from this cosine ...
SELDOM_TOGETHER = 0.2  # ... and are accepted only if they share at most this share of the rarer tag's clips
TYPO_MIN_LENGTH = 6  # single-edit typos only between long words: short words one edit apart are other words
TYPO_DF_RATIO = 20  # ... and only when the rarer form is this many times rarer (chords/chorus: 12x, both real)
HUBS_TRIED = 24  # canonical candidates tried per component (components are small; this bounds the odd large one)
GROUP_STEP = 0.04  # each member beyond the third needs a link this much stronger than the one before
NEIGHBOURS_PER_TAG = 10
CLIPPED_PART_MAX_ZIPF = 2.5  # wordfreq Zipf: 'scape' 2.7, 'board' 5.2 are words; 'eration', 'esizer' are not
MAX_SHORT_PREFIX = 3  # "fe"+"male", "un"+"usual", "non"+"verbal", "sub"+"bass": a short prefix changes meaning

LEMMA = "verb form of: "  # detail of an -ing / -ed form the lexicon ties to its verb ('clapping' / 'clap')
LEXICALIZED = "word of its own: "  # detail of a plural-looking pair the lexicon refuses ('electronics')
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
                          "al", "ics", "etic", "ic", "ia", "ive", "ness", "ment", "ity", "ous", "ism", "ist", "ists",
                          "ized", "ize", "ised", "ise", "ing", "ers", "er", "ed", "es", "y", "e", "a")
MIN_STEM = 4  # "tens-e"/"tens-ion" yes; shorter stems join unrelated words



@dataclass(frozen=True)
class MergeSuggestion:
    tags: tuple[str, ...]  # every member, canonical first (when it is a member), then most frequent first
    canonical: str  # the name the group would merge into (may be a seeded release label no clip carries yet)
    score: float  # 0..1 confidence: the weakest link of the group (each link combines its signals)
    reasons: tuple[str, ...]  # per link, "a ~ b: <signal>" for each signal that fired
    changed_clips: int = 0  # clips whose canonical tag set changes when the group is accepted
    top_k_changes: int = 0  # tags that enter or leave the top K because of the merge
    impact: float = 0.0  # confidence x (changed clips + top-K changes x df of the K-th tag): the default order
    effect: str = ""  # what accepting changes, in words
    seeded: bool = False  # the target is a label of the seeded published vocabulary

    @property
    def group_key(self) -> str:
        """Stable identity of the member set (the verdict table remembers it)."""
        return "|".join(sorted(self.tags))

    def as_dict(self) -> dict:
        return {"tags": list(self.tags), "canonical": self.canonical, "score": self.score,
                "reasons": list(self.reasons), "changed_clips": self.changed_clips,
                "top_k_changes": self.top_k_changes, "impact": self.impact, "effect": self.effect,
                "seeded": self.seeded}


# ---------------------------------------------------------------------------------------------- public API

def suggest_merges(con: duckdb.DuckDBPyConnection, *, top: int | None = None, model_path: str | None = None,
                   matrix: TagMatrix | None = None, k: int = DEFAULT_K,
                   order: str = "impact") -> list[MergeSuggestion]:
    """Coherent groups of current canonical tags likely to be one concept. ``order="impact"`` (default): seeded
    mappings first, then by what accepting changes at vocabulary size ``k`` weighted by confidence;
    ``"confidence"``: by score. ``matrix``: the corpus's tag matrix when the caller holds it (the app caches it)."""
    if top is not None and top < 0:
        raise ValueError(f"top={top}: expected a number of suggestions >= 0, or None for all")
    if order not in ORDERS:
        raise ValueError(f"order={order!r}: expected one of {ORDERS}")
    if k < 1:
        raise ValueError(f"k={k}: expected a vocabulary size >= 1")
    matrix = matrix if matrix is not None else load_tag_matrix(con)
    records = list_decisions(con)
    state = replay(records)
    texts = matrix.tag_texts
    candidates = _candidates(con, texts, model_path)
    rejected = store_vocabulary.rejected_suggestion_members(con)
    seeded = tuple(store_published.seeded_labels(con))
    # The queue depends on the corpus, the whole log (an undo or another merge under the same last id differs),
    # the verdicts and the seeded list: any change there recomputes it.
    log = [(r.decision_id, r.action, r.payload) for r in records]
    result_key = (matrix.version, hashlib.sha1(repr((log, rejected, seeded)).encode()).hexdigest(), k)
    with _CACHE_LOCK:
        cached = candidates.results.get(result_key)
    if cached is None:
        cached = _suggest(candidates, matrix, state, rejected, seeded, k)
        with _CACHE_LOCK:
            candidates.results[result_key] = cached
            while len(candidates.results) > 8:
                candidates.results.pop(next(iter(candidates.results)))
    suggestions = sorted(cached, key=_impact_order if order == "impact" else _confidence_order)
    return suggestions if top is None else suggestions[:top]


def _impact_order(s: MergeSuggestion) -> tuple:
    return (not s.seeded, -s.impact, -s.score, s.group_key)


def _confidence_order(s: MergeSuggestion) -> tuple:
    return (-s.score, -s.changed_clips, s.group_key)


def _suggest(candidates: _Candidates, matrix: TagMatrix, state, rejected: list[list[str]],
             seeded: tuple[str, ...], k: int) -> list[MergeSuggestion]:
    texts = candidates.texts
    view = compute_vocabulary(matrix, state, rank_by="df")
    clips_by_tag = _clip_tag_matrix(view, len(texts))
    df = np.asarray(clips_by_tag.sum(axis=0)).ravel().astype(np.int64)
    # Only current canonical tags present in some clip: merged-away and pruned tags have df 0 here.
    live = (df[candidates.a] > 0) & (df[candidates.b] > 0) & ~_rejected_pairs(rejected, candidates)
    null_stats = candidates.null_stats.setdefault((matrix.version, clips_by_tag.shape[0]), {})
    pairs = _score_pairs(candidates, np.flatnonzero(live), clips_by_tag, df, null_stats)
    seed_rank = {label: position for position, label in enumerate(seeded)}
    groups = _coherent_groups(pairs, texts, df, candidates.words, seed_rank, candidates.apart)
    impact = _Impact(clips_by_tag, df, matrix, k)
    missing = _missing_seed_targets(seeded, candidates, df, state)
    suggestions = [_suggestion(members, links, pairs, texts, df, impact, seed_rank, missing)
                   for members, links in groups]
    grouped = {t for s in suggestions for t in s.tags}
    targets = {s.canonical for s in suggestions}
    unused = {key: label for key, label in missing.items() if label not in targets}
    suggestions.extend(_seed_mappings(candidates, df, unused, grouped, rejected, impact))
    return suggestions



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


def reject_prunes(con: duckdb.DuckDBPyConnection, tags: list[str], *, by: str) -> list[str]:
    """Keep these tags: their prune suggestions are never shown again (a prune decision can still be made).
    Returns the tags as stored (spelled as the corpus spells tags)."""
    by = permissions.authorize("decide", by)
    if not isinstance(by, str) or not by.strip():
        raise DecisionError("every verdict names who made it: expected a non-empty --by / display name")
    tags = list(dict.fromkeys(normalize_tag(t) for t in tags))
    if not tags or not all(tags):
        raise DecisionError("expected at least one non-empty tag to keep")
    with store.transaction(con):
        store_vocabulary.record_prune_rejections(con, tags, by.strip())
    return tags


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
    kept = store_vocabulary.rejected_prunes(con)  # tags a curator chose to keep (reject_prunes)
    proposals = [proposal for rule in PRUNE_RULES for proposal in rule(context) if proposal["tag"] not in kept]
    return sorted(proposals, key=lambda p: (not p["in_top_k"], p["rank"]))


# ---------------------------------------------------------------------------------------------- candidates

_tokens = lexical.tokens

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
    texts: tuple[str, ...] = ()
    by_key: dict = field(default_factory=dict)  # surface key -> raw tag ids spelled that way
    results: dict = field(default_factory=dict, compare=False)  # finished suggestion lists per corpus state
    apart: dict = field(default_factory=dict, compare=False)  # (u, v, confirmed) -> kept apart (guards' answers)
    null_stats: dict = field(default_factory=dict, compare=False)  # corpus version -> the chance levels measured


_CACHE: dict[tuple[str, str], _Candidates] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_ENTRIES = 4  # a few databases open in one process; each entry is a few MB at 20k tags


def _ids_by_key(texts: tuple[str, ...], ids: list[int]) -> dict[str, list[int]]:
    by_key: dict[str, list[int]] = {}
    for i in ids:
        by_key.setdefault(surface_key(texts[i]), []).append(i)
    return by_key


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
    kept = [(pair, rel) for pair, rel in found.items()
            if not _kept_apart(texts[pair[0]], texts[pair[1]], words, confirmed=_lexicon_confirmed(*rel))]
    a = np.array([p[0] for p, _ in kept], dtype=np.int64)
    b = np.array([p[1] for p, _ in kept], dtype=np.int64)
    cosine = (np.einsum("ij,ij->i", vectors[a], vectors[b]) if len(kept) else np.zeros(0)).astype(np.float32)
    shares_word = np.array([bool(_word_set(texts[u]) & _word_set(texts[v])) for (u, v), _ in kept], dtype=bool)
    candidates = _Candidates(a=a, b=b, relation=np.array([r[0] for _, r in kept], dtype=np.int8), cosine=cosine,
                             detail=tuple(r[1] for _, r in kept), shares_word=shares_word,
                             id_of={texts[i]: i for i in ids}, words=words, texts=texts,
                             by_key=_ids_by_key(texts, ids))
    with _CACHE_LOCK:
        _CACHE[key] = candidates
        while len(_CACHE) > _CACHE_ENTRIES:
            _CACHE.pop(next(iter(_CACHE)))
    return candidates


def _lexical_pairs(texts: tuple[str, ...], ids: list[int]) -> dict[tuple[int, int], tuple[int, str]]:
    """(a, b) with a < b -> (relation, detail), strongest relation first; rules work on separator-free keys."""
    by_key = _ids_by_key(texts, ids)
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
                # The lexicon knows 'electronics', 'acoustics', 'news' as words of their own: a derivation-like
                # pair that needs support, not an inflection that stands on its own.
                if lexical.inflection_pair(key, plural) is False:
                    link(key, plural, DERIVATION, LEXICALIZED + plural)
                else:
                    link(key, plural, PLURAL)
        for plural in lexical.irregular_plurals(key):
            if plural in by_key:
                link(key, plural, PLURAL)
        for lemma in lexical.verb_lemmas(key):
            if lemma in by_key and lemma != key:
                link(lemma, key, DERIVATION, LEMMA + lemma)  # rustle / rustling, hum / humming
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
        for length in range(3, len(key) - 3):  # 4+ letters cut: "metal" / "metallic" is no clipping
            # The cut part is no word of its own: "sound" + "scape", "key" + "board" are compounds, not clippings.
            if key[:length] in by_key and lexical.zipf(key[length:]) < CLIPPED_PART_MAX_ZIPF:
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


def _embedding_neighbours(vectors: np.ndarray, *, min_cosine: float, per_tag: int) -> tuple[np.ndarray, np.ndarray]:
    """Row index pairs (a < b): each row's per_tag nearest rows at or above min_cosine (exact; the upper
    triangle of the cosine matrix one block of rows at a time, never n x n at once: embeddings.neighbours_above)."""
    return neighbours_above(vectors, min_cosine, per_tag)


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


def _kept_apart(u: str, v: str, words: frozenset[str], *, confirmed: bool = False) -> bool:
    """Opposites, neighbours and narrower compounds never share a group, even through other links. A pair the
    lexicon ties as inflections ('clap' / 'clapping') is no compound, whatever words its letters contain."""
    return _opposition(u, v) is not None or (not confirmed and _narrower(u, v, words) is not None)


def _lexicon_confirmed(relation: int, detail: str) -> bool:
    return relation == PLURAL or detail.startswith(LEMMA)


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


def _rejected_pairs(rejected: list[list[str]], candidates: _Candidates) -> np.ndarray:
    """Per candidate: does a rejected group hold both tags? (Those pairs are never linked again.)"""
    codes = set()
    width = max(candidates.id_of.values(), default=0) + 1
    for members in rejected:
        ids = sorted(candidates.id_of[t] for t in members if t in candidates.id_of)
        codes.update(u * width + v for i, u in enumerate(ids) for v in ids[i + 1:])
    if not codes:
        return np.zeros(len(candidates.a), dtype=bool)
    return np.isin(candidates.a * width + candidates.b, np.fromiter(codes, dtype=np.int64, count=len(codes)))




def _missing_seed_targets(seeded: tuple[str, ...], candidates: _Candidates, df: np.ndarray,
                          state) -> dict[str, str]:
    """surface key -> release label, for seeded labels no clip carries as a canonical tag and that no decision
    took out of use (a pruned label, or one merged into another tag, is never proposed as a target)."""
    targets: dict[str, str] = {}
    for label in seeded:
        tag_id = candidates.id_of.get(label)
        if tag_id is not None and tag_id < len(df) and df[tag_id] > 0:
            continue  # a live tag: preferred as canonical through its seed rank
        if label in state.pruned or state.canonical(label) != label or label in state.parent:
            continue
        targets.setdefault(surface_key(label), label)
    return targets


def _inflected_keys(key: str) -> set[str]:
    """Separator-free keys that are the plural or singular of ``key`` by spelling and, where it knows the words,
    by the lexicon."""
    forms = {key + "s", key + "es", *lexical.irregular_plurals(key)}
    if key.endswith("y"):
        forms.add(key[:-1] + "ies")
    out = {form for form in forms if lexical.inflection_pair(key, form) is not False}
    for singular in (key[:-1], key[:-2], key[:-3] + "y"):
        if len(singular) >= 3 and key in {singular + "s", singular + "es", singular[:-1] + "ies"} \
                and lexical.inflection_pair(singular, key) is not False:
            out.add(singular)
    return out


def _seed_mappings(candidates: _Candidates, df: np.ndarray, missing: dict[str, str], grouped: set[str],
                   rejected: list[list[str]], impact: _Impact) -> list[MergeSuggestion]:
    """Tags not in any group that are a surface variant or an inflection of a release label no clip carries
    yet: map them onto the label (a merge into a new name)."""
    texts = candidates.texts
    rejected_sets = {frozenset(members) for members in rejected}
    out = []
    for key, label in missing.items():
        found: dict[int, str] = {}
        for tag_id in candidates.by_key.get(key, ()):
            found.setdefault(tag_id, "surface variant")
        for form in _inflected_keys(key):
            for tag_id in candidates.by_key.get(form, ()):
                found.setdefault(tag_id, "plural" if len(form) > len(key) else "singular")
        members = [i for i in found if df[i] > 0 and texts[i] not in grouped and texts[i] != label
                   and not _kept_apart(texts[i], label, candidates.words)]
        if not members or frozenset(texts[i] for i in members) in rejected_sets:
            continue
        members.sort(key=lambda i: (-int(df[i]), texts[i]))
        score = 0.95 if all(found[i] == "surface variant" for i in members) else 0.8
        reasons = tuple(f"{texts[i]} ~ {label}: {found[i]} of the seeded release label '{label}'" for i in members)
        grouped.update(texts[i] for i in members)
        out.append(impact.suggestion(members, label, score, reasons, seeded=True))
    return out


def _clip_tag_matrix(view: VocabularyView, n_ids: int) -> sparse.csr_matrix:
    """Binary clips x canonical tag ids (ids beyond the raw texts, i.e. unknown names, are left out)."""
    rows = view.canonical_rows
    clip = np.repeat(np.arange(rows.shape[0]), rows.shape[1])
    tag = rows.ravel()
    present = (tag >= 0) & (tag < n_ids)
    return sparse.csr_matrix((np.ones(int(present.sum()), dtype=np.float64), (clip[present], tag[present])),
                             shape=(rows.shape[0], n_ids))




# ---------------------------------------------------------------------------------------------- corpus evidence

@dataclass(frozen=True)
class _Evidence:
    """Per pair: the corpus's calibrated say (arrays aligned with the pairs)."""

    cross: np.ndarray  # cosine of the two tags' half-profiles (mean over the four half pairings)
    chance: np.ndarray  # median cross-half cosine of random df-matched tag pairs
    spread: np.ndarray  # how far the null's NULL_QUANTILE lies above its median, floored at MIN_SPREAD
    same: np.ndarray  # same-concept level: geometric mean of each tag's half-vs-half cosine
    evidence: np.ndarray  # bool: both tags frequent enough to be measured
    support: np.ndarray  # bool: the pair departs from chance upwards
    strength: np.ndarray  # 0..1: how far from chance towards the same-concept level (0 without support)
    veto: np.ndarray  # bool: both tags keep company of their own and the pair stays near chance

    @staticmethod
    def empty(n: int) -> _Evidence:
        zeros, false = np.zeros(n), np.zeros(n, dtype=bool)
        return _Evidence(zeros, zeros, zeros + MIN_SPREAD, zeros, false, false, zeros, false)


def _half_split(clips_by_tag_csc: sparse.csc_matrix, tags: np.ndarray) -> sparse.csr_matrix:
    """Rows 2i and 2i+1: the two halves of tag ``tags[i]``'s clips (a fixed pseudo-random split, sizes differing
    by at most one), as a binary (2 |tags|) x clips matrix."""
    starts, ends = clips_by_tag_csc.indptr[tags], clips_by_tag_csc.indptr[tags + 1]
    lengths = (ends - starts).astype(np.int64)
    segment = np.repeat(np.arange(len(tags)), lengths)
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    clip = clips_by_tag_csc.indices[np.repeat(starts, lengths) + offsets].astype(np.int64)
    mixed = (clip * 2654435761 + np.repeat(tags.astype(np.int64), lengths) * 40503) % 4294967291
    order = np.lexsort((mixed, segment))
    position = np.empty_like(order)
    position[order] = np.arange(len(order)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    rows = segment * 2 + (position % 2)
    return sparse.csr_matrix((np.ones(len(rows)), (rows, clip)), shape=(2 * len(tags), clips_by_tag_csc.shape[0]))


def _half_profiles(clips_by_tag: sparse.csr_matrix, df: np.ndarray, tags: np.ndarray,
                   columns: sparse.csc_matrix) -> sparse.csr_matrix:
    """Discounted positive PMI (Pantel & Lin 2002) of each half of each tag with every tag, own column dropped.
    PMI keeps only the company a tag keeps more than chance does (raw counts would make every pair of frequent
    tags look alike); the discount keeps a PMI resting on one or two clips from counting much. ``columns``: the
    clips of every tag id in ``tags`` (the corpus's, plus the null's shuffled tags past them)."""
    halves = _half_split(columns, tags)
    half_df = np.asarray(halves.sum(axis=1)).ravel()
    # Company is counted among measurable tags only: a tag in fewer than MIN_EVIDENCE_DF clips says little about
    # anyone's company, and leaving the long tail out keeps the product small at 20,000 tags.
    company = sparse.diags((df >= MIN_EVIDENCE_DF).astype(np.float64))
    counts = (halves @ (clips_by_tag @ company)).tocoo()
    own = tags[counts.row // 2]
    keep = counts.col != own
    row, col, data = counts.row[keep], counts.col[keep], counts.data[keep]
    row_df, col_df = half_df[row], df[col]
    rarest = np.minimum(row_df, col_df)
    pmi = (np.log(data * clips_by_tag.shape[0] / np.maximum(row_df * col_df, 1))
           * data / (data + 1) * rarest / (rarest + 1))
    positive = pmi > 0
    return sparse.csr_matrix((pmi[positive], (row[positive], col[positive])), shape=(2 * len(tags), df.shape[0]))


def _row_cosines(profiles: sparse.csr_matrix, rows_i: np.ndarray, rows_j: np.ndarray, drop_1: np.ndarray,
                 drop_2: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """cos(profile row i, profile row j) per pair, ignoring columns drop_1 and drop_2 (the pair's own tags:
    appearing together is not sharing company)."""
    if not len(rows_i):
        return np.zeros(0)
    i_1, i_2 = np.asarray(profiles[rows_i, drop_1]).ravel(), np.asarray(profiles[rows_i, drop_2]).ravel()
    j_1, j_2 = np.asarray(profiles[rows_j, drop_1]).ravel(), np.asarray(profiles[rows_j, drop_2]).ravel()
    dot = np.asarray(profiles[rows_i].multiply(profiles[rows_j]).sum(axis=1)).ravel() - i_1 * j_1 - i_2 * j_2
    norm_i = np.maximum(squares[rows_i] - i_1 ** 2 - i_2 ** 2, 0.0)
    norm_j = np.maximum(squares[rows_j] - j_1 ** 2 - j_2 ** 2, 0.0)
    return np.where((norm_i > 1e-12) & (norm_j > 1e-12),
                    np.maximum(dot, 0.0) / np.sqrt(np.maximum(norm_i * norm_j, 1e-24)), 0.0)


def _calibrated_evidence(clips_by_tag: sparse.csr_matrix, df: np.ndarray, a: np.ndarray, b: np.ndarray,
                         seed: int = 0, null_stats: dict | None = None) -> _Evidence:
    """What the corpus says about each pair (a, b), measured against chance (see the module docstring).
    ``null_stats``: (bin, bin) -> (chance, spread) already measured on this corpus, reused and extended (a merge
    barely moves what shuffled tags of a given frequency look like, so an accept need not measure it again)."""
    n = len(a)
    measurable = df >= MIN_EVIDENCE_DF
    evidence = measurable[a] & measurable[b]
    n_clips, n_ids = clips_by_tag.shape
    if not evidence.any() or n_clips < 4:
        return _Evidence.empty(n)
    level = np.floor(np.log2(np.maximum(df, 1))).astype(np.int64)
    ea, eb = a[evidence], b[evidence]
    rng = np.random.default_rng(seed)
    # The null is a permutation: "random tags" whose clips are drawn uniformly (a tag's column shuffled over the
    # clips), with document frequencies drawn from the real tags of each log2-df bin that a candidate uses.
    # Pairs of them show what two tags of those frequencies look like when nothing but chance relates them.
    levels = np.unique(np.r_[level[ea], level[eb]]).tolist()
    null_stats = {} if null_stats is None else null_stats
    wanted = sorted(({(min(x, y), max(x, y)) for x, y in zip(level[ea].tolist(), level[eb].tolist())}
                     | {(x, x) for x in levels}) - set(null_stats))
    null_columns, null_ids = [], {}
    for lvl in sorted({x for pair in wanted for x in pair}):
        sizes = rng.choice(df[(level == lvl) & measurable], NULL_TAGS_PER_BIN)
        ids = []
        for size in np.minimum(sizes, n_clips).tolist():
            null_columns.append(np.sort(rng.choice(n_clips, size, replace=False)))
            ids.append(n_ids + len(null_columns) - 1)
        null_ids[lvl] = np.array(ids, dtype=np.int64)
    null_u, null_v, null_bin = [], [], []
    for bin_index, (x, y) in enumerate(wanted):
        us, vs = rng.choice(null_ids[x], NULL_PAIRS_PER_BIN), rng.choice(null_ids[y], NULL_PAIRS_PER_BIN)
        distinct = us != vs
        null_u.append(us[distinct])
        null_v.append(vs[distinct])
        null_bin.append(np.full(int(distinct.sum()), bin_index))
    null_u, null_v, null_bin = (np.concatenate(part) if part else np.zeros(0, dtype=np.int64)
                                for part in (null_u, null_v, null_bin))
    lengths = [len(c) for c in null_columns]
    shuffled = sparse.csr_matrix((np.ones(sum(lengths)), (np.concatenate(null_columns or [np.zeros(0, np.int64)]),
                                                           np.repeat(np.arange(len(lengths)), lengths))),
                                 shape=(n_clips, len(lengths)))
    extended = sparse.hstack([clips_by_tag, shuffled]).tocsc()
    tags = np.unique(np.r_[ea, eb, null_u, null_v])
    profiles = _half_profiles(clips_by_tag, df, tags, extended)
    squares = np.asarray(profiles.multiply(profiles).sum(axis=1)).ravel()
    row = np.searchsorted(tags, np.r_[ea, eb, null_u, null_v])
    ra, rb = row[: len(ea)] * 2, row[len(ea): 2 * len(ea)] * 2
    ru, rv = row[2 * len(ea): 2 * len(ea) + len(null_u)] * 2, row[2 * len(ea) + len(null_u):] * 2

    def cross(r1, r2, t1, t2):
        return np.mean([_row_cosines(profiles, r1 + h1, r2 + h2, t1, t2, squares)
                        for h1 in (0, 1) for h2 in (0, 1)], axis=0)

    no_column = np.zeros(len(null_u), dtype=np.int64)  # id 0 is never a tag: nothing to leave out
    null_cross = cross(ru, rv, no_column, no_column)
    for bin_index, key in enumerate(wanted):
        values = null_cross[null_bin == bin_index]
        if len(values) < 8:
            values = null_cross  # too few tags in these bins: the pooled null
        median = float(np.median(values))
        # How far above the median chance reaches (its upper quantile): narrow where tags are independent.
        null_stats[key] = (median, max(float(np.quantile(values, NULL_QUANTILE)) - median, MIN_SPREAD))
    chance_of = {key: value[0] for key, value in null_stats.items()}
    spread_of = {key: value[1] for key, value in null_stats.items()}
    la, lb = level[ea], level[eb]
    pair_keys = list(zip(np.minimum(la, lb).tolist(), np.maximum(la, lb).tolist()))
    chance = np.array([chance_of[key] for key in pair_keys])
    spread = np.array([spread_of[key] for key in pair_keys])
    observed = cross(ra, rb, ea, eb)
    self_a = _row_cosines(profiles, ra, ra + 1, ea, eb, squares)
    self_b = _row_cosines(profiles, rb, rb + 1, ea, eb, squares)
    chance_a = np.array([chance_of[(x, x)] for x in la.tolist()])
    chance_b = np.array([chance_of[(x, x)] for x in lb.tolist()])
    spread_a = np.array([spread_of[(x, x)] for x in la.tolist()])
    spread_b = np.array([spread_of[(x, x)] for x in lb.tolist()])
    same = np.sqrt(np.maximum(self_a, 0.0) * np.maximum(self_b, 0.0))
    departure = observed - chance
    support = (departure > spread) & (departure >= MIN_DEPARTURE)
    reach = departure / np.maximum(same - chance, MIN_DEPARTURE)
    strength = np.where(support, np.clip(reach, 0.0, 1.0), 0.0)
    own_company = ((self_a - chance_a > spread_a) & (self_a - chance_a >= MIN_DEPARTURE)
                   & (self_b - chance_b > spread_b) & (self_b - chance_b >= MIN_DEPARTURE))
    veto = own_company & ~support & (reach < VETO_SHARE)

    def spread_out(values, fill=0.0):
        full = np.full(n, fill, dtype=values.dtype)
        full[evidence] = values
        return full

    return _Evidence(cross=spread_out(observed), chance=spread_out(chance), spread=spread_out(spread, MIN_SPREAD),
                     same=spread_out(same), evidence=evidence, support=spread_out(support, False),
                     strength=spread_out(strength), veto=spread_out(veto, False))


@dataclass(frozen=True)
class _Pairs:
    """Live candidate pairs with their evidence and verdict (arrays aligned)."""

    a: np.ndarray
    b: np.ndarray
    relation: np.ndarray
    detail: list[str]
    cosine: np.ndarray
    corpus: _Evidence
    together: np.ndarray  # clips holding both
    either: np.ndarray  # clips holding one or both
    score: np.ndarray
    accepted: np.ndarray


def _scatter(base: np.ndarray, where: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = base.copy()
    out[where] = values
    return out


def _together(clips_by_tag: sparse.csr_matrix, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Clips holding both tags, per pair; only the rows of tags in some pair are multiplied out."""
    if not len(a):
        return np.zeros(0, dtype=np.int64)
    involved = np.unique(np.r_[a, b])
    counts = (clips_by_tag.tocsc()[:, involved].T @ clips_by_tag).tocsr()
    return np.asarray(counts[np.searchsorted(involved, a), b]).ravel().astype(np.int64)


def _score_pairs(candidates: _Candidates, live: np.ndarray, clips_by_tag: sparse.csr_matrix,
                 df: np.ndarray, null_stats: dict | None = None) -> _Pairs:
    a, b = candidates.a[live], candidates.b[live]
    relation, cosine = candidates.relation[live], candidates.cosine[live].astype(np.float64)
    # Only pairs whose verdict the corpus can change are measured: surface variants stand whatever it says, and
    # a link that full support could not lift over its threshold stays refused.
    measured = ~np.isin(relation, (SURFACE, REPEAT)) & (cosine + 1.0 >= SUPPORT_NEEDED[relation])
    corpus = _Evidence.empty(len(a))
    if measured.any():
        found = _calibrated_evidence(clips_by_tag, df, a[measured], b[measured], null_stats=null_stats)
        corpus = _Evidence(**{name: _scatter(getattr(corpus, name), measured, getattr(found, name))
                              for name in corpus.__dataclass_fields__})
    together = _together(clips_by_tag, a, b)
    dfa, dfb = df[a], df[b]
    rarer, commoner = np.minimum(dfa, dfb), np.maximum(dfa, dfb)
    together_share = together / np.maximum(rarer, 1)
    # Without a departure from chance the corpus neither helps nor hurts: the prior stands in for it.
    corpus_term = np.where(corpus.support, corpus.strength, PROFILE_PRIOR)
    accepted = (cosine + corpus_term >= SUPPORT_NEEDED[relation]) & ~corpus.veto
    details = [candidates.detail[i] for i in live]
    lexicalized = np.array([d.startswith(LEXICALIZED) for d in details], dtype=bool)
    accepted &= ~lexicalized | (corpus.strength >= LEXICALIZED_STRENGTH)
    # An -ing / -ed form is often a word of its own ('alarming', 'clipping'): the corpus must show it used alike.
    verb_form = np.array([d.startswith(LEMMA) for d in details], dtype=bool)
    accepted &= ~verb_form | corpus.support
    accepted |= np.isin(relation, (SURFACE, REPEAT))
    accepted &= (relation != TYPO) | (rarer * TYPO_DF_RATIO <= commoner)
    # LLM extractors name a concept once per clip: two tags often in one clip are two concepts.
    accepted &= (relation != SEMANTIC) | (together_share <= SELDOM_TOGETHER)
    # Tags sharing a word look alike to the embedding because of that word (drum-beat / drum-machine,
    # people-talk / people-walk): without a relation stronger than a typo, only the corpus can vouch for them.
    accepted &= ~np.isin(relation, (TYPO, SEMANTIC)) | ~candidates.shares_word[live] | corpus.support
    semantic_strength = np.clip((cosine - 0.5) / 0.5, 0.0, 1.0)
    corpus_strength = corpus.strength * (1.0 - np.minimum(together_share, 1.0))
    score = 1.0 - (1.0 - LEXICAL_STRENGTH[relation]) * (1.0 - 0.6 * semantic_strength) * (1.0 - 0.5 * corpus_strength)
    return _Pairs(a=a, b=b, relation=relation, detail=[candidates.detail[i] for i in live], cosine=cosine,
                  corpus=corpus, together=together, either=dfa + dfb - together, score=score,
                  accepted=accepted.astype(bool))



# ---------------------------------------------------------------------------------------------- grouping

def _group(edges: list[tuple[int, int]],
           kept_apart: Callable[[int, int], bool]) -> list[tuple[list[int], list[int]]]:
    """Union-find over edges (strongest first): (members, indices of the edges that joined them) per component.

    An edge whose union would put two kept-apart tags in one component is skipped, so no component ever holds
    opposites even through a chain of individually harmless links. Components are only where groups are looked
    for: ``_coherent_groups`` then keeps, inside each, the members linked directly to a canonical tag.
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


def _name_order(text: str, df: int, seed_rank: dict[str, int]) -> tuple:
    """Canonical-name preference: a seeded release label (in release order), then a well-formed spelling
    (dictionary words, hyphen-joined, lowercase), then the most frequent; ties: shortest, then alphabetical."""
    return (seed_rank.get(text, len(seed_rank)), not lexical.well_formed(text), -df, len(text), text)


def needed_score(size: int) -> float:
    """The weakest link a group of ``size`` members may hold (surface variants are exempt): larger groups need
    stronger evidence, so a long tail of loosely related tags never piles onto one canonical tag."""
    return 0.0 if size <= 3 else 0.5 + GROUP_STEP * (size - 4)


def _coherent_groups(pairs: _Pairs, texts: tuple[str, ...], df: np.ndarray, words: frozenset[str],
                     seed_rank: dict[str, int], memo: dict | None = None) -> list[tuple[list[int], list[int]]]:
    """(members with the canonical first, the accepted links canonical~member) per group.

    Inside each component of accepted links the best-named tag is the canonical; a member joins only through
    its own accepted link to that canonical (no chains), in order of link strength, while the link is at least
    ``needed_score`` of the group size it makes; a member whose link is meaning alone must be linked to every
    other member too, and every member of a group to a meaning-only member (complete linkage for those).
    Members left out form groups of their own among themselves the same way.
    """
    accepted = np.flatnonzero(pairs.accepted)
    link: dict[tuple[int, int], int] = {}
    linked_to: dict[int, dict[int, int]] = {}  # tag -> {linked tag: edge}: a star looks at its hub's links only
    for e in accepted.tolist():
        u, v = int(pairs.a[e]), int(pairs.b[e])
        link[(min(u, v), max(u, v))] = e
        linked_to.setdefault(u, {})[v] = e
        linked_to.setdefault(v, {})[u] = e
    strongest = accepted[np.lexsort((-(df[pairs.a[accepted]] + df[pairs.b[accepted]]), -pairs.score[accepted]))]
    def edge(u: int, v: int) -> int | None:
        return link.get((min(u, v), max(u, v)))

    known = memo if memo is not None else {}
    # Pairs the corpus vetoed or the lexicon refused ('acoustic' / 'acoustics') never meet through a hub either.
    refused = {(min(int(pairs.a[e]), int(pairs.b[e])), max(int(pairs.a[e]), int(pairs.b[e])))
               for e in np.flatnonzero(~pairs.accepted & (pairs.corpus.veto | np.array(
                   [d.startswith(LEXICALIZED) for d in pairs.detail], dtype=bool))).tolist()}

    def apart(u: int, v: int) -> bool:
        if (min(u, v), max(u, v)) in refused:
            return True
        e = edge(u, v)
        confirmed = e is not None and _lexicon_confirmed(int(pairs.relation[e]), pairs.detail[e])
        key = (min(u, v), max(u, v), confirmed)
        if key not in known:  # the guards depend on the texts only: kept across calls for one tag set
            known[key] = _kept_apart(texts[u], texts[v], words, confirmed=confirmed)
        return known[key]

    def star(hub: int, remaining: set[int]) -> tuple[list[int], list[int]]:
        linked = [(m, e) for m, e in linked_to.get(hub, {}).items() if m in remaining]
        linked.sort(key=lambda item: (-pairs.score[item[1]], texts[item[0]]))
        group, links, meaning_only = [hub], [], []
        for member, e in linked:
            relation = int(pairs.relation[e])
            if relation not in (SURFACE, REPEAT) and pairs.score[e] < needed_score(len(group) + 1):
                continue
            must_link = group[1:] if relation == SEMANTIC else meaning_only
            if any(edge(member, other) is None for other in must_link):
                continue
            if any(apart(member, other) for other in group):
                continue
            group.append(member)
            links.append(e)
            if relation == SEMANTIC:
                meaning_only.append(member)
        return group, links

    components = _group([(int(pairs.a[e]), int(pairs.b[e])) for e in strongest], apart)
    groups = []
    for members, _ in components:
        remaining = set(members)
        by_name = sorted(members, key=lambda i: _name_order(texts[i], int(df[i]), seed_rank))
        while len(remaining) >= 2:
            # The hub that gathers the most members directly; among equals, the best name.
            by_name = [i for i in by_name if i in remaining]
            hubs = by_name[:HUBS_TRIED]
            group, links = min((star(hub, remaining) for hub in hubs),
                               key=lambda found: (-len(found[0]),
                                                  _name_order(texts[found[0][0]], int(df[found[0][0]]), seed_rank)))
            if len(group) >= 2:
                groups.append((group, links))
                remaining -= set(group)
            else:
                break
    return groups


# ---------------------------------------------------------------------------------------------- impact

class _Impact:
    """What accepting a group changes: clips whose canonical tag set changes, and top-K membership under the
    TF-IDF ranking (s = df log((N+1)/(df+1)), as the vocabulary page ranks)."""

    def __init__(self, clips_by_tag: sparse.csr_matrix, df: np.ndarray, matrix: TagMatrix, k: int) -> None:
        self.columns = clips_by_tag.tocsc()
        self.df = df
        self.n_clips = clips_by_tag.shape[0]
        self.texts = matrix.tag_texts
        live = np.flatnonzero(df > 0)
        self.scores = np.zeros(len(df))
        self.scores[live] = self._score(df[live])
        text_rank = matrix.text_rank if len(matrix.text_rank) >= len(df) else np.arange(len(df))
        order = live[np.lexsort((text_rank[live], -df[live], -self.scores[live]))]
        self.rank = np.full(len(df), len(live) + 1, dtype=np.int64)
        self.rank[order] = np.arange(1, len(order) + 1)
        self.sorted_scores = np.sort(self.scores[live])  # ascending
        self.k = min(k, max(len(live), 1))
        self.all_inside = len(live) <= k
        self.k_label = k
        self.df_at_k = int(df[order[self.k - 1]]) if len(order) else 0

    def _score(self, d):
        return d * np.log((self.n_clips + 1) / (d + 1))

    def _clips(self, ids) -> np.ndarray:
        parts = [self.columns.indices[self.columns.indptr[i]: self.columns.indptr[i + 1]] for i in ids]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    def suggestion(self, members: list[int], canonical: str, score: float, reasons: tuple[str, ...], *,
                   seeded: bool) -> MergeSuggestion:
        ids = [int(i) for i in members]
        canonical_id = next((i for i in ids if self.texts[i] == canonical), None)
        changed = len(self._clips([i for i in ids if i != canonical_id]))
        new_df = len(self._clips(ids))
        new_score = float(self._score(new_df))
        above = len(self.sorted_scores) - int(np.searchsorted(self.sorted_scores, new_score, side="right"))
        above -= sum(1 for i in ids if self.scores[i] > new_score)
        new_rank = above + 1
        ranks = [int(self.rank[i]) for i in ids]
        inside = sum(1 for r in ranks if r <= self.k)
        stays = new_rank <= self.k
        best_before = min(ranks)
        if self.all_inside:
            top_k_changes, inside, stays = 0, 0, False  # every tag is in the top K: nothing enters or leaves
        elif not inside:
            top_k_changes = 2 if stays else 0  # the group enters and the tag at rank K drops out
        else:
            top_k_changes = 2 * (inside - 1) if stays else 2 * inside
        words = [f"changes {changed:,} clip{'s' if changed != 1 else ''}"]
        if stays and not inside:
            words.append(f"'{canonical}' enters the top {self.k_label:,} (rank {best_before:,} -> {new_rank:,})")
        elif (stays or self.all_inside) and new_rank < best_before:
            words.append(f"'{canonical}' rises from rank {best_before:,} to {new_rank:,}")
        elif inside and not stays:
            words.append(f"'{canonical}' leaves the top {self.k_label:,} (rank {best_before:,} -> {new_rank:,})")
        if inside > 1:
            words.append(f"frees {inside - 1} top-{self.k_label:,} slot{'s' if inside > 2 else ''}")
        ordered = sorted(ids, key=lambda i: (i != canonical_id, -int(self.df[i]), self.texts[i]))
        return MergeSuggestion(tags=tuple(self.texts[i] for i in ordered), canonical=canonical,
                               score=round(float(score), 4), reasons=reasons, changed_clips=changed,
                               top_k_changes=top_k_changes,
                               impact=round(float(score) * (changed + self.df_at_k * top_k_changes), 2),
                               effect="; ".join(words), seeded=seeded)


def _suggestion(members: list[int], links: list[int], pairs: _Pairs, texts: tuple[str, ...], df: np.ndarray,
                impact: _Impact, seed_rank: dict[str, int], missing: dict[str, str]) -> MergeSuggestion:
    canonical = texts[members[0]]
    if canonical not in seed_rank:
        # A release label no clip carries yet, spelled like one of the members, is the better target.
        canonical = next((missing[surface_key(texts[m])] for m in members if surface_key(texts[m]) in missing),
                         canonical)
    reasons = []
    for e in sorted(links, key=lambda e: -pairs.score[e]):
        other = int(pairs.b[e]) if int(pairs.a[e]) == members[0] else int(pairs.a[e])
        reasons.extend(f"{texts[members[0]]} ~ {texts[other]}: {signal}" for signal in _signals(pairs, e, texts, df))
    if canonical != texts[members[0]]:
        reasons.append(f"target: the seeded release label '{canonical}'")
    score = float(min(pairs.score[e] for e in links))
    return impact.suggestion(members, canonical, score, tuple(reasons), seeded=canonical in seed_rank
                             or canonical in missing.values())


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
        signals.append(f"plural of '{short}'" if surface_key(long_).startswith(surface_key(short)[:-1])
                       else f"irregular plural: '{long_}' / '{short}'")
    elif relation == TYPO:
        signals.append(f"typo: '{texts[rare]}' is one edit from '{texts[common]}' and "
                       f"{int(df[common]) // max(int(df[rare]), 1)}x rarer")
    elif relation == DERIVATION and pairs.detail[e].startswith(LEMMA):
        signals.append(f"'{long_}' is a form of the verb '{pairs.detail[e][len(LEMMA):]}'")
    elif relation == DERIVATION and pairs.detail[e].startswith(LEXICALIZED):
        signals.append(f"'{pairs.detail[e][len(LEXICALIZED):]}' is a word of its own in the lexicon, used alike here")
    elif relation == DERIVATION:
        signals.append(f"derivation: shares stem '{pairs.detail[e]}'")
    elif relation == CLIPPING:
        signals.append(f"clipping: '{short}' is '{long_}' shortened")
    if pairs.cosine[e] >= EMBED_SIGNAL:
        signals.append(f"embedding cosine {pairs.cosine[e]:.2f}")
    corpus = pairs.corpus
    if corpus.support[e]:
        signals.append(f"co-occurrence profiles cosine {corpus.cross[e]:.2f} (chance {corpus.chance[e]:.2f}, "
                       f"one concept {corpus.same[e]:.2f}), together in {int(pairs.together[e])} of "
                       f"{int(pairs.either[e])} clips")
    elif corpus.evidence[e]:
        signals.append("corpus: no departure from chance (neither for nor against)")
    return signals
