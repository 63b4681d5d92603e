"""SQL of exports: the clips an export reads and the record of each export written.

Place in the flow: vocabulary -> export (curation/vocabulary/export.py) -> here. Example: ``export_clip_rows(con)``.
"""
from __future__ import annotations

import duckdb

from curation.store.schema import FIRST_GENERATED_CAPTION_SQL, ORIGINAL_CAPTIONS_SQL, now_utc


def export_clip_rows(con: duckdb.DuckDBPyConnection):
    """Every clip with what a Lhotse cut needs, in clip_key order (streamed in chunks)."""
    result = con.execute(f"""
        SELECT c.clip_id, c.audio_path, c.audio_ok, c.source, c.domain, c.duration_s, c.sample_rate_hz,
               c.num_channels, c.num_frames, c.probed_at IS NOT NULL AS probed, coalesce(c.start_s, 0.0) AS start_s,
               c.cut_channels,
               {FIRST_GENERATED_CAPTION_SQL} AS caption,
               {ORIGINAL_CAPTIONS_SQL} AS originals
        FROM clips c ORDER BY c.clip_key""")
    names = [d[0] for d in result.description]
    while True:
        chunk = result.fetchmany(10_000)
        if not chunk:
            break
        for row in chunk:
            yield dict(zip(names, row))


def record_export(con: duckdb.DuckDBPyConnection, *, by: str | None, k: int, rank_by: str, last_decision_id: int,
                  content_hash: str, out_dir: str, vocabulary_size: int, clips_kept: int, clips_dropped: int) -> int:
    export_id = con.execute("SELECT coalesce(max(export_id), 0) + 1 FROM exports").fetchall()[0][0]
    con.execute("INSERT INTO exports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [export_id, now_utc(), by, k, rank_by, last_decision_id, content_hash, out_dir, vocabulary_size,
                 clips_kept, clips_dropped])
    return export_id

