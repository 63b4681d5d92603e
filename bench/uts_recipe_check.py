"""Check an export against the UTS training recipe's own reading code (AudenAI/Auden, examples/uts/data_module.py
with src/auden/data/lhotse_datamodule.py), not a re-implementation of it.

It builds a corpus of real-format audio (stereo 44.1 kHz FLAC, 8 kHz WAV, OGG, 48 kHz 24-bit stereo WAV, MP3 where
libsndfile writes it, a clip shorter than the recipe's 1 s), ingests and exports it with this project, then runs
the recipe's path exactly as its validation loader does: CutSet.from_file(manifest).resample(16000) ->
UTSDatamodule._filter_cutset -> DynamicBucketingSampler -> UTSDataset with OnTheFlyFeatures(Fbank(80 bins)). Every
batch's features are checked (finite, 80 bins) and its ';'-joined tag strings are turned into multi-hot targets with
the exported label_K.json, which must equal the export's own tag lists exactly, clip by clip.

Usage: python bench/uts_recipe_check.py --auden /path/to/Auden [--export DIR | --esc50 ../shared/data] [--json]
(with --export, an existing export folder is checked instead of building one). Exit status 0 when all holds.
Tests: tests/vocabulary/test_uts_recipe.py runs this when AUDEN_CHECKOUT names a checkout, and skips otherwise.
"""
from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT), str(PROJECT / "tests")]


def load_recipe(auden: Path):
    """The recipe's data module, imported from the checkout (its package from src/, the example by path)."""
    src = auden / "src"
    module_path = auden / "examples" / "uts" / "data_module.py"
    if not module_path.is_file() or not (src / "auden" / "data" / "lhotse_datamodule.py").is_file():
        raise SystemExit(f"{auden}: expected an AudenAI/Auden checkout (examples/uts/data_module.py and "
                         "src/auden/data/lhotse_datamodule.py)")
    sys.path.insert(0, str(src))
    spec = importlib.util.spec_from_file_location("uts_data_module", module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ingest_and_export(work: Path, rows: list[dict], k: int) -> Path:
    """Flat manifest rows -> a fresh database -> the export at K this project writes (work/export)."""
    from curation import store
    from curation.ingest.ingest import ingest_path
    from curation.vocabulary.export import export_vocabulary

    (work / "flat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    con = store.connect(work / "uts.duckdb")
    try:
        ingest_path(con, work / "flat.jsonl")
        export_vocabulary(con, k=k, out_dir=work / "export", by="recipe-check")
    finally:
        con.close()
    return work / "export"


def build_export(work: Path) -> Path:
    from audio_formats import write_all_kinds

    files = write_all_kinds(work / "audio")
    return ingest_and_export(work, [
        {"id": name, "audio_path": str(path), "caption": f"A {name} clip.",
         "tags": ["sound", name.split("_")[0], name.split("_")[-1]]} for name, path in files.items()], k=50)


def build_esc50_export(work: Path, shared: Path) -> Path:
    """The 400 real ESC-50 clips of ../shared/data with their category (and ESC-10 membership) as tags."""
    import csv

    shared = shared.resolve()  # the manifest is written elsewhere: a relative audio path would not resolve there
    with open(shared / "esc50" / "esc50_subset.csv", newline="") as handle:
        rows = [{"id": r["filename"].rsplit(".", 1)[0], "audio_path": str(shared / "esc50" / "audio" / r["filename"]),
                 "tags": [r["category"].replace("_", " "), "sound"] + (["esc10"] if r["esc10"] == "True" else [])}
                for r in csv.DictReader(handle)]
    return ingest_and_export(work, rows, k=52)


def check(auden: Path, export_dir: Path) -> dict:
    from lhotse import CutSet, Fbank, FbankConfig
    from lhotse.dataset import DynamicBucketingSampler
    from lhotse.dataset.input_strategies import OnTheFlyFeatures

    recipe = load_recipe(auden)
    record = json.loads((export_dir / "export.json").read_text())
    labels = json.loads((export_dir / record["label_file"]).read_text())
    tag_id = {tag: int(i) for i, tag in labels.items()}
    with gzip.open(export_dir / record["cuts_file"], "rt") as handle:
        expected = {c["id"]: c["supervisions"][0]["custom"]["audio_tag"] for c in map(json.loads, handle)}
    # The recipe's own steps (UTSDatamodule.setup_valid): resample, its duration filter, bucketing, its dataset.
    cuts = CutSet.from_file(export_dir / record["cuts_file"]).resample(16_000)
    cuts = recipe.UTSDatamodule._filter_cutset(None, cuts, split="valid")
    dataset = recipe.UTSDataset(input_strategy=OnTheFlyFeatures(Fbank(FbankConfig(num_mel_bins=80))),
                                return_cuts=True)
    cuts = cuts.to_eager()
    # The recipe's validation sampler with its 10 buckets; a small test export gets as many buckets as cuts.
    sampler = DynamicBucketingSampler(cuts, max_duration=600, shuffle=False, num_buckets=min(10, len(cuts)))
    seen, mismatches, frames = {}, [], 0
    for batch_cuts in sampler:
        batch = dataset[batch_cuts]
        features = batch["inputs"]
        assert features.ndim == 3 and features.shape[2] == 80, f"features of shape {tuple(features.shape)}"
        assert bool(features.isfinite().all()), "non-finite features"
        frames += int(features.shape[0] * features.shape[1])
        for cut, tag_string in zip(batch["supervisions"]["cut"], batch["supervisions"]["tags"]):
            targets = sorted(tag_id[t] for t in tag_string.split(";"))  # KeyError = a tag outside label_K.json
            seen[cut.id] = targets
            if targets != sorted(tag_id[t] for t in expected[cut.id]):
                mismatches.append(cut.id)
    kept_by_recipe = {cid for cid in expected if cid in seen}
    return {"export": str(export_dir), "cuts_in_export": len(expected), "cuts_read_by_recipe": len(seen),
            "dropped_by_recipe_window": sorted(set(expected) - kept_by_recipe), "target_mismatches": mismatches,
            "feature_frames": frames, "ok": not mismatches and len(seen) > 0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--auden", required=True, type=Path, help="a checkout of github.com/AudenAI/Auden")
    parser.add_argument("--export", type=Path, help="an export folder to check (default: build one from test audio)")
    parser.add_argument("--esc50", type=Path, metavar="SHARED_DATA",
                        help="build the export from the real ESC-50 clips under this ../shared/data folder instead")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        export_dir = args.export or (build_esc50_export(Path(tmp), args.esc50) if args.esc50 else
                                     build_export(Path(tmp)))
        result = check(args.auden.resolve(), export_dir)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['cuts_read_by_recipe']} of {result['cuts_in_export']} cuts read by the UTS recipe's loader "
              f"(dropped by its 1-60 s window: {result['dropped_by_recipe_window']}); "
              f"{len(result['target_mismatches'])} multi-hot mismatches; {result['feature_frames']:,} fbank frames")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
