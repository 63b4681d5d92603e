"""Trust figures: backup / restore and decision-log export / replay at UTS scale, the manifest fuzz test's case
count and time, and the cost of one password check.

Uses a copy of the ingest benchmark's database (/tmp/uts_bench/bench.duckdb, 360,678 clips, written by
bench/ingest_scale.py); without it the scale part is skipped with a note (build it with `make bench-ingest`).

    .venv/bin/python bench/trust_scale.py [--workdir /tmp/uts_bench] [--skip-fuzz]
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from curation import store  # noqa: E402
from curation.admin.backup import backup_database, restore_database  # noqa: E402
from curation.vocabulary.decision_log import export_decision_log, replay_decision_log  # noqa: E402
from curation.vocabulary.decisions import Decision, record_decision  # noqa: E402


def _timed(label: str, action):
    started = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - started
    print(f"{label}: {seconds:.2f} s")
    return result, seconds


def scale(workdir: Path, n_decisions: int) -> None:
    source = workdir / "bench.duckdb"
    if not source.exists():
        print(f"skipped: {source} does not exist (build it with `make bench-ingest`)")
        return
    work = workdir / "trust"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    live = work / "live.duckdb"
    shutil.copy(source, live)
    con = store.connect(live)
    try:
        clips = con.execute("SELECT count(*) FROM clips").fetchall()[0][0]
        tag_rows = con.execute("SELECT count(*) FROM clip_tags").fetchall()[0][0]
        # Merge pairs of frequent raw tags so that the log has real content.
        tags = [row[0] for row in con.execute(
            "SELECT t.tag FROM clip_tags ct JOIN tags t USING (tag_id) GROUP BY t.tag ORDER BY count(*) DESC "
            "LIMIT ?", [2 * n_decisions]).fetchall()]
        for a, b in zip(tags[0::2], tags[1::2]):
            record_decision(con, Decision.merge([b], into=a), by="bench")
        print(f"database: {clips:,} clips, {tag_rows:,} tag rows, {source.stat().st_size / 1e6:,.0f} MB; "
              f"{n_decisions} decisions recorded")
        summary, _ = _timed("backup (COPY FROM DATABASE into a new file)",
                            lambda: backup_database(con, work / "backup.duckdb"))
        print(f"  backup file {summary.bytes / 1e6:,.0f} MB, {summary.tables} tables, {summary.rows:,} rows")
        _timed(f"decisions export ({n_decisions} decisions)", lambda: export_decision_log(con, work / "log.jsonl"))
    finally:
        con.close()
    restored, _ = _timed("restore into a new database file", lambda: restore_database(
        work / "backup.duckdb", work / "restored.duckdb"))
    print(f"  restored {restored.rows:,} rows")
    fresh = work / "fresh.duckdb"
    shutil.copy(source, fresh)
    con = store.connect(fresh)
    try:
        _timed(f"decisions replay into a fresh copy of the corpus ({n_decisions} decisions)",
               lambda: replay_decision_log(con, work / "log.jsonl"))
    finally:
        con.close()
    shutil.rmtree(work, ignore_errors=True)


def fuzz() -> None:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                             "tests/test_fuzz_manifest.py"], cwd=PROJECT, capture_output=True, text=True)
    line = re.search(r"fuzz: .*", result.stdout)
    print(f"fuzz test: {line.group(0) if line else result.stdout[-400:]} "
          f"(pytest {time.perf_counter() - started:.1f} s, exit {result.returncode})")


def password_check() -> None:
    import tempfile

    from curation.admin.users import add_user, verify_password

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "users.json"
        add_user(path, "ana", role="admin", password="a long password")  # the first user is an admin
        started = time.perf_counter()
        for _ in range(20):
            verify_password(path, "ana", "a long password")
        print(f"password check (scrypt n=2^14, r=8): {(time.perf_counter() - started) / 20 * 1000:.0f} ms each")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/uts_bench")
    parser.add_argument("--decisions", type=int, default=50)
    parser.add_argument("--skip-fuzz", action="store_true")
    args = parser.parse_args()
    password_check()
    scale(Path(args.workdir), args.decisions)
    if not args.skip_fuzz:
        fuzz()


if __name__ == "__main__":
    main()
