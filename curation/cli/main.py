"""``python -m curation <command>``: every pipeline step as a batch command, also while the app runs.

Place in the flow: the command-line face of the library; the app calls the same functions. This module builds the
parser from the command families beside it (corpus, vocabulary, audit, extraction, runs, admin), dispatches, and
adds two things of its own:

- ``serve``: the app and the HTTP API as one server that holds the database (server.py at the project root);
- forwarding: when a server holds the database (DuckDB allows one writing process), a command is sent to it and
  runs there, in the process that holds the file; its output and exit code come back unchanged. The server is
  found from the file it writes beside the database, or named with ``--server URL`` / ``$UTS_SERVER`` (with a
  token, ``$UTS_TOKEN``, when it has a users file). A few commands cannot run remotely and say why.

Example::

    python -m curation demo --db data/uts.duckdb --clips 600 --seed 0
    python -m curation serve --db data/uts.duckdb --port 8501          # UI at /, API at /api/v1
    python -m curation stats --db data/uts.duckdb --json               # forwarded while the server runs
"""
from __future__ import annotations

import argparse
import contextvars
import io
import os
import sys
import threading
from pathlib import Path

from curation import settings
from curation.cli import admin, audit, corpus, extraction, model_audit, runs, vocabulary
from curation.errors import StoreBusyError, UsageError, UtsError

# In the order `--help` lists them: the flow, then administration.
FAMILIES = (corpus, vocabulary, audit, extraction, runs, model_audit, admin)
DEFAULT_PORT = 8501

# Commands that never touch the database run here even when a server is named.
LOCAL_ONLY = {"users": "it edits the users file, not the database"}
# Commands a server does not run for a caller, and why.
NOT_FORWARDED = {
    "serve": "it starts a server, and one already holds this database",
    "restore": "it replaces the database file, which the running server holds open; stop the server first",
}
# What a token's user must be allowed (curation/admin/permissions.py) to run a forwarded command, beyond the checks
# the library makes itself. Corpus-changing commands are admin-only: the CLI has no finer rule for them.
COMMAND_ABILITY = {
    "stats": None, "demo": "users", "ingest": "users", "index-captions": "users", "probe-audio": "users",
    "decide": "decide",
    "suggest-merges": "decide", "export": "export", "decisions": "decide", "vocab": "decide",
    "extract-tags": "runs", "caption": "runs", "runs": "runs", "model-audit": "runs", "model-evidence": "decide",
    "backup": "backup",
    "tokens": None,
}  # a command not listed here (added later) needs an admin's "users" ability until someone lists it
AUDIT_ABILITY = {"create": "campaign", "reference": "campaign", "report": "browse"}
# Arguments that name files: made absolute against the caller's folder for a caller on the server's machine;
# refused for a remote caller (they would name files of the server's machine).
PATH_ARGUMENTS = ("path", "audio_root", "out", "log", "csv", "ontology", "dirs", "probe_task", "runs_dir",
                  "exports_dir", "workdir", "users_file", "backup", "published")


def _db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help="DuckDB file (default: $UTS_DB, else data/uts.duckdb)")
    parser.add_argument("--server", metavar="URL",
                        help=f"send the command to this running server (default: ${settings.SERVER.name}, else the "
                             "server that holds the database, if any)")


def _add_serve(commands) -> None:
    serve = commands.add_parser("serve", help="the app (/) and the HTTP API (/api/v1) as one server holding the "
                                              "database")
    serve.add_argument("--db", help="DuckDB file (default: $UTS_DB, else data/uts.duckdb)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only; another address needs a "
                            "users file)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m curation", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for family in FAMILIES:
        family.add_commands(commands, _db_argument)
    _add_serve(commands)
    return parser


def _family(command: str):
    return next(f for f in FAMILIES if command in f.COMMANDS)  # argparse restricts the choices


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        named = getattr(args, "server", None) or settings.SERVER.value()
        if named and args.command not in LOCAL_ONLY:
            return _forward(named, argv, args)
        try:
            return _family(args.command).run(args)
        except StoreBusyError:
            server = _server_holding(args)
            if server is None:
                raise
            return _forward(server.url, argv, args, local_key=server.local_key)
    except UtsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


# ------------------------------------------------------------------------------------------------------- serve

def _serve(args: argparse.Namespace) -> int:
    """Hand this process over to the server (server.py): one process then owns the database, with the same pid
    (a SIGTERM or SIGKILL reaches the server itself). The library never imports streamlit, so the app's assembly
    lives outside it and is started by exec rather than imported."""
    from curation import store
    from curation.client import find_server

    db = store.resolve_db_path(args.db).resolve()
    running = find_server(db)
    if running is not None:
        raise UsageError(f"{db} is already served at {running.url} (pid {running.pid})")
    store.connect(db).close()  # creates and migrates it, or says now (StoreBusyError) who holds it
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: expected 0..65535")
    server = store.PROJECT_ROOT / "server.py"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, str(server), "--db", str(db), "--host", args.host,
                              "--port", str(args.port)])
    raise AssertionError("unreachable")  # execv does not return


# -------------------------------------------------------------------------------------- forwarding (client side)

def _server_holding(args: argparse.Namespace):
    from curation import store
    from curation.client import find_server

    if args.command in LOCAL_ONLY:
        return None
    return find_server(store.resolve_db_path(getattr(args, "db", None)))


def _forward(url: str, argv: list[str], args: argparse.Namespace, local_key: str | None = None) -> int:
    from curation.client import Client

    if args.command in NOT_FORWARDED:
        raise UsageError(f"{args.command} cannot run through the server at {url}: {NOT_FORWARDED[args.command]}")
    token = settings.TOKEN.value()
    client = Client(url, token=token, db=getattr(args, "db", None), local_key=None if token else local_key,
                    timeout_s=None)
    db = getattr(args, "db", None)
    result = client.request("POST", "/cli", json={
        "argv": argv, "cwd": os.getcwd(), "db": str(Path(db).resolve()) if db else None})
    sys.stdout.write(result["stdout"])
    sys.stderr.write(result["stderr"])
    sys.stdout.flush()
    return int(result["exit_code"])


# -------------------------------------------------------------------------------------- forwarding (server side)

_CAPTURED: contextvars.ContextVar[tuple[io.StringIO, io.StringIO] | None] = contextvars.ContextVar(
    "uts_cli_capture", default=None)
_INSTALL_LOCK = threading.Lock()


class _RoutedStream(io.TextIOBase):
    """sys.stdout / sys.stderr of the server process: a forwarded command's writes go to its own buffers (by
    context, so concurrent requests and the server's own logging never mix), everything else to the real stream."""

    def __init__(self, original, index: int) -> None:
        self.original = original
        self.index = index

    def write(self, text: str) -> int:
        buffers = _CAPTURED.get()
        return (buffers[self.index] if buffers is not None else self.original).write(text)

    def flush(self) -> None:
        if _CAPTURED.get() is None:
            self.original.flush()

    def isatty(self) -> bool:
        return False if _CAPTURED.get() is not None else self.original.isatty()

    def __getattr__(self, name):
        return getattr(self.original, name)


def _install_routed_streams() -> None:
    with _INSTALL_LOCK:
        if not isinstance(sys.stdout, _RoutedStream):
            sys.stdout = _RoutedStream(sys.stdout, 0)
        if not isinstance(sys.stderr, _RoutedStream):
            sys.stderr = _RoutedStream(sys.stderr, 1)


def _refusal(argv: list[str], message: str) -> dict:
    return {"argv": argv, "exit_code": 2, "stdout": "", "stderr": f"error: {message}\n"}


def run_forwarded(argv: list[str], *, db_path: Path, cwd: str | None, client_db: str | None, caller) -> dict:
    """Run one command in the server process, against the database it holds, as ``caller`` (curation/api/access
    Caller): the same parser, the same functions and the same output as when it runs locally.
    Returns {"exit_code", "stdout", "stderr"}."""
    from curation.admin.permissions import PermissionDeniedError, acting_as

    _install_routed_streams()
    out, err = io.StringIO(), io.StringIO()
    token = _CAPTURED.set((out, err))
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exit_:  # argparse printed its usage message (captured)
            return {"argv": argv, "exit_code": int(exit_.code or 0), "stdout": out.getvalue(),
                    "stderr": err.getvalue()}
        if args.command in NOT_FORWARDED:
            return _refusal(argv, f"{args.command} cannot run through the server: {NOT_FORWARDED[args.command]}")
        if client_db and Path(client_db).resolve() != Path(db_path).resolve():
            return _refusal(argv, f"--db {client_db}: this server holds {db_path}, not that file")
        paths = [name for name in PATH_ARGUMENTS if getattr(args, name, None) not in (None, [], "")]
        if paths and not caller.on_this_machine:
            flags = ", ".join("--" + name.replace("_", "-") for name in paths)
            return _refusal(argv, f"{args.command}: {flags} would name files on the server's machine, not yours; "
                                  "run it there, or use the API (e.g. POST /api/v1/exports, then download the files)")
        for name in paths:
            setattr(args, name, _absolute(getattr(args, name), cwd))
        if hasattr(args, "db"):
            args.db = str(db_path)
        args.server = None
        ability = (AUDIT_ABILITY.get(getattr(args, "audit_action", ""), "campaign") if args.command == "audit"
                   else COMMAND_ABILITY.get(args.command, "users"))
        try:
            caller.require(ability)
            with acting_as(caller.actor):
                code = _family(args.command).run(args)
        except (UtsError, PermissionDeniedError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = 2
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        except Exception:  # noqa: BLE001 - as a local run would: the traceback on stderr, exit status 1
            import traceback

            traceback.print_exc(file=sys.stderr)
            code = 1
        return {"argv": argv, "exit_code": int(code or 0), "stdout": out.getvalue(), "stderr": err.getvalue()}
    finally:
        _CAPTURED.reset(token)


def _absolute(value, cwd: str | None):
    if cwd is None:
        return value
    if isinstance(value, list):
        return [_absolute(v, cwd) for v in value]
    if isinstance(value, str) and value and not Path(value).is_absolute():
        return str(Path(cwd) / value)
    return value

