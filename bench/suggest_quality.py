"""Merge-suggestion quality on two corpora built from ../shared/data, against mechanically derived gold pairs.

Corpora (the labels are the published UTS 3k list, ../shared/data/uts_vocab/label_3k.json):
  random    ~20,000 clips, each tagged with 3-10 labels drawn at random (Zipf-weighted by the list's rank, so
            document frequencies spread as in a real corpus): tags carry NO co-occurrence structure.
  captions  every AudioCaps / Clotho / MusicCaps caption row (~68k; Clotho's five captions and MusicCaps' caption
            plus aspect list are one row), tagged with the 3k labels it mentions (a label that differs only in
            separators/case picks one spelling per mention, as an inconsistent extractor would); labels no row
            mentions get three clips with random company.
Gold pairs (both tags present in the corpus):
  surface     labels with the same letters ignoring case, '-', '_', spaces (mechanical)
  inflection  x / x+s, x+es, x-y+ies in the list, kept when lemminflect (a lexicon of English inflections) does not
              know the longer word as a lemma of its own ('electronics', 'acoustics', 'dynamics', 'news' are
              words, not plurals); a tripled letter ('hisss') is a typo, not an inflection
  synonym     SYNONYMS below: a small hand list of same-concept pairs in the 3k list (derivations, clippings,
              spellings, true synonyms), written before the engine was tuned
  opposite    OPPOSITES below: pairs of the list that name opposite or neighbouring concepts
Measured: recall of each gold class (a pair counts when both tags are in one suggested group), the number of
opposite pairs proposed, the number of groups, the largest group, and the time of ``suggest_merges``.

    .venv/bin/python bench/suggest_quality.py [--corpus random|captions|both] [--keep DIR] [--json]
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from curation import store
from curation.ingest.ingest import ingest_path
from curation.vocabulary.suggestions import suggest_merges, surface_key

SHARED = PROJECT.parent / "shared" / "data"
LABELS = SHARED / "uts_vocab" / "label_3k.json"
CAPTION_FILES = (*sorted(SHARED.glob("captions/audiocaps_v1/*.csv")), *sorted(SHARED.glob("captions/clotho/*.csv")),
                 SHARED / "captions" / "musiccaps" / "musiccaps-public.csv")
CAPTION_COLUMNS = re.compile(r"caption(_\d)?|aspect_list")

# Same concept, different word form or word (each pair checked by hand against the 3k list).
SYNONYMS = (
    ("reverb", "reverberation"), ("reverb", "reverberant"), ("reverberation", "reverberant"),
    ("reverb", "reverberated"), ("ambient", "ambience"), ("ambient", "ambiance"), ("ambience", "ambiance"),
    ("orchestra", "orchestral"), ("percussion", "percussive"), ("synth", "synthesizer"), ("melody", "melodic"),
    ("rhythm", "rhythmic"), ("nostalgia", "nostalgic"), ("tension", "tense"), ("melancholy", "melancholic"),
    ("emotion", "emotional"), ("energy", "energetic"), ("atmosphere", "atmospheric"), ("distortion", "distorted"),
    ("music", "musical"), ("tone", "tonal"), ("chord", "chordal"), ("vocal", "vocalist"), ("speech", "speaking"),
    ("applause", "clapping"), ("lo-fi", "low-fidelity"), ("echo", "echoing"), ("rustle", "rustling"),
    ("crackle", "crackling"), ("laugh", "laughter"), ("laugh", "laughing"), ("whistle", "whistling"),
    ("bark", "barking"), ("hum", "humming"), ("buzz", "buzzing"), ("hiss", "hissing"), ("click", "clicking"),
    ("clap", "clapping"), ("cheer", "cheering"), ("calm", "calming"), ("instruction", "instructional"),
    ("conversation", "conversational"), ("child", "children"),
)
# Opposite or neighbouring concepts: never one group.
OPPOSITES = (
    ("male", "female"), ("man", "woman"), ("indoor", "outdoor"), ("indoors", "outdoors"),
    ("electric", "electronic"), ("major", "minor"), ("fast", "slow"), ("loud", "quiet"), ("wet", "dry"),
    ("bright", "dark"), ("happy", "sad"), ("acoustic", "electric"), ("analog", "digital"), ("mono", "stereo"),
    ("live", "studio"), ("high-fidelity", "low-fidelity"), ("high_fidelity", "low_fidelity"),
    ("highfidelity", "lowfidelity"), ("high-frequency", "low-frequency"), ("high_frequency", "low_frequency"),
    ("high-pitched", "low-pitched"), ("male_voice", "female_voice"), ("male-voice", "female-voice"),
    ("male-speaker", "female-speaker"), ("male_speaker", "female_speaker"), ("major-key", "minor-key"),
    ("christmas", "christian"), ("concert", "concerto"), ("classic", "classical"), ("formal", "informal"),
    ("vocal", "instrumental"), ("pop", "pops"), ("crescendo", "decrescendo"), ("inhale", "exhale"),
    ("speech", "speaker"), ("organ", "organic"), ("metal", "metallic"), ("clip", "clipping"), ("cheer", "cheerful"),
    ("electronic", "electronics"), ("acoustic", "acoustics"), ("crowd", "crowded"), ("alarm", "alarming"),
    ("single", "singer"), ("boy", "girl"), ("soft", "software"), ("engine", "engineering"),
)


def published_labels() -> list[str]:
    return list(dict.fromkeys(json.loads(LABELS.read_text(encoding="utf-8")).values()))


def caption_rows() -> list[str]:
    rows = []
    for path in CAPTION_FILES:
        if path.exists():
            with path.open(encoding="utf-8", newline="") as handle:
                rows.extend(" . ".join(v for k, v in row.items() if k and CAPTION_COLUMNS.fullmatch(k) and v)
                            for row in csv.DictReader(handle))
    return rows


def cut(clip_id: str, tags: list[str]) -> dict:
    return {"id": clip_id, "start": 0.0, "duration": 10.0, "channel": 0,
            "supervisions": [{"id": clip_id, "recording_id": clip_id, "start": 0.0, "duration": 10.0, "channel": 0,
                              "custom": {"audio_tag": tags, "caption": "A clip.", "original_caption": []}}],
            "recording": {"id": clip_id, "sources": [{"type": "file", "channels": [0], "source": "bench"}],
                          "sampling_rate": 16000, "num_samples": 160000, "duration": 10.0, "channel_ids": [0]},
            "type": "MonoCut"}


def random_cuts(labels: list[str], clips: int = 20_000, seed: int = 0) -> list[dict]:
    """Each clip: 3-10 labels drawn without replacement, weight 1 / (rank + 20): no co-occurrence structure."""
    rng = random.Random(seed)
    weights = [1.0 / (rank + 20) for rank in range(len(labels))]
    cuts = []
    for index in range(clips):
        tags: set[str] = set()
        wanted = rng.randint(3, 10)
        while len(tags) < wanted:
            tags.update(rng.choices(labels, weights, k=wanted - len(tags)))
        cuts.append(cut(f"rnd{index}", sorted(tags)))
    return cuts


def caption_cuts(labels: list[str], captions: list[str], seed: int = 0) -> list[dict]:
    """Clips whose tags are the labels their caption row mentions (see the module docstring)."""
    rng = random.Random(seed)
    spellings: dict[str, list[str]] = {}
    for label in labels:
        spellings.setdefault(" ".join(re.split(r"[\s_\-]+", label.lower())), []).append(label)
    longest = max(len(phrase.split()) for phrase in spellings)
    cuts, mentioned = [], set()
    for index, caption in enumerate(captions):
        words = re.findall(r"[a-z0-9]+", caption.lower())
        found = {" ".join(words[i:i + n]) for n in range(1, longest + 1) for i in range(len(words) - n + 1)}
        # Sorted: a set's order of strings changes with each process's hash seed, and with it which spelling
        # each mention draws (synonym recall moved between 0.74 and 0.84 from run to run before).
        tags = sorted({rng.choice(spellings[phrase]) for phrase in sorted(found & spellings.keys())})
        if tags:
            mentioned.update(tags)
            cuts.append(cut(f"cap{index}", tags))
    pool = sorted(mentioned)
    for label in labels:
        if label not in mentioned:
            cuts.extend(cut(f"{label}-{n}", [label, *rng.sample(pool, 3)]) for n in range(3))
    return cuts


def gold_pairs(labels: list[str]) -> dict[str, set[frozenset]]:
    import lemminflect

    present = set(labels)
    by_key: dict[str, list[str]] = {}
    for label in labels:
        by_key.setdefault(surface_key(label), []).append(label)
    surface = {frozenset(p) for spellings in by_key.values() for p in itertools.combinations(spellings, 2)}
    inflection = set()
    for key, spellings in by_key.items():
        plurals = [key + "s", key + "es"] + ([key[:-1] + "ies"] if key.endswith("y") else [])
        for plural in plurals:
            if plural not in by_key or plural.endswith("sss") or (key.endswith("s") and plural == key + "s"):
                continue
            known = lemminflect.getAllLemmas(plural, upos="NOUN").get("NOUN")
            if known is not None and key not in known:
                continue  # a word of its own ('electronics'), not the plural of the shorter one
            inflection.update(frozenset((u, v)) for u in spellings for v in by_key[plural])
    synonym = {frozenset(p) for p in SYNONYMS if set(p) <= present}
    opposite = {frozenset(p) for p in OPPOSITES if set(p) <= present}
    return {"surface": surface, "inflection": inflection, "synonym": synonym, "opposite": opposite}


def evaluate(suggestions, gold: dict[str, set[frozenset]]) -> dict:
    group_of = {}
    for index, s in enumerate(suggestions):
        for tag in s.tags:
            group_of[tag] = index
    together = {name: {p for p in pairs if len({group_of.get(t, -1 - i) for i, t in enumerate(p)}) == 1}
                for name, pairs in gold.items()}
    out = {f"{name}_recall": round(len(together[name]) / max(len(gold[name]), 1), 3)
           for name in ("surface", "inflection", "synonym")}
    out.update({f"{name}_gold": len(gold[name]) for name in gold})
    out["opposites_proposed"] = sorted("/".join(sorted(p)) for p in together["opposite"])
    out["missed"] = {name: sorted("/".join(sorted(p)) for p in gold[name] - together[name])[:40]
                     for name in ("surface", "inflection", "synonym")}
    out["groups"] = len(suggestions)
    out["largest_group"] = max((len(s.tags) for s in suggestions), default=0)
    return out


def build(corpus: str, folder: Path, labels: list[str]) -> Path:
    db = folder / f"quality_{corpus}.duckdb"
    if db.exists():
        return db
    cuts = random_cuts(labels) if corpus == "random" else caption_cuts(labels, caption_rows())
    manifest = folder / f"quality_{corpus}.jsonl"
    manifest.write_text("".join(json.dumps(c) + "\n" for c in cuts), encoding="utf-8")
    con = store.connect(db)
    ingest_path(con, manifest)
    con.close()
    manifest.unlink()
    return db


def measure(db: Path, gold_all: dict[str, set[frozenset]]) -> dict:
    con = store.connect(db)
    try:
        present = {row[0] for row in con.execute("SELECT DISTINCT t.tag FROM tags t JOIN clip_tags USING (tag_id)")
                   .fetchall()}
        gold = {name: {p for p in pairs if p <= present} for name, pairs in gold_all.items()}
        t0 = time.perf_counter()
        suggestions = suggest_merges(con)
        seconds = time.perf_counter() - t0
        clips = con.execute("SELECT count(*) FROM clips").fetchall()[0][0]
    finally:
        con.close()
    result = evaluate(suggestions, gold)
    result.update({"clips": clips, "tags": len(present), "suggest_s": round(seconds, 2)})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=("random", "captions", "both"), default="both")
    parser.add_argument("--keep", help="build the databases in this folder and keep them (reused when present)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if not LABELS.exists():
        sys.exit(f"{LABELS} is absent: this benchmark needs ../shared/data (the published UTS lists and captions)")
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="uts_quality_"))
    folder.mkdir(parents=True, exist_ok=True)
    labels = published_labels()
    gold = gold_pairs(labels)
    results = {}
    for corpus in (("random", "captions") if args.corpus == "both" else (args.corpus,)):
        results[corpus] = measure(build(corpus, folder, labels), gold)
    if args.json:
        print(json.dumps(results))
    else:
        for corpus, result in results.items():
            print(f"== {corpus}: {result['clips']:,} clips, {result['tags']:,} tags, suggest {result['suggest_s']} s")
            print("   recall: surface {surface_recall} ({surface_gold}), inflection {inflection_recall} "
                  "({inflection_gold}), synonym {synonym_recall} ({synonym_gold}); groups {groups}, largest "
                  "{largest_group}".format(**result))
            print(f"   opposites proposed: {len(result['opposites_proposed'])} {result['opposites_proposed']}")
            for name, missed in result["missed"].items():
                if missed:
                    print(f"   missed {name}: {', '.join(missed)}")
    if not args.keep:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
