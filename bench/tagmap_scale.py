"""Tag map at 20,000 tags: cold (embed + UMAP, including numba's first-call JIT) and warm (read from DuckDB),
and proof that a merge triggers no recomputation. Target (issue 3): <= 60 s cold, <= 1 s warm.

Tag texts: every distinct word of the human captions in ../shared/data/captions (AudioCaps, Clotho, MusicCaps)
plus the published UTS 3k labels, cut to 20,000; each tag gets two clips so that ingest stays quick.

    .venv/bin/python bench/tagmap_scale.py [--tags 20000]
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
SHARED = PROJECT.parent / "shared" / "data"
sys.path.insert(0, str(PROJECT))

from curation import store  # noqa: E402
from curation.ingest.ingest import ingest_path  # noqa: E402
from curation.vocabulary.decisions import Decision, record_decision  # noqa: E402
from curation.vocabulary.tagmap import tag_projection  # noqa: E402


def realistic_tags(n: int) -> list[str]:
    words: dict[str, None] = {}
    labels = json.loads((SHARED / "uts_vocab" / "label_3k.json").read_text())
    for tag in labels.values():
        words[tag] = None
    files = [SHARED / "captions" / "audiocaps_v1" / f"{s}.csv" for s in ("train", "val", "test")]
    files += [SHARED / "captions" / "clotho" / f"{s}.csv" for s in ("train", "val", "test")]
    files += [SHARED / "captions" / "musiccaps" / "musiccaps-public.csv"]
    for file in files:
        with open(file, encoding="utf-8") as handle:
            for row in csv.reader(handle):
                for cell in row:
                    for word in re.findall(r"[a-z][a-z\-]{2,20}", cell.lower()):
                        words[word] = None
                        if len(words) >= n:
                            return list(words)
    return list(words)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, default=20_000)
    args = parser.parse_args()
    tags = realistic_tags(args.tags)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "cuts.jsonl"
        with open(manifest, "w", encoding="utf-8") as out:
            for i in range(len(tags)):
                out.write(json.dumps({"id": f"t{i}", "audio_path": "none.wav", "caption": "x",
                                      "tags": [tags[i], tags[(i * 7 + 1) % len(tags)]], "duration": 1.0}) + "\n")
        con = store.connect(Path(tmp) / "map.duckdb")
        ingest_path(con, manifest)
        t0 = time.perf_counter()
        cold = tag_projection(con)
        cold_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = tag_projection(con)
        warm_s = time.perf_counter() - t0
        record_decision(con, Decision.merge([tags[1], tags[2]], into=tags[1]), by="bench")
        t0 = time.perf_counter()
        after_merge = tag_projection(con)
        after_merge_s = time.perf_counter() - t0
        con.close()
    print(json.dumps({"tags": len(cold.tags), "cold_s": round(cold_s, 1), "warm_s": round(warm_s, 3),
                      "after_merge_s": round(after_merge_s, 3), "recomputed_after_merge": after_merge.computed_now,
                      "cached_first": not warm.computed_now, "machine": platform.platform()}))


if __name__ == "__main__":
    main()
