"""How far the model audit could find the demo's reverb hallucination with these features, if its head had been
trained on the truth (issue 18): a measurement of the bound, not used by the product.

The audit's head learns "reverb" from the captioner's labels, so what it can find is bounded twice: by what the
features hear (a room on steady rain barely shows) and by what noisy labels teach (the planted claims themselves).
This script separates the two. For a ``bench/model_audit_eval.py`` work folder and each of its runs, it fits the
same head on the same features (the run's frozen encoder + the log-mel statistics the audit used, the same folds
and cross-fits) to the TRUE reverb flag from ``clip_truth``, then ranks the very candidates the audit ranked (the
clips whose export labels assert reverb or a synonym) by that oracle's p(reverb). Precision at N of that ranking
is what the audit's features allow with perfect labels; the audit's own figure sits between it and random.

    .venv/bin/python bench/model_audit_bound.py --work /tmp/ma4 --runs r1=scores_both_fine-decay_3 r2=r2
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="a bench/model_audit_eval.py work folder")
    parser.add_argument("--runs", nargs="+", default=["r1=scores_both_fine-decay_3", "r2=r2"],
                        help="NAME=FOLDER: the training run NAME (its checkpoint and export) and the folder under "
                             "WORK/runs holding the audit's model_audit/oos_scores.* for it")
    parser.add_argument("--concept", default="reverb")
    args = parser.parse_args()
    from curation import store
    from curation.audit.model_audit import OosScores, evaluate_planted_biases, read_oos_scores
    from curation.demo.synth import CAPTIONER_BIASES, concept_of_tag
    from curation.store import corpus as store_corpus
    from training.data import load_export
    from training.oos_scores import pooled_features, repeated_cross_fit
    from training.probe import load_checkpoint, resolve_checkpoint

    con = store.connect(args.work / "uts.duckdb", read_only=True)
    truth = list(store_corpus.iter_table_rows(con, "clip_truth"))
    con.close()
    true_tags = {str(r[0]): set(r[1]) for r in truth}
    biases = [b for b in CAPTIONER_BIASES if b.tag == args.concept]
    pd.set_option("display.width", 250)
    for spec in args.runs:
        name, folder = spec.split("=", 1)
        run_dir = args.work / "runs" / name
        oos = read_oos_scores(args.work / "runs" / folder)
        meta = oos.meta
        started = time.perf_counter()
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        max_clip_s = float((config.get("config") or {}).get("max_clip_s", 10.0))
        export = load_export(Path(config["export"]["dir"]), max_clip_s=max_clip_s)
        ckpt = load_checkpoint(resolve_checkpoint(run_dir)) if meta["features"] != "fbank" else None
        clip_ids, x = pooled_features(export, ckpt, meta["features"], max_clip_s=max_clip_s, device="cpu",
                                      fbank_stats=meta.get("fbank_stats") or "fine-decay")
        if clip_ids != list(oos.clip_ids):
            sys.exit(f"{folder}: its scores are not in the export's clip order")
        y_true = np.array([[args.concept in true_tags[c]] for c in clip_ids], dtype=np.uint8)
        oracle, _ = repeated_cross_fit(x, y_true, clip_ids, n_folds=int(meta["folds"]), seed=int(meta["seed"]),
                                       repeats=int(meta.get("repeats") or 1))
        # The audit's scores (what it judges asserted tags by) with every column of the concept replaced by the
        # oracle's p: the same candidates, ranked by what a head trained on the truth hears.
        scores = np.array(oos.dispute_scores, dtype=np.float32)
        columns = [j for j, t in enumerate(oos.labels) if concept_of_tag(t) == args.concept]
        scores[:, columns] = oracle[:, [0]]
        tables = {}
        for label, matrix in (("audit", np.asarray(oos.dispute_scores)), ("oracle head", scores)):
            variant = OosScores(oos.clip_ids, oos.labels, matrix, oos.targets, oos.folds, oos.meta)
            table = evaluate_planted_biases(variant, truth, biases, concept_of_tag)
            table = table[table.looked_for == "hallucination"]
            tables[label] = table.set_index(["bias", "labels"])[["candidates", "planted", "random_precision_at_n",
                                                                 "precision_at_n"]]
        both = pd.concat(tables, axis=1)
        random = both[("audit", "random_precision_at_n")]
        audit, bound = both[("audit", "precision_at_n")], both[("oracle head", "precision_at_n")]
        both[("share of the bound's lift", "")] = (audit - random) / (bound - random)
        print(f"\n{args.work.name} {name} ({meta['features']}/{meta.get('fbank_stats')}/{meta.get('repeats')}, "
              f"{len(clip_ids)} clips, {time.perf_counter() - started:.0f} s):\n{both.round(3).to_string()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
