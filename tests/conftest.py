"""Shared fixtures: a fresh DuckDB file per test."""
from __future__ import annotations

from pathlib import Path

import pytest

from curation import store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "uts.duckdb"


@pytest.fixture
def con(db_path: Path):
    connection = store.connect(db_path)
    yield connection
    connection.close()
