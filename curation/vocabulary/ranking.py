"""Vocabulary: replayed decisions -> canonical tags per clip -> TF-IDF ranking -> coverage for every K.

Place in the flow: decide -> vocabulary (this module) -> export. The paper's score is
s(t) = df(t) * log((N+1) / (df(t)+1)), df = clips whose canonical tag set contains t, N = clips; ties are
broken by df, then tag text. ``rank_by="df"`` ranks by document frequency alone.

Speed: the corpus is loaded once into a padded clip x tag-slot matrix of integer ids (``TagMatrix``). From it,
``compute_vocabulary`` computes a state from scratch with numpy gathers, row sorts and bincounts (no SQL, no
Python loop over clips): ~250 ms at 360k clips, seconds at 4M. ``VocabularyTracker`` (what the app and the API
use) keeps the last state's per-tag counts and redoes only the clips a decision touches, so the vocabulary after
a decision costs ~40 ms at 360k clips and ~230 ms at 4M clips / 38M tag rows (bench/vocab_scale.py); tests show
it equal to compute_vocabulary on generated corpora and decision logs.

Example::

    matrix = load_tag_matrix(con)
    view = compute_vocabulary(matrix, replay(list_decisions(con)))
    view.ranking.head(), view.coverage.loc[view.coverage.k == 1000]
    tracker = VocabularyTracker(matrix)      # then, after each decision:
    view = tracker.view(replay(list_decisions(con)))
"""
from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass, field
from functools import cached_property

import duckdb
import numpy as np
import pandas as pd
from scipy import sparse

from curation.store import vocabulary as store_vocabulary
from curation.vocabulary.decisions import CurationState

K_MARKS = (800, 1000, 1500, 2000, 3000)
RANKINGS = ("tfidf", "df")


@dataclass(frozen=True)
class TagMatrix:
    """The corpus's distinct (clip, raw tag) pairs as a padded matrix of tag ids (-1 = empty slot)."""

    clip_ids: np.ndarray  # object array, row order
    domain_index: np.ndarray  # int per row, into domains
    domains: tuple[str, ...]
    source_index: np.ndarray
    sources: tuple[str, ...]
    slots: np.ndarray  # int32 (n_clips, max tags per clip)
    tag_texts: tuple[str, ...]  # index = tag_id (ids are dense from 1; index 0 unused)
    text_rank: np.ndarray  # per tag id: position of its text in sorted order (tie-break of the ranking)
    version: tuple
    # Per slot: bit mask of the extractors that produced the pair (bit i = extractors[i]); None: not known.
    slot_extractors: np.ndarray | None = None
    extractors: tuple[str, ...] = ()

    @property
    def n_clips(self) -> int:
        return len(self.clip_ids)

    @cached_property
    def row_of_clip(self) -> dict[str, int]:
        """clip_id -> row, built once per matrix (81 ms at 360k clips: too much to redo after every decision)."""
        return {clip_id: i for i, clip_id in enumerate(self.clip_ids.tolist())}

    @cached_property
    def domain_totals(self) -> np.ndarray:
        return np.bincount(self.domain_index, minlength=len(self.domains))

    @cached_property
    def source_totals(self) -> np.ndarray:
        return np.bincount(self.source_index, minlength=len(self.sources))

    @cached_property
    def rows_by_tag(self) -> tuple[np.ndarray, np.ndarray]:
        """(indptr, rows): the rows holding raw tag id t are rows[indptr[t]:indptr[t + 1]]. Built once per
        matrix (a linear CSR -> CSC conversion) for the vocabulary's update after a decision."""
        present = self.slots >= 0
        indptr = np.r_[0, np.cumsum(present.sum(axis=1))]
        by_clip = sparse.csr_matrix((np.ones(int(indptr[-1]), dtype=np.int8), self.slots[present], indptr),
                                    shape=(self.n_clips, len(self.tag_texts)))
        by_tag = by_clip.tocsc()
        return by_tag.indptr, by_tag.indices


MEDIAN_DEPTH = 64  # median tags per clip is counted up to this many (the ingest cap, MAX_TAGS_PER_CLIP)


LOAD_PART_CLIPS = 250_000  # clips whose tag pairs load_tag_matrix reads and places at a time


def load_tag_matrix(con: duckdb.DuckDBPyConnection, part_clips: int = LOAD_PART_CLIPS) -> TagMatrix:
    """The corpus's tag matrix, its pairs read one clip-key range of ``part_clips`` clips at a time and placed
    straight into the matrix: memory holds the matrix and one range's pairs, not every pair with its row and slot
    arrays (4.45 GB at 4M clips / 40M tag rows when read at once; see bench/RESULTS.md)."""
    version = store_vocabulary.corpus_version(con)
    extractors = store_vocabulary.tag_matrix_extractors(con)
    clips = store_vocabulary.tag_matrix_clips(con)
    clip_keys = np.asarray(clips["clip_key"], dtype=np.int64)
    slots = np.full((len(clip_keys), 1), -1, dtype=np.int32)
    masks = np.zeros((len(clip_keys), 1), dtype=np.int64)
    for start in range(0, len(clip_keys), part_clips):
        stop = min(start + part_clips, len(clip_keys))
        pairs = store_vocabulary.tag_matrix_pairs(con, extractors, int(clip_keys[start]), int(clip_keys[stop - 1]))
        row, slot = _rows_and_slots(clip_keys, np.asarray(pairs["clip_key"], dtype=np.int64))
        if len(slot) and int(slot.max()) >= slots.shape[1]:  # a clip with more tags than any before: widen once
            width = int(slot.max()) + 1
            slots = np.pad(slots, ((0, 0), (0, width - slots.shape[1])), constant_values=-1)
            masks = np.pad(masks, ((0, 0), (0, width - masks.shape[1])))
        slots[row, slot] = np.asarray(pairs["tag_id"], dtype=np.int32)
        masks[row, slot] = np.asarray(pairs["extractor_mask"], dtype=np.int64)
        del pairs, row, slot
    return _matrix(clips, slots, masks, store_vocabulary.tag_matrix_tags(con), extractors, version)


def _rows_and_slots(clip_keys: np.ndarray, pair_clip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For pairs sorted by clip: each pair's matrix row and its slot inside that row (0, 1, ... per clip)."""
    row = np.searchsorted(clip_keys, pair_clip)
    if not len(row):
        return row, row
    # Slot of each pair inside its clip's row: pairs are sorted by clip, so subtract the clip's first index.
    starts = np.r_[0, np.flatnonzero(np.diff(row)) + 1]
    first_of_pair = np.repeat(starts, np.diff(np.r_[starts, len(row)]))
    return row, np.arange(len(row)) - first_of_pair


def tag_matrix_from_inputs(data: dict) -> TagMatrix:
    """The matrix from store_vocabulary.tag_matrix_inputs' frames: clips (clip_key, clip_id, domain, source),
    pairs (clip_key, tag_id, extractor_mask; sorted by clip_key), tags (tag_id, tag), extractors, version."""
    clip_keys = data["clips"]["clip_key"].astype(np.int64)
    row, slot = _rows_and_slots(clip_keys, data["pairs"]["clip_key"].astype(np.int64))
    width = int(slot.max()) + 1 if len(slot) else 1
    slots = np.full((len(clip_keys), width), -1, dtype=np.int32)
    slots[row, slot] = data["pairs"]["tag_id"].astype(np.int32)
    slot_extractors = np.zeros((len(clip_keys), width), dtype=np.int64)
    slot_extractors[row, slot] = data["pairs"]["extractor_mask"].astype(np.int64)
    return _matrix(data["clips"], slots, slot_extractors, data["tags"], data["extractors"], data["version"])


def _matrix(clips: dict, slots: np.ndarray, slot_extractors: np.ndarray, tags: dict, extractors, version
            ) -> TagMatrix:
    max_id = int(tags["tag_id"].max()) if len(tags["tag_id"]) else 0
    texts = [""] * (max_id + 1)
    for tag_id, text in zip(tags["tag_id"].tolist(), tags["tag"].tolist()):
        texts[tag_id] = text
    text_rank = _text_ranks(texts)
    domains, domain_index = np.unique(clips["domain"].astype(str), return_inverse=True)
    sources, source_index = np.unique(clips["source"].astype(str), return_inverse=True)
    return TagMatrix(clip_ids=np.asarray(clips["clip_id"], dtype=object), domain_index=domain_index,
                     domains=tuple(domains.tolist()), source_index=source_index, sources=tuple(sources.tolist()),
                     slots=slots, tag_texts=tuple(texts), text_rank=text_rank, version=version,
                     slot_extractors=slot_extractors, extractors=tuple(extractors))


def used_slots(matrix: TagMatrix, state: CurationState, rows: np.ndarray | None = None) -> np.ndarray:
    """The matrix's slots (of ``rows`` only, when given) with the pairs of extractors the state does not use
    blanked out (-1): a use_extractors decision decides whose tag rows feed the vocabulary; none in effect means
    all of them."""
    slots = matrix.slots if rows is None else matrix.slots[rows]
    if state.extractors is None or matrix.slot_extractors is None:
        return slots
    allowed = 0
    for bit, name in enumerate(matrix.extractors):
        if name in state.extractors:
            allowed |= 1 << bit
    masks = matrix.slot_extractors if rows is None else matrix.slot_extractors[rows]
    return np.where((masks & allowed) != 0, slots, -1).astype(matrix.slots.dtype)


def _text_ranks(texts: list[str]) -> np.ndarray:
    order = np.argsort(np.array(texts, dtype=str), kind="stable")
    ranks = np.empty(len(texts), dtype=np.int64)
    ranks[order] = np.arange(len(texts))
    return ranks


@dataclass(frozen=True)
class VocabularyView:
    ranking: pd.DataFrame  # rank, tag, tag_id, df, score, merged (how many tags were merged into it)
    members: dict  # canonical tag -> the tags merged into it
    coverage: pd.DataFrame  # k, clips_kept, share_kept, mean_tags, median_tags, df_at_k
    coverage_by_domain: pd.DataFrame  # k x domain share kept (columns = domains)
    coverage_by_source: pd.DataFrame  # k x source share kept
    pruned: tuple[str, ...]
    clip_ids: np.ndarray
    rank_by: str
    last_decision_id: int
    n_clips: int
    # Per clip rows, made on first use (at 4M clips a copy of them costs more than the whole update after a
    # decision, and the ranking and coverage do not need them).
    _rows: _PatchedRows = field(repr=False)
    _best_ids: np.ndarray = field(repr=False)
    _rank_of: np.ndarray = field(repr=False)

    @cached_property
    def best_rank(self) -> np.ndarray:
        """Per clip row: rank of its best canonical tag (n_tags + 1 when it has none)."""
        return self._rank_of[self._best_ids]

    @cached_property
    def canonical_rows(self) -> np.ndarray:
        """Per clip row: canonical tag ids sorted by rank (-1 padded)."""
        return self._rows.full()

    def positions_of(self, tags: list[str]) -> np.ndarray:
        """Each tag's row in ``ranking`` (-1: not a ranked canonical tag)."""
        return np.array([self._position_of_tag.get(tag, -1) for tag in tags], dtype=np.int64)

    @cached_property
    def _position_of_tag(self) -> dict[str, int]:
        # Made once per view: a pandas Index of 100,000 tag texts, built per request, cost each canonical-tag
        # Browse page ~25 ms (its uniqueness check) at issue 17's scale.
        return {tag: i for i, tag in enumerate(self.ranking["tag"].tolist())}

    def top_k(self, k: int) -> list[str]:
        return self.ranking["tag"].iloc[:k].tolist()

    def tags_entering(self, k_small: int, k_large: int) -> list[str]:
        return self.ranking["tag"].iloc[k_small:k_large].tolist()

    def clips_lost(self, k_small: int, k_large: int) -> list[str]:
        """Clips kept at k_large that keep no tag at k_small."""
        lost = (self.best_rank > k_small) & (self.best_rank <= k_large)
        return self.clip_ids[lost].tolist()

    def clip_tags_at(self, k: int) -> dict[str, list[str]]:
        """clip_id -> its canonical in-vocabulary tags (best rank first) for the top k; clips with none left out."""
        out: dict[str, list[str]] = {}
        for start in range(0, self.n_clips, 65_536):
            stop = min(start + 65_536, self.n_clips)
            for clip_id, tags in zip(self.clip_ids[start:stop].tolist(), self.tags_of_rows(k, np.arange(start, stop))):
                if tags:
                    out[clip_id] = tags
        return out

    def tags_of_rows(self, k: int, rows: np.ndarray) -> list[list[str]]:
        """Per clip row given: its canonical tags of rank <= k, best first ([] when none). An export walks the
        corpus with it a batch at a time (a dict of every clip's tags costs GBs at 4M clips); Browse names the
        tags of a page's clips with it (without making every clip's rows)."""
        ranks = self._rank_of[self._rows.take(np.asarray(rows, dtype=np.int64))]
        kept = ranks <= min(k, len(self.ranking))  # rows are best first: the kept ranks are each row's first ones
        names = self._tag_by_rank[ranks[kept] - 1].tolist()
        out, begin = [], 0
        for end in np.cumsum(kept.sum(axis=1)).tolist():
            out.append(names[begin:end])
            begin = end
        return out

    def rows_with_tags(self, tag_ids: np.ndarray, mode: str) -> np.ndarray:
        """Per clip row: whether it holds any / all of these canonical ids (remembered per view: paging through
        a filter asks again with every page)."""
        key = (tuple(sorted(int(t) for t in tag_ids)), mode)
        if key not in self._masks:
            rows = self.canonical_rows
            if len(key[0]) <= _COMPARED_TAGS and rows.flags.c_contiguous:
                # A few tags: one vectorised comparison of the flat rows per tag, then only the hits are placed
                # (a row holds each canonical id at most once). 23 ms for a rare tag at 4M clips x 10 slots,
                # against 175 ms for the gather below, which reads a byte per slot whatever the tag.
                # Rows list their tags best rank first, so a tag of rank r sits in one of the first r columns:
                # the most frequent tags (held by the most clips) need a column or two, not all of them.
                width = rows.shape[1]
                held = np.zeros(len(rows), dtype=np.int16 if mode == "all" else bool)
                for tag_id in key[0]:
                    columns = min(width, int(self._rank_of[tag_id])) if tag_id < len(self._rank_of) else width
                    if columns == 0:
                        continue
                    if columns <= 2:  # one pass over a column or two (a few ms at 4M clips)
                        where = (rows[:, :columns] == tag_id).any(axis=1)
                        if mode == "all":
                            held += where
                        else:
                            held |= where
                        continue
                    hit = np.flatnonzero(rows[:, :columns].reshape(-1) == tag_id) // columns
                    if mode == "all":
                        held[hit] += 1
                    else:
                        held[hit] = True
                self._masks[key] = held if mode == "any" else held == len(key[0])
            else:
                # One gather through a lookup table; slot -1 (empty) reads the last entry.
                wanted = np.zeros(int(max(max(key[0], default=0), len(self._rank_of))) + 2, dtype=bool)
                wanted[list(key[0])] = True
                hits = wanted[rows]
                self._masks[key] = hits.any(axis=1) if mode == "any" else hits.sum(axis=1) == len(key[0])
        return self._masks[key]

    @cached_property
    def _masks(self) -> dict:
        return {}

    @cached_property
    def _tag_by_rank(self) -> np.ndarray:
        return self.ranking["tag"].to_numpy(dtype=object)


_COMPARED_TAGS = 8  # up to this many tags, rows_with_tags compares; beyond, one gather is cheaper


class _TagNames:
    """The tag id space of one tag matrix: the matrix's texts, then names decisions introduce (a merge into a new
    name, a tag added to a clip), each interned once so that its id never changes. ``key`` orders ids as their
    texts sort (the ranking's last tie-break); a new name gets a key between its neighbours' keys, so existing
    keys never move and the ranking of untouched tags stays comparable from one decision to the next."""

    def __init__(self, matrix: TagMatrix):
        self.texts: list[str] = list(matrix.tag_texts)
        self.id_of: dict[str, int] = {text: i for i, text in enumerate(self.texts) if i > 0}
        self.n_matrix = len(self.texts)
        self._matrix_keys = matrix.text_rank.astype(np.float64)
        self._new_keys: list[float] = []
        self._keys = self._matrix_keys
        # Every text in sorted order with its key; built on the first new name (most states introduce none).
        self._sorted: tuple[list[str], list[float]] | None = None
        self._text_array = None

    def intern(self, text: str) -> int:
        tag_id = self.id_of.get(text)
        if tag_id is not None:
            return tag_id
        if self._sorted is None:
            order = np.argsort(self._matrix_keys, kind="stable").tolist()
            self._sorted = ([self.texts[i] for i in order], [float(self._matrix_keys[i]) for i in order])
        sorted_texts, sorted_keys = self._sorted
        at = bisect.bisect_left(sorted_texts, text)
        low = sorted_keys[at - 1] if at > 0 else -1.0
        high = sorted_keys[at] if at < len(sorted_keys) else low + 2.0
        key = (low + high) / 2
        sorted_texts.insert(at, text)
        sorted_keys.insert(at, key)
        tag_id = len(self.texts)
        self.texts.append(text)
        self.id_of[text] = tag_id
        self._new_keys.append(key)
        return tag_id

    def text_array(self) -> pd.api.extensions.ExtensionArray:
        """Every text as a pandas string array (made once; again only after new names), for the ranking's tag
        column: taking 100,000 names from it costs a fraction of converting them from Python strings each time."""
        if self._text_array is None or len(self._text_array) != len(self.texts):
            self._text_array = pd.array(self.texts, dtype="str")
        return self._text_array

    @property
    def keys(self) -> np.ndarray:
        """Per id: a number that sorts as its text does."""
        if len(self._keys) != len(self.texts):
            self._keys = np.r_[self._matrix_keys, np.asarray(self._new_keys, dtype=np.float64)]
        return self._keys

    def __len__(self) -> int:
        return len(self.texts)


PATCH_LIMIT = 0.05  # share of the rows patched beyond which they are made whole again (one copy)


@dataclass(frozen=True)
class _PatchedRows:
    """Per clip row its canonical ids best first: a base array never written once made, plus the rows changed
    since (sorted row numbers, their values). An update after a decision then copies only what it changes, and a
    view made earlier keeps its rows; past PATCH_LIMIT patched rows they are made whole again."""

    base: np.ndarray  # (n_clips, base width)
    rows: np.ndarray  # int64, sorted
    values: np.ndarray  # (len(rows), width)

    @classmethod
    def whole(cls, base: np.ndarray) -> _PatchedRows:
        return cls(base, np.zeros(0, dtype=np.int64), np.zeros((0, base.shape[1]), dtype=base.dtype))

    @property
    def width(self) -> int:
        return max(self.base.shape[1], self.values.shape[1])

    def take(self, rows: np.ndarray) -> np.ndarray:
        out = _widened(self.base[rows], self.width)
        if len(self.rows) and len(rows):
            at = np.minimum(np.searchsorted(self.rows, rows), len(self.rows) - 1)
            hit = self.rows[at] == rows
            out[hit] = _widened(self.values[at[hit]], self.width)
        return out

    def with_rows(self, rows: np.ndarray, values: np.ndarray) -> _PatchedRows:
        """These rows (sorted, unique) set to these values."""
        width = max(self.width, values.shape[1])
        kept = ~np.isin(self.rows, rows)
        all_rows = np.r_[self.rows[kept], rows]
        order = np.argsort(all_rows, kind="stable")
        all_values = np.vstack([_widened(self.values[kept], width), _widened(values, width)])[order]
        patched = _PatchedRows(self.base, all_rows[order], all_values)
        return _PatchedRows.whole(patched.full()) if len(all_rows) > PATCH_LIMIT * len(self.base) else patched

    def full(self) -> np.ndarray:
        out = _widened(self.base, self.width)
        if not len(self.rows) and out is self.base:
            # Nothing patched: the base itself, read-only (it is never written once made). Copying it cost the first
            # Browse page with a canonical-tag filter ~55 ms at 4M clips.
            out = self.base.view()
            out.flags.writeable = False
            return out
        out = out.copy() if out is self.base else out
        out[self.rows] = _widened(self.values, self.width)
        return out


@dataclass(frozen=True)
class _Tally:
    """One state's vocabulary in tag-id space, kept so that the next decision updates it instead of redoing it.

    Invariants: ``rows`` holds each clip's canonical tag ids once, best rank first, -1 padded; ``depth_counts[j,
    t]`` = clips whose (j+1)-th best tag is t; ``domain_best[g, t]`` / ``source_best`` = clips of group g whose best
    tag is t. Coverage for every K is then a cumulative sum of these counts in rank order."""

    rank_by: str
    mapping: np.ndarray  # matrix tag id -> canonical id (-1: pruned)
    extractors: frozenset | None
    pruned: frozenset
    clip_adds: frozenset
    clip_removes: frozenset
    rows: _PatchedRows  # int32 (n_clips, width)
    best_ids: np.ndarray  # per clip row its best canonical id (-1: none)
    df: np.ndarray  # int64 per id
    ranked_ids: np.ndarray  # ids with df > 0, best first
    scores: np.ndarray  # per ranked id
    rank_of: np.ndarray  # per id, plus a last entry (index -1) for "no tag": n_ranked + 1
    depth_counts: np.ndarray  # (depth, n_ids)
    domain_best: np.ndarray  # (n_domains, n_ids)
    source_best: np.ndarray  # (n_sources, n_ids)


def _mapping(names: _TagNames, state: CurationState) -> np.ndarray:
    """matrix tag id -> canonical id (-1 when pruned); new canonical names are interned."""
    mapping = np.arange(names.n_matrix, dtype=np.int32)
    for text in state.parent:
        canon_id = names.intern(state.canonical(text))
        raw_id = names.id_of.get(text, names.n_matrix)  # a name that is not in the matrix holds no raw rows
        if raw_id < names.n_matrix:
            mapping[raw_id] = canon_id
    pruned_ids = [names.id_of[tag] for tag in state.pruned if tag in names.id_of]
    if pruned_ids:
        mapping[np.isin(mapping, np.asarray(pruned_ids, dtype=np.int32))] = -1
    return mapping


def _edits_by_row(matrix: TagMatrix, names: _TagNames, state: CurationState, rows=None):
    """row -> (canonical ids removed, ids added) for the clips the state edits (only ``rows`` when given)."""
    row_of = matrix.row_of_clip
    edits: dict[int, tuple[list[int], list[int]]] = {}
    for clip_id, tag in state.clip_removes:
        row = row_of.get(clip_id)
        if row is not None and tag in names.id_of and (rows is None or row in rows):
            edits.setdefault(row, ([], []))[0].append(names.id_of[tag])
    for clip_id, tag in state.clip_adds:
        row = row_of.get(clip_id)
        if row is None:
            continue
        tag_id = names.intern(tag)  # interned even when pruned, as the name of a decision
        if tag not in state.pruned and (rows is None or row in rows):
            edits.setdefault(row, ([], []))[1].append(tag_id)
    return edits


def _canonical_rows(raw: np.ndarray, mapping: np.ndarray, edits: dict, row_numbers: np.ndarray | None = None
                    ) -> np.ndarray:
    """Canonical ids of rows of raw tag ids, each once (order within a row not meaningful, -1 padded). ``raw``
    is the whole matrix, or only the rows ``row_numbers`` (the keys of ``edits`` are matrix rows)."""
    canon = np.where(raw >= 0, mapping[np.maximum(raw, 0)], -1).astype(np.int32)
    if edits:
        position = None if row_numbers is None else {int(row): i for i, row in enumerate(row_numbers.tolist())}
        width_needed = max(len(adds) for _removes, adds in edits.values())
        if width_needed:
            canon = np.hstack([canon, np.full((len(canon), width_needed), -1, dtype=np.int32)])
        base = raw.shape[1]
        for row, (removes, adds) in edits.items():
            i = row if position is None else position.get(row)
            if i is None:
                continue
            line = canon[i]
            for tag_id in removes:
                line[:base][line[:base] == tag_id] = -1
            line[base: base + len(adds)] = adds
    canon.sort(axis=1)
    duplicate = np.zeros_like(canon, dtype=bool)
    duplicate[:, 1:] = canon[:, 1:] == canon[:, :-1]  # two raw tags merged into one canonical tag
    canon[duplicate] = -1
    return canon


def _rank(df: np.ndarray, n_clips: int, keys: np.ndarray, rank_by: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids with df > 0 best first, their scores): by score, then df, then text (tfidf); by df, then text (df)."""
    candidates = np.flatnonzero(df > 0)
    candidate_df = df[candidates]
    # Python floats for the score (one per distinct df) so that it equals the reference formula bit for bit.
    distinct_df, df_index = np.unique(candidate_df, return_inverse=True)
    scores = np.array([d * math.log((n_clips + 1) / (d + 1)) for d in distinct_df.tolist()],
                      dtype=np.float64)[df_index]
    if rank_by == "tfidf":
        order = np.lexsort((keys[candidates], -candidate_df, -scores))
    else:
        order = np.lexsort((keys[candidates], -candidate_df))
    return candidates[order], scores[order]


def _rank_of(ranked_ids: np.ndarray, n_ids: int) -> np.ndarray:
    """Per id its rank (1 = best); the extra last entry, which id -1 indexes, is "no tag" (n_ranked + 1)."""
    rank_of = np.full(n_ids + 1, len(ranked_ids) + 1, dtype=np.int64)
    rank_of[ranked_ids] = np.arange(1, len(ranked_ids) + 1)
    return rank_of


def _by_rank(rows: np.ndarray, rank_of: np.ndarray, ranked_ids: np.ndarray) -> np.ndarray:
    """Each row's ids best rank first, -1 last; from the sorted ranks, so no per-row argsort is needed."""
    ranks = np.sort(rank_of[rows], axis=1)
    id_at_rank = np.r_[-1, ranked_ids, -1].astype(np.int32)
    return id_at_rank[ranks]


def _trimmed(rows: np.ndarray) -> np.ndarray:
    """Without the trailing columns no row uses (rows are -1 padded at the end); at least one column."""
    used = np.flatnonzero((rows >= 0).any(axis=0))
    return rows[:, : max(int(used[-1]) + 1 if len(used) else 0, 1)]


def _widened(rows: np.ndarray, width: int) -> np.ndarray:
    if rows.shape[1] >= width:
        return rows
    return np.hstack([rows, np.full((len(rows), width - rows.shape[1]), -1, dtype=rows.dtype)])


def _position_counts(rows: np.ndarray, depth: int, n_ids: int) -> np.ndarray:
    """(depth, n_ids): how many rows hold id t at position j (rows best first)."""
    sub = rows[:, :depth]
    present = sub >= 0
    position = np.broadcast_to(np.arange(sub.shape[1], dtype=np.int64), sub.shape)[present]
    counts = np.bincount(position * n_ids + sub[present], minlength=depth * n_ids)
    return counts.reshape(depth, n_ids)


def _best_counts(best: np.ndarray, group: np.ndarray, n_groups: int, n_ids: int) -> np.ndarray:
    """(n_groups, n_ids): rows of each group whose best tag is t (rows without a tag not counted)."""
    present = best >= 0
    counts = np.bincount(group[present].astype(np.int64) * n_ids + best[present], minlength=n_groups * n_ids)
    return counts.reshape(n_groups, n_ids)


def _fit(counts: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A copy of ``counts`` zero-padded to ``shape`` (new ids and new depths have no counts yet)."""
    out = np.zeros(shape, dtype=np.int64)
    out[tuple(slice(0, n) for n in counts.shape)] = counts
    return out


def _full_tally(matrix: TagMatrix, state: CurationState, rank_by: str, names: _TagNames) -> _Tally:
    mapping = _mapping(names, state)
    edits = _edits_by_row(matrix, names, state)
    canon = _canonical_rows(used_slots(matrix, state), mapping, edits)
    n_ids = len(names)
    df = np.bincount(canon[canon >= 0], minlength=n_ids).astype(np.int64)
    ranked_ids, scores = _rank(df, matrix.n_clips, names.keys, rank_by)
    rank_of = _rank_of(ranked_ids, n_ids)
    canon = _by_rank(canon, rank_of, ranked_ids)
    depth = min(canon.shape[1], MEDIAN_DEPTH)
    return _Tally(
        rank_by=rank_by, mapping=mapping, extractors=state.extractors, pruned=state.pruned,
        clip_adds=state.clip_adds, clip_removes=state.clip_removes, rows=_PatchedRows.whole(canon),
        best_ids=np.ascontiguousarray(canon[:, 0]), df=df, ranked_ids=ranked_ids,
        scores=scores, rank_of=rank_of, depth_counts=_position_counts(canon, depth, n_ids),
        domain_best=_best_counts(canon[:, 0], matrix.domain_index, len(matrix.domains), n_ids),
        source_best=_best_counts(canon[:, 0], matrix.source_index, len(matrix.sources), n_ids))


def _rows_holding(matrix: TagMatrix, tag_ids: np.ndarray) -> np.ndarray:
    """Rows whose raw slots hold any of these matrix tag ids (with repeats)."""
    indptr, indices = matrix.rows_by_tag
    tag_ids = tag_ids[tag_ids < len(indptr) - 1]
    if not len(tag_ids):
        return np.zeros(0, dtype=np.int64)
    starts = indptr[tag_ids].astype(np.int64)
    lengths = indptr[tag_ids + 1] - starts
    offsets = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + np.arange(int(lengths.sum()))
    return indices[offsets].astype(np.int64)


# Beyond this share of the clips touched by one change, recomputing everything is as fast as updating.
UPDATE_LIMIT = 0.25


def _updated_tally(old: _Tally, matrix: TagMatrix, state: CurationState, names: _TagNames,
                   limit: float = UPDATE_LIMIT) -> _Tally | None:
    """``old`` brought to ``state`` by redoing only the clips the change touches; None when a full computation
    is the better (or the only) way: another extractor choice, or too many clips touched.

    Why this equals the full computation: a clip's canonical set changes only when one of its raw tags maps
    elsewhere, its own edits change, or a tag it adds is pruned or restored (``touched``). A clip's order changes
    only if its set changed or it holds a tag whose df changed and which passed another of its tags: every other
    tag keeps its (score, df, text) key, so their relative order stands even when their rank numbers shift
    (_out_of_order). Coverage for every K is a cumulative sum of
    per-tag counts, so it follows from subtracting the re-sorted clips' old counts and adding their new ones."""
    if state.extractors != old.extractors:
        return None
    mapping = _mapping(names, state)
    changed_raw = np.flatnonzero(mapping != old.mapping).astype(np.int64)
    edited = {clip for clip, _tag in (state.clip_adds ^ old.clip_adds) | (state.clip_removes ^ old.clip_removes)}
    pruned_changed = state.pruned ^ old.pruned
    if pruned_changed:
        edited |= {clip for clip, tag in state.clip_adds | old.clip_adds if tag in pruned_changed}
    row_of = matrix.row_of_clip
    edited_rows = np.array([row_of[c] for c in edited if c in row_of], dtype=np.int64)
    touched = np.unique(np.r_[_rows_holding(matrix, changed_raw), edited_rows])
    if len(touched) > limit * matrix.n_clips:
        return None
    edits = _edits_by_row(matrix, names, state, rows=set(touched.tolist()))
    new_sets = _canonical_rows(used_slots(matrix, state, touched), mapping, edits, touched)
    n_ids = len(names)  # edits may intern added tags
    old_df = _fit(old.df, (n_ids,))
    old_sets = old.rows.take(touched)
    df = (old_df + np.bincount(new_sets[new_sets >= 0], minlength=n_ids)
          - np.bincount(old_sets[old_sets >= 0], minlength=n_ids))
    moved = np.flatnonzero(df != old_df)
    ranked_ids, scores = _rank(df, matrix.n_clips, names.keys, old.rank_by)
    rank_of = _rank_of(ranked_ids, n_ids)
    resort = _out_of_order(old, matrix, state, names, touched, moved, old_df, df, rank_of)
    if len(touched) + len(resort) > limit * matrix.n_clips:
        return None
    changed_rows = np.r_[touched, resort]
    after = _trimmed(_by_rank(np.vstack([_widened(new_sets, old.rows.width),
                                         _widened(old.rows.take(resort), new_sets.shape[1])]), rank_of, ranked_ids))
    width = max(old.rows.width, after.shape[1])
    before = _widened(old.rows.take(changed_rows), width)
    after = _widened(after, width)
    order = np.argsort(changed_rows)
    best_ids = old.best_ids.copy()
    best_ids[changed_rows] = after[:, 0]
    depth = min(width, MEDIAN_DEPTH)
    depth_counts = (_fit(old.depth_counts, (depth, n_ids)) - _position_counts(before, depth, n_ids)
                    + _position_counts(after, depth, n_ids))
    domains = matrix.domain_index[changed_rows]
    sources = matrix.source_index[changed_rows]
    n_domains, n_sources = len(matrix.domains), len(matrix.sources)
    return _Tally(
        rank_by=old.rank_by, mapping=mapping, extractors=state.extractors, pruned=state.pruned,
        clip_adds=state.clip_adds, clip_removes=state.clip_removes,
        rows=old.rows.with_rows(changed_rows[order], after[order]), best_ids=best_ids, df=df, ranked_ids=ranked_ids,
        scores=scores, rank_of=rank_of, depth_counts=depth_counts,
        domain_best=(_fit(old.domain_best, (n_domains, n_ids)) - _best_counts(before[:, 0], domains, n_domains, n_ids)
                     + _best_counts(after[:, 0], domains, n_domains, n_ids)),
        source_best=(_fit(old.source_best, (n_sources, n_ids)) - _best_counts(before[:, 0], sources, n_sources, n_ids)
                     + _best_counts(after[:, 0], sources, n_sources, n_ids)))


def _out_of_order(old: _Tally, matrix: TagMatrix, state: CurationState, names: _TagNames, touched: np.ndarray,
                  moved: np.ndarray, old_df: np.ndarray, df: np.ndarray, rank_of: np.ndarray) -> np.ndarray:
    """Rows outside ``touched`` (their sets are unchanged) whose order the new ranks break. Only a tag whose df
    moved can change places, and only against the tags it passed: a common tag whose df grows by one usually keeps
    its place, and then none of its (possibly millions of) clips is looked at."""
    both = moved[(old_df[moved] > 0) & (df[moved] > 0)]  # tags that appear or vanish only live in touched rows
    if not len(both):
        return np.zeros(0, dtype=np.int64)
    old_rank_of = np.r_[old.rank_of[:-1], np.full(len(df) - len(old.rank_of) + 1, old.rank_of[-1])]
    steady = (df == old_df) & (df > 0)
    old_steady = np.sort(old_rank_of[steady])
    new_steady = np.sort(rank_of[:-1][steady])
    # How many unmoved tags rank before each moved tag, before and after: the same count = the same place.
    shifted = both[np.searchsorted(old_steady, old_rank_of[both]) != np.searchsorted(new_steady, rank_of[both])]
    if not np.array_equal(both[np.argsort(old_rank_of[both])], both[np.argsort(rank_of[both])]):
        shifted = both  # moved tags changed places among themselves
    if not len(shifted):
        return np.zeros(0, dtype=np.int64)
    moved_set = set(shifted.tolist())
    added = [matrix.row_of_clip[c] for c, tag in state.clip_adds
             if c in matrix.row_of_clip and tag not in state.pruned and names.id_of.get(tag) in moved_set]
    holders = _rows_holding(matrix, np.flatnonzero(np.isin(old.mapping, shifted)).astype(np.int64))
    candidates = np.setdiff1d(np.unique(np.r_[holders, np.asarray(added, dtype=np.int64)]), touched)
    if not len(candidates):
        return candidates
    ranks = rank_of[old.rows.take(candidates)]
    return candidates[(np.diff(ranks, axis=1) < 0).any(axis=1)]


def _view_of(tally: _Tally, matrix: TagMatrix, state: CurationState, names: _TagNames) -> VocabularyView:
    ids = tally.ranked_ids
    n_ranked = len(ids)
    n_clips = matrix.n_clips
    df_ranked = tally.df[ids]
    # at_least[j][k]: clips with at least j+1 canonical tags of rank <= k (k = 0..n_ranked). Memory stays bounded
    # whatever the input: at most MEDIAN_DEPTH rows of n_ranked counts; the mean uses exact totals.
    at_least = np.zeros((tally.depth_counts.shape[0], n_ranked + 1), dtype=np.int64)
    at_least[:, 1:] = np.cumsum(tally.depth_counts[:, ids], axis=1)
    kept = at_least[0]
    total_tags = np.r_[0, np.cumsum(df_ranked)]
    lower_middle = np.maximum(kept - 1, 0) // 2  # index of the lower median among kept clips' counts
    median = (at_least >= (kept - lower_middle)[None, :]).sum(axis=0)
    ks = np.arange(1, n_ranked + 1)
    mean_tags = np.where(kept[1:] > 0, total_tags[1:] / np.maximum(kept[1:], 1), 0.0)
    coverage = pd.DataFrame({
        "k": ks, "clips_kept": kept[1:], "share_kept": kept[1:] / max(n_clips, 1), "mean_tags": mean_tags,
        "median_tags": np.where(kept[1:] > 0, median[1:], 0), "df_at_k": df_ranked})
    members = state.members()
    merged_count = np.zeros(n_ranked, dtype=np.int64)
    for canonical_tag, merged in members.items():
        rank = tally.rank_of[names.id_of.get(canonical_tag, -1)]
        if rank <= n_ranked:
            merged_count[rank - 1] = len(merged)
    ranking = pd.DataFrame({"rank": ks, "tag": names.text_array().take(ids), "tag_id": ids, "df": df_ranked,
                            "score": tally.scores, "merged": merged_count})
    return VocabularyView(
        ranking=ranking, members=members, coverage=coverage,
        coverage_by_domain=_grouped_coverage(tally.domain_best[:, ids], matrix.domain_totals, matrix.domains),
        coverage_by_source=_grouped_coverage(tally.source_best[:, ids], matrix.source_totals, matrix.sources),
        pruned=tuple(sorted(state.pruned)), clip_ids=matrix.clip_ids, rank_by=tally.rank_by,
        last_decision_id=state.last_decision_id, n_clips=n_clips,
        _rows=tally.rows, _best_ids=tally.best_ids, _rank_of=tally.rank_of)


def _grouped_coverage(best_counts: np.ndarray, totals: np.ndarray, names: tuple[str, ...]) -> pd.DataFrame:
    """k x group: share of the group's clips that keep a tag at K (best_counts in rank order)."""
    share = np.cumsum(best_counts, axis=1) / np.maximum(totals, 1)[:, None]
    frame = pd.DataFrame(share.T, columns=list(names))
    frame.insert(0, "k", np.arange(1, best_counts.shape[1] + 1))
    return frame


def compute_vocabulary(matrix: TagMatrix, state: CurationState, rank_by: str = "tfidf") -> VocabularyView:
    """Ranking and coverage for every K of the corpus under this state, computed from scratch."""
    if rank_by not in RANKINGS:
        raise ValueError(f"rank_by={rank_by!r}: expected one of {RANKINGS}")
    names = _TagNames(matrix)
    return _view_of(_full_tally(matrix, state, rank_by, names), matrix, state, names)


class VocabularyTracker:
    """compute_vocabulary for one tag matrix, kept up to date from one state to the next: after a decision only
    the clips it touches are redone (see _updated_tally), so a merge of two tags costs time in proportion to their
    clips, not to the corpus. Equal to compute_vocabulary (tests/vocabulary, hypothesis). Thread-safe: the app's
    pages and the API share one per matrix.

        tracker = VocabularyTracker(load_tag_matrix(con))
        view = tracker.view(replay(list_decisions(con)))
    """

    def __init__(self, matrix: TagMatrix, *, update_limit: float = UPDATE_LIMIT):
        self.matrix = matrix
        self.update_limit = update_limit  # share of clips touched above which a state is computed in full
        self._names = _TagNames(matrix)
        self._latest: dict[str, _Tally] = {}  # rank_by -> the last state's tally
        self._last_view: dict[str, tuple[CurationState, VocabularyView]] = {}
        self._lock = threading.Lock()
        self.updates = 0  # states reached by an update (the rest were computed in full): for tests and benchmarks

    def view(self, state: CurationState, rank_by: str = "tfidf") -> VocabularyView:
        if rank_by not in RANKINGS:
            raise ValueError(f"rank_by={rank_by!r}: expected one of {RANKINGS}")
        with self._lock:
            last = self._last_view.get(rank_by)
            if last is not None and last[0] == state:
                return last[1]  # a page's rerun without a new decision (views are read, never written)
            old = self._latest.get(rank_by)
            tally = None if old is None else _updated_tally(old, self.matrix, state, self._names,
                                                            self.update_limit)
            if tally is None:
                tally = _full_tally(self.matrix, state, rank_by, self._names)
                self.matrix.rows_by_tag  # noqa: B018 - built now, beside the full computation, not on the first decision
            else:
                self.updates += 1
            self._latest[rank_by] = tally
            view = _view_of(tally, self.matrix, state, self._names)
            self._last_view[rank_by] = (state, view)
            return view


def domain_mix(view: VocabularyView, matrix: TagMatrix) -> pd.DataFrame:
    """Per ranked canonical tag: the share of its clips in each domain (rows follow view.ranking)."""
    rows = view.canonical_rows
    present = rows >= 0
    n_domains = len(matrix.domains)
    ids = view.ranking["tag_id"].to_numpy()
    if not len(ids) or not n_domains:
        return pd.DataFrame(index=view.ranking["tag"])
    size = int(max(ids.max(), rows.max()) + 1)
    pair_domain = np.broadcast_to(matrix.domain_index[:, None], rows.shape)[present]
    counts = np.bincount(rows[present].astype(np.int64) * n_domains + pair_domain,
                         minlength=size * n_domains).reshape(size, n_domains)[ids]
    share = counts / np.maximum(counts.sum(axis=1), 1)[:, None]
    return pd.DataFrame(share, columns=list(matrix.domains), index=view.ranking["tag"])


def ranking_table(view: VocabularyView, matrix: TagMatrix, k: int, query: str = "") -> pd.DataFrame:
    """The Vocabulary page's table: rank, tag, score, df, in top K, merged members, domain mix; filtered by a
    case-insensitive substring of the tag or of a member."""
    table = view.ranking[["rank", "tag", "score", "df"]].copy()
    table["in_top_k"] = table["rank"] <= k
    table["members"] = [", ".join(view.members.get(tag, [])) for tag in table["tag"]]
    table["domain_mix"] = describe_domain_mix(domain_mix(view, matrix))
    if query:
        table = table[table["tag"].str.contains(query, case=False, regex=False)
                      | table["members"].str.contains(query, case=False, regex=False)]
    return table


def describe_domain_mix(shares: pd.DataFrame) -> list[str]:
    return [", ".join(f"{domain} {share:.0%}" for domain, share in row.items() if share > 0)
            for _, row in shares.iterrows()]


def tag_source_table(con: duckdb.DuckDBPyConnection, state: CurationState) -> pd.DataFrame:
    """Per extractor of the corpus: tag rows, clips, distinct tags and whether its rows feed the vocabulary
    (every extractor does until a use_extractors decision chooses)."""
    table = store_vocabulary.extractor_summary(con)
    table["feeds_vocabulary"] = [state.extractors is None or name in state.extractors for name in table["extractor"]]
    return table


def vocabulary_sources(con: duckdb.DuckDBPyConnection, state: CurationState) -> list[str]:
    """The extractors whose tag rows feed the vocabulary now (all of the corpus's when none was chosen)."""
    present = sorted(store_vocabulary.extractor_summary(con)["extractor"])
    return present if state.extractors is None else sorted(state.extractors)
