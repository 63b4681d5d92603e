"""DuckDB's memory settings, and a cap on them for the jobs that stream a whole corpus (ingest, export).

Place in the flow: ingest / export -> here. Example::

    with memory_capped(con, "1GiB"):
        ...  # DuckDB spills or evicts its cache beyond 1 GiB; the previous limit is back afterwards
"""
from __future__ import annotations

import re

import duckdb


def memory_limit(con: duckdb.DuckDBPyConnection) -> str:
    """DuckDB's memory_limit as it reports it, e.g. '18.8 GiB'."""
    return con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]


def set_memory_limit(con: duckdb.DuckDBPyConnection, limit: str) -> None:
    con.execute(f"SET memory_limit = '{limit.replace(chr(39), '')}'")


def default_memory_limit(con: duckdb.DuckDBPyConnection) -> str:
    """DuckDB's default memory_limit on this machine, as it reports it (the setting is left as it was)."""
    current = memory_limit(con)
    con.execute("RESET memory_limit")
    default = memory_limit(con)
    if default != current:
        con.execute(f"SET memory_limit = '{current}'")
    return default


def reset_memory_limit(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("RESET memory_limit")


def allocator_background_threads(con: duckdb.DuckDBPyConnection, enabled: bool) -> bool:
    """Set DuckDB's allocator_background_threads; returns the value it had."""
    before = con.execute("SELECT current_setting('allocator_background_threads')").fetchall()[0][0]
    con.execute(f"SET allocator_background_threads = {'true' if enabled else 'false'}")
    return str(before).lower() == "true"


_UNITS = {"b": 1, "bytes": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20,
          "gib": 2**30, "tib": 2**40}


_SIZE = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*")


def _bytes_of(setting: str) -> float:
    """Bytes of a DuckDB size setting, with or without a space: '18.8 GiB', '1GiB', '500MB' (inf if unreadable).

    (The first version split on a space only, read '1GiB' as unreadable, and so never applied the cap.)"""
    found = _SIZE.fullmatch(setting)
    if found is None or found.group(2).lower() not in _UNITS and found.group(2):
        return float("inf")
    return float(found.group(1)) * _UNITS.get(found.group(2).lower() or "b", 1)


class memory_capped:
    """Lower DuckDB's memory_limit to ``limit`` for a large job (an ingest, an export; never raise it), let its
    allocator purge freed pages in the background, and restore both afterwards. The settings belong to the database instance: other
    connections of this process share them meanwhile."""

    def __init__(self, con: duckdb.DuckDBPyConnection, limit: str) -> None:
        self.con, self.limit, self.previous, self.previous_purge = con, limit, None, None
        self.reset = False

    def __enter__(self) -> None:
        current = memory_limit(self.con)
        if _bytes_of(current) > _bytes_of(self.limit):
            # DuckDB reports the limit rounded ('18.8 GiB'): setting that text back would not give the same
            # limit, so a limit that is DuckDB's default is restored by RESET.
            self.previous = None if current == default_memory_limit(self.con) else current
            self.reset = self.previous is None
            set_memory_limit(self.con, self.limit)
        self.previous_purge = allocator_background_threads(self.con, True)

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            set_memory_limit(self.con, self.previous)
        elif self.reset:
            reset_memory_limit(self.con)
        if self.previous_purge is not None:
            allocator_background_threads(self.con, self.previous_purge)
