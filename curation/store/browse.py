"""Store module of the Browse capability: every SQL statement of the caption text index and of the browse pages.

Place in the flow: beside ``store/schema.py`` (which owns the schema; migration 6 created ``caption_terms`` and
``caption_postings``). ``text_index`` and ``browse`` call these functions; neither holds SQL.

Every value that comes from a user is a bound parameter. The only text spliced into SQL is this module's own
constants, placeholder lists (``?, ?, ?``) and the generated name of a registered key table.

Example::

    keys = clips_with_term(con, term_ids(con, ["dog"])["dog"])
    rows = browse_rows(con, BrowseQuery(after_clip_key=0, limit=26, candidate_keys=keys, sources=("audioset",)))
"""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator, Sequence

import duckdb
import numpy as np

# ---------------------------------------------------------------------------------------------- tokenisation

# One definition of a token, used both for indexing and for queries, so that the two can never disagree:
# lowercase, then split on every character that is not a Unicode letter or digit. Pure-ASCII captions (nearly
# all of them) take a fast path that gives the same tokens: a regex split costs one call per token (~20 s for
# 360k x 2.5 KB captions), replacing the rare punctuation runs and splitting on spaces costs ~5 s.
_ASCII_TOKENS = r"string_split(regexp_replace(lower({x}), '[^ a-z0-9]+', ' ', 'g'), ' ')"
_UNICODE_TOKENS = r"regexp_split_to_array(lower({x}), '[^\p{{L}}\p{{N}}]+')"
_TOKENS = f"(CASE WHEN strlen({{x}}) = length({{x}}) THEN {_ASCII_TOKENS} ELSE {_UNICODE_TOKENS} END)"


def _tokens_sql(expression: str) -> str:
    """SQL list of the raw tokens (stop words kept, empty strings possible) of a VARCHAR expression."""
    return _TOKENS.format(x=expression)


def raw_tokens(con: duckdb.DuckDBPyConnection, texts: Sequence[str]) -> list[tuple[str, list[str]]]:
    """For each text: (its lowercase form, its tokens without empty strings), tokenised exactly as the index is."""
    if not texts:
        return []
    rows = con.execute(f"""
        SELECT list_transform(?::VARCHAR[], lambda x: {{'lowered': lower(x),
                                                       'tokens': list_filter({_tokens_sql('x')}, lambda t: t <> '')}})""",
                       [list(texts)]).fetchall()[0][0]
    return [(row["lowered"], list(row["tokens"])) for row in rows]


# ---------------------------------------------------------------------------------------------- index writes

_SCOPE_TABLE = "caption_index_scope"  # temp: the clip keys whose postings are being replaced
_LISTS_TABLE = "caption_term_lists"  # temp: term -> clip keys of one batch of the scope
_INDEX_BATCH_CLIPS = 60_000  # clip keys per batch (~150 MB of caption text at 2.5 KB each)


@dataclass(frozen=True)
class PostingsWrite:
    clips: int  # clips whose postings were replaced (None scope: clips with a generated caption)
    new_terms: int
    postings: int  # rows written
    terms: int  # terms in the whole index after the write
    total_postings: int


def replace_postings(con: duckdb.DuckDBPyConnection, stop_words: Sequence[str], *,
                     clip_keys: np.ndarray | None = None, ingest_id: int | None = None) -> PostingsWrite:
    """Re-tokenise the generated captions of a scope and replace its postings; call inside a transaction.

    Scope: every clip (both arguments None), the clips an ingest wrote (``ingest_id``), or ``clip_keys``.
    Set-based, per batch of 60k clips: one GROUP BY builds, per term, the list of clips using it; the lists are
    unnested in term order, so postings are stored clustered by term_id within each batch and a term's lookup
    reads a row group or two per batch (zonemaps). Terms are never deleted or renumbered: ids stay stable and
    an unused term costs one row.
    """
    scoped = clip_keys is not None or ingest_id is not None
    scope_filter = f"AND clip_key IN (SELECT clip_key FROM {_SCOPE_TABLE})" if scoped else ""
    # No try/finally around the temp tables: after a failed statement the transaction only accepts ROLLBACK (a
    # DROP there would hide the real error), and the rollback discards temp tables created inside it.
    if clip_keys is not None:
        with registered_keys(con, clip_keys) as name:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {_SCOPE_TABLE} AS SELECT DISTINCT clip_key FROM {name}")
    elif ingest_id is not None:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_SCOPE_TABLE} AS "
                    "SELECT clip_key FROM clips WHERE ingest_id = ?", [ingest_id])
    if scoped:
        # The scope's key range first: DuckDB then skips the row groups of other clips (zonemaps) instead of
        # semi-joining all postings (1.6B at 4M clips) with the scope, which matters when an ingest indexes its
        # new clips batch by batch.
        low, high = con.execute(f"SELECT min(clip_key), max(clip_key) FROM {_SCOPE_TABLE}").fetchall()[0]
        con.execute(f"""DELETE FROM caption_postings WHERE clip_key BETWEEN ? AND ?
                          AND clip_key IN (SELECT clip_key FROM {_SCOPE_TABLE})""", [low, high])
        keys_sql = f"SELECT clip_key FROM {_SCOPE_TABLE}"
    else:
        con.execute("DELETE FROM caption_postings")
        keys_sql = "SELECT DISTINCT clip_key FROM captions WHERE kind = 'generated'"
    # Batches of clips bound the memory of the per-term lists (~1 GB for 360k clips in one go, on top of an
    # ingest's staging tables); each batch is a key range, so its caption scan skips the other row groups.
    batches = con.execute(f"""
        SELECT min(clip_key), max(clip_key), count(*)
        FROM (SELECT clip_key, (row_number() OVER (ORDER BY clip_key) - 1) // ? AS batch FROM ({keys_sql}))
        GROUP BY batch ORDER BY batch""", [_INDEX_BATCH_CLIPS]).fetchall()
    clips = new_terms = written = 0
    for low, high, count in batches:
        added, rows = _index_batch(con, stop_words, scope_filter, low, high)
        clips, new_terms, written = clips + count, new_terms + added, written + rows
    terms, total = con.execute("SELECT (SELECT count(*) FROM caption_terms), "
                               "(SELECT count(*) FROM caption_postings)").fetchall()[0]
    con.execute(f"DROP TABLE IF EXISTS {_LISTS_TABLE}")
    con.execute(f"DROP TABLE IF EXISTS {_SCOPE_TABLE}")
    return PostingsWrite(clips=clips, new_terms=new_terms, postings=written, terms=terms, total_postings=total)


def _index_batch(con: duckdb.DuckDBPyConnection, stop_words: Sequence[str], scope_filter: str, low: int,
                 high: int) -> tuple[int, int]:
    """Postings of the clips with low <= clip_key <= high (and in the scope); returns (new terms, postings)."""
    # A clip's tokens are emitted together, so list(clip_key) holds a clip's repeats of a term side by side:
    # the adjacent-duplicate filter below makes postings distinct (clip, term) pairs without a global
    # DISTINCT over ~150M pairs (which costs ~30 s on 2 cores; this costs ~7 s). Not always: when DuckDB's
    # parallel aggregation splits one clip's tokens between two states, a repeat survives (measured: 5 in
    # the postings of 1,000 clips at 4M); readers drop them (clips_with_term).
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {_LISTS_TABLE} AS
        SELECT term, list(clip_key) AS clip_keys
        FROM (SELECT clip_key, unnest({_tokens_sql('text')}) AS term
              FROM captions WHERE kind = 'generated' AND clip_key BETWEEN ? AND ? {scope_filter})
        WHERE term <> '' AND NOT list_contains(?::VARCHAR[], term)
        GROUP BY term""", [low, high, list(stop_words)])
    new_terms = con.execute(f"""
        INSERT INTO caption_terms
        SELECT (SELECT coalesce(max(term_id), 0) FROM caption_terms)
               + CAST(row_number() OVER (ORDER BY l.term) AS INTEGER), l.term
        FROM {_LISTS_TABLE} l WHERE NOT EXISTS (SELECT 1 FROM caption_terms t WHERE t.term = l.term)""").fetchall()
    # ORDER BY inside, unnest outside: the sort is over one row per term, not one per posting; a term's postings
    # of one batch end up side by side, so its lookup reads a row group or two per batch.
    written = con.execute(f"""
        INSERT INTO caption_postings
        SELECT term_id, unnest(list_filter(clip_keys, lambda k, i: i = 1 OR clip_keys[i - 1] <> k))
        FROM (SELECT t.term_id, l.clip_keys FROM {_LISTS_TABLE} l JOIN caption_terms t USING (term)
              ORDER BY t.term_id)""").fetchall()
    return new_terms[0][0], written[0][0]


# ---------------------------------------------------------------------------------------------- index reads

def term_ids(con: duckdb.DuckDBPyConnection, terms: Sequence[str]) -> dict[str, int]:
    """term -> term_id for the terms the index knows (absent ones are left out)."""
    if not terms:
        return {}
    return dict(con.execute("SELECT term, term_id FROM caption_terms WHERE term IN (SELECT unnest(?::VARCHAR[]))",
                            [list(terms)]).fetchall())


def clips_with_term(con: duckdb.DuckDBPyConnection, term_id: int, *, low: int | None = None,
                    high: int | None = None) -> np.ndarray:
    """Sorted distinct clip keys whose generated captions contain the term (only low <= key <= high if given).

    A constant term id and key range (not subqueries), so that the scan reads only the row groups of that term
    and range (zonemaps: postings are written term-sorted per batch of clips).
    """
    where, params = "term_id = ?", [int(term_id)]
    if low is not None:
        where, params = where + " AND clip_key >= ?", params + [int(low)]
    if high is not None:
        where, params = where + " AND clip_key <= ?", params + [int(high)]
    keys = np.asarray(con.execute(f"SELECT clip_key FROM caption_postings WHERE {where}",
                                  params).fetchnumpy()["clip_key"], dtype=np.int64)
    # Sorted here, not by ORDER BY: a SQL sort of 360k keys costs ~200 ms, numpy's timsort of the few ascending
    # runs the postings come in costs < 1 ms.
    keys.sort(kind="stable")
    if len(keys) > 1:
        # Repeats: a clip's tokens split across DuckDB's parallel aggregation states (a few per million postings
        # at 4M clips), or scoped rewrites. The keys are sorted, so dropping a key equal to its predecessor is
        # enough: ~4 ms per million keys, where np.unique's hashing took ~70 ms.
        fresh = keys[1:] != keys[:-1]
        if not fresh.all():
            keys = keys[np.r_[True, fresh]]
    return keys


def clips_holding_literals(con: duckdb.DuckDBPyConnection, literals: Sequence[str],
                           candidate_keys: np.ndarray | None = None) -> np.ndarray:
    """Sorted clip keys (among the candidates; None: all) whose generated captions hold every literal, any case."""
    if not literals:
        raise ValueError("clips_holding_literals: expected at least one literal")
    having = " AND ".join("bool_or(contains(lower(g.text), lower(?)))" for _ in literals)
    with _maybe_registered(con, candidate_keys) as keys_table:
        inside = f"AND g.clip_key IN (SELECT clip_key FROM {keys_table})" if keys_table is not None else ""
        keys = con.execute(f"""
            SELECT g.clip_key FROM captions g WHERE g.kind = 'generated' {inside}
            GROUP BY g.clip_key HAVING {having} ORDER BY g.clip_key""", list(literals)).fetchnumpy()["clip_key"]
    return np.asarray(keys, dtype=np.int64)


def index_status(con: duckdb.DuckDBPyConnection) -> dict:
    """Terms, postings and clips with a generated caption; ``postings == 0`` with captions means never built."""
    terms, postings, captioned = con.execute("""
        SELECT (SELECT count(*) FROM caption_terms), (SELECT count(*) FROM caption_postings),
               (SELECT count(DISTINCT clip_key) FROM captions WHERE kind = 'generated')""").fetchall()[0]
    return {"terms": terms, "postings": postings, "captioned_clips": captioned}


def index_is_missing(con: duckdb.DuckDBPyConnection) -> bool:
    """True when generated captions exist but no posting does (the index was never built for this database)."""
    return con.execute("""
        SELECT NOT EXISTS (SELECT 1 FROM caption_postings)
               AND EXISTS (SELECT 1 FROM captions WHERE kind = 'generated')""").fetchall()[0][0]


def unindexed_clip_count(con: duckdb.DuckDBPyConnection) -> int:
    """Clips with a generated caption and no posting at all (a caption writer that did not reindex).

    A diagnostic (~1 s at 150M postings): a caption made only of stop words or punctuation also counts.
    """
    return con.execute("""
        SELECT count(*) FROM (SELECT DISTINCT clip_key FROM captions WHERE kind = 'generated') g
        WHERE NOT EXISTS (SELECT 1 FROM caption_postings p WHERE p.clip_key = g.clip_key)""").fetchall()[0][0]


# ---------------------------------------------------------------------------------------------- browse reads

@contextmanager
def registered_keys(con: duckdb.DuckDBPyConnection, keys: np.ndarray) -> Iterator[str]:
    """Expose a numpy array of clip keys as a table (zero-copy Arrow); yields its generated name.

    Binding 30k keys as a list parameter costs ~20 ms more than scanning them as Arrow; the name is unique so
    that cursors of one database never see each other's keys.
    """
    import pyarrow as pa

    name = f"browse_keys_{uuid.uuid4().hex}"
    con.register(name, pa.table({"clip_key": np.asarray(keys, dtype=np.int32)}))
    try:
        yield name
    finally:
        con.unregister(name)


def clip_key_span(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    """(count, min, max) of clip keys."""
    count, low, high = con.execute("SELECT count(*), coalesce(min(clip_key), 0), coalesce(max(clip_key), 0) "
                                   "FROM clips").fetchall()[0]
    return count, low, high


def first_clip_keys(con: duckdb.DuckDBPyConnection, n: int) -> np.ndarray:
    """The n smallest clip keys in order (the row order of a vocabulary view of n clips)."""
    keys = con.execute("SELECT clip_key FROM clips ORDER BY clip_key LIMIT ?", [n]).fetchnumpy()["clip_key"]
    return np.asarray(keys, dtype=np.int64)


def clip_ids_of(con: duckdb.DuckDBPyConnection, clip_keys: Sequence[int]) -> dict[int, str]:
    return dict(con.execute("SELECT clip_key, clip_id FROM clips WHERE clip_key IN (SELECT unnest(?::INTEGER[]))",
                            [[int(k) for k in clip_keys]]).fetchall())


def clip_keys_after(con: duckdb.DuckDBPyConnection, after_clip_key: int) -> np.ndarray:
    keys = con.execute("SELECT clip_key FROM clips WHERE clip_key > ? ORDER BY clip_key",
                       [after_clip_key]).fetchnumpy()["clip_key"]
    return np.asarray(keys, dtype=np.int64)


@dataclass(frozen=True)
class BrowseQuery:
    """The SQL-side part of a browse request; every field left at its default adds nothing to the query."""

    after_clip_key: int  # keyset: only clip_key > this
    limit: int  # rows to return at most
    candidate_keys: np.ndarray | None = None  # only these clip keys (resolved in numpy or by the text index)
    literals: tuple[str, ...] = ()  # case-insensitive substrings every matching clip's generated captions hold
    domains: tuple[str, ...] = ()  # 'unknown' stands for no domain recorded
    sources: tuple[str, ...] = ()
    min_duration_s: float | None = None
    max_duration_s: float | None = None
    raw_tag: str | None = None
    audited: bool | None = None  # True: some audit slot of the clip was submitted; False: none was
    audio_ok: bool | None = None


_ROW_COLUMNS = ("clip_key", "clip_id", "domain", "source", "duration_s", "audio_path", "audio_ok", "caption",
                "original_captions", "raw_tags")


def count_rows(con: duckdb.DuckDBPyConnection, query: BrowseQuery) -> int:
    """How many clips match the query's filters (its keyset position and limit ignored)."""
    return browse_rows(con, query, count_only=True)[0]["n"]


def browse_rows(con: duckdb.DuckDBPyConnection, query: BrowseQuery, *, count_only: bool = False) -> list[dict]:
    """One page of clips in clip_key order, with captions and raw tags; the SQL holds only the active filters.

    A generic ``(? IS NULL OR ...)`` query costs 0.2-0.4 s at 360k clips; one built for the filters that are
    set costs ~10 ms. Captions and tags are read for the page's clips only. ``count_only``: [{"n": matches}].
    """
    if query.candidate_keys is not None and not len(query.candidate_keys):
        return [{"n": 0}] if count_only else []
    where = ["c.clip_key > ?"]
    params: list = [int(query.after_clip_key)]
    if query.domains:
        where.append(f"coalesce(c.domain, 'unknown') IN ({', '.join('?' for _ in query.domains)})")
        params += list(query.domains)
    if query.sources:
        where.append(f"coalesce(c.source, 'unknown') IN ({', '.join('?' for _ in query.sources)})")
        params += list(query.sources)
    if query.min_duration_s is not None:
        where.append("c.duration_s >= ?")
        params.append(float(query.min_duration_s))
    if query.max_duration_s is not None:
        where.append("c.duration_s <= ?")
        params.append(float(query.max_duration_s))
    if query.audio_ok is not None:
        where.append("c.audio_ok = ?")
        params.append(bool(query.audio_ok))
    if query.raw_tag is not None:
        # The tag's id as a constant: a filter on a constant is pushed into the scan of 4M clip_tags rows
        # (~7 ms); a join with tags on the text is not (~20 ms).
        found = con.execute("SELECT tag_id FROM tags WHERE tag = ?", [query.raw_tag]).fetchall()
        if not found:
            return [{"n": 0}] if count_only else []
        where.append("c.clip_key IN (SELECT ct.clip_key FROM clip_tags ct WHERE ct.tag_id = ?)")
        params.append(found[0][0])
    if query.audited is not None:
        where.append(("" if query.audited else "NOT ") + "EXISTS (SELECT 1 FROM audit_slots a "
                     "WHERE a.clip_key = c.clip_key AND a.submitted_at IS NOT NULL)")
    with _maybe_registered(con, query.candidate_keys) as keys_table:
        inside = ""
        if keys_table is not None:
            # The candidates' key range as constants as well: DuckDB then skips other clips' row groups of clips
            # and captions (zonemaps) before the semi-join, which at 4M clips is most of them.
            low, high = int(query.candidate_keys.min()), int(query.candidate_keys.max())
            where.append(f"c.clip_key BETWEEN {low} AND {high} AND c.clip_key IN (SELECT clip_key FROM {keys_table})")
            inside = f"AND g.clip_key BETWEEN {low} AND {high} AND g.clip_key IN (SELECT clip_key FROM {keys_table})"
        if query.literals:
            # Only the candidates' captions are read: the caller hands over a bounded chunk of keys.
            having = " AND ".join("bool_or(contains(lower(g.text), lower(?)))" for _ in query.literals)
            where.append(f"c.clip_key IN (SELECT g.clip_key FROM captions g WHERE g.kind = 'generated' {inside} "
                         f"GROUP BY g.clip_key HAVING {having})")
            params += list(query.literals)
        if count_only:
            return [{"n": con.execute(f"SELECT count(*) FROM clips c WHERE {' AND '.join(where)}",
                                      params).fetchall()[0][0]}]
        params.append(int(query.limit))
        result = con.execute(f"""
            WITH page AS MATERIALIZED (
                SELECT c.clip_key FROM clips c WHERE {' AND '.join(where)} ORDER BY c.clip_key LIMIT ?),
            gen AS (SELECT g.clip_key, first(g.text ORDER BY g.captioner, g.position) AS caption FROM captions g
                    WHERE g.kind = 'generated' AND g.clip_key IN (SELECT clip_key FROM page) GROUP BY g.clip_key),
            orig AS (SELECT o.clip_key, list(o.text ORDER BY o.position) AS original_captions FROM captions o
                     WHERE o.kind = 'original' AND o.clip_key IN (SELECT clip_key FROM page) GROUP BY o.clip_key),
            raw AS (SELECT ct.clip_key, list(DISTINCT t.tag ORDER BY t.tag) AS raw_tags
                    FROM clip_tags ct JOIN tags t USING (tag_id)
                    WHERE ct.clip_key IN (SELECT clip_key FROM page) GROUP BY ct.clip_key)
            SELECT c.clip_key, c.clip_id, c.domain, c.source, c.duration_s, c.audio_path, c.audio_ok,
                   gen.caption, orig.original_captions, raw.raw_tags
            FROM page JOIN clips c USING (clip_key) LEFT JOIN gen USING (clip_key)
                 LEFT JOIN orig USING (clip_key) LEFT JOIN raw USING (clip_key)
            ORDER BY c.clip_key""", params)
        return [dict(zip(_ROW_COLUMNS, row)) for row in result.fetchall()]


@contextmanager
def _maybe_registered(con: duckdb.DuckDBPyConnection, keys: np.ndarray | None) -> Iterator[str | None]:
    if keys is None:
        yield None
    else:
        with registered_keys(con, keys) as name:
            yield name


def clip_detail_rows(con: duckdb.DuckDBPyConnection, clip_key: int) -> dict | None:
    """One clip with every caption (kind, captioner, position, text), raw tags with extractor, audit counts."""
    result = con.execute("""
        SELECT clip_key, clip_id, domain, source, duration_s, sample_rate_hz, audio_path, audio_ok, ingest_id
        FROM clips WHERE clip_key = ?""", [int(clip_key)])
    names = [d[0] for d in result.description]
    rows = result.fetchall()
    if not rows:
        return None
    detail = dict(zip(names, rows[0]))
    detail["captions"] = con.execute("""
        SELECT kind, captioner, position, text FROM captions WHERE clip_key = ?
        ORDER BY kind = 'original', captioner, position""", [int(clip_key)]).fetchall()
    detail["raw_tags"] = con.execute("""
        SELECT DISTINCT t.tag, ct.extractor FROM clip_tags ct JOIN tags t USING (tag_id) WHERE ct.clip_key = ?
        ORDER BY t.tag, ct.extractor""", [int(clip_key)]).fetchall()
    detail["audit_submissions"] = con.execute(
        "SELECT count(*) FROM audit_slots WHERE clip_key = ? AND submitted_at IS NOT NULL",
        [int(clip_key)]).fetchall()[0][0]
    return detail


# ---------------------------------------------------------------------------------------------- test support

def add_submitted_audit_slot(con: duckdb.DuckDBPyConnection, *, campaign_id: int, clip_key: int,
                             annotator: str, slot: int = 0, submitted: bool = True) -> None:
    """Write one audit slot row (claimed, and submitted unless told otherwise).

    For tests and fixtures of the audited filter; the audit capability writes its slots through its own module.
    """
    now = datetime.now(timezone.utc)
    con.execute("INSERT INTO audit_slots VALUES (?, ?, ?, ?, NULL, ?, ?, ?)",
                [campaign_id, 0, int(clip_key), slot, annotator, now, now if submitted else None])
