"""Fixtures of the API tests: a demo corpus built once and copied per test, a real `serve` process on a free
loopback port, and users with tokens."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from curation import settings

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_server_from_the_developer_shell(monkeypatch):
    for setting in (settings.SERVER, settings.TOKEN, settings.DB):
        monkeypatch.delenv(setting.name, raising=False)


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("api-demo")
    db = folder / "demo.duckdb"
    subprocess.run([sys.executable, "-m", "curation", "demo", "--db", str(db), "--clips", "60", "--seed", "3"],
                   cwd=PROJECT, check=True, capture_output=True, timeout=300)
    return db


@pytest.fixture
def demo_db(demo_template, tmp_path) -> Path:
    """A private copy of the demo database (its audio stays where the template's ingest put it)."""
    db = tmp_path / "demo.duckdb"
    shutil.copy(demo_template, db)
    return db


def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curation", *args], cwd=PROJECT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, check=False)


def add_users(db: Path, **roles: str) -> None:
    """Users with passwords; the first one given must be the admin (the users file requires one first)."""
    for name, role in roles.items():
        result = subprocess.run([sys.executable, "-m", "curation", "users", "add", name, "--role", role,
                                 "--password-stdin", "--db", str(db)], input="long-enough-password\n", cwd=PROJECT,
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServeProcess:
    """`python -m curation serve --db DB --port P` as a user starts it."""

    def __init__(self, db: Path, log_path: Path, env: dict | None = None) -> None:
        self.db = db
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "w")  # noqa: SIM115 - held open while the server runs, closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "curation", "serve", "--db", str(db), "--port", str(self.port)],
            cwd=PROJECT, env={**os.environ, **(env or {})}, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 120) -> None:
        """Healthy UI and API, and the server file written (the lifespan has run)."""
        deadline = time.monotonic() + timeout_s
        server_file = self.db.with_name(self.db.name + ".server.json")
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with {self.process.returncode}: {Path(self.log.name).read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/health", timeout=2) as response:
                    if json.loads(response.read())["ok"] and server_file.exists():
                        return
            except OSError:
                pass
            time.sleep(0.2)  # polling the server's own health endpoint
        raise TimeoutError(f"serve not ready after {timeout_s} s: {Path(self.log.name).read_text()}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()


@pytest.fixture
def serve(demo_db, tmp_path):
    instance = ServeProcess(demo_db, tmp_path / "serve.log")
    try:
        instance.wait_ready()
        yield instance
    finally:
        instance.stop()
