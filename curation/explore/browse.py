"""Browse: page through clips by canonical or raw tag, domain, source, duration, caption text and audit state.

Place in the flow: ingest + decide -> vocabulary view -> browse (this module) -> the Browse page and clip detail.
Filters that depend on curation (canonical tags, "keeps no tag at K") are resolved in numpy from the
``VocabularyView`` into a set of clip keys; free text through the caption index (``text_index``); the rest
goes into ONE query built for the filters that are set. Pages are keyset-paginated on clip_key (never
OFFSET): ``next_after`` of one page is ``after_clip_key`` of the next, so a page costs the same at the end of
360k clips as at the start (p50 ~30 ms, p95 ~60 ms on 2 cores; bench/browse_scale.py).

Example::

    state = replay(list_decisions(con))
    view = compute_vocabulary(load_tag_matrix(con), state)
    filters = BrowseFilters(canonical_tags=("dog",), text="barking", sources=("audioset",))
    page = browse_page(con, filters, view=view, state=state)
    more = browse_page(con, filters, view=view, state=state, after_clip_key=page.next_after)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from curation.errors import UtsError
from curation.ingest import text_index
from curation.store import browse as store_browse
from curation.store import model_audit as store_model_audit
from curation.vocabulary.decisions import CurationState
from curation.vocabulary.ranking import VocabularyView

TAG_MODES = ("any", "all")
# Literal checks read captions chunk by chunk, in clip_key order, until the page is full: the first chunk is
# enough for a common phrase, and a rare one never reads more captions than its token candidates hold.
_FIRST_CHUNK = 1024
_MAX_CHUNK = 65_536


class BrowseError(UtsError, ValueError):
    """Browse filters that cannot work, or a vocabulary view that does not belong to the database."""


@dataclass(frozen=True)
class BrowseFilters:
    """What to show; every field left at its default filters nothing."""

    canonical_tags: tuple[str, ...] = ()  # canonical tags after replay (a merged raw name is mapped to its target)
    tag_mode: str = "any"  # "any": a clip carries at least one of canonical_tags; "all": every one
    raw_tag: str | None = None  # a raw (ingested or extracted) tag text, before any merge
    domains: tuple[str, ...] = ()  # any of these; "unknown" = no domain recorded
    sources: tuple[str, ...] = ()  # any of these; "unknown" = no source recorded
    min_duration_s: float | None = None
    max_duration_s: float | None = None
    text: str = ""  # free text over generated captions (semantics in text_index); stop words alone restrict nothing
    no_tag_at_k: int | None = None  # only clips that keep no canonical tag in the top K of the view's ranking
    audited: bool | None = None  # True: some audit slot of the clip was submitted; False: none was
    audio_ok: bool | None = None  # True: audio found at ingest; False: missing
    disputed_by_run: str | None = None  # only clips where this run's model audit disputes a tag (model-audit)
    disputed_tag: str | None = None  # with disputed_by_run: only clips where it disputes this (canonical) tag
    disputed_min_score: float | None = None  # with disputed_by_run: only disputes at least this confident (0-1)

    def __post_init__(self) -> None:
        # Tuples so that filters stay hashable (Streamlit caches and session state key on them).
        for name in ("canonical_tags", "domains", "sources"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise BrowseError(f"BrowseFilters.{name}={value!r}: expected a tuple of texts, not one text")
            object.__setattr__(self, name, tuple(value))
        if self.tag_mode not in TAG_MODES:
            raise BrowseError(f"BrowseFilters.tag_mode={self.tag_mode!r}: expected one of {TAG_MODES}")
        if (self.min_duration_s is not None and self.max_duration_s is not None
                and self.min_duration_s > self.max_duration_s):
            raise BrowseError(f"BrowseFilters: min_duration_s={self.min_duration_s} is above "
                              f"max_duration_s={self.max_duration_s}; swap them")
        if self.no_tag_at_k is not None and (isinstance(self.no_tag_at_k, bool) or int(self.no_tag_at_k) < 0):
            raise BrowseError(f"BrowseFilters.no_tag_at_k={self.no_tag_at_k!r}: expected K >= 0 or None")

    def active(self) -> tuple[str, ...]:
        """Names of the filters that are set (for a caption above the table)."""
        defaults = BrowseFilters()
        return tuple(f.name for f in dataclasses.fields(self)
                     if f.name != "tag_mode" and getattr(self, f.name) != getattr(defaults, f.name)
                     and not (f.name == "text" and not self.text.strip()))


@dataclass(frozen=True)
class BrowseRow:
    clip_key: int
    clip_id: str
    domain: str | None
    source: str | None
    duration_s: float | None
    audio_path: str | None
    audio_ok: bool
    caption: str | None  # the first generated caption (by captioner, position)
    original_captions: tuple[str, ...]
    raw_tags: tuple[str, ...]  # distinct raw tags, sorted
    canonical_tags: tuple[str, ...]  # canonical tags after replay, best rank first


@dataclass(frozen=True)
class BrowsePage:
    rows: tuple[BrowseRow, ...]
    next_after: int | None  # pass as after_clip_key for the next page; None when this is the last page
    has_more: bool

    def as_frame(self) -> pd.DataFrame:
        columns = [f.name for f in dataclasses.fields(BrowseRow)]
        return pd.DataFrame([dataclasses.astuple(row) for row in self.rows], columns=columns)


@dataclass(frozen=True)
class CaptionText:
    kind: str  # 'generated' or 'original'
    captioner: str
    position: int
    text: str


@dataclass(frozen=True)
class ClipDetail:
    clip_key: int
    clip_id: str
    domain: str | None
    source: str | None
    duration_s: float | None
    sample_rate_hz: int | None
    audio_path: str | None
    audio_ok: bool
    ingest_id: int
    captions: tuple[CaptionText, ...]  # generated first, then original; by captioner, position
    raw_tags: tuple[tuple[str, str], ...]  # (tag, extractor)
    audit_submissions: int  # submitted audit slots of this clip
    canonical_tags: tuple[str, ...] | None  # None when no view was given


def _candidate_keys(con: duckdb.DuckDBPyConnection, filters: BrowseFilters, view: VocabularyView,
                    state: CurationState, row_keys: np.ndarray, *, text_terms: bool = True
                    ) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """The clip keys the filters resolved outside SQL (None: no restriction) and the caption literals left.

    ``text_terms=False``: the query's index terms are left to the caller (a page reads them window by window)."""
    keys: np.ndarray | None = None  # None: no restriction on clip keys
    if filters.canonical_tags:
        keys = row_keys[_canonical_mask(view, state, filters.canonical_tags, filters.tag_mode)]
    if filters.no_tag_at_k is not None:
        keys = _intersect(keys, row_keys[view.best_rank > int(filters.no_tag_at_k)])
    if filters.disputed_by_run is not None:
        disputed = store_model_audit.disputed_clip_keys(con, filters.disputed_by_run, tag=filters.disputed_tag,
                                                        min_score=filters.disputed_min_score)
        keys = _intersect(keys, np.asarray(disputed, dtype=row_keys.dtype))
    literals: tuple[str, ...] = ()
    if filters.text.strip():
        query = text_index.parse_query(con, filters.text)
        if not query.is_empty:
            if text_terms:
                try:
                    keys = _intersect(keys, text_index.candidate_clip_keys(con, query))
                except text_index.TextIndexMissingError as exc:
                    raise BrowseError(str(exc)) from None  # pages report BrowseError; the fix is in the message
            literals = query.literals
    return keys, literals


def count_matching(con: duckdb.DuckDBPyConnection, filters: BrowseFilters, *, view: VocabularyView,
                   state: CurationState) -> int:
    """How many clips match every filter (what Browse shows above its pages)."""
    row_keys = view_clip_keys(con, view)
    keys, literals = _candidate_keys(con, filters, view, state, row_keys)
    if keys is not None and not len(keys):
        return 0
    return store_browse.count_rows(con, store_browse.BrowseQuery(
        after_clip_key=0, limit=0, candidate_keys=keys, literals=literals, domains=filters.domains,
        sources=filters.sources, min_duration_s=filters.min_duration_s, max_duration_s=filters.max_duration_s,
        raw_tag=filters.raw_tag, audited=filters.audited, audio_ok=filters.audio_ok))


def browse_page(con: duckdb.DuckDBPyConnection, filters: BrowseFilters, *, view: VocabularyView,
                state: CurationState, after_clip_key: int | None = None, limit: int = 25) -> BrowsePage:
    """One page of clips matching every filter, in clip_key order, after ``after_clip_key``."""
    if isinstance(limit, bool) or int(limit) < 1:
        raise BrowseError(f"limit={limit!r}: expected a page size of at least 1")
    after = 0 if after_clip_key is None else int(after_clip_key)
    need = int(limit) + 1  # one more than shown says whether another page exists
    row_keys = view_clip_keys(con, view)

    query = text_index.parse_query(con, filters.text) if filters.text.strip() else None
    windowed = query is not None and bool(query.terms)
    keys, literals = _candidate_keys(con, filters, view, state, row_keys, text_terms=not windowed)
    if literals and keys is None and not windowed:
        keys = store_browse.clip_keys_after(con, after)  # no indexable word: every clip is a candidate
    if keys is not None:
        keys = keys[keys > after]

    base = store_browse.BrowseQuery(
        after_clip_key=after, limit=need, domains=filters.domains, sources=filters.sources,
        min_duration_s=filters.min_duration_s, max_duration_s=filters.max_duration_s, raw_tag=filters.raw_tag,
        audited=filters.audited, audio_ok=filters.audio_ok)
    if not windowed:
        rows = _rows_of_candidates(con, base, keys, literals, need)
    else:
        rows = _rows_by_key_windows(con, base, query, keys, literals, need)
    has_more = len(rows) > limit
    rows = rows[:limit]
    canonical = _canonical_names(view, row_keys, [row["clip_key"] for row in rows])
    page_rows = tuple(BrowseRow(
        clip_key=row["clip_key"], clip_id=row["clip_id"], domain=row["domain"], source=row["source"],
        duration_s=row["duration_s"], audio_path=row["audio_path"], audio_ok=bool(row["audio_ok"]),
        caption=row["caption"], original_captions=tuple(row["original_captions"] or ()),
        raw_tags=tuple(row["raw_tags"] or ()), canonical_tags=tags) for row, tags in zip(rows, canonical))
    return BrowsePage(rows=page_rows, next_after=page_rows[-1].clip_key if has_more else None, has_more=has_more)


def _rows_of_candidates(con: duckdb.DuckDBPyConnection, base: store_browse.BrowseQuery, keys: np.ndarray | None,
                        literals: tuple[str, ...], need: int) -> list[dict]:
    """Up to ``need`` rows of the candidate keys (None: every clip after the page start) that pass the SQL filters
    and hold the literals."""
    if keys is not None and not len(keys):
        return []
    if keys is None:
        return store_browse.browse_rows(con, dataclasses.replace(base, limit=need))
    if not literals:
        sql_filtered = base != store_browse.BrowseQuery(after_clip_key=base.after_clip_key, limit=base.limit)
        # With nothing else to check, the page is simply the next keys of the candidate set.
        return store_browse.browse_rows(con, dataclasses.replace(
            base, limit=need, candidate_keys=keys if sql_filtered else keys[:need]))
    rows: list[dict] = []
    start, size = 0, max(_FIRST_CHUNK, need)
    while start < len(keys) and len(rows) < need:
        chunk = keys[start:start + size]
        start += size
        rows += store_browse.browse_rows(con, dataclasses.replace(
            base, candidate_keys=chunk, literals=literals, limit=need - len(rows)))
        size = min(size * 4, _MAX_CHUNK)
    return rows


# A text query's clips are looked up in clip-key windows, from the page start on, each window 4x the last, until the
# page is full: a page of a word found in millions of clips reads the postings of its first window only (one
# row group per term), not the millions (seconds at 4M clips, issue 17). A query whose clips are rare reads
# the whole range in a few large windows, which costs about what one lookup over everything does.
_FIRST_WINDOW = 16_384
_WINDOW_GROWTH = 4


def _rows_by_key_windows(con: duckdb.DuckDBPyConnection, base: store_browse.BrowseQuery,
                         query: text_index.TextQuery, keys: np.ndarray | None, literals: tuple[str, ...],
                         need: int) -> list[dict]:
    """Up to ``need`` rows holding every term of ``query`` (and the literals, the SQL filters, ``keys`` when not
    None), in clip_key order after ``base.after_clip_key``."""
    _count, _low, high = store_browse.clip_key_span(con)
    if keys is not None:
        if not len(keys):
            return []
        high = min(high, int(keys[-1]))
    rows: list[dict] = []
    low, window = base.after_clip_key + 1, _FIRST_WINDOW
    try:
        while low <= high and len(rows) < need:
            top = min(high, low + window - 1)
            found = text_index.candidate_clip_keys(con, query, low=low, high=top)
            if keys is not None:
                found = text_index.intersect_sorted(found, keys[(keys >= low) & (keys <= top)])
            rows += _rows_of_candidates(con, base, found, literals, need - len(rows))
            low, window = top + 1, window * _WINDOW_GROWTH
    except text_index.TextIndexMissingError as exc:
        raise BrowseError(str(exc)) from None  # pages report BrowseError; the fix is in the message
    return rows


def clip_detail(con: duckdb.DuckDBPyConnection, clip_key: int, *, view: VocabularyView | None = None) -> ClipDetail | None:
    """Everything about one clip (None when no clip has this key); canonical tags when a view is given."""
    row = store_browse.clip_detail_rows(con, clip_key)
    if row is None:
        return None
    canonical = _canonical_names(view, view_clip_keys(con, view), [row["clip_key"]])[0] if view is not None else None
    return ClipDetail(
        clip_key=row["clip_key"], clip_id=row["clip_id"], domain=row["domain"], source=row["source"],
        duration_s=row["duration_s"], sample_rate_hz=row["sample_rate_hz"], audio_path=row["audio_path"],
        audio_ok=bool(row["audio_ok"]), ingest_id=row["ingest_id"],
        captions=tuple(CaptionText(*caption) for caption in row["captions"]),
        raw_tags=tuple(tuple(tag) for tag in row["raw_tags"]), audit_submissions=row["audit_submissions"],
        canonical_tags=canonical)


def view_clip_keys(con: duckdb.DuckDBPyConnection, view: VocabularyView) -> np.ndarray:
    """clip_key of each row of the view (rows are clips in clip_key order when the view was computed).

    Clips are never deleted and new ones get larger keys, so the view's n rows are the n smallest keys even
    when clips were ingested since; the last row's clip_id is checked to catch a view of another database.
    """
    n = len(view.clip_ids)
    count, low, high = store_browse.clip_key_span(con)
    if n > count:
        raise BrowseError(f"the vocabulary view has {n:,} clips but the database only {count:,}: it was computed "
                          "on another database; recompute it (load_tag_matrix + compute_vocabulary)")
    # Ingest numbers clips 1..N, so usually no key needs reading.
    keys = np.arange(1, n + 1, dtype=np.int64) if (low == 1 and high == count) else store_browse.first_clip_keys(con, n)
    if n:
        found = store_browse.clip_ids_of(con, [int(keys[-1])]).get(int(keys[-1]))
        if found != view.clip_ids[-1]:
            raise BrowseError(f"the vocabulary view's last clip is {view.clip_ids[-1]!r} but the database has "
                              f"{found!r} there: the view belongs to another database; recompute it")
    return keys


def _intersect(keys: np.ndarray | None, other: np.ndarray | None) -> np.ndarray | None:
    if other is None:
        return keys
    if keys is None:
        return other
    return text_index.intersect_sorted(keys, other)


def _canonical_mask(view: VocabularyView, state: CurationState, tags: tuple[str, ...], mode: str) -> np.ndarray:
    position = view.positions_of([state.canonical(tag) for tag in tags])
    known = np.unique(view.ranking["tag_id"].to_numpy()[position[position >= 0]])
    if not len(known) or (mode == "all" and (position < 0).any()):
        # No clip carries an unknown or pruned tag: "all" then matches nothing, "any" ignores it.
        return np.zeros(view.n_clips, dtype=bool)
    return view.rows_with_tags(known, mode)


def _canonical_names(view: VocabularyView, row_keys: np.ndarray, clip_keys: list[int]) -> list[tuple[str, ...]]:
    """Canonical tags (best rank first) of some clips; clips newer than the view have none yet."""
    if not clip_keys:
        return []
    wanted = np.asarray(clip_keys, dtype=np.int64)
    rows = np.searchsorted(row_keys, wanted)
    in_view = (rows < len(row_keys)) & (row_keys[np.minimum(rows, len(row_keys) - 1)] == wanted) if len(row_keys) \
        else np.zeros(len(wanted), dtype=bool)
    names = iter(view.tags_of_rows(len(view.ranking), rows[in_view]))
    return [tuple(next(names)) if hit else () for hit in in_view.tolist()]
