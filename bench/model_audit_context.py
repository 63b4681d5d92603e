"""An experiment on the model audit's ranking (issue 18), not used by the product: discount what a clip's other
tags already predict.

Why try it: after the model's own merges, the demo's reverb hallucination is mostly held back by truly reverberant
environmental clips (steady rain, wind, an engine), where the audio barely shows a room, so p(reverb) stays near the
tag's low rate there and the true claims look disputed. A context-adjusted probability divides out how likely the
tag is given the caption's other tags (a cross-fitted logistic regression on the captioner's own labels, no audio,
no truth):

    adjusted = sigmoid(logit p_audio - (logit p_context - logit base rate))

so a low p where the context also expects little is no longer a dispute, and a low p where the context expects the
tag (music: "reverb" asserted on half of it) is. Reads the out-of-sample scores a ``bench/model_audit_eval.py`` work
folder holds and evaluates both rankings against the demo's planted biases (``clip_truth``, used only to measure).

    .venv/bin/python bench/model_audit_context.py --work /tmp/ma4 --runs scores_both_fine-decay_3 r2
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))


def context_probabilities(targets: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """(N, K): P(tag j | the clip's other asserted tags), each clip from a model fitted on the other folds."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(targets, dtype=float)
    out = np.zeros(y.shape)
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        for j in range(y.shape[1]):
            x = np.delete(y, j, axis=1)
            if y[train, j].min() == y[train, j].max():
                out[test, j] = y[train, j].mean()
                continue
            out[test, j] = LogisticRegression(max_iter=1000).fit(x[train], y[train, j]).predict_proba(x[test])[:, 1]
    return out


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="a bench/model_audit_eval.py work folder")
    parser.add_argument("--runs", nargs="+", default=["scores_both_fine-decay_3", "r2"],
                        help="folders under WORK/runs holding model_audit/oos_scores.*")
    args = parser.parse_args()
    from curation import store
    from curation.audit.model_audit import OosScores, evaluate_planted_biases, read_oos_scores
    from curation.demo.synth import CAPTIONER_BIASES, concept_of_tag
    from curation.store import corpus as store_corpus

    con = store.connect(args.work / "uts.duckdb", read_only=True)
    truth = list(store_corpus.iter_table_rows(con, "clip_truth"))
    con.close()
    attributes = {str(r[0]): json.loads(r[4]) for r in truth}
    pd.set_option("display.width", 250)
    for run in args.runs:
        oos = read_oos_scores(args.work / "runs" / run)
        scores = np.asarray(oos.scores, dtype=np.float64)
        context = context_probabilities(oos.targets, oos.folds)
        base = np.clip(oos.targets.mean(0), 1e-3, 1 - 1e-3)
        adjusted = 1 / (1 + np.exp(-(logit(scores) - (logit(context) - logit(base)[None, :]))))
        tables = {}
        for name, matrix in (("plain", scores), ("context-adjusted", adjusted)):
            variant = OosScores(oos.clip_ids, oos.labels, matrix, oos.targets, oos.folds, oos.meta)
            table = evaluate_planted_biases(variant, truth, CAPTIONER_BIASES, concept_of_tag)
            table["lift"] = table["precision_at_n"] / table["random_precision_at_n"]
            tables[name] = table.set_index(["bias", "concept", "looked_for"])[
                ["candidates", "planted", "random_precision_at_n", "precision_at_n", "lift", "flagged",
                 "flagged_precision"]]
            # What the top N reverb suspects are, by the truth (domain, reverberant or not).
            columns = [j for j, t in enumerate(oos.labels) if concept_of_tag(t) == "reverb"]
            asserted = oos.targets[:, columns].any(1)
            p = np.where(oos.targets[:, columns], matrix[:, columns], 1.0).min(1)
            rows = np.nonzero(asserted)[0]
            rows = rows[np.argsort(p[rows], kind="stable")]
            planted = sum(1 for i in rows if attributes[oos.clip_ids[i]]["layers"][0] == "music"
                          and not attributes[oos.clip_ids[i]]["reverb"])
            top = Counter((attributes[oos.clip_ids[i]]["layers"][0],
                           "reverberant" if attributes[oos.clip_ids[i]]["reverb"] else "dry") for i in rows[:planted])
            print(f"{run} {name}: top {planted} reverb suspects by domain: {dict(sorted(top.items()))}")
        print(f"\n{run}:\n{pd.concat(tables, axis=1).round(3).to_string()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
