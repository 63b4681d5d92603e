"""Merge suggestions at UTS scale: ~20,000 raw tags, timed cold (fresh process, empty embedding cache) and warm.

Builds, in a temporary folder, a corpus whose tags look like LLM-extracted ones: content words and word pairs of
real captions (AudioCaps train, Clotho, MusicCaps captions and aspect lists, from ../shared/data/captions), the
published UTS 3k labels, and extractor-style variants of some of them (separators, case, plurals, a tripled
letter) used in part of their base tag's clips. Each caption row is one clip (the tag count matters here, not
the clip count). Then times ``suggest_merges`` twice in this process (cold: wall and process CPU time, with the
load average, since the machine may be shared), accepting the queue's first suggestion, and the queue after that.
Target (issues 3 and 14): <= 60 s cold (model load + embedding most of it), <= 2 s warm, at 20,000 tags.

    .venv/bin/python bench/suggest_scale.py [--tags 20000] [--seed 0] [--keep DIR] [--reuse] [--profile FILE]
        [--float32]

At ``--tags 100000`` (issue 17) the same recipe gives ~189,000 clips and ~1.06 million tag rows: the caption
words and pairs follow the captions' own Zipf-like frequencies (a few tags in thousands of clips, two thirds of
them in one or two), 15,000 of the tags are extractor-style variants. Target there: <= 5 min cold, <= 3 s warm.
``--reuse`` times an existing ``--keep`` database again (its embedding cache is then warm: the cold figure is
the rest of the work, unless the folder holds a copy of a database never embedded); ``--profile`` writes a
cProfile of the cold call; ``--float32`` keeps the text model in float32 on a CPU with bfloat16 in hardware.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from curation import store
from curation.ingest.ingest import ingest_path
from curation.store import corpus as store_corpus
from curation.vocabulary import embeddings
from curation.vocabulary.suggestions import accept_suggestion, suggest_merges

SHARED = PROJECT.parent / "shared" / "data"
CAPTION_FILES = (*sorted(SHARED.glob("captions/audiocaps_v1/train.csv")), *sorted(SHARED.glob("captions/clotho/*.csv")),
                 SHARED / "captions" / "musiccaps" / "musiccaps-public.csv")
LABELS = SHARED / "uts_vocab" / "label_3k.json"
CAPTION_COLUMNS = re.compile(r"caption(_\d)?|aspect_list")
STOPWORDS = frozenset(
    ["a", "an", "the", "and", "or", "but", "of", "in", "on", "at", "to", "from", "by", "with", "without", "for", "as", "is", "are", "was", "were", "be", "been", "being", "it", "its", "this", "that", "these", "those", "there", "here", "then", "than", "while", "when", "where", "which", "who", "whom", "whose", "what", "some", "any", "all", "each", "every", "both", "few", "more", "most", "other", "another", "such", "only", "own", "same", "so", "too", "very", "can", "will", "just", "into", "onto", "over", "under", "again", "further", "once", "up", "down", "out", "off", "above", "below", "between", "through", "during", "before", "after", "his", "her", "their", "they", "them", "he", "she", "we", "you", "i", "me", "my", "our", "your", "us", "one", "two", "three", "also", "not", "no", "nor", "has", "have", "had", "having", "do", "does", "did", "doing", "across", "along", "around"])
MAX_TAGS_PER_CLIP = 15


def caption_rows() -> list[str]:
    rows = []
    for path in CAPTION_FILES:
        if not path.exists():
            continue
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                rows.append(" . ".join(v for k, v in row.items() if k and CAPTION_COLUMNS.fullmatch(k) and v))
    return rows


def row_candidates(text: str) -> list[str]:
    """Content words and adjacent content-word pairs, hyphenated, as an extractor would write them."""
    words = re.findall(r"[a-z][a-z0-9]*", text.lower())
    content = [w if w not in STOPWORDS and len(w) > 2 else None for w in words]
    pairs = [f"{x}-{y}" for x, y in itertools.pairwise(content) if x and y]
    return list(dict.fromkeys([w for w in content if w] + pairs))


def variant(tag: str, rng: random.Random) -> str:
    """One extractor-style variant of a tag: another separator, capitalised, plural or a tripled letter."""
    kind = rng.choice(("separator", "case", "plural", "triple"))
    if kind == "separator" and "-" in tag:
        return tag.replace("-", rng.choice(("_", "", " ")))
    if kind == "case":
        return tag.capitalize()
    if kind == "plural" and not tag.endswith("s"):
        return tag + ("es" if tag.endswith(("x", "ch", "sh")) else "s")
    doubled = [i for i in range(len(tag) - 1) if tag[i] == tag[i + 1] and tag[i].isalpha()]
    if doubled:
        i = rng.choice(doubled)
        return tag[:i] + tag[i] + tag[i:]
    return tag + "-sound"


def build_cuts(target_tags: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = [row_candidates(text) for text in caption_rows()]
    if not rows:
        sys.exit(f"no caption files under {SHARED / 'captions'}: this benchmark needs the shared caption sets")
    labels = list(dict.fromkeys(json.loads(LABELS.read_text(encoding="utf-8")).values())) if LABELS.exists() else []
    counts = Counter(tag for row in rows for tag in row)
    universe = dict.fromkeys(labels)
    base_share = int(target_tags * 0.85)
    for tag, _ in counts.most_common():
        if len(universe) >= base_share:
            break
        universe.setdefault(tag)
    bases = list(universe)
    variants_of: dict[str, list[str]] = {}
    while len(universe) < target_tags:
        base = rng.choice(bases)
        new = variant(base, rng)
        if new not in universe:
            universe[new] = None
            variants_of.setdefault(base, []).append(new)
    cuts, used = [], set()
    for index, row in enumerate(rows):
        tags = [t for t in row if t in universe]
        # Extractors are inconsistent: a variant replaces its base tag in about a third of the clips.
        tags = [rng.choice(variants_of[t]) if t in variants_of and rng.random() < 0.35 else t for t in tags]
        tags = list(dict.fromkeys(tags))[:MAX_TAGS_PER_CLIP]
        if tags:
            used.update(tags)
            cuts.append(cut(f"cap-{index}", tags))
    pool = sorted(used)
    for tag in universe:
        if tag not in used:
            cuts.extend(cut(f"{len(cuts)}-{n}", [tag, *rng.sample(pool, 3)]) for n in range(2))
    return cuts


def cut(clip_id: str, tags: list[str]) -> dict:
    return {"id": clip_id, "start": 0.0, "duration": 10.0, "channel": 0,
            "supervisions": [{"id": clip_id, "recording_id": clip_id, "start": 0.0, "duration": 10.0, "channel": 0,
                              "custom": {"audio_tag": tags, "caption": "A clip.", "original_caption": []}}],
            "recording": {"id": clip_id, "sources": [{"type": "file", "channels": [0], "source": "bench"}],
                          "sampling_rate": 16000, "num_samples": 160000, "duration": 10.0, "channel_ids": [0]},
            "type": "MonoCut"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help="build the database in this folder and keep it (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true", help="time the database already in --keep again")
    parser.add_argument("--profile", help="write a cProfile of the cold call to this file")
    parser.add_argument("--float32", action="store_true",
                        help="run the text model in float32 even on a CPU with bfloat16 in hardware")
    args = parser.parse_args()
    if args.float32:
        embeddings.BFLOAT16_WHEN_NATIVE = False
    if args.reuse and not args.keep:
        parser.error("--reuse needs --keep DIR (the folder of an earlier run)")
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="uts_suggest_"))
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "suggest_bench.duckdb"
    t0 = time.perf_counter()
    if not args.reuse:
        db.unlink(missing_ok=True)
        manifest = workdir / "cuts.jsonl"
        manifest.write_text("".join(json.dumps(c) + "\n" for c in build_cuts(args.tags, args.seed)),
                            encoding="utf-8")
    con = store.connect(db)
    if not args.reuse:
        ingest_path(con, manifest)
    build_s = time.perf_counter() - t0
    stats = store_corpus.corpus_stats(con)
    embedded_before = con.execute("SELECT count(*) FROM tag_embeddings").fetchall()[0][0]
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t0, c0 = time.perf_counter(), time.process_time()
    suggestions = suggest_merges(con)  # nothing loaded in this process yet (and, unless --reuse, no embeddings)
    cold_s, cold_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    t0 = time.perf_counter()
    suggest_merges(con)
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    accept_suggestion(con, suggestions[0], by="bench")  # the queue's first group (highest impact)
    accept_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    after = suggest_merges(con)
    after_accept_s = time.perf_counter() - t0
    print(json.dumps({
        "tags": stats["distinct_tags"], "clips": stats["clips"], "tag_rows": stats["tag_rows"],
        "groups": len(suggestions), "grouped_tags": sum(len(s.tags) for s in suggestions),
        "groups_after_accept": len(after), "embeddings_cached_before": embedded_before, "build_s": round(build_s, 1), "cold_s": round(cold_s, 2), "cold_cpu_s": round(cold_cpu_s, 1),
        "accept_s": round(accept_s, 2), "load": os.getloadavg()[0],
        "model_dtype": "bfloat16" if embeddings._native_bf16() else "float32",
        "warm_s": round(warm_s, 2), "after_accept_s": round(after_accept_s, 2),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"}))
    con.close()
    if not args.keep:
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()


if __name__ == "__main__":
    main()
