"""SQL of the vocabulary stage: tag texts, the clip-tag matrix, embeddings, suggestion verdicts, projections.

Place in the flow: vocabulary (ranking, suggestions, tag map) -> here -> DuckDB. Example:
``tag_matrix_inputs(con)["pairs"]``.
"""
from __future__ import annotations

import json

import duckdb

from curation.store.schema import FIRST_GENERATED_CAPTION_SQL, RAW_TAGS_SQL, now_utc


def known_tag_texts(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {row[0] for row in con.execute("SELECT tag FROM tags").fetchall()}


def intern_tags(con: duckdb.DuckDBPyConnection, texts: list[str]) -> None:
    """Give new tag texts (e.g. a merge target that did not exist) an integer id."""
    for text in texts:
        con.execute("""INSERT INTO tags SELECT (SELECT coalesce(max(tag_id), 0) + 1 FROM tags), ?
                       WHERE NOT EXISTS (SELECT 1 FROM tags WHERE tag = ?)""", [text, text])


def raw_tag_texts(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Tags some clip carries from ingest or extraction (not names that exist only as merge targets)."""
    return [row[0] for row in con.execute(
        "SELECT tag FROM tags WHERE tag_id IN (SELECT DISTINCT tag_id FROM clip_tags) ORDER BY tag").fetchall()]


def clips_with_tags(con: duckdb.DuckDBPyConnection, tags: list[str], limit: int) -> list[dict]:
    """A few clips carrying any of these raw tags, with their first generated caption and all raw tags."""
    result = con.execute(f"""
        WITH hits AS (
            SELECT DISTINCT ct.clip_key FROM clip_tags ct JOIN tags t USING (tag_id)
            WHERE t.tag IN (SELECT unnest(?)) ORDER BY ct.clip_key LIMIT ?)
        SELECT c.clip_id, c.audio_path, c.audio_ok,
               {FIRST_GENERATED_CAPTION_SQL} AS caption,
               {RAW_TAGS_SQL} AS raw_tags
        FROM clips c JOIN hits USING (clip_key) ORDER BY c.clip_key""", [tags, limit])
    names = [d[0] for d in result.description]
    return [dict(zip(names, row)) for row in result.fetchall()]


def clip_exists(con: duckdb.DuckDBPyConnection, clip_id: object) -> bool:
    if not isinstance(clip_id, str):
        return False
    return con.execute("SELECT count(*) FROM clips WHERE clip_id = ?", [clip_id]).fetchall()[0][0] > 0


MAX_EXTRACTORS = 62  # one bit per extractor in a pair's BIGINT mask


def extractor_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Extractors a vocabulary may be fed from: those with tag rows, and producers of tagging jobs (a job that
    has started but not yet written a row can already be chosen)."""
    return {row[0] for row in con.execute(
        "SELECT DISTINCT extractor FROM clip_tags UNION SELECT producer FROM extraction_jobs WHERE task = 'tags'"
    ).fetchall()}


def extractor_summary(con: duckdb.DuckDBPyConnection, clip_keys: list[int] | None = None):
    """Per extractor: tag rows, clips and distinct tags, over every clip or over ``clip_keys`` only."""
    import pyarrow as pa

    if clip_keys is None:
        return con.execute("""SELECT extractor, count(*) AS tag_rows, count(DISTINCT clip_key) AS clips,
                                     count(DISTINCT tag_id) AS distinct_tags
                              FROM clip_tags GROUP BY extractor ORDER BY extractor""").df()
    con.register("scope_clips", pa.table({"clip_key": pa.array(clip_keys, pa.int64())}))
    try:
        return con.execute("""SELECT extractor, count(*) AS tag_rows, count(DISTINCT clip_key) AS clips,
                                     count(DISTINCT tag_id) AS distinct_tags
                              FROM clip_tags WHERE clip_key IN (SELECT clip_key FROM scope_clips)
                              GROUP BY extractor ORDER BY extractor""").df()
    finally:
        con.unregister("scope_clips")


def clips_with_any_tag(con: duckdb.DuckDBPyConnection, clip_keys: list[int], excluding: str | None = None) -> int:
    """How many of ``clip_keys`` carry tag rows of some extractor other than ``excluding``."""
    import pyarrow as pa

    con.register("scope_clips", pa.table({"clip_key": pa.array(clip_keys, pa.int64())}))
    try:
        return con.execute("""SELECT count(DISTINCT clip_key) FROM clip_tags
                              WHERE clip_key IN (SELECT clip_key FROM scope_clips) AND extractor IS DISTINCT FROM ?""",
                           [excluding]).fetchall()[0][0]
    finally:
        con.unregister("scope_clips")


def tag_matrix_inputs(con: duckdb.DuckDBPyConnection) -> dict:
    """Everything the vocabulary engine needs, as numpy arrays over integer ids: the distinct clip-tag pairs,
    each with a bit mask of the extractors that produced it (bit i = ``extractors[i]``)."""
    extractors = tag_matrix_extractors(con)
    return {"pairs": tag_matrix_pairs(con, extractors), "clips": tag_matrix_clips(con),
            "tags": tag_matrix_tags(con), "extractors": extractors, "version": corpus_version(con)}


def tag_matrix_extractors(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The extractors of clip_tags, sorted: extractor i is bit i of a pair's mask."""
    extractors = [row[0] for row in con.execute(
        "SELECT DISTINCT extractor FROM clip_tags ORDER BY extractor").fetchall()]
    if len(extractors) > MAX_EXTRACTORS:
        from curation.errors import UtsError

        raise UtsError(f"clip_tags holds {len(extractors)} extractors: the vocabulary engine handles at most "
                       f"{MAX_EXTRACTORS}; delete the tag rows of extractors you no longer use")
    return extractors


def tag_matrix_pairs(con: duckdb.DuckDBPyConnection, extractors: list[str], low: int | None = None,
                     high: int | None = None) -> dict:
    """The distinct (clip_key, tag_id) pairs with low <= clip_key <= high (all when not given), sorted, each with
    its extractor mask (bit i = ``extractors[i]``)."""
    where = "WHERE clip_key BETWEEN $low AND $high" if low is not None else ""
    params = {"extractors": list(extractors)} | ({"low": int(low), "high": int(high)} if low is not None else {})
    return con.execute(f"""
        SELECT clip_key, tag_id,
               bit_or(CAST(1 AS BIGINT) << CAST(list_position($extractors::VARCHAR[], extractor) - 1 AS BIGINT))
                   AS extractor_mask
        FROM clip_tags {where} GROUP BY clip_key, tag_id ORDER BY clip_key, tag_id""", params).fetchnumpy()


def tag_matrix_clips(con: duckdb.DuckDBPyConnection) -> dict:
    return con.execute("SELECT clip_key, clip_id, coalesce(domain, 'unknown') AS domain, "
                       "coalesce(source, 'unknown') AS source FROM clips ORDER BY clip_key").fetchnumpy()


def tag_matrix_tags(con: duckdb.DuckDBPyConnection) -> dict:
    return con.execute("SELECT tag_id, tag FROM tags ORDER BY tag_id").fetchnumpy()


def corpus_version(con: duckdb.DuckDBPyConnection) -> tuple:
    """Changes whenever ingest or a new tag text changes what the vocabulary engine loaded."""
    return tuple(con.execute("SELECT coalesce(max(ingest_id), 0), (SELECT count(*) FROM clip_tags), "
                             "(SELECT max(tag_id) FROM tags) FROM ingests").fetchall()[0])


def cached_embeddings(con: duckdb.DuckDBPyConnection, model: str, tags: list[str]) -> dict[str, bytes]:
    import pyarrow as pa

    con.register("wanted_tags", pa.table({"tag": pa.array(tags, pa.string())}))
    try:
        rows = con.execute("SELECT e.tag, e.vector FROM tag_embeddings e JOIN wanted_tags w USING (tag) "
                           "WHERE e.model = ?", [model]).fetchall()
    finally:
        con.unregister("wanted_tags")
    return dict(rows)


def store_embeddings(con: duckdb.DuckDBPyConnection, model: str, tags: list[str], vectors: list[bytes]) -> None:
    import pyarrow as pa

    con.register("new_embeddings", pa.table({"tag": pa.array(tags, pa.string()),
                                             "vector": pa.array(vectors, pa.binary())}))
    try:
        con.execute("INSERT OR REPLACE INTO tag_embeddings SELECT ?, tag, vector FROM new_embeddings", [model])
    finally:
        con.unregister("new_embeddings")


def record_suggestion_verdict(con: duckdb.DuckDBPyConnection, group_key: str, verdict: str, by: str,
                              members: list[str], canonical: str | None) -> None:
    con.execute("INSERT INTO suggestion_verdicts VALUES (?, ?, ?, ?, ?, ?)",
                [group_key, verdict, by, now_utc(), json.dumps(members), canonical])


PRUNE_KEY_PREFIX = "prune:"  # group_key of a prune suggestion's verdict: prune:<tag>


def rejected_suggestion_members(con: duckdb.DuckDBPyConnection) -> list[list[str]]:
    """The members of every rejected merge suggestion (rejected prune suggestions are not groups)."""
    return [json.loads(row[0]) for row in con.execute(
        "SELECT members FROM suggestion_verdicts WHERE verdict = 'rejected' AND NOT starts_with(group_key, ?) "
        "ORDER BY decided_at", [PRUNE_KEY_PREFIX]).fetchall()]


def record_prune_rejections(con: duckdb.DuckDBPyConnection, tags: list[str], by: str) -> None:
    decided_at = now_utc()
    con.executemany("INSERT INTO suggestion_verdicts VALUES (?, 'rejected', ?, ?, ?, NULL)",
                    [[PRUNE_KEY_PREFIX + tag, by, decided_at, json.dumps([tag])] for tag in tags])


def rejected_prunes(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Tags a curator chose to keep when their prune was suggested."""
    return {row[0][len(PRUNE_KEY_PREFIX):] for row in con.execute(
        "SELECT DISTINCT group_key FROM suggestion_verdicts WHERE verdict = 'rejected' AND starts_with(group_key, ?)",
        [PRUNE_KEY_PREFIX]).fetchall()}


def projection(con: duckdb.DuckDBPyConnection, projection_key: str):
    """(tags, xs, ys) of a cached projection, or None."""
    meta = con.execute("SELECT count(*) FROM projection_meta WHERE projection_key = ?", [projection_key]).fetchall()
    if not meta[0][0]:
        return None
    data = con.execute("SELECT tag, x, y FROM tag_projections WHERE projection_key = ? ORDER BY tag",
                       [projection_key]).fetchnumpy()
    return data["tag"], data["x"], data["y"]


def store_projection(con: duckdb.DuckDBPyConnection, projection_key: str, model: str, params: dict,
                     tags: list[str], xs, ys, seconds: float) -> None:
    import pyarrow as pa

    con.register("new_projection", pa.table({"tag": pa.array(tags, pa.string()), "x": xs, "y": ys}))
    try:
        con.execute("DELETE FROM tag_projections WHERE projection_key = ?", [projection_key])
        con.execute("INSERT INTO tag_projections SELECT ?, tag, x, y FROM new_projection", [projection_key])
        con.execute("INSERT OR REPLACE INTO projection_meta VALUES (?, ?, ?, ?, ?, ?)",
                    [projection_key, model, json.dumps(params), len(tags), seconds, now_utc()])
    finally:
        con.unregister("new_projection")



def clip_durations(con: duckdb.DuckDBPyConnection) -> dict:
    """clip_id and duration_s (NaN when unknown) of every clip, as numpy arrays (the export preview's input)."""
    return con.execute("SELECT clip_id, coalesce(duration_s, 'NaN'::DOUBLE) AS duration_s FROM clips "
                       "ORDER BY clip_key").fetchnumpy()


def latest_projection(con: duckdb.DuckDBPyConnection, model: str):
    """(tags, xs, ys) of the most recent projection made with ``model``, or None (seeds a new tag set's layout)."""
    rows = con.execute("SELECT projection_key FROM projection_meta WHERE model = ? ORDER BY created_at DESC LIMIT 1",
                       [model]).fetchall()
    return projection(con, rows[0][0]) if rows else None
