"""The offline extractor on real human captions: the share of captions that get at least one tag, tags per
caption, speed, and the most frequent tags (issue: "yields tags for nearly every caption; report the share").

    .venv/bin/python bench/offline_tag_coverage.py   # needs ../shared/data/captions
"""
from __future__ import annotations

import csv
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curation.extraction.offline_tagger import tag_caption  # noqa: E402

CAPTIONS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "captions"
SETS = {"audiocaps_v1 (train+val+test)": [CAPTIONS / "audiocaps_v1" / f"{s}.csv" for s in ("train", "val", "test")],
        "musiccaps": [CAPTIONS / "musiccaps" / "musiccaps-public.csv"]}


def coverage(captions: list[str]) -> dict:
    started = time.perf_counter()
    tagged = [tag_caption(text) for text in captions]
    seconds = time.perf_counter() - started
    counts = Counter(tag for tags in tagged for tag in tags)
    return {"captions": len(captions), "share_tagged": sum(1 for t in tagged if t) / len(captions),
            "tags_per_caption": sum(map(len, tagged)) / len(captions), "per_second": len(captions) / seconds,
            "top": counts.most_common(12), "untagged": [c for c, t in zip(captions, tagged) if not t][:5]}


def read_captions(paths: list[Path]) -> list[str]:
    return [row["caption"] for path in paths for row in csv.DictReader(path.open(encoding="utf-8"))]


def main() -> None:
    for name, paths in SETS.items():
        result = coverage(read_captions(paths))
        print(f"{name}: {result['captions']:,} captions, {100 * result['share_tagged']:.2f}% tagged, "
              f"{result['tags_per_caption']:.2f} tags/caption, {result['per_second']:,.0f} captions/s")
        print("  top:", ", ".join(f"{t} {n}" for t, n in result["top"]))
        print("  untagged e.g.:", result["untagged"])


if __name__ == "__main__":
    main()
