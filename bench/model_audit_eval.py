"""The model-based audit, measured against the demo corpus's planted captioner biases (issue 18).

Runs the whole loop on CPU, each step the command a user would type, and times it: demo corpus (600 clips) ->
accept the merge suggestions -> export at K -> tiny MTC pre-training -> import the run -> ``python -m curation
model-audit`` (k-fold out-of-sample scores + confident-learning suspects). Then, for each planted bias
(``CAPTIONER_BIASES``; ``clip_truth`` says on which clips it fired), precision and recall of the ranking at N (N =
the number of planted cases, where precision = recall) and of the flagged suspects, against a random order of the
same candidates (``curation.audit.model_audit.evaluate_planted_biases``), for each setting of what the held-out
heads see (the run's frozen encoder, label-free log-mel statistics, both; the log-mel moments alone, with their
dynamics, or with dynamics and decay rates) and of how many cross-fits are averaged. A log-mel setting that the
library's ``model-audit`` does not accept yet (``curation.audit.model_audit.FBANK_STATS``) is scored with
``python -m training.oos_scores`` itself, the command ``model-audit`` runs, and its suspects counted the same way.

Then the loop is closed once (``second_round``): the first run's merge evidence (``model-evidence``: tags the model
cannot tell apart), accepted by a simulated curator where both tags are surface forms of one demo concept, then
export, pre-training and model audit again (run r2), evaluated the same way.

Example: ``.venv/bin/python bench/model_audit_eval.py --work /tmp/uts_model_audit [--clips 600 --steps 150 --seed 0]
[--json-out /tmp/ma.json]``
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
    parser.add_argument("--seed", type=int, default=0, help="the demo corpus's seed (0: the demo `make demo` builds)")
    parser.add_argument("--k", type=int, default=60)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--no-second-round", action="store_true",
                        help="skip closing the loop (model merge evidence -> merges -> export, train, audit again)")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the per-bias tables as JSON")
    parser.add_argument("--variants", default="both/fine-decay/3,both/fine-decay/3/none,fbank/fine-decay/3,"
                                              "encoder/-/3,both/decay/3/none,both/moments/1/none",
                        help="comma-separated FEATURES/FBANK_STATS/REPEATS[/CONTEXT] settings of model-audit to "
                             "evaluate (the first is timed inside the whole loop); moments + 1 repeat = the first "
                             "version, dynamics + 3 repeats the second; CONTEXT: discount (default) or none (the "
                             "fifth pass and before)")
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
    step("demo corpus", [py, "-m", "curation", "demo", "--db", str(db), "--clips", str(args.clips),
                           "--seed", str(args.seed)], timings, env)
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
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    from curation import store
    from curation.audit.model_audit import evaluate_planted_biases, read_oos_scores
    from curation.demo.synth import CAPTIONER_BIASES, concept_of_tag
    from curation.store import corpus as store_corpus

    results = {}
    for i, variant in enumerate(variants):
        n_suspects = audit_step(variant, "r1", run, db, args.folds, py, env, timings)
        if i == 0:
            timings["whole loop (first model-audit included)"] = round(time.perf_counter() - loop_started, 1)
        copy = work / "runs" / f"scores_{variant.replace('/', '_')}"
        shutil.copytree(run / "model_audit", copy / "model_audit")
        results[variant] = (n_suspects, read_oos_scores(copy))
    loop = None
    if not args.no_second_round:
        loop = second_round(args, work, db, py, env, timings, variants[0])
        results[f"{variants[0]} after the model's merges"] = loop.pop("result")
    con = store.connect(db, read_only=True)
    truth = list(store_corpus.iter_table_rows(con, "clip_truth"))
    con.close()
    import pandas as pd

    pd.set_option("display.width", 250)
    print(f"\nload: {os.getloadavg()}; timings (s): {json.dumps(timings)}")
    summary = []
    for kind, (n_suspects, oos) in results.items():
        table = evaluate_planted_biases(oos, truth, CAPTIONER_BIASES, concept_of_tag)
        table["lift"] = table["precision_at_n"] / table["random_precision_at_n"]
        print(f"\nfeatures={kind}: {n_suspects} suspects over {len(oos.clip_ids)} clips x {len(oos.labels)} tags")
        print(table[["bias", "bias_kind", "concept", "looked_for", "candidates", "planted", "precision_at_n",
                     "random_precision_at_n", "lift", "flagged", "flagged_precision", "flagged_recall"]]
              .round(3).to_string(index=False))
        summary.append(table.assign(variant=kind, suspects=n_suspects))
    if loop is not None:
        print(f"\nmodel merge evidence: {json.dumps(loop)}")
    if args.json_out:
        pd.concat(summary).to_json(args.json_out, orient="records", indent=1)
        Path(str(args.json_out) + ".timings.json").write_text(json.dumps({"timings": timings, "loop": loop,
                                                                          "load": os.getloadavg()}))
    return 0


def audit_step(variant: str, run_id: str, run_dir: Path, db: Path, folds: int, py: str, env: dict,
               timings: dict, label: str | None = None) -> int:
    """Audit run ``run_id`` with one FEATURES/FBANK_STATS/REPEATS setting; returns the number of suspects. Through
    ``python -m curation model-audit`` when the library accepts the log-mel setting; otherwise through the scoring
    command it would run (``python -m training.oos_scores``), then found and stored by the library's own function
    (``store_audit_of``: what ``model-audit`` does after scoring; ``model-evidence`` reads that audit)."""
    from curation import store
    from curation.audit.model_audit import FBANK_STATS, read_oos_scores, store_audit_of

    kind, fbank_stats, repeats, *rest = variant.split("/")
    context = rest[0] if rest else "discount"
    fbank_stats = "dynamics" if fbank_stats in ("-", "") else fbank_stats
    label = label or f"model-audit ({variant})"
    if fbank_stats in FBANK_STATS:
        return len(json.loads(step(label, [py, "-m", "curation", "model-audit", "--db", str(db), "--run", run_id,
                                           "--folds", str(folds), "--features", kind, "--fbank-stats", fbank_stats,
                                           "--repeats", repeats, "--context", context, "--json"], timings, env)))
    step(f"{label} [scores only: the library does not accept --fbank-stats {fbank_stats} yet]",
         [py, "-m", "training.oos_scores", "--run", str(run_dir), "--folds", str(folds), "--features", kind,
          "--fbank-stats", fbank_stats, "--repeats", repeats, "--context", context], timings, env)
    con = store.connect(db)
    try:
        return len(store_audit_of(con, run_id, read_oos_scores(run_dir)).suspects)
    finally:
        con.close()


def second_round(args, work: Path, db: Path, py: str, env: dict, timings: dict, variant: str) -> dict:
    """Close the loop once: the first run's model evidence (``model-evidence``) proposes merges; a simulated
    curator accepts a pair when both tags are surface forms of one demo concept (``concept_of_tag``: the demo's
    vocabulary, not any clip's truth) and rejects the rest; then export, pre-train and audit again (run r2).
    Returns what was proposed and accepted, and the second audit's scores under "result"."""
    from curation.audit.model_audit import read_oos_scores
    from curation.demo.synth import concept_of_tag

    started = time.perf_counter()
    audit_step(variant, "r1", work / "runs" / "r1", db, args.folds, py, env, timings,
               label="model-audit r1 again (round 2 starts)")
    evidence = json.loads(step("model-evidence", [py, "-m", "curation", "model-evidence", "--db", str(db), "--run",
                                                  "r1", "--json"], timings, env))
    flagged = [(r["tag_a"], r["tag_b"]) for r in evidence["merge"]]
    same = [(a, b) for a, b in flagged if concept_of_tag(a) is not None and concept_of_tag(a) == concept_of_tag(b)]
    # Union the accepted pairs into groups; each merges into its most frequent member.
    oos = read_oos_scores(work / "runs" / "r1")
    clips_of = dict(zip(oos.labels, oos.targets.sum(0)))
    parent: dict[str, str] = {}

    def root(tag: str) -> str:
        while parent.get(tag, tag) != tag:
            tag = parent[tag]
        return tag

    for a, b in same:
        parent[root(a)] = root(b)
    groups: dict[str, list[str]] = {}
    for tag in {t for pair in same for t in pair}:
        groups.setdefault(root(tag), []).append(tag)
    merges = []
    for members in groups.values():
        into = max(members, key=lambda t: (clips_of.get(t, 0), t))
        merges.append({"tags": sorted(members), "into": into})
        subprocess.run([py, "-m", "curation", "decide", "merge", *sorted(members), "--into", into, "--db", str(db),
                        "--by", "bench", "--reason", "bench: the model cannot tell them apart"], cwd=PROJECT,
                       check=True, capture_output=True, env=env)
    export2, run2 = work / "exports" / f"v{args.k}_round2", work / "runs" / "r2"
    step("export (round 2)", [py, "-m", "curation", "export", "--db", str(db), "--k", str(args.k), "--out",
                              str(export2), "--by", "bench"], timings, env)
    step("pretrain (round 2)", [py, "-m", "training.pretrain", "--export", str(export2), "--out", str(run2),
                                "--objective", "mtc", "--size", "tiny", "--steps", str(args.steps), "--device", "cpu",
                                "--set", "max_batch_s=40", "--set", "num_workers=0", "--set",
                                f"val_every={args.steps}", "--set", f"ckpt_every={args.steps}"], timings, env)
    step("import run (round 2)", [py, "-m", "curation", "runs", "import", str(run2), "--db", str(db)], timings, env)
    n_suspects = audit_step(variant, "r2", run2, db, args.folds, py, env, timings, label="model-audit r2")
    timings["round 2 in all"] = round(time.perf_counter() - started, 1)
    return {"flagged_pairs": len(flagged), "same_concept_pairs": len(same),
            "flagged": [f"{a}~{b}" for a, b in flagged], "merges": merges,
            "prune_evidence": [r["tag"] for r in evidence["prune"]],
            "result": (n_suspects, read_oos_scores(run2))}


if __name__ == "__main__":
    sys.exit(main())
