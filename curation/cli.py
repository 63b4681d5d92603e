"""``python -m curation <command>``: every pipeline step as a batch command.

Place in the flow: the command-line face of the library; the app calls the same functions.

Example::

    python -m curation demo --db data/uts.duckdb --clips 600 --seed 0
    python -m curation ingest cuts.jsonl.gz --db data/uts.duckdb --on-bad-row skip
    python -m curation stats --db data/uts.duckdb --json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from curation.errors import UtsError


def _db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help="DuckDB file (default: $UTS_DB, else data/uts.duckdb)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m curation", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="synthesise the demo corpus (audio, biased captions, tags) and ingest it")
    _db_argument(demo)
    demo.add_argument("--clips", type=int, default=600, help="number of clips (default 600)")
    demo.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same corpus")
    demo.add_argument("--out", help="folder for the demo audio and manifest (default: beside the database)")
    demo.add_argument("--if-empty", action="store_true",
                      help="do nothing when the database already holds clips (used by `make demo`)")

    ingest = commands.add_parser("ingest", help="ingest a manifest (Lhotse/JSONL/CSV/Parquet) or an audio folder")
    ingest.add_argument("path", help="manifest file or folder of audio files")
    _db_argument(ingest)
    ingest.add_argument("--audio-root", help="folder that relative audio paths are resolved against "
                                             "(default: the manifest's folder)")
    ingest.add_argument("--on-bad-row", choices=("raise", "skip"), default="raise",
                        help="raise: reject the whole file at the first bad row (default); skip: leave bad rows "
                             "out, count them and store why")
    ingest.add_argument("--extractor", default="manifest", help="provenance name stored with the file's tags")
    ingest.add_argument("--captioner", default="manifest",
                        help="captioner name for captions whose record does not name one")
    ingest.add_argument("--json", action="store_true", help="print the summary as JSON")

    decide = commands.add_parser("decide", help="record a curation decision (append-only; undo is a decision too)")
    actions = decide.add_subparsers(dest="action", required=True)

    def decision_parser(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text)
        _db_argument(sub)
        sub.add_argument("--by", required=True, help="who decides (stored with the decision)")
        sub.add_argument("--reason", help="why (stored with the decision)")
        return sub

    merge = decision_parser("merge", "merge tags into one (new or existing) tag")
    merge.add_argument("tags", nargs="+", metavar="TAG")
    merge.add_argument("--into", required=True, metavar="T")
    rename = decision_parser("rename", "rename a tag")
    rename.add_argument("tag", metavar="TAG")
    rename.add_argument("--into", "--to", dest="into", required=True, metavar="NEW")
    for name, help_text in (("prune", "exclude tags from every vocabulary"), ("restore", "undo the exclusion")):
        sub = decision_parser(name, help_text)
        sub.add_argument("tags", nargs="+", metavar="TAG")
    undo = decision_parser("undo", "undo an earlier decision (by id; undoing an undo redoes)")
    undo.add_argument("decision_id", type=int, metavar="DECISION_ID")
    for name, help_text in (("add-tag", "add a tag to one clip"), ("remove-tag", "remove a tag from one clip")):
        sub = decision_parser(name, help_text)
        sub.add_argument("clip_id", metavar="CLIP_ID")
        sub.add_argument("tag", metavar="TAG")

    suggest = commands.add_parser("suggest-merges", help="groups of tags that are likely one concept, best first")
    _db_argument(suggest)
    suggest.add_argument("--top", type=int, help="at most this many groups")
    suggest.add_argument("--model", help="a local sentence-transformers folder (default: the bundled MiniLM)")
    suggest.add_argument("--json", action="store_true", help="print a JSON list")

    export = commands.add_parser("export", help="write label_K.json, label_K.txt and the filtered Lhotse cuts")
    _db_argument(export)
    export.add_argument("--k", type=int, required=True, help="vocabulary size")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--rank-by", choices=("tfidf", "df"), default="tfidf")
    export.add_argument("--by", help="who exports (stored with the export record)")

    audit = commands.add_parser("audit", help="captioner audit campaigns")
    audit_actions = audit.add_subparsers(dest="audit_action", required=True)
    create = audit_actions.add_parser("create", help="a listening campaign with a stratified, seeded sample")
    _db_argument(create)
    create.add_argument("name")
    create.add_argument("--size", type=int, required=True, help="clips to sample")
    create.add_argument("--annotators", type=int, default=2, help="annotators per clip (default 2)")
    create.add_argument("--seed", type=int, default=0)
    create.add_argument("--by", required=True, help="who creates it")
    reference = audit_actions.add_parser(
        "import-reference", help="automatic verdicts from reference labels (CSV: ytid, start_s, "
                                 "audioset_label_ids, gama_caption) and the AudioSet ontology")
    _db_argument(reference)
    reference.add_argument("csv")
    reference.add_argument("--ontology", required=True, help="AudioSet ontology.json")
    reference.add_argument("--captioner", required=True, help="name of the model that wrote the captions")
    reference.add_argument("--name", required=True, help="campaign name")
    report = audit_actions.add_parser("report", help="per-tag precision with Wilson intervals, as JSON")
    _db_argument(report)
    report.add_argument("--campaign", required=True, help="campaign name")
    report.add_argument("--min-judged", type=int, default=1)

    from curation.cli_trust import add_trust_commands

    add_trust_commands(commands, _db_argument)  # users, backup, restore, decisions export|replay

    from curation.cli_extract import add_extraction_commands

    add_extraction_commands(commands, _db_argument)  # extract-tags, caption

    from curation.cli_runs import add_runs_commands

    add_runs_commands(commands, _db_argument)  # runs launch|list|import|cancel|show

    index = commands.add_parser("index-captions", help="(re)build the caption text index used by Browse search")
    _db_argument(index)

    stats = commands.add_parser("stats", help="corpus counts")
    _db_argument(stats)
    stats.add_argument("--json", action="store_true", help="print JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except UtsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from curation import store  # imported here so that --help stays instant

    if args.command == "demo":
        from curation.demo import build_and_ingest_demo, default_demo_dir

        db_path = store.resolve_db_path(args.db)
        con = store.connect(db_path)
        try:
            existing = store.corpus_stats(con)["clips"]
            if args.if_empty and existing:
                print(f"{db_path} already holds {existing:,} clips; not rebuilding the demo corpus")
                return 0
            out = Path(args.out) if args.out else default_demo_dir(db_path)
            result = build_and_ingest_demo(con, out, n_clips=args.clips, seed=args.seed)
        finally:
            con.close()
        print(f"demo corpus of {args.clips} clips (seed {args.seed}) synthesised in {result.seconds_to_build:.1f} s "
              f"under {result.corpus_dir}")
        print(result.ingest.as_text())
        return 0
    if args.command == "ingest":
        from curation.ingest import ingest_path

        con = store.connect(args.db)
        try:
            summary = ingest_path(con, Path(args.path), audio_root=args.audio_root, on_bad_row=args.on_bad_row,
                                  extractor=args.extractor, captioner=args.captioner)
        finally:
            con.close()
        print(json.dumps(summary.as_dict(), indent=2) if args.json else summary.as_text())
        return 0
    if args.command == "decide":
        from curation.decisions import Decision, record_decision

        decision = {
            "merge": lambda: Decision.merge(args.tags, into=args.into),
            "rename": lambda: Decision.rename(args.tag, to=args.into),
            "prune": lambda: Decision.prune(args.tags),
            "restore": lambda: Decision.restore(args.tags),
            "undo": lambda: Decision.undo(args.decision_id),
            "add-tag": lambda: Decision.clip_add(args.clip_id, args.tag),
            "remove-tag": lambda: Decision.clip_remove(args.clip_id, args.tag),
        }[args.action]()
        con = store.connect(args.db)
        try:
            record = record_decision(con, decision, by=args.by, reason=args.reason)
        finally:
            con.close()
        print(f"decision #{record.decision_id}: {record.describe()} (by {record.decided_by})")
        return 0
    if args.command == "suggest-merges":
        from curation.suggestions import suggest_merges

        con = store.connect(args.db)
        try:
            suggestions = suggest_merges(con, top=args.top, model_path=args.model)
        finally:
            con.close()
        if args.json:
            print(json.dumps([s.as_dict() for s in suggestions], ensure_ascii=False))
        else:
            for s in suggestions:
                print(f"{s.score:.2f}  {s.canonical} <- {', '.join(t for t in s.tags if t != s.canonical)}  "
                      f"({'; '.join(s.reasons)})")
        return 0
    if args.command == "export":
        from curation.export import export_vocabulary

        con = store.connect(args.db)
        try:
            record = export_vocabulary(con, k=args.k, out_dir=Path(args.out), by=args.by, rank_by=args.rank_by)
        finally:
            con.close()
        print(json.dumps(record.as_dict(), indent=2))
        return 0
    if args.command == "audit":
        return _run_audit(args, store)
    if args.command in ("users", "backup", "restore", "decisions"):
        from curation.cli_trust import run_trust

        return run_trust(args)
    if args.command in ("extract-tags", "caption"):
        from curation.cli_extract import run_extraction_command

        return run_extraction_command(args)
    if args.command == "runs":
        from curation.cli_runs import run_runs_command

        return run_runs_command(args)
    if args.command == "index-captions":
        import time

        from curation.text_index import index_captions

        con = store.connect(args.db)
        try:
            started = time.perf_counter()
            index_captions(con)
        finally:
            con.close()
        print(f"caption index rebuilt in {time.perf_counter() - started:.1f} s")
        return 0
    if args.command == "stats":
        con = store.connect(args.db, read_only=store.resolve_db_path(args.db).exists())
        try:
            stats = store.corpus_stats(con)
        finally:
            con.close()
        if args.json:
            print(json.dumps(stats))
        else:
            print(f"{stats['clips']:,} clips, {stats['captions']:,} captions, {stats['tag_rows']:,} tag rows, "
                  f"{stats['distinct_tags']:,} distinct tags")
            print("domains: " + ", ".join(f"{k} {v:,}" for k, v in stats["domains"].items()))
            print("sources: " + ", ".join(f"{k} {v:,}" for k, v in stats["sources"].items()))
        return 0
    raise AssertionError(f"unhandled command {args.command}")  # argparse restricts the choices


def _run_audit(args: argparse.Namespace, store) -> int:
    con = store.connect(args.db)
    try:
        if args.audit_action == "create":
            from curation.audit import create_campaign

            campaign_id = create_campaign(con, args.name, sample_size=args.size, by=args.by,
                                          annotators_per_clip=args.annotators, seed=args.seed)
            print(f"campaign #{campaign_id} {args.name!r}: {args.size} clips x {args.annotators} annotators")
        elif args.audit_action == "import-reference":
            from curation.reference_audit import import_reference_audit

            summary = import_reference_audit(con, Path(args.csv), Path(args.ontology), captioner=args.captioner,
                                             name=args.name)
            print(json.dumps(summary.__dict__))
        else:
            from curation.audit_report import campaign_report

            report = campaign_report(con, args.campaign)
            table = report.precision[report.precision["judged"] >= args.min_judged]
            print(table.to_json(orient="records"))
    finally:
        con.close()
    return 0
