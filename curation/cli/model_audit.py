"""``python -m curation model-audit`` / ``model-evidence``: the trained encoder audits the captioner (suspect tags,
best first) and gives the vocabulary model-based merge and prune evidence.

Scores every clip of a finished run's export out of sample (k-fold cross-fitting, ``training.oos_scores``; reused
when the run already has scores with the same settings), flags suspected hallucinations and misses with per-tag
confident-learning thresholds (curation/audit/model_audit.py) and stores them for the run.

Example::

    python -m curation model-audit --db data/uts.duckdb --run mtc_tiny_k50 --folds 5 --json
    # [{"clip_id": "demo-000123", "tag": "reverb", "kind": "hallucination", "score": 0.93}, ...]
    python -m curation model-audit --db data/uts.duckdb --run mtc_tiny_k50 --campaign pilot   # beside an audit
    python -m curation model-evidence --db data/uts.duckdb --run mtc_tiny_k50 --json
    # {"run_id": ..., "merge": [{"tag_a": "alarm", "tag_b": "siren", "separability": 0.55, ...}], "prune": [...]}

``model-evidence`` (curation/audit/model_overlap.py): tags the model cannot tell apart (merge evidence) and tags it
predicts no better than chance (prune evidence), named in today's vocabulary.
"""
from __future__ import annotations

import argparse
import json

COMMANDS = ("model-audit", "model-evidence")


def add_commands(commands, db_argument) -> None:
    audit = commands.add_parser("model-audit", help="out-of-sample scores of a finished run dispute the captioner's "
                                                    "tags: suspected hallucinations and misses, best first")
    db_argument(audit)
    audit.add_argument("--run", required=True, help="run id (a finished run, see: python -m curation runs list)")
    audit.add_argument("--folds", type=int, default=5, help="cross-fitting folds (default 5)")
    audit.add_argument("--features", choices=("encoder", "fbank", "both"), default="both",
                       help="what the held-out heads see: the run's frozen encoder's pooled frames, label-free "
                            "log-mel statistics, or both (default: found the planted demo biases best, "
                            "bench/model_audit_eval.py)")
    # curation.audit.model_audit.FBANK_STATS / DEFAULT_FBANK_STATS, written out: the parser is built for every
    # command and importing that module (pandas) here would slow them all (a test keeps the two equal).
    audit.add_argument("--fbank-stats", choices=("moments", "dynamics", "decay", "fine-decay"), default="fine-decay",
                       help="log-mel statistics the heads see: moments (mean, std per bin), dynamics (also how "
                            "levels rise, fall and fluctuate), decay (dynamics plus how fast levels fall and rise, "
                            "binned by the room decay time they match) or fine-decay (also those rates per mel bin "
                            "over 30 ms; default: it predicts the captioner's labels best out of sample)")
    audit.add_argument("--repeats", type=int, default=3,
                       help="cross-fits with different fold seeds, averaged (default 3)")
    audit.add_argument("--context", choices=("discount", "none"), default="discount",
                       help="discount (default): an asserted tag is judged by a second head that also saw the "
                            "caption's other tags, held at their mean (a hallucination the caption's context drives, "
                            "'reverb' because 'music', is not excused by the sound of that context); none: one head "
                            "judges asserted and omitted tags alike")
    audit.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where clips are encoded")
    audit.add_argument("--recompute", action="store_true", help="score again even if the run has current scores")
    audit.add_argument("--limit", type=int, default=None, help="print at most this many suspects")
    audit.add_argument("--campaign", default=None,
                       help="an audit campaign: print the model's precision estimate per tag beside the audited one")
    audit.add_argument("--json", action="store_true", help='print [{"clip_id", "tag", "kind", "score"}] best first')
    evidence = commands.add_parser("model-evidence", help="merge and prune evidence from a run's model audit: tags "
                                                          "the model cannot tell apart, tags it cannot predict")
    db_argument(evidence)
    evidence.add_argument("--run", required=True, help="a run with a model audit (python -m curation model-audit)")
    evidence.add_argument("--all-pairs", action="store_true",
                          help="every screened pair with its verdict, not only those the model cannot tell apart")
    evidence.add_argument("--json", action="store_true",
                          help='print {"run_id", "merge": [{"tag_a", "tag_b", "separability", "overlap", ...}], '
                               '"prune": [{"tag", "asserted", "auc", "auc_low", "auc_high", "verdict"}]}')


def run(args: argparse.Namespace) -> int:
    if args.command == "model-evidence":
        return _evidence(args)
    return _audit(args)


def _evidence(args: argparse.Namespace) -> int:
    from curation import store
    from curation.audit.model_overlap import evidence_records, model_evidence
    from curation.vocabulary.decisions import list_decisions, replay

    con = store.connect(args.db, read_only=True)
    try:
        evidence = model_evidence(con, args.run, state=replay(list_decisions(con)))
    finally:
        con.close()
    records = evidence_records(evidence, all_pairs=args.all_pairs)
    if args.json:
        print(json.dumps(records))
        return 0
    print(f"run {args.run}: {len(evidence.pairs)} pairs of tags the model confuses compared, "
          f"{len(records['merge'])} the model cannot tell apart (merge evidence); "
          f"{len(records['prune'])} tags it predicts no better than chance (prune evidence)")
    for row in records["merge"]:
        print(f"  merge?  {row['tag_a']} ~ {row['tag_b']}: separability {row['separability']:.2f} "
              f"({row['a_only']} + {row['b_only']} clips with only one of them) [{row['verdict']}]")
    for row in records["prune"]:
        print(f"  prune?  {row['tag']}: AUC {row['auc']:.2f} (95% {row['auc_low']:.2f}-{row['auc_high']:.2f}) on "
              f"{row['asserted']} clips")
    return 0


def _audit(args: argparse.Namespace) -> int:
    from curation import store
    from curation.audit.model_audit import precision_comparison, run_model_audit, suspects_records

    con = store.connect(args.db)
    try:
        audit = run_model_audit(con, args.run, folds=args.folds, features=args.features, device=args.device,
                                recompute=args.recompute, fbank_stats=args.fbank_stats, repeats=args.repeats,
                                context=args.context)
        records = suspects_records(audit.suspects, args.limit)
        if args.json and args.campaign is None:
            print(json.dumps(records))
            return 0
        comparison = precision_comparison(con, args.run, args.campaign) if args.campaign is not None else None
        if args.json:
            print(json.dumps({"suspects": records, "precision": json.loads(comparison.to_json(orient="records"))}))
            return 0
        meta = audit.meta
        kinds = audit.suspects["kind"].value_counts()
        how = "reused" if audit.reused_scores else f"{meta.get('seconds')} s"
        print(f"run {args.run}: {meta.get('n_clips')} clips x {meta.get('n_tags')} tags scored out of sample "
              f"({meta.get('folds')} folds, {meta.get('features')} features, {how}); "
              f"{int(kinds.get('hallucination', 0))} suspected hallucinations, {int(kinds.get('miss', 0))} misses"
              + (f"; {audit.unknown_clips} export clips not in this database (not stored)" if audit.unknown_clips
                 else ""))
        for r in records[: args.limit or 20]:
            print(f"  {r['score']:.3f}  {r['kind']:13s}  {r['tag']:20s}  {r['clip_id']}")
        table = comparison if comparison is not None else audit.tags
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    finally:
        con.close()
    return 0
