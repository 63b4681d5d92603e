"""The server: the Streamlit app (app.py, the router) and the JSON API (curation/api, at /api/v1) as ONE ASGI
application, in one process that holds the DuckDB file.

Place in the flow: started by ``python -m curation serve --db DB [--host H] [--port P]`` (which execs
``python server.py ...``: the library never imports streamlit, so this assembly lives outside it) and by
``make demo``. Streamlit 1.67's ``st.App`` is a Starlette application with custom routes and a lifespan: the API is
mounted at /api/v1 beside the UI at /, and the lifespan opens the database, writes ``<db>.server.json`` beside it
(URL, pid, a local key; mode 0600) so that commands on this machine find the server, and removes it on stop.

The UI's connection (ui/db.py: ``store.connect(db)``) and the API's open the same file in the same process, so
DuckDB hands both the one database instance: their writes never lock each other out, and each request or page
run uses a cursor of its own.

Example::

    python server.py --db data/uts.duckdb --port 8501     # what `python -m curation serve` runs
"""
from __future__ import annotations

import argparse
import os
import sys
from contextlib import asynccontextmanager
from pathlib import Path

PROJECT = Path(__file__).resolve().parent
if str(PROJECT) not in sys.path:  # `python /path/to/server.py` from another folder still finds the project
    sys.path.insert(0, str(PROJECT))


def _announced_host(host: str) -> str:
    """The address a client on this machine uses to reach a server listening on ``host``."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def build_app(db_path: Path, host: str):
    """The st.App with the API mounted; nothing is opened until the server starts (its lifespan)."""
    import streamlit as st
    from starlette.routing import Mount

    from curation import store
    from curation.api.app import create_api
    from curation.cli.main import run_forwarded
    from curation.client import new_local_key, remove_server_file, write_server_file

    api = create_api(db_path, run_cli=run_forwarded)
    state = api.state.uts

    @asynccontextmanager
    async def lifespan(_app):
        from streamlit import config

        store.hold_in_this_process(db_path)  # a forwarded read-only open shares the held database
        state.open()
        state.local_key = new_local_key()
        url = f"http://{_announced_host(host)}:{config.get_option('server.port')}"
        write_server_file(db_path, url, state.local_key)
        print(f"UTS Studio: the app at {url}/ and the API at {url}/api/v1 (docs: {url}/api/v1/docs), holding "
              f"{db_path}", flush=True)
        try:
            yield None
        finally:
            remove_server_file(db_path)
            state.close()

    return st.App(str(PROJECT / "app.py"), routes=[Mount("/api/v1", app=api)], lifespan=lifespan)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="server.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8501)
    args = parser.parse_args(argv)

    from curation import settings, store
    from curation.admin.tokens import sign_in_required
    from curation.api.access import is_loopback

    db_path = store.resolve_db_path(args.db).resolve()
    if not is_loopback(args.host) and not sign_in_required(db_path):
        print(f"error: --host {args.host}: without a users file the app and the API serve this machine only; add "
              "users first (python -m curation users add NAME --role admin), or serve on 127.0.0.1", file=sys.stderr)
        return 2
    # The UI's pages find the database through the setting, as under `streamlit run` with UTS_DB.
    os.environ[settings.DB.name] = str(db_path)
    app = build_app(db_path, args.host)
    app.run(config={"server.address": args.host, "server.port": args.port, "server.headless": True,
                    "browser.gatherUsageStats": False, "server.fileWatcherType": "none"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
