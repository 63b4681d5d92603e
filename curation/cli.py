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
