"""``python -m curation <command>``: every pipeline step as a batch command.

Place in the flow: the command-line face of the library; the app calls the same functions. This module only
builds the parser from the command families beside it (corpus, vocabulary, audit, extraction, runs, admin) and
dispatches; each family owns its arguments and what its commands do.

Example::

    python -m curation demo --db data/uts.duckdb --clips 600 --seed 0
    python -m curation ingest cuts.jsonl.gz --db data/uts.duckdb --on-bad-row skip
    python -m curation stats --db data/uts.duckdb --json
"""
from __future__ import annotations

import argparse
import sys

from curation.cli import admin, audit, corpus, extraction, model_audit, runs, vocabulary
from curation.errors import UtsError

# In the order `--help` lists them: the flow, then administration.
FAMILIES = (corpus, vocabulary, audit, extraction, runs, model_audit, admin)


def _db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help="DuckDB file (default: $UTS_DB, else data/uts.duckdb)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m curation", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for family in FAMILIES:
        family.add_commands(commands, _db_argument)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    family = next(f for f in FAMILIES if args.command in f.COMMANDS)  # argparse restricts the choices
    try:
        return family.run(args)
    except UtsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
