"""Offline extractors against human references on real text (issue 14, point 1): precision and recall of the tags
the lexicon extractor (``--backend lexicon``) and the open-vocabulary one (``--backend offline``, the default)
draw from the same captions, side by side; then the number of distinct tags the open-vocabulary extractor gives on
every real caption in ../shared/data (df = number of captions carrying the tag).

    .venv/bin/python bench/extractor_quality.py            # needs ../shared/data/captions; ~5 min on 2 busy cores
    .venv/bin/python bench/extractor_quality.py --quick    # 1,000 captions per reference set, no corpus count

References (human, never written by this project):
- MusicCaps: each caption against its musician's aspect list ("low quality", "soft female vocal", "ballad").
- AudioSet eval: the GAMA caption of a clip against the clip's human-verified AudioSet labels ("Water tap, faucet;
  Bathtub (filling or washing)" -> terms "water tap", "faucet", "bathtub"), ../shared/data/captions/gama_llm_captions.
- MusicCaps again, its caption against the clip's AudioSet labels (ids resolved with ontology/ontology.json).
AudioCaps captions carry no AudioSet labels here (none of their YouTube ids is among the AudioSet eval segments
of ../shared/data), so AudioCaps enters the corpus count only.

Matching, after the product's own normalisation (``normalise_label``: lowercase, NFC, spaces -> '-') on both
sides, at two levels:
- exact: a tag equals a reference term ("lo-fi" vs "low-quality" does not match; "electric-guitar" does);
- word: a tag equals a reference term or one of its words, inflection folded ("guitar" matches "electric guitar",
  "dog" matches "Dogs"). Precision: share of extracted tags that match some reference term of that clip. Recall:
  share of reference labels (an AudioSet label with its comma alternatives counts once) matched by some tag.
"""
from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from curation.extraction.offline_tagger import lemma_candidates, tag_caption
from curation.extraction.open_vocab import tag_captions
from curation.extraction.prompt import normalise_label

SHARED = PROJECT.parent / "shared" / "data"
CAPTIONS = SHARED / "captions"


def _norm(term: str) -> str | None:
    return normalise_label(term)[0]


def _keys(word: str) -> set[str]:
    return set(lemma_candidates(word))


def audioset_terms(label_names: str) -> list[list[str]]:
    """'Water tap, faucet;Bathtub (filling or washing)' -> [['water-tap', 'faucet'], ['bathtub']]."""
    labels = []
    for name in label_names.split(";"):
        name = re.sub(r"\([^)]*\)", " ", name)
        terms = [t for t in (_norm(part) for part in name.split(",")) if t]
        if terms:
            labels.append(terms)
    return labels


def aspect_terms(aspect_list: str) -> list[list[str]]:
    try:
        items = ast.literal_eval(aspect_list)
    except (ValueError, SyntaxError):
        return []
    return [[t] for t in (_norm(str(item)) for item in items) if t]


def reference_sets(limit: int | None) -> dict[str, list[tuple[str, list[list[str]]]]]:
    ontology = {c["id"]: c["name"] for c in json.loads((SHARED / "ontology" / "ontology.json").read_text())}
    musiccaps = list(csv.DictReader((CAPTIONS / "musiccaps" / "musiccaps-public.csv").open(encoding="utf-8")))
    gama = list(csv.DictReader((CAPTIONS / "gama_llm_captions" / "audioset_eval_gama_joined.csv")
                               .open(encoding="utf-8")))
    sets = {
        "MusicCaps caption vs aspect list": [(r["caption"], aspect_terms(r["aspect_list"])) for r in musiccaps],
        "GAMA caption vs AudioSet labels (AudioSet eval)": [
            (r["gama_caption"], audioset_terms(r["audioset_label_names"])) for r in gama],
        "MusicCaps caption vs AudioSet labels": [
            (r["caption"], audioset_terms(";".join(ontology.get(i, "") for i in r["audioset_positive_labels"]
                                                  .split(",")))) for r in musiccaps],
    }
    return {name: [(c, refs) for c, refs in rows if c and refs][:limit] for name, rows in sets.items()}


def score(tag_lists: list[tuple[str, ...]], references: list[list[list[str]]]) -> dict:
    out = {}
    for level in ("exact", "word"):
        matched_tags = total_tags = matched_labels = total_labels = 0
        for tags, labels in zip(tag_lists, references):
            terms = {t for label in labels for t in label}
            words: set[str] = set()
            if level == "word":
                for term in terms:
                    for word in term.split("-"):
                        words |= _keys(word)
            hits_tag = [t in terms or (level == "word" and bool(_keys(t) & (words | terms))) for t in tags]
            matched_tags += sum(hits_tag)
            total_tags += len(tags)
            for label in labels:
                total_labels += 1
                label_words: set[str] = set(label)
                if level == "word":
                    for term in label:
                        label_words |= {k for word in term.split("-") for k in _keys(word)}
                if any(t in label or (level == "word" and bool(_keys(t) & label_words)) for t in tags):
                    matched_labels += 1
        out[level] = (matched_tags / max(total_tags, 1), matched_labels / max(total_labels, 1))
    out["tags_per_caption"] = sum(map(len, tag_lists)) / max(len(tag_lists), 1)
    out["no_tag_share"] = sum(1 for t in tag_lists if not t) / max(len(tag_lists), 1)
    return out


def all_caption_texts() -> dict[str, list[str]]:
    """Every caption text in ../shared/data/captions, per set (Clotho: its 5 captions per file, one each)."""
    def rows(path: Path) -> list[dict]:
        return list(csv.DictReader(path.open(encoding="utf-8"))) if path.exists() else []

    sets = {
        "AudioCaps (train+val+test)": [r["caption"] for s in ("train", "val", "test")
                                       for r in rows(CAPTIONS / "audiocaps_v1" / f"{s}.csv")],
        "Clotho (dev+val+eval, 5 per file)": [r[f"caption_{k}"] for s in ("train", "val", "test")
                                              for r in rows(CAPTIONS / "clotho" / f"{s}.csv") for k in range(1, 6)],
        "MusicCaps": [r["caption"] for r in rows(CAPTIONS / "musiccaps" / "musiccaps-public.csv")],
        "GAMA (AudioSet eval + AudioCaps)": (
            [r["gama_caption"] for r in rows(CAPTIONS / "gama_llm_captions" / "audioset_eval_gama_joined.csv")]
            + [r["gama_caption"] for r in rows(CAPTIONS / "gama_llm_captions"
                                                / "audiocaps_gama_vs_human_joined.csv")]),
        "WavCaps SoundBible": [r.get("caption", "") for r in json.loads(
            (CAPTIONS / "wavcaps" / "sb_final.json").read_text()).get("data", [])]
        if (CAPTIONS / "wavcaps" / "sb_final.json").exists() else [],
    }
    return {name: [t for t in texts if t and t.strip()] for name, texts in sets.items()}


def distinct_with_df(tag_lists: list[tuple[str, ...]], minimum: int = 5) -> tuple[int, int, Counter]:
    df = Counter(tag for tags in tag_lists for tag in set(tags))
    return sum(1 for n in df.values() if n >= minimum), len(df), df


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 captions per reference set, no corpus count")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    if not CAPTIONS.is_dir():
        sys.exit(f"no caption sets under {CAPTIONS}: this benchmark needs ../shared/data")
    print(f"load average at start: {os.getloadavg()}")
    limit = 1000 if args.quick else None
    for name, rows in reference_sets(limit).items():
        captions = [c for c, _ in rows]
        references = [refs for _, refs in rows]
        lexicon = score([tag_caption(c) for c in captions], references)
        started = time.perf_counter()
        open_tags = tag_captions(captions, processes=args.processes)
        seconds = time.perf_counter() - started
        opened = score(open_tags, references)
        print(f"\n{name}: {len(rows):,} captions ({len(rows) / seconds:,.0f} captions/s open-vocab)")
        print("  extractor     exact P / R      word P / R      tags/caption  no tag")
        for label, result in (("lexicon", lexicon), ("open-vocab", opened)):
            (ep, er), (wp, wr) = result["exact"], result["word"]
            print(f"  {label:<12} {ep:6.3f} / {er:5.3f}   {wp:6.3f} / {wr:5.3f}   {result['tags_per_caption']:6.2f}"
                  f"        {result['no_tag_share']:.3f}")
    if args.quick:
        return
    print("\nDistinct tags on every real caption in ../shared/data (df = captions carrying the tag)")
    everything: list[tuple[str, ...]] = []
    lexicon_all: list[tuple[str, ...]] = []
    started = time.perf_counter()
    for name, texts in all_caption_texts().items():
        tags = tag_captions(texts, processes=args.processes)
        everything += tags
        lexicon_all += [tag_caption(t) for t in texts]
        print(f"  {name}: {len(texts):,} captions, {distinct_with_df(tags)[0]:,} tags with df >= 5")
    by_text = dict(zip((t for texts in all_caption_texts().values() for t in texts), everything))
    # The ~60k clip rows the issue counted (bench/suggest_scale.py's corpus): AudioCaps train, one row per Clotho
    # file with its 5 captions joined, MusicCaps; each row tagged as one caption.
    clotho_rows = [" . ".join(r[f"caption_{k}"] for k in range(1, 6) if r.get(f"caption_{k}"))
                   for s in ("train", "val", "test")
                   for r in csv.DictReader((CAPTIONS / "clotho" / f"{s}.csv").open(encoding="utf-8"))]
    audiocaps_train = [r["caption"] for r in csv.DictReader((CAPTIONS / "audiocaps_v1" / "train.csv")
                                                             .open(encoding="utf-8")) if r["caption"].strip()]
    musiccaps = [r["caption"] for r in csv.DictReader((CAPTIONS / "musiccaps" / "musiccaps-public.csv")
                                                       .open(encoding="utf-8")) if r["caption"].strip()]
    rows = ([by_text[t] for t in audiocaps_train] + tag_captions(clotho_rows, processes=args.processes)
            + [by_text[t] for t in musiccaps])
    rows_df5, rows_distinct, _ = distinct_with_df(rows)
    print(f"  the ~60k clip rows (AudioCaps train {len(audiocaps_train):,} + Clotho files {len(clotho_rows):,} + "
          f"MusicCaps {len(musiccaps):,} = {len(rows):,}): open-vocab {rows_df5:,} tags with df >= 5 "
          f"({rows_distinct:,} distinct)")
    seconds = time.perf_counter() - started
    with_df5, distinct, df = distinct_with_df(everything)
    lex_df5, lex_distinct, _ = distinct_with_df(lexicon_all)
    print(f"  all {len(everything):,} captions: open-vocab {with_df5:,} tags with df >= 5 ({distinct:,} distinct); "
          f"lexicon {lex_df5:,} with df >= 5 ({lex_distinct:,} distinct); "
          f"{sum(map(len, everything)) / len(everything):.2f} tags/caption; {seconds:.0f} s")
    print("  most frequent:", ", ".join(f"{t} {n}" for t, n in df.most_common(30)))
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
