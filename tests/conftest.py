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


@pytest.fixture(autouse=True)
def _no_sign_in_from_the_developer_shell(monkeypatch):
    """A developer's shell with UTS_AUTH / UTS_USERS_FILE set would switch every app test into sign-in mode;
    tests that need sign-in set them themselves."""
    for name in ("UTS_AUTH", "UTS_USERS_FILE"):
        monkeypatch.delenv(name, raising=False)
