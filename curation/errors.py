"""Typed errors of the library: each says what failed, where, what was expected and the fix.

Place in the flow: raised by every step (ingest, store, CLI) and printed by the CLI as one line on stderr.
Example: ``raise ManifestError(path, 12, "id", found=None, expected="a non-empty string")``.
"""
from __future__ import annotations

from pathlib import Path


class UtsError(Exception):
    """Base class: every error the library raises on purpose."""


def _short_repr(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class ManifestError(UtsError, ValueError):
    """A manifest (file, line, field) does not hold what the ingest expects."""

    def __init__(self, path: str | Path, line: int | None, field: str | None, *, found: object,
                 expected: str, hint: str | None = None, found_is_description: bool = False) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.found = found if found_is_description else _short_repr(found)
        self.expected = expected
        self.hint = hint
        where = self.path if line is None else f"{self.path}:{line}"
        what = f"field '{field}': " if field else ""
        message = f"{where}: {what}expected {expected}, found {self.found}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)

    @property
    def reason(self) -> str:
        """The message without the location, as stored for a skipped row."""
        what = f"field '{self.field}': " if self.field else ""
        return f"{what}expected {self.expected}, found {self.found}"


class SchemaVersionError(UtsError):
    """The database was written by a newer version of UTS Studio than this code knows."""

    def __init__(self, path: str, database_version: int, code_version: int) -> None:
        self.database_version = database_version
        self.code_version = code_version
        super().__init__(
            f"{path}: database schema version {database_version} is newer than this code's schema version "
            f"{code_version}; upgrade UTS Studio (git pull && make install) or open another database")


class StoreBusyError(UtsError):
    """Another process holds the DuckDB file (DuckDB allows one writing process)."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(
            f"{path}: the database is in use by another process (the app or another command): {detail}. "
            "Stop that process, or point this command at another file with --db")


class UsageError(UtsError):
    """A command was called with arguments that cannot work together."""


class EmptyExportError(UsageError):
    """An export that would hold no clip: nothing is written and the reasons are counted (``reasons``). A
    UsageError, so that every caller that reports a refused request reports this one too."""

    def __init__(self, k: int, reasons: dict[str, int], hints: list[str]) -> None:
        self.k = k
        self.reasons = reasons
        counted = "; ".join(f"{n:,} {why}" for why, n in reasons.items() if n) or "the corpus holds no clips"
        message = f"the export at K={k} would hold no clips, so nothing was written: {counted}"
        if hints:
            message += " (" + "; ".join(hints) + ")"
        super().__init__(message)
