"""``python -m curation decide | suggest-merges | export | decisions``: curating the vocabulary and exporting it.

Example::

    python -m curation decide merge drum drums --into drum --db data/uts.duckdb --by ana --reason "plural"
    python -m curation suggest-merges --db data/uts.duckdb --top 20 --json
    python -m curation suggest-merges --db data/uts.duckdb --order confidence --k 1000
    python -m curation vocab compare ../shared/data/uts_vocab/label_800.json --db data/uts.duckdb --json
    python -m curation vocab seed ../shared/data/uts_vocab/label_800.json --db data/uts.duckdb --by ana
    python -m curation export --db data/uts.duckdb --k 800 --out exports/v800
    python -m curation decisions export --db data/uts.duckdb --out log.jsonl
    python -m curation decisions replay log.jsonl --db fresh.duckdb
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COMMANDS = ("decide", "suggest-merges", "export", "decisions", "vocab")


def add_commands(commands, db_argument) -> None:
    decide = commands.add_parser("decide", help="record a curation decision (append-only; undo is a decision too)")
    actions = decide.add_subparsers(dest="action", required=True)

    def decision_parser(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text)
        db_argument(sub)
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
    db_argument(suggest)
    suggest.add_argument("--top", type=int, help="at most this many groups")
    suggest.add_argument("--model", help="a local sentence-transformers folder (default: the bundled MiniLM)")
    suggest.add_argument("--json", action="store_true", help="print a JSON list")
    suggest.add_argument("--order", choices=("impact", "confidence"), default="impact",
                         help="impact (default): what accepting changes, weighted by confidence; or confidence")
    suggest.add_argument("--k", type=int, default=800, help="the top K whose membership the impact counts (800)")

    vocab = commands.add_parser("vocab", help="compare with / seed a published vocabulary (label_K.json)")
    vocab_actions = vocab.add_subparsers(dest="vocab_action", required=True)
    compare = vocab_actions.add_parser("compare", help="overlap at each K, rank correlation, tags in one list only")
    compare.add_argument("published", metavar="LABEL_K_JSON")
    db_argument(compare)
    compare.add_argument("--rank-by", choices=("tfidf", "df"), default="tfidf")
    compare.add_argument("--limit", type=int, default=20, help="tags listed per side in the text output (20)")
    compare.add_argument("--json", action="store_true", help="print one JSON object (every tag)")
    seed = vocab_actions.add_parser("seed", help="make a published list the preferred canonical merge targets")
    seed.add_argument("published", metavar="LABEL_K_JSON", nargs="?")
    db_argument(seed)
    seed.add_argument("--by", required=True, help="who seeds (stored with the list)")
    seed.add_argument("--clear", action="store_true", help="remove the seeded list instead")

    export = commands.add_parser("export", help="write label_K.json, label_K.txt and the filtered Lhotse cuts")
    db_argument(export)
    export.add_argument("--k", type=int, required=True, help="vocabulary size")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--rank-by", choices=("tfidf", "df"), default="tfidf")
    export.add_argument("--by", help="who exports (stored with the export record)")
    export.add_argument("--channels", choices=("first", "keep"), default="first",
                        help="multi-channel clips: first = a MonoCut on the first channel the clip uses (default; "
                             "the UTS recipe loads it unchanged); keep = a MultiCut with all its channels")
    export.add_argument("--min-duration", type=float, default=1.0, metavar="S",
                        help="duration window's lower end in seconds (default 1, the UTS recipe's)")
    export.add_argument("--max-duration", type=float, default=60.0, metavar="S",
                        help="duration window's upper end in seconds (default 60, the UTS recipe's)")
    export.add_argument("--drop-out-of-window", action="store_true",
                        help="leave out clips outside the window (default: keep them and count them; the recipe "
                             "drops them silently when it loads the cuts)")
    export.add_argument("--require-audio", action="store_true",
                        help="leave out clips whose audio file was not read here (default: keep and count them)")


    decisions = commands.add_parser("decisions", help="export the full decision log / replay it into a fresh db")
    log_actions = decisions.add_subparsers(dest="log_action", required=True)
    log_export = log_actions.add_parser("export", help="every decision and suggestion verdict as JSON lines")
    db_argument(log_export)
    log_export.add_argument("--out", required=True)
    log_replay = log_actions.add_parser("replay", help="append an exported log to a database of the same corpus "
                                                       "that has no decisions yet")
    log_replay.add_argument("log")
    db_argument(log_replay)


def run(args: argparse.Namespace) -> int:
    from curation import store  # imported here so that --help stays instant

    if args.command == "decide":
        from curation.vocabulary.decisions import Decision, record_decision

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
        from curation.vocabulary.suggestions import suggest_merges

        con = store.connect(args.db)
        try:
            suggestions = suggest_merges(con, top=args.top, model_path=args.model, k=args.k, order=args.order)
        finally:
            con.close()
        if args.json:
            print(json.dumps([s.as_dict() for s in suggestions], ensure_ascii=False))
        else:
            for s in suggestions:
                print(f"impact {s.impact:,.0f}  confidence {s.score:.2f}  {s.canonical} <- "
                      f"{', '.join(t for t in s.tags if t != s.canonical)}  [{s.effect}]  ({'; '.join(s.reasons)})")
        return 0
    if args.command == "vocab":
        return _vocab(args, store)
    if args.command == "export":
        from curation.vocabulary.export import export_vocabulary

        con = store.connect(args.db)
        try:
            record = export_vocabulary(con, k=args.k, out_dir=Path(args.out), by=args.by, rank_by=args.rank_by,
                                       channels=args.channels, min_duration_s=args.min_duration,
                                       max_duration_s=args.max_duration, drop_out_of_window=args.drop_out_of_window,
                                       require_audio=args.require_audio)
        finally:
            con.close()
        print(record.as_text(), file=sys.stderr)  # what was left out and why, for the person at the terminal
        print(json.dumps(record.as_dict(), indent=2))
        return 0
    from curation.vocabulary.decision_log import export_decision_log, replay_decision_log

    con = store.connect(args.db)
    try:
        if args.log_action == "export":
            summary = export_decision_log(con, Path(args.out))
        else:
            summary = replay_decision_log(con, Path(args.log))
    finally:
        con.close()
    print(f"{args.log_action}: {summary.decisions} decisions, {summary.suggestion_verdicts} suggestion verdicts "
          f"({summary.path})")
    return 0


def _vocab(args: argparse.Namespace, store) -> int:
    from curation.errors import UsageError
    from curation.vocabulary import published

    if args.vocab_action == "seed" and args.clear == bool(args.published):
        raise UsageError("vocab seed: expected a LABEL_K_JSON file, or --clear without one")
    labels = published.load_published(args.published) if args.published else []
    con = store.connect(args.db)
    try:
        if args.vocab_action == "seed":
            count = published.seed(con, labels, source=Path(args.published).name if args.published else "", by=args.by)
            print(f"seeded {count:,} labels from {args.published}: merge suggestions now map raw tags onto them "
                  "first" if count else "the seeded published vocabulary is cleared")
            return 0
        report = published.compare(con, labels, rank_by=args.rank_by)
    finally:
        con.close()
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False))
        return 0
    print(f"published: {report.published:,} labels; here: {report.ours:,} canonical tags ({report.rank_by}); "
          f"in both: {report.shared:,}")
    print("overlap of the top K: " + ", ".join(f"K={row['k']:,}: {row['shared']:,} ({row['share']:.0%})"
                                             for row in report.overlap))
    print(f"rank correlation over the shared tags: Spearman {report.spearman}, Kendall {report.kendall}")
    print(f"only in the published list ({len(report.only_published):,}; df here = clips with a raw tag so spelled): "
          + ", ".join(f"{row['label']} ({row['df_here']:,})" for row in report.only_published[: args.limit]))
    print(f"only in our top {report.published:,} ({len(report.only_ours):,}): "
          + ", ".join(f"{row['tag']} ({row['df']:,})" for row in report.only_ours[: args.limit]))
    return 0
