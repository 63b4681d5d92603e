"""Backups and restores of the whole database.

Place in the flow: beside everything (``python -m curation backup --db DB --out FILE`` / ``restore FILE --db DB``).
A backup is a consistent copy (DuckDB ``COPY FROM DATABASE`` in one transaction) written under a temporary name
and renamed into place when complete, so a crash never leaves a file that looks like a finished backup. A
restore checks the backup's schema version (a backup from newer code is refused; an older one is migrated),
refuses to overwrite a database that holds data unless forced, and also builds the new file beside the target
before renaming it into place.

Example::

    summary = backup_database(con, Path("backups/uts-2026-11-27.duckdb"))
    restore_database(Path("backups/uts-2026-11-27.duckdb"), Path("data/uts.duckdb"), force=True)
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from curation import store
from curation.admin import permissions
from curation.errors import UtsError
from curation.store import backup as store_backup


class BackupError(UtsError, ValueError):
    """A backup or restore that cannot be carried out (target exists, not a UTS database, ...)."""


@dataclass(frozen=True)
class BackupSummary:
    path: str
    schema_version: int
    tables: int
    rows: int
    bytes: int
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def _remove_with_wal(path: Path) -> None:
    path.unlink(missing_ok=True)
    Path(f"{path}.wal").unlink(missing_ok=True)


def backup_database(con: duckdb.DuckDBPyConnection, out: Path, *, force: bool = False) -> BackupSummary:
    """A consistent copy of ``con``'s database at ``out`` (refused if ``out`` exists, unless ``force``)."""
    permissions.authorize("backup")  # in the app: admins only
    out = Path(out)
    if out.exists() and not force:
        raise BackupError(f"{out}: exists already; choose a new file name for the backup or pass --force")
    if out.is_dir():
        raise BackupError(f"{out}: is a folder; expected a file name for the backup")
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    partial = _partial(out)
    _remove_with_wal(partial)
    try:
        store_backup.copy_database_to(con, partial)
        os.replace(partial, out)
    finally:
        _remove_with_wal(partial)
    rows = store_backup.user_table_rows(con)
    return BackupSummary(path=str(out), schema_version=store.schema_version(con), tables=len(rows),
                         rows=sum(rows.values()), bytes=out.stat().st_size, seconds=time.perf_counter() - started)


def restore_database(backup: Path, db_path: Path, *, force: bool = False) -> BackupSummary:
    """Replace the database at ``db_path`` with the backup; see the module docstring for the checks."""
    backup, db_path = Path(backup), Path(db_path)
    if not backup.is_file():
        raise BackupError(f"{backup}: no such backup file")
    started = time.perf_counter()
    try:
        source = store.connect(backup, read_only=True)
    except duckdb.Error as exc:
        raise BackupError(f"{backup}: expected a DuckDB backup written by `python -m curation backup`, found a "
                          f"file DuckDB cannot open ({str(exc).splitlines()[0]})") from None
    try:
        version = store.schema_version(source)
        if version == 0:
            raise BackupError(f"{backup}: a DuckDB file, but not a UTS Studio database (no schema_migrations)")
        # The target must be free (no app holding it) and, unless forced, hold no data.
        target = store.connect(db_path)
        try:
            held = {name: n for name, n in store_backup.user_table_rows(target).items()
                    if n and name != "schema_migrations"}
        finally:
            target.close()
        if held and not force:
            listed = ", ".join(f"{name} {n:,}" for name, n in sorted(held.items())[:6])
            raise BackupError(f"{db_path}: holds data ({listed}); restoring would overwrite it. Back it up first, "
                              "then pass --force, or restore into a new --db")
        partial = _partial(db_path)
        _remove_with_wal(partial)
        try:
            store_backup.copy_database_to(source, partial)
            Path(f"{db_path}.wal").unlink(missing_ok=True)  # an old log must never replay onto the new file
            os.replace(partial, db_path)
        finally:
            _remove_with_wal(partial)
    finally:
        source.close()
    restored = store.connect(db_path)  # migrates a backup from older code up to this schema
    try:
        rows = store_backup.user_table_rows(restored)
        return BackupSummary(path=str(db_path), schema_version=store.schema_version(restored), tables=len(rows),
                             rows=sum(rows.values()), bytes=db_path.stat().st_size,
                             seconds=time.perf_counter() - started)
    finally:
        restored.close()
