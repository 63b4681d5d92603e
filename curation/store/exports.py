"""SQL of exports: the clips an export reads and the record of each export written.

Place in the flow: vocabulary -> export (curation/vocabulary/export.py) -> here.
Example: ``for batch in export_clip_rows(con): ...``.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import duckdb

from curation.store.schema import now_utc

EXPORT_BATCH_CLIPS = 20_000  # clips (with their captions) held in memory at a time while an export is written


def export_clip_rows(con: duckdb.DuckDBPyConnection, batch_clips: int = EXPORT_BATCH_CLIPS):
    """Every clip with what a Lhotse cut needs, in clip_key order, as lists of at most ``batch_clips`` rows.

    Each batch is its own query over a clip_key range, with the range also on the captions it reads: memory holds
    one batch of captions (a single ORDER BY over the corpus sorted 10 GB of captions at 4M clips), and the range
    lets DuckDB skip the other row groups of ``captions``. Same captions as FIRST_GENERATED_CAPTION_SQL /
    ORIGINAL_CAPTIONS_SQL: the first generated caption by captioner then position; the originals by position."""
    keys = con.execute("SELECT clip_key FROM clips ORDER BY clip_key").fetchnumpy()["clip_key"]
    ranges = [(int(keys[start]), int(keys[min(start + batch_clips, len(keys)) - 1]))
              for start in range(0, len(keys), batch_clips)]
    if not ranges:
        return
    # The next batch is read on a worker thread (its own cursor) while the caller writes this one: DuckDB runs the
    # query without the GIL, so at 4M clips its ~36 s overlap the writing instead of adding to it.
    cursor = con.cursor()

    def read(low: int, high: int) -> list[dict]:
        result = cursor.execute(_EXPORT_BATCH_SQL, {"low": low, "high": high})
        names = [d[0] for d in result.description]
        return [dict(zip(names, row)) for row in result.fetchall()]

    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-read") as pool:
            pending = pool.submit(read, *ranges[0])
            for following in [*ranges[1:], None]:
                batch = pending.result()
                if following is not None:
                    pending = pool.submit(read, *following)
                yield batch
    finally:
        cursor.close()


_EXPORT_BATCH_SQL = """
            WITH generated AS (
                SELECT clip_key, first(text ORDER BY captioner, position) AS caption FROM captions
                WHERE kind = 'generated' AND clip_key BETWEEN $low AND $high GROUP BY clip_key),
            originals AS (
                SELECT clip_key, list(text ORDER BY position) AS originals FROM captions
                WHERE kind = 'original' AND clip_key BETWEEN $low AND $high GROUP BY clip_key)
            SELECT c.clip_id, c.audio_path, c.audio_ok, c.source, c.domain, c.duration_s, c.sample_rate_hz,
                   c.num_channels, c.num_frames, c.probed_at IS NOT NULL AS probed,
                   coalesce(c.start_s, 0.0) AS start_s, c.cut_channels, g.caption, o.originals
            FROM clips c LEFT JOIN generated g USING (clip_key) LEFT JOIN originals o USING (clip_key)
            WHERE c.clip_key BETWEEN $low AND $high ORDER BY c.clip_key"""


def record_export(con: duckdb.DuckDBPyConnection, *, by: str | None, k: int, rank_by: str, last_decision_id: int,
                  content_hash: str, out_dir: str, vocabulary_size: int, clips_kept: int, clips_dropped: int) -> int:
    export_id = con.execute("SELECT coalesce(max(export_id), 0) + 1 FROM exports").fetchall()[0][0]
    con.execute("INSERT INTO exports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [export_id, now_utc(), by, k, rank_by, last_decision_id, content_hash, out_dir, vocabulary_size,
                 clips_kept, clips_dropped])
    return export_id

