"""``python -m curation audit create | import-reference | report``: captioner audit campaigns.

Example::

    python -m curation audit create first-pass --size 200 --annotators 2 --by ana --db data/uts.duckdb
    python -m curation audit report --campaign first-pass --db data/uts.duckdb
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

COMMANDS = ("audit",)


def add_commands(commands, db_argument) -> None:
    audit = commands.add_parser("audit", help="captioner audit campaigns")
    audit_actions = audit.add_subparsers(dest="audit_action", required=True)
    create = audit_actions.add_parser("create", help="a listening campaign with a stratified, seeded sample")
    db_argument(create)
    create.add_argument("name")
    create.add_argument("--size", type=int, required=True, help="clips to sample")
    create.add_argument("--annotators", type=int, default=2, help="annotators per clip (default 2)")
    create.add_argument("--seed", type=int, default=0)
    create.add_argument("--by", required=True, help="who creates it")
    create.add_argument("--suspects-of", metavar="RUN_ID", default=None,
                        help="suspects first: the clips this run's model audit disputes most come first "
                             "(python -m curation model-audit), a stratified sample fills the rest")
    reference = audit_actions.add_parser(
        "import-reference", help="automatic verdicts from reference labels (CSV: ytid, start_s, "
                                 "audioset_label_ids, gama_caption) and the AudioSet ontology")
    db_argument(reference)
    reference.add_argument("csv")
    reference.add_argument("--ontology", required=True, help="AudioSet ontology.json")
    reference.add_argument("--captioner", required=True, help="name of the model that wrote the captions")
    reference.add_argument("--name", required=True, help="campaign name")
    report = audit_actions.add_parser("report", help="per-tag precision with Wilson intervals, as JSON")
    db_argument(report)
    report.add_argument("--campaign", required=True, help="campaign name")
    report.add_argument("--min-judged", type=int, default=1)


def run(args: argparse.Namespace) -> int:
    from curation import store  # imported here so that --help stays instant

    con = store.connect(args.db)
    try:
        if args.audit_action == "create":
            from curation.audit.campaigns import create_campaign

            campaign_id = create_campaign(con, args.name, sample_size=args.size, by=args.by,
                                          annotators_per_clip=args.annotators, seed=args.seed,
                                          suspects_of_run=args.suspects_of)
            print(f"campaign #{campaign_id} {args.name!r}: {args.size} clips x {args.annotators} annotators")
        elif args.audit_action == "import-reference":
            from curation.audit.reference import import_reference_audit

            summary = import_reference_audit(con, Path(args.csv), Path(args.ontology), captioner=args.captioner,
                                             name=args.name)
            print(json.dumps(summary.__dict__))
        else:
            from curation.audit.report import campaign_report

            report = campaign_report(con, args.campaign)
            table = report.precision[report.precision["judged"] >= args.min_judged]
            print(table.to_json(orient="records"))
    finally:
        con.close()
    return 0
