"""Tag sources at UTS scale: the cost of knowing which extractor produced each clip-tag pair.

Builds a synthetic store (400,000 clips; 3.6M tag rows from a first extractor over 20,000 tag texts, 1.2M more
from a second extractor on a third of the clips, as a tagging job adds them) and times: loading the tag matrix
with the per-pair extractor mask (the query before it, DISTINCT clip/tag pairs without the mask, for
comparison), and replay + ranking + coverage for every K with every extractor used vs. one chosen by a
use_extractors decision.

    .venv/bin/python bench/tag_sources_scale.py [--clips 400000]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from curation import store  # noqa: E402
from curation.vocabulary.decisions import CurationState  # noqa: E402
from curation.vocabulary.ranking import compute_vocabulary, load_tag_matrix  # noqa: E402


def build(con, clips: int) -> None:
    con.execute("INSERT INTO ingests (ingest_id, path, format, on_bad_row, started_at) "
                "VALUES (1, 'synthetic', 'bench', 'raise', now())")
    con.execute(f"""INSERT INTO clips (clip_key, clip_id, source, domain, audio_ok, duration_s, ingest_id)
                    SELECT i, 'c' || i, 'src' || (i % 7), ['speech', 'music', 'environment'][1 + i % 3], false,
                           5.0, 1 FROM range(1, {clips} + 1) t(i)""")
    con.execute("INSERT INTO tags SELECT i, 'tag' || i FROM range(1, 20001) t(i)")
    # Zipf-like tag ids: a few frequent tags, a long tail.
    con.execute(f"""INSERT INTO clip_tags (clip_key, tag_id, extractor)
                    SELECT c, 1 + CAST(floor(pow(random(), 3) * 19999) AS INTEGER), 'sim-extractor-v1'
                    FROM range(1, {clips} + 1) a(c), range(9) b(j)""")
    con.execute(f"""INSERT INTO clip_tags (clip_key, tag_id, extractor)
                    SELECT c, 1 + CAST(floor(pow(random(), 3) * 19999) AS INTEGER), 'offline:open-vocab-v1'
                    FROM range(1, {clips} + 1, 3) a(c), range(9) b(j)""")


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=400_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        con = store.connect(Path(folder) / "bench.duckdb")
        started = time.perf_counter()
        build(con, args.clips)
        rows = con.execute("SELECT count(*) FROM clip_tags").fetchall()[0][0]
        print(f"built {args.clips:,} clips, {rows:,} tag rows in {time.perf_counter() - started:.1f} s")
        old_s, _ = timed(lambda: con.execute("SELECT DISTINCT clip_key, tag_id FROM clip_tags "
                                             "ORDER BY clip_key, tag_id").fetchnumpy())
        from curation.store import vocabulary as store_vocabulary

        new_s, _ = timed(lambda: store_vocabulary.tag_matrix_inputs(con))
        load_s, matrix = timed(lambda: load_tag_matrix(con))
        print(f"pairs query without the extractor mask (before): {old_s:.2f} s; all matrix inputs with it (now): "
              f"{new_s:.2f} s; load_tag_matrix in all: {load_s:.2f} s")
        all_s, view_all = timed(lambda: compute_vocabulary(matrix, CurationState()), repeat=5)
        one = CurationState(extractors=frozenset({"sim-extractor-v1"}))
        one_s, view_one = timed(lambda: compute_vocabulary(matrix, one), repeat=5)
        print(f"replay-free ranking + coverage, every extractor: {all_s * 1000:.0f} ms ({len(view_all.ranking):,} "
              f"tags); one extractor chosen: {one_s * 1000:.0f} ms ({len(view_one.ranking):,} tags)")
        con.close()


if __name__ == "__main__":
    main()
