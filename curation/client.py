"""A Python client of the HTTP API (``python -m curation serve``), for notebooks, scripts and cluster jobs; and
the small file a running server writes beside its database so that commands on the same machine find it.

Place in the flow: beside the library. While the server holds the DuckDB file nobody else can open it; this
client sends the library's verbs to the server instead. Tables come back as pandas DataFrames.

Finding the server: ``Client(url)``, else ``$UTS_SERVER``, else the file ``<database>.server.json`` that a server
writes beside the database it holds (URL, pid and a local key, mode 0600; removed when the server stops). A token
(``token=...`` or ``$UTS_TOKEN``) is needed when the server has a users file; on the server's own machine the local
key in that file stands in for it (whoever can read that file can open the database itself when no server runs).

Example::

    from curation.client import Client
    api = Client("http://127.0.0.1:8501", token="uts_...")
    api.stats()["clips"]
    ranking = api.vocabulary(k=500)                        # DataFrame: rank, tag, score, df, in_top_k, members
    api.merge(["drums", "drum kit"], into="drum", by="ana", reason="one instrument")
    api.decisions().head()
"""
from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from curation import settings
from curation.errors import UtsError

API_PREFIX = "/api/v1"
LOCAL_KEY_HEADER = "X-UTS-Local-Key"
SERVER_FILE_SUFFIX = ".server.json"


class ApiError(UtsError):
    """The server refused a request (the status and its message), or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


# ------------------------------------------------------------------------------------------------ server file

@dataclass(frozen=True)
class ServerInfo:
    url: str  # base URL, e.g. http://127.0.0.1:8501 (the API is under /api/v1)
    pid: int
    db: str  # the database file the server holds
    local_key: str  # lets commands on this machine act as the trusted local caller
    started_at: str


def server_file_path(db_path: str | os.PathLike) -> Path:
    db_path = Path(db_path).resolve()
    return db_path.with_name(db_path.name + SERVER_FILE_SUFFIX)


def new_local_key() -> str:
    return secrets.token_urlsafe(32)


def write_server_file(db_path: str | os.PathLike, url: str, local_key: str) -> Path:
    """Atomically (temp file + rename) and readable by this OS user only."""
    path = server_file_path(db_path)
    record = {"url": url, "pid": os.getpid(), "db": str(Path(db_path).resolve()), "local_key": local_key,
              "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
    handle, temp = tempfile.mkstemp(prefix=".uts-server-", suffix=".json", dir=path.parent)
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(record, out)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def remove_server_file(db_path: str | os.PathLike) -> None:
    """Remove the file if this process wrote it (a newer server's file is left alone)."""
    info = _read_server_file(server_file_path(db_path))
    if info is not None and info.pid == os.getpid():
        server_file_path(db_path).unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_server_file(path: Path) -> ServerInfo | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ServerInfo(url=str(data["url"]), pid=int(data["pid"]), db=str(data["db"]),
                          local_key=str(data["local_key"]), started_at=str(data.get("started_at", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_server(db_path: str | os.PathLike) -> ServerInfo | None:
    """The server holding ``db_path``, from the file beside it; None when there is none or its process has ended
    (a server killed with SIGKILL leaves its file behind: the pid tells)."""
    info = _read_server_file(server_file_path(db_path))
    if info is None or not _pid_alive(info.pid):
        return None
    return info


# ------------------------------------------------------------------------------------------------------ client

def _frame(rows: Any):
    import pandas as pd

    return pd.DataFrame(rows)


class Client:
    """The API's verbs. Every write names ``by`` (in local mode) or acts as the token's user."""

    def __init__(self, url: str | None = None, *, token: str | None = None, db: str | os.PathLike | None = None,
                 local_key: str | None = None, timeout_s: float | None = 300.0) -> None:
        local = None
        if url is None and settings.SERVER.value():
            url = settings.SERVER.value()
        if url is None:
            from curation.store.schema import resolve_db_path

            local = find_server(resolve_db_path(db))
            if local is None:
                raise ApiError(f"no server given and none holds {resolve_db_path(db)}: pass a URL, set "
                               f"{settings.SERVER.name}, or start one with `python -m curation serve`")
            url = local.url
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        token = token or settings.TOKEN.value()
        if local is None and not token and not local_key:
            # A server on this machine that holds the database: its file lets us act as the local caller.
            from curation.store.schema import resolve_db_path

            found = find_server(resolve_db_path(db))
            local = found if found is not None and found.url.rstrip("/") == self.url else None
        import requests

        self._http = requests.Session()
        if token:
            self._http.headers["Authorization"] = f"Bearer {token}"
        elif local_key or local is not None:
            self._http.headers[LOCAL_KEY_HEADER] = local_key or local.local_key

    # -------------------------------------------------------------------------------------------- plumbing
    def request(self, method: str, path: str, *, raw: bool = False, **kwargs) -> Any:
        """The decoded JSON answer (``raw=True``: the bytes, for file downloads); ApiError for a refusal."""
        import requests

        try:
            response = self._http.request(method, self.url + API_PREFIX + path, timeout=self.timeout_s, **kwargs)
        except requests.RequestException as exc:
            raise ApiError(f"{self.url}: the server cannot be reached ({type(exc).__name__}: {exc})") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:500]
            raise ApiError(f"{method} {path}: {response.status_code} {detail}", status=response.status_code)
        if not raw and response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.content

    def _get(self, path: str, **params) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def _post(self, path: str, body: dict | None = None) -> Any:
        return self.request("POST", path, json={k: v for k, v in (body or {}).items() if v is not None})

    # ---------------------------------------------------------------------------------------------- corpus
    def stats(self) -> dict:
        return self._get("/stats")

    # ------------------------------------------------------------------------------------------ vocabulary
    def vocabulary(self, k: int, *, rank_by: str = "tfidf", query: str | None = None, limit: int | None = None):
        return _frame(self._get("/vocabulary", k=k, rank_by=rank_by, query=query, limit=limit)["ranking"])

    def coverage(self, *, rank_by: str = "tfidf", ks: Sequence[int] | None = None):
        return _frame(self._get("/vocabulary/coverage", rank_by=rank_by,
                                ks=",".join(map(str, ks)) if ks else None)["coverage"])

    def vocabulary_diff(self, k_small: int, k_large: int, *, rank_by: str = "tfidf") -> dict:
        return self._get("/vocabulary/diff", k_small=k_small, k_large=k_large, rank_by=rank_by)

    # ------------------------------------------------------------------------------------------- decisions
    def decisions(self):
        return _frame(self._get("/decisions")["decisions"])

    def decide(self, action: str, *, by: str | None = None, reason: str | None = None, **fields) -> dict:
        return self._post("/decisions", {"action": action, "by": by, "reason": reason, **fields})

    def merge(self, tags: Iterable[str], *, into: str, by: str | None = None, reason: str | None = None) -> dict:
        return self.decide("merge", tags=list(tags), into=into, by=by, reason=reason)

    def rename(self, tag: str, *, to: str, by: str | None = None, reason: str | None = None) -> dict:
        return self.decide("rename", tag=tag, into=to, by=by, reason=reason)

    def prune(self, tags: Iterable[str], *, by: str | None = None, reason: str | None = None) -> dict:
        return self.decide("prune", tags=list(tags), by=by, reason=reason)

    def restore(self, tags: Iterable[str], *, by: str | None = None, reason: str | None = None) -> dict:
        return self.decide("restore", tags=list(tags), by=by, reason=reason)

    def add_tag(self, clip_id: str, tag: str, *, by: str | None = None, reason: str | None = None) -> dict:
        return self.decide("clip_add", clip_id=clip_id, tag=tag, by=by, reason=reason)

    def remove_tag(self, clip_id: str, tag: str, *, by: str | None = None, reason: str | None = None) -> dict:
        return self.decide("clip_remove", clip_id=clip_id, tag=tag, by=by, reason=reason)

    def undo(self, decision_id: int, *, by: str | None = None, reason: str | None = None) -> dict:
        return self.decide("undo", decision_id=decision_id, by=by, reason=reason)

    # ----------------------------------------------------------------------------------------- suggestions
    def merge_suggestions(self, top: int | None = None):
        return _frame(self._get("/suggestions/merges", top=top)["suggestions"])

    def accept_merge(self, tags: Iterable[str], *, canonical: str | None = None, by: str | None = None) -> dict:
        return self._post("/suggestions/merges/accept", {"tags": list(tags), "canonical": canonical, "by": by})

    def reject_merge(self, tags: Iterable[str], *, by: str | None = None) -> dict:
        return self._post("/suggestions/merges/reject", {"tags": list(tags), "by": by})

    def prune_suggestions(self, k: int, min_df: int = 2):
        return _frame(self._get("/suggestions/prunes", k=k, min_df=min_df)["suggestions"])

    def accept_prunes(self, tags: Iterable[str], *, k: int, min_df: int = 2, by: str | None = None) -> dict:
        return self._post("/suggestions/prunes/accept", {"tags": list(tags), "k": k, "min_df": min_df, "by": by})

    def reject_prunes(self, tags: Iterable[str], *, by: str | None = None) -> list[str]:
        """Keep these tags: their prune suggestions are not shown again."""
        return self._post("/suggestions/prunes/reject", {"tags": list(tags), "by": by})["kept"]

    # --------------------------------------------------------------------------------------------- exports
    def exports(self):
        return _frame(self._get("/exports")["exports"])

    def export(self, k: int, *, rank_by: str = "tfidf", by: str | None = None) -> dict:
        return self._post("/exports", {"k": k, "rank_by": rank_by, "by": by})

    def export_files(self, export_id: int) -> list[str]:
        return self._get(f"/exports/{export_id}/files")["files"]

    def download_export(self, export_id: int, out_dir: str | os.PathLike) -> list[Path]:
        """Every file of an export, written under ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in self.export_files(export_id):
            target = out / name
            target.write_bytes(self.request("GET", f"/exports/{export_id}/files/{name}", raw=True))
            written.append(target)
        return written

    # ----------------------------------------------------------------------------------------------- audit
    def campaigns(self):
        return _frame(self._get("/audit/campaigns")["campaigns"])

    def create_campaign(self, name: str, *, size: int, annotators: int = 2, seed: int = 0,
                        by: str | None = None) -> dict:
        return self._post("/audit/campaigns", {"name": name, "size": size, "annotators": annotators, "seed": seed,
                                               "by": by})

    def next_clip(self, campaign_id: int, annotator: str | None = None) -> dict | None:
        return self._post(f"/audit/campaigns/{campaign_id}/next", {"annotator": annotator})["item"]

    def submit_verdicts(self, campaign_id: int, clip_id: str, verdicts: dict[str, str], *,
                        annotator: str | None = None, added: list[str] | None = None, rating: int | None = None,
                        note: str | None = None) -> dict:
        return self._post(f"/audit/campaigns/{campaign_id}/submit",
                          {"clip_id": clip_id, "verdicts": verdicts, "annotator": annotator, "added": added,
                           "rating": rating, "note": note})

    def audit_report(self, campaign_id: int) -> dict:
        report = self._get(f"/audit/campaigns/{campaign_id}/report")
        for key in ("precision", "flags", "progress"):
            report[key] = _frame(report[key])
        return report

    # ------------------------------------------------------------------------------------------------ jobs
    def jobs(self):
        return _frame(self._get("/jobs")["jobs"])

    def start_job(self, *, task: str = "tags", backend: str = "offline", by: str | None = None, **options) -> dict:
        return self._post("/jobs", {"task": task, "backend": backend, "by": by, **options})

    def job_status(self) -> dict:
        return self._get("/jobs/current")

    def stop_job(self) -> dict:
        return self._post("/jobs/current/stop")

    # ------------------------------------------------------------------------------------------------ runs
    def runs(self):
        return _frame(self._get("/runs")["runs"])

    def launch_runs(self, *, by: str | None = None, **request) -> list[str]:
        return self._post("/runs", {"by": by, **request})["run_ids"]

    def cancel_run(self, run_id: str, *, by: str | None = None) -> dict:
        return self._post(f"/runs/{run_id}/cancel", {"by": by})

    def run_metrics(self, run_id: str):
        return _frame(self._get(f"/runs/{run_id}/metrics")["metrics"])

    def compare_runs(self, run_ids: Sequence[str]) -> dict:
        result = self.request("GET", "/runs/compare", params=[("run_id", r) for r in run_ids])
        for key in ("metrics", "config_diff", "probe_table"):
            result[key] = _frame(result[key])
        return result

    # ---------------------------------------------------------------------------------------------- tokens
    def tokens(self):
        return _frame(self._get("/tokens")["tokens"])

    def create_token(self, user: str, *, label: str | None = None, by: str | None = None) -> dict:
        return self._post("/tokens", {"user": user, "label": label, "by": by})

    def revoke_token(self, token_id: int) -> dict:
        return self.request("DELETE", f"/tokens/{token_id}")
