"""The model-based audit, measured against the demo corpus's planted captioner biases (issue 18).

Runs the whole loop on CPU, each step the command a user would type, and times it: demo corpus (600 clips) ->
accept the merge suggestions -> export at K -> tiny MTC pre-training -> import the run -> ``python -m curation
model-audit`` (k-fold out-of-sample scores + confident-learning suspects). Then, for each planted bias
(``CAPTIONER_BIASES``; ``clip_truth`` says on which clips it fired), precision and recall of the ranking at N (N =
the number of planted cases, where precision = recall) and of the flagged suspects, against a random order of the
same candidates (``curation.audit.model_audit.evaluate_planted_biases``), for each feature kind the held-out heads
can see (the run's frozen encoder, label-free log-mel statistics, both).

Example: ``.venv/bin/python bench/model_audit_eval.py --work /tmp/uts_model_audit [--clips 600 --steps 150]``
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))


def step(label: str, command: list[str], timings: dict, env: dict) -> str:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, env=env, check=False)
    timings[label] = round(time.perf_counter() - started, 1)
    if result.returncode != 0:
        sys.exit(f"{label} failed ({result.returncode}): {result.stderr[-2000:]}")
    print(f"{label}: {timings[label]} s", flush=True)
    return result.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="an empty or missing folder")
    parser.add_argument("--clips", type=int, default=600)
    parser.add_argument("--k", type=int, default=60)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--features", default="encoder,fbank,both", help="feature kinds to evaluate")
    args = parser.parse_args(argv)
    if args.work.exists() and any(args.work.iterdir()):
        sys.exit(f"{args.work} is not empty")
    args.work.mkdir(parents=True, exist_ok=True)
    work = args.work.resolve()
    py = sys.executable
    db, export, run = work / "uts.duckdb", work / "exports" / f"v{args.k}", work / "runs" / "r1"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    timings: dict[str, float] = {}
    loop_started = time.perf_counter()
    step("demo corpus", [py, "-m", "curation", "demo", "--db", str(db), "--clips", str(args.clips)], timings, env)
    groups = json.loads(step("merge suggestions", [py, "-m", "curation", "suggest-merges", "--db", str(db), "--top",
                                                   "40", "--json"], timings, env))
    started = time.perf_counter()
    for group in groups:
        subprocess.run([py, "-m", "curation", "decide", "merge", *group["tags"], "--into", group["canonical"],
                        "--db", str(db), "--by", "bench", "--reason", "bench: merge suggestion"], cwd=PROJECT,
                       check=True, capture_output=True, env=env)
    timings["accept merges"] = round(time.perf_counter() - started, 1)
    step("export", [py, "-m", "curation", "export", "--db", str(db), "--k", str(args.k), "--out", str(export),
                    "--by", "bench"], timings, env)
    step("pretrain", [py, "-m", "training.pretrain", "--export", str(export), "--out", str(run), "--objective", "mtc",
                      "--size", "tiny", "--steps", str(args.steps), "--device", "cpu", "--set", "max_batch_s=40",
                      "--set", "num_workers=0", "--set", f"val_every={args.steps}",
                      "--set", f"ckpt_every={args.steps}"], timings, env)
    step("import run", [py, "-m", "curation", "runs", "import", str(run), "--db", str(db)], timings, env)
    kinds = [k.strip() for k in args.features.split(",") if k.strip()]
    from curation import store
    from curation.audit.model_audit import evaluate_planted_biases, read_oos_scores
    from curation.demo.synth import CAPTIONER_BIASES, concept_of_tag
    from curation.store import corpus as store_corpus

    results = {}
    for i, kind in enumerate(kinds):
        out = step(f"model-audit ({kind})", [py, "-m", "curation", "model-audit", "--db", str(db), "--run", "r1",
                                             "--folds", str(args.folds), "--features", kind, "--json"], timings, env)
        if i == 0:
            timings["whole loop (first model-audit included)"] = round(time.perf_counter() - loop_started, 1)
        suspects = json.loads(out)
        copy = work / "runs" / f"scores_{kind}"
        shutil.copytree(run / "model_audit", copy / "model_audit")
        results[kind] = (len(suspects), read_oos_scores(copy))
    con = store.connect(db, read_only=True)
    truth = list(store_corpus.iter_table_rows(con, "clip_truth"))
    con.close()
    import pandas as pd

    pd.set_option("display.width", 250)
    print(f"\nload: {os.getloadavg()}; timings (s): {json.dumps(timings)}")
    for kind, (n_suspects, oos) in results.items():
        table = evaluate_planted_biases(oos, truth, CAPTIONER_BIASES, concept_of_tag)
        table["lift"] = table["precision_at_n"] / table["random_precision_at_n"]
        print(f"\nfeatures={kind}: {n_suspects} suspects over {len(oos.clip_ids)} clips x {len(oos.labels)} tags")
        print(table[["bias", "bias_kind", "concept", "looked_for", "candidates", "planted", "precision_at_n",
                     "random_precision_at_n", "lift", "flagged", "flagged_precision", "flagged_recall"]]
              .round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
