"""Mini reproduction of the UTS study on real audio: pre-train tiny encoders with MTC and PAR, probe held-out data.

Place in the flow: a benchmark of training/ (never opens the database). It writes its own export (label map +
Lhotse cuts + export.json, the format curation/vocabulary/export.py writes) from ../shared/data metadata, pre-trains with
``training.pretrain.main``, probes with ``training.probe.run_probe`` and prints a paper-style table.
Leakage: every dataset is split into a PRE-TRAIN half and a PROBE half that share no group (ESC-50 source recording,
RAVDESS actor, FSDD speaker; instruments per clip, stratified); pre-training sees only the pre-train half, every
probe task (k-fold CV) only the probe half. What overlaps is the label space: pre-training tags include the ESC-50
category, RAVDESS gender/emotion, the FSDD digit word and the instrument, so "pre-trained" here means transfer of
supervised tags to unseen recordings/speakers, the paper's setting in miniature.
Example: ``.venv/bin/python bench/mini_repro.py --steps 300 --work /tmp/uts_mini``
"""
from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
DATA = PROJECT.parent / "shared" / "data"

ESC_FAMILY = ["animal", "nature", "human", "domestic", "urban"]  # ESC-50 major groups: targets 0-9, 10-19, ...
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _halves(items: list[str], seed: int) -> tuple[set[str], set[str]]:
    """Alternate a shuffled list between pre-train and probe (disjoint, balanced)."""
    items = sorted(set(items))
    random.Random(seed).shuffle(items)
    return set(items[0::2]), set(items[1::2])


def build_pool(seed: int) -> tuple[list[dict], dict[str, list[dict]]]:
    """(pre-train clips [{id, path, duration_s, tags}], probe tasks {name: [{audio_path, label, group?}]})."""
    pretrain: list[dict] = []
    tasks: dict[str, list[dict]] = defaultdict(list)

    esc = _read_csv(DATA / "esc50" / "esc50_subset.csv")
    by_class = defaultdict(list)
    for row in esc:
        by_class[row["category"]].append(row["src_file"])
    pre_src = set()
    for cat, srcs in sorted(by_class.items()):
        pre_src |= _halves(srcs, seed)[0]
    for row in esc:
        path = DATA / "esc50" / "audio" / row["filename"]
        if row["src_file"] in pre_src:
            family = ESC_FAMILY[int(row["target"]) // 10]
            pretrain.append({"id": "esc50/" + row["filename"], "path": path, "duration_s": float(row["duration_s"]),
                             "tags": [row["category"].replace("_", " "), family, "environment"]})
        else:
            tasks["esc50_class"].append({"audio_path": str(path), "label": row["category"], "group": row["src_file"]})

    rav = _read_csv(DATA / "ravdess" / "ravdess_subset.csv")
    actors_by_gender = defaultdict(list)
    for row in rav:
        actors_by_gender[row["gender"]].append(row["actor"])
    pre_actors = set()
    for gender, actors in sorted(actors_by_gender.items()):
        pre_actors |= _halves(actors, seed)[0]
    for row in rav:
        path = DATA / "ravdess" / "audio" / row["filename"]
        if row["actor"] in pre_actors:
            pretrain.append({"id": "ravdess/" + row["filename"], "path": path, "duration_s": float(row["duration_s"]),
                             "tags": ["speech", row["gender"], row["emotion"]]})
        else:
            tasks["ravdess_gender"].append({"audio_path": str(path), "label": row["gender"], "group": row["actor"]})
            tasks["ravdess_emotion"].append({"audio_path": str(path), "label": row["emotion"], "group": row["actor"]})

    fsdd = _read_csv(DATA / "fsdd" / "fsdd_subset.csv")
    pre_speakers = _halves([r["speaker"] for r in fsdd], seed)[0]
    for row in fsdd:
        path = DATA / "fsdd" / "audio" / row["filename"]
        if row["speaker"] in pre_speakers:
            pretrain.append({"id": "fsdd/" + row["filename"], "path": path, "duration_s": float(row["duration_s"]),
                             "tags": ["speech", "digit", "male", DIGITS[int(row["digit"])]]})
        else:
            tasks["fsdd_digit"].append({"audio_path": str(path), "label": DIGITS[int(row["digit"])],
                                        "group": row["speaker"]})

    inst = _read_csv(DATA / "music" / "instruments_fsdkaggle2018" / "instruments_subset.csv")
    by_inst = defaultdict(list)
    for row in inst:
        by_inst[row["instrument"]].append(row["filename"])
    pre_files = set()
    for name, files in sorted(by_inst.items()):
        pre_files |= _halves(files, seed)[0]
    for row in inst:
        path = DATA / "music" / "instruments_fsdkaggle2018" / "audio" / row["filename"]
        name = row["instrument"].lower().replace("_", " ")
        if row["filename"] in pre_files:
            pretrain.append({"id": "instrument/" + row["filename"], "path": path,
                             "duration_s": float(row["kept_duration_s"]), "tags": [name, "music"]})
        else:
            tasks["instrument"].append({"audio_path": str(path), "label": name})
    return pretrain, dict(tasks)


def write_export(pretrain: list[dict], out: Path) -> Path:
    """label_K.json ranked by document frequency + cuts.jsonl.gz (MonoCuts) + export.json, as curation writes them."""
    out.mkdir(parents=True, exist_ok=True)
    df = Counter(t for clip in pretrain for t in set(clip["tags"]))
    labels = [t for t, _ in sorted(df.items(), key=lambda kv: (-kv[1], kv[0]))]
    k = len(labels)
    (out / f"label_{k}.json").write_text(json.dumps({str(i): t for i, t in enumerate(labels)}, indent=1))
    with gzip.open(out / "cuts.jsonl.gz", "wt", encoding="utf-8") as handle:
        for clip in pretrain:
            d = clip["duration_s"]
            handle.write(json.dumps({
                "id": clip["id"], "start": 0.0, "duration": d, "channel": 0,
                "supervisions": [{"id": clip["id"], "recording_id": clip["id"], "start": 0.0, "duration": d,
                                  "channel": 0, "custom": {"audio_tag": clip["tags"], "caption": "",
                                                           "original_caption": []}}],
                "recording": {"id": clip["id"], "sources": [{"type": "file", "channels": [0],
                                                             "source": str(clip["path"])}],
                              "sampling_rate": 16000, "num_samples": int(round(d * 16000)), "duration": d,
                              "channel_ids": [0]},
                "type": "MonoCut"}) + "\n")
    (out / "export.json").write_text(json.dumps({
        "export_id": 0, "k": k, "vocabulary_size": k, "rank_by": "df", "last_decision_id": None,
        "content_hash": None, "out_dir": str(out), "label_file": f"label_{k}.json", "cuts_file": "cuts.jsonl.gz",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "created_by": "bench/mini_repro.py"},
        indent=1))
    return out


def write_tasks(tasks: dict[str, list[dict]], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in tasks.items():
        path = out / f"{name}.csv"
        fields = ["audio_path", "label"] + (["group"] if "group" in rows[0] else [])
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        paths[name] = path
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/uts_mini_repro"))
    parser.add_argument("--size", default="tiny", choices=("tiny", "small"))
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--objectives", default="mtc,par")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: on a machine shared with other jobs, 2 spinning OpenMP threads "
                             "ran 2-5x slower than 1)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent (the real clips live there)")
        return 0
    from training.pretrain import main as pretrain_main
    from training.probe import read_task, run_probe

    t0 = time.perf_counter()
    pretrain, tasks = build_pool(args.seed)
    export = write_export(pretrain, args.work / "export")
    task_paths = write_tasks(tasks, args.work / "tasks")
    k = len(json.loads(next(export.glob("label_*.json")).read_text()))
    print(f"pool: {len(pretrain)} pre-train clips ({sum(c['duration_s'] for c in pretrain):.0f} s), K={k}; "
          + ", ".join(f"{n}: {len(r)} probe clips" for n, r in tasks.items()), flush=True)
    runs = {}
    train_seconds = {}
    for objective in args.objectives.split(","):
        run = args.work / f"run_{args.size}_{objective.replace('+', '_')}"
        t = time.perf_counter()
        overrides = ["log_every=50", "val_every=100000", "ckpt_every=100000", "val_fraction=0.05",
                     "max_batch_s=60", "max_clip_s=5", "num_workers=1", "warmup_steps=40", "lr=2e-3", f"seed={args.seed}",
                     *args.overrides]
        code = pretrain_main(["--export", str(export), "--out", str(run), "--objective", objective, "--size",
                              args.size, "--steps", str(args.steps), "--device", "cpu",
                              *sum((["--set", o] for o in overrides), [])])
        if code:
            return code
        train_seconds[objective] = time.perf_counter() - t
        runs[objective] = run
    table: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    probe_out = args.work / "probe"
    first = next(iter(runs.values()))
    for name, path in task_paths.items():
        task = read_task(path)
        for objective, run in runs.items():
            encoders = ["pretrained"] + (["random_init", "fbank"] if run == first else [])
            results = run_probe(task, run / "checkpoints" / "last.pt", probe_out / objective, poolings=["mean", "attention"],
                                encoders=encoders, n_folds=5, max_clip_s=5.0, device="cpu", seed=args.seed)
            for r in results:
                row = {"pretrained": objective.upper(), "random_init": "random init", "fbank": "fbank"}[r["encoder"]]
                metric = "mAP" if r["metric"] == "map" else "acc"
                table[(row, r["pooling"])][name] = f"{100 * r['mean']:.1f}±{100 * r['std']:.1f}"
                table[("_metric", "")][name] = f"{metric} ({len(r['folds'])} folds, {r['n_clips']} clips)"
    names = list(task_paths)
    print()
    print("| encoder | pooling | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    print("| (metric) | | " + " | ".join(table[("_metric", "")][n] for n in names) + " |")
    order = ["random init", "fbank"] + [o.upper() for o in runs]
    for row in order:
        for pooling in ("mean", "attention"):
            cells = table.get((row, pooling), {})
            print(f"| {row} | {pooling} | " + " | ".join(cells.get(n, "") for n in names) + " |")
    total = time.perf_counter() - t0
    print("\npre-training: " + ", ".join(f"{o} {s:.0f} s" for o, s in train_seconds.items())
          + f"; total {total:.0f} s ({args.size}, {args.steps} steps each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
