"""The versioned JSON API (``/api/v1``) beside the app: the library's verbs over HTTP, in the process that holds
the database.

Place in the flow: the server (server.py at the project root) mounts ``create_api(db)`` at /api/v1 next to the
Streamlit UI in one ASGI application; both use the same DuckDB database instance of that process (a cursor per
request), so writes from the API and from the UI never lock each other out. Every handler calls the function the
CLI calls (curation/cli/*.py) and nothing else: no logic is duplicated here. Every write is one transaction of the
library; bodies are pydantic models refusing unknown fields (models.py); the caller is identified and checked
(access.py) before anything is read or written. The OpenAPI schema is at /api/v1/openapi.json, the docs at
/api/v1/docs.

Example::

    api = create_api("data/uts.duckdb")
    with TestClient(api) as client:                       # the lifespan opens the database
        client.get("/stats").json()["clips"]
"""
# No `from __future__ import annotations`: FastAPI reads the Annotated dependencies (Con, Who) defined inside
# create_api, which string annotations would hide from it.
import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import duckdb
from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse

from curation import store
from curation.admin.permissions import PermissionDeniedError, acting_as
from curation.api import models
from curation.api.access import AuthenticationError, Caller, identify, users_path
from curation.errors import UtsError

API_VERSION = "1"
DECISION_ACTIONS = ("merge", "rename", "prune", "restore", "clip_add", "clip_remove", "use_extractors", "undo")
# A decision write that meets a concurrent write of the UI (DuckDB's optimistic concurrency) is retried: the
# failed attempt was rolled back whole, so a retry can neither lose nor duplicate it.
CONFLICT_RETRIES = 8


class NotFoundError(UtsError, LookupError):
    """The thing a path names does not exist (HTTP 404)."""


class ApiState:
    """What the API holds for its lifetime: the database connection, caches keyed by what they depend on, the
    background job, the items served to annotators."""

    def __init__(self, db_path: str | Path, run_cli: Callable | None = None) -> None:
        self.db_path = store.resolve_db_path(db_path).resolve()
        self.run_cli = run_cli  # the command runner for forwarded CLI commands (wired by the server)
        self.local_key: str | None = None
        self.con: duckdb.DuckDBPyConnection | None = None
        # Re-entrant: the server also takes it inside record_decisions (server.py), under the API's own turn.
        self._cache_lock = threading.Lock()
        self._matrix: tuple[tuple, Any] | None = None  # (corpus_version, VocabularyTracker of its TagMatrix)
        self._views: dict[tuple, Any] = {}  # (corpus_version, last decision id, rank_by) -> VocabularyView
        self._served: dict[tuple, float] = {}  # (campaign, annotator, clip_key, slot) -> monotonic time served

    def open(self) -> None:
        if self.con is None:
            self.con = store.connect(self.db_path)

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None

    def cursor(self) -> duckdb.DuckDBPyConnection:
        if self.con is None:
            raise RuntimeError("the API's database is not open (the server's lifespan opens it)")
        return self.con.cursor()

    # ------------------------------------------------------------------------------------------ vocabulary
    def vocabulary(self, con: duckdb.DuckDBPyConnection, rank_by: str):
        """(matrix, state, view) as the Vocabulary page computes them; the tag matrix is reloaded only when the
        corpus changes and a view is reused while the decision log has not grown."""
        from curation.store import vocabulary as store_vocabulary
        from curation.vocabulary.decisions import list_decisions, replay
        from curation.vocabulary.ranking import VocabularyTracker, load_tag_matrix

        # The corpus's tag rows (ingests, tag-row count). A decision that interns a new tag text (a merge into a
        # new name, a tag added to a clip) moves max(tag_id) but not the rows: the tracker places such texts
        # itself and breaks ties by text, so the loaded matrix stays valid and is not reloaded (5 s at 360k clips)
        # for every such decision. tests/api: equal to a fresh load after one.
        version = store_vocabulary.corpus_version(con)[:2]
        with self._cache_lock:
            if self._matrix is None or self._matrix[0] != version:
                self._matrix = (version, VocabularyTracker(load_tag_matrix(con)))
                self._views.clear()
            tracker = self._matrix[1]
        state = replay(list_decisions(con))
        key = (version, state.last_decision_id, rank_by)
        view = self._views.get(key)
        if view is None:
            # After a decision only the clips it touches are redone (VocabularyTracker): ~40 ms instead of ~250 ms
            # for the full computation at 360k clips (bench/RESULTS.md).
            view = tracker.view(state, rank_by=rank_by)
            with self._cache_lock:
                if len(self._views) > 8:
                    self._views.clear()
                self._views[key] = view
        matrix = tracker.matrix
        return matrix, state, view


def records(frame) -> list[dict]:
    """A DataFrame as JSON-ready rows (timestamps ISO 8601, NaN as null)."""
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)))


def _detail(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = [str(p) for p in error.get("loc", ())]
        if location[:1] == ["body"]:
            location = location[1:]
            # A discriminated union names the chosen member first ("merge"); the field is what follows it.
            if len(location) > 1 and location[0] in DECISION_ACTIONS:
                location = location[1:]
        field = ".".join(location) or "body"
        parts.append(f"{field}: {error.get('msg')}")
    return "; ".join(parts)


def create_api(db_path: str | Path, *, run_cli: Callable | None = None) -> FastAPI:
    state = ApiState(db_path, run_cli=run_cli)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        # Runs when the API is served on its own (tests, TestClient); mounted in the server, server.py opens it.
        already_open = state.con is not None
        state.open()
        try:
            yield
        finally:
            if not already_open:
                state.close()

    api = FastAPI(title="UTS Studio API", version=API_VERSION, lifespan=lifespan,
                  description="Curate the UTS vocabulary while the app runs: the same verbs as the app and the CLI.")
    api.state.uts = state

    @api.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError):
        return JSONResponse(status_code=422, content={"detail": _detail(exc), "errors": _plain(exc.errors())})

    @api.exception_handler(UtsError)
    async def _refused(_request: Request, exc: UtsError):
        status = (exc.status if isinstance(exc, AuthenticationError) else 403 if isinstance(exc, PermissionDeniedError)
                  else 404 if isinstance(exc, NotFoundError) else 400)
        return JSONResponse(status_code=status, content={"detail": str(exc), "error": type(exc).__name__})

    @api.exception_handler(ValueError)
    async def _bad_value(_request: Request, exc: ValueError):
        return JSONResponse(status_code=400, content={"detail": str(exc), "error": type(exc).__name__})

    def cursor():
        con = state.cursor()
        try:
            yield con
        finally:
            con.close()

    def caller(request: Request, con: Annotated[duckdb.DuckDBPyConnection, Depends(cursor)]) -> Caller:
        client = request.client.host if request.client else None
        return identify(con, state.db_path, state.local_key, request.headers, client)

    Con = Annotated[duckdb.DuckDBPyConnection, Depends(cursor)]
    Who = Annotated[Caller, Depends(caller)]

    def bound(who: Caller, ability: str | None):
        """Check the ability, then bind the caller's actor so the library's own checks see the same person."""
        who.require(ability)
        return acting_as(who.actor)

    # ------------------------------------------------------------------------------------------------ corpus
    @api.get("/stats", summary="corpus counts (the same JSON as `python -m curation stats --json`)")
    def stats(con: Con, who: Who) -> dict:
        from curation.store import corpus as store_corpus

        with bound(who, None):
            return store_corpus.corpus_stats(con)

    @api.get("/health", summary="the server is up and holds this database")
    def health(con: Con) -> dict:
        return {"ok": True, "schema_version": store.schema_version(con), "api_version": API_VERSION}

    # -------------------------------------------------------------------------------------------- vocabulary
    @api.get("/vocabulary", summary="the ranking at K (top `limit` rows, default K) and the coverage at K")
    def vocabulary(con: Con, who: Who, k: Annotated[int, Query(ge=1)],
                   rank_by: Annotated[str, Query(pattern="^(tfidf|df)$")] = "tfidf",
                   query: Annotated[str | None, Query(max_length=200)] = None,
                   limit: Annotated[int | None, Query(ge=1)] = None,
                   offset: Annotated[int, Query(ge=0)] = 0) -> dict:
        with bound(who, "browse"):
            _matrix, _state, view = state.vocabulary(con, rank_by)
            table = view.ranking[["rank", "tag", "score", "df"]]
            if query:
                members = view.members
                hit = [query.lower() in tag.lower() or any(query.lower() in m.lower() for m in members.get(tag, ()))
                       for tag in table["tag"]]
                table = table[hit]
            page = table.iloc[offset: offset + (limit or k)].copy()
            page["in_top_k"] = page["rank"] <= k
            page["members"] = [view.members.get(tag, []) for tag in page["tag"]]
            coverage = view.coverage[view.coverage["k"] <= k].tail(1)
            return {"k": k, "rank_by": rank_by, "n_tags": len(view.ranking), "n_clips": int(view.n_clips),
                    "last_decision_id": int(view.last_decision_id), "pruned": list(view.pruned),
                    "coverage_at_k": records(coverage)[0] if len(coverage) else None, "ranking": records(page)}

    @api.get("/vocabulary/coverage", summary="clips kept, share kept, tags per clip, by K")
    def coverage(con: Con, who: Who, rank_by: Annotated[str, Query(pattern="^(tfidf|df)$")] = "tfidf",
                 ks: Annotated[str | None, Query(pattern=r"^\d+(,\d+)*$", description="comma-separated K")] = None
                 ) -> dict:
        with bound(who, "browse"):
            _matrix, _state, view = state.vocabulary(con, rank_by)
            frame = view.coverage
            if ks:
                frame = frame[frame["k"].isin([int(k) for k in ks.split(",")])]
            return {"rank_by": rank_by, "last_decision_id": int(view.last_decision_id), "coverage": records(frame)}

    @api.get("/vocabulary/diff", summary="what changes between two vocabulary sizes")
    def vocabulary_diff(con: Con, who: Who, k_small: Annotated[int, Query(ge=1)],
                        k_large: Annotated[int, Query(ge=1)],
                        rank_by: Annotated[str, Query(pattern="^(tfidf|df)$")] = "tfidf",
                        limit: Annotated[int, Query(ge=1)] = 1000) -> dict:
        if k_small >= k_large:
            raise UtsError_(f"k_small={k_small}, k_large={k_large}: expected k_small < k_large")
        with bound(who, "browse"):
            _matrix, _state, view = state.vocabulary(con, rank_by)
            entering = view.tags_entering(k_small, k_large)
            lost = view.clips_lost(k_small, k_large)
            return {"k_small": k_small, "k_large": k_large, "rank_by": rank_by,
                    "tags_entering": entering[:limit], "n_tags_entering": len(entering),
                    "clips_lost": [str(c) for c in lost[:limit]], "n_clips_lost": len(lost)}

    # --------------------------------------------------------------------------------------------- decisions
    @api.get("/decisions", summary="the decision log, oldest first, with whether each is in effect")
    def decisions(con: Con, who: Who) -> dict:
        from curation.vocabulary.decisions import list_decisions, replay

        with bound(who, "browse"):
            log = list_decisions(con)
            current = replay(log)
            return {"last_decision_id": current.last_decision_id,
                    "decisions": [_decision_json(r, r.decision_id in current.active_ids and r.action != "undo")
                                  for r in log]}

    def _record(con, who: Caller, decision, by: str | None, reason: str | None, also=None):
        from curation.vocabulary.decisions import record_decision

        name = who.name(by)
        with bound(who, "decide"):
            return _retrying(lambda: record_decision(con, decision, by=name, reason=reason, also=also), state)

    @api.post("/decisions", status_code=201, summary="record one decision (merge, rename, prune, restore, "
                                                      "clip_add, clip_remove, use_extractors, undo)")
    def decide(con: Con, who: Who, body: Annotated[models.DecisionBody, Body()]) -> dict:
        record = _record(con, who, _decision_of(body), body.by, body.reason)
        return _decision_json(record, True)

    @api.post("/decisions/{decision_id}/undo", status_code=201, summary="undo a decision (itself a decision)")
    def undo(con: Con, who: Who, decision_id: int, body: models.UndoBody) -> dict:
        from curation.vocabulary.decisions import Decision

        return _decision_json(_record(con, who, Decision.undo(decision_id), body.by, body.reason), True)

    # ------------------------------------------------------------------------------------------- suggestions
    @api.get("/suggestions/merges", summary="groups of tags likely to be one concept, best first")
    def merge_suggestions(con: Con, who: Who, top: Annotated[int | None, Query(ge=1)] = None) -> dict:
        from curation.vocabulary.suggestions import suggest_merges

        with bound(who, "decide"):
            matrix, _state, _view = state.vocabulary(con, "df")
            return {"suggestions": [s.as_dict() for s in suggest_merges(con, top=top, matrix=matrix)]}

    def _suggestion(tags: list[str], canonical: str | None):
        from curation.vocabulary.suggestions import MergeSuggestion

        return MergeSuggestion(tags=tuple(dict.fromkeys(tags)), canonical=canonical or tags[0], score=0.0,
                               reasons=("accepted through the API",))

    @api.post("/suggestions/merges/accept", status_code=201, summary="merge a suggested group (and remember it)")
    def accept_merge(con: Con, who: Who, body: models.AcceptMerge) -> dict:
        from curation.vocabulary.suggestions import accept_suggestion

        name = who.name(body.by)
        with bound(who, "decide"):
            record = _retrying(lambda: accept_suggestion(con, _suggestion(body.tags, body.canonical), by=name,
                                                         canonical=body.canonical), state)
        return _decision_json(record, True)

    @api.post("/suggestions/merges/reject", summary="these tags are not one concept: never propose them again")
    def reject_merge(con: Con, who: Who, body: models.RejectMerge) -> dict:
        from curation.vocabulary.suggestions import reject_suggestion

        name = who.name(body.by)
        with bound(who, "decide"):
            _retrying(lambda: reject_suggestion(con, _suggestion(body.tags, None), by=name), state)
        return {"rejected": sorted(set(body.tags))}

    @api.get("/suggestions/prunes", summary="tags too rare to learn at K")
    def prune_suggestions(con: Con, who: Who, k: Annotated[int, Query(ge=1)],
                          min_df: Annotated[int, Query(ge=1)] = 2) -> dict:
        from curation.vocabulary.suggestions import suggest_prunes

        with bound(who, "decide"):
            matrix, _state, _view = state.vocabulary(con, "tfidf")
            return {"k": k, "min_df": min_df, "suggestions": suggest_prunes(con, k=k, min_df=min_df, matrix=matrix)}

    @api.post("/suggestions/prunes/accept", status_code=201, summary="prune the chosen suggested tags (one decision)")
    def accept_prunes(con: Con, who: Who, body: models.AcceptPrunes) -> dict:
        from curation.vocabulary.decisions import Decision

        record = _record(con, who, Decision.prune(body.tags), body.by,
                         f"rare: fewer than {body.min_df} clips at K={body.k}")
        return _decision_json(record, True)

    @api.post("/suggestions/prunes/reject", summary="keep these tags: their prune suggestions are not shown again")
    def reject_prunes(con: Con, who: Who, body: models.RejectPrunes) -> dict:
        from curation.vocabulary.suggestions import reject_prunes

        name = who.name(body.by)
        with bound(who, "decide"):
            kept = _retrying(lambda: reject_prunes(con, body.tags, by=name), state)
        return {"kept": kept}

    # ----------------------------------------------------------------------------------------------- exports
    @api.get("/exports", summary="vocabulary exports, newest first")
    def exports(con: Con, who: Who) -> dict:
        from curation.runs.compare import exports_table

        with bound(who, "browse"):
            return {"exports": records(exports_table(con))}

    @api.post("/exports", status_code=201, summary="export the vocabulary at K (label_K.json, .txt, Lhotse cuts)")
    def create_export(con: Con, who: Who, body: models.ExportBody) -> dict:
        from curation.runs.launch import default_exports_root
        from curation.vocabulary.export import export_vocabulary

        name = who.name(body.by)
        with bound(who, "export"):
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
            out = Path(default_exports_root(con)) / f"api-k{body.k}-{body.rank_by}-{stamp}-{time.monotonic_ns() % 10**6}"
            return export_vocabulary(con, k=body.k, out_dir=out, by=name, rank_by=body.rank_by).as_dict()

    def _export_dir(con, export_id: int) -> Path:
        from curation.runs.compare import exports_table

        table = exports_table(con)
        match = table[table["export_id"] == export_id]
        if match.empty:
            raise NotFoundError(f"export {export_id}: no such export (GET /api/v1/exports lists them)")
        return Path(match.iloc[0]["out_dir"])

    @api.get("/exports/{export_id}/files", summary="the files of an export")
    def export_files(con: Con, who: Who, export_id: int) -> dict:
        with bound(who, "browse"):
            folder = _export_dir(con, export_id)
            files = sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
            return {"export_id": export_id, "out_dir": str(folder), "files": files}

    @api.get("/exports/{export_id}/files/{name}", summary="download one file of an export")
    def export_file(con: Con, who: Who, export_id: int, name: str):
        with bound(who, "browse"):
            folder = _export_dir(con, export_id)
            target = folder / name
            # Only a file directly inside the export folder: no "..", no links out of it.
            if "/" in name or name.startswith(".") or not target.is_file() or target.resolve().parent != folder.resolve():
                raise NotFoundError(f"export {export_id}: no file {name!r} (GET .../files lists them)")
            return FileResponse(target, filename=name)

    # ------------------------------------------------------------------------------------------------- audit
    @api.get("/audit/campaigns", summary="audit campaigns with their progress")
    def campaigns(con: Con, who: Who) -> dict:
        from curation.audit.campaigns import campaign_table

        with bound(who, "audit"):
            return {"campaigns": records(campaign_table(con))}

    @api.post("/audit/campaigns", status_code=201, summary="a listening campaign with a stratified, seeded sample")
    def create_campaign(con: Con, who: Who, body: models.CampaignBody) -> dict:
        from curation.audit.campaigns import create_campaign as create

        name = who.name(body.by)
        with bound(who, "campaign"):
            campaign_id = create(con, body.name, sample_size=body.size, by=name,
                                 annotators_per_clip=body.annotators, seed=body.seed)
        return {"campaign_id": campaign_id, "name": body.name.strip()}

    def _campaign(con, campaign_id: int) -> None:
        from curation.audit.campaigns import campaign_table

        if campaign_id not in set(campaign_table(con)["campaign_id"].tolist()):
            raise NotFoundError(f"campaign {campaign_id}: no such campaign (GET /api/v1/audit/campaigns)")

    @api.post("/audit/campaigns/{campaign_id}/next", summary="the annotator's open clip, or a newly claimed one")
    def next_clip(con: Con, who: Who, campaign_id: int, body: models.NextClipBody) -> dict:
        from curation.audit.campaigns import next_item

        annotator = who.name(body.annotator, "annotator")
        with bound(who, "audit"):
            _campaign(con, campaign_id)
            item = next_item(con, campaign_id, annotator)
        if item is None:
            return {"item": None}
        key = (campaign_id, annotator, item.clip_key, item.slot)
        state._served.setdefault(key, item.served_at)
        return {"item": {"campaign_id": campaign_id, "clip_id": item.clip_id, "slot": item.slot,
                         "caption": item.caption, "original_captions": list(item.original_captions),
                         "domain": item.domain, "source": item.source, "tags": list(item.tags),
                         "has_audio": item.audio_path is not None}}

    @api.post("/audit/campaigns/{campaign_id}/submit", status_code=201,
              summary="the verdicts on the annotator's open clip (every tag needs one)")
    def submit_verdicts(con: Con, who: Who, campaign_id: int, body: models.VerdictsBody) -> dict:
        from curation.audit.campaigns import AuditError, next_item, submit
        from curation.store import audit as store_audit

        annotator = who.name(body.annotator, "annotator")
        with bound(who, "audit"):
            _campaign(con, campaign_id)
            # Only the clip this annotator holds: looked up first, so a wrong clip id claims nothing.
            if store_audit.open_slot_of(con, campaign_id, annotator) is None:
                raise AuditError(f"clip_id: {annotator!r} holds no open clip in campaign {campaign_id} "
                                 f"(POST .../next claims one)")
            item = next_item(con, campaign_id, annotator)
            if item.clip_id != body.clip_id:
                raise AuditError(f"clip_id: {body.clip_id!r} is not {annotator!r}'s open clip in campaign "
                                 f"{campaign_id}; that is {item.clip_id!r}")
            key = (campaign_id, annotator, item.clip_key, item.slot)
            item = replace(item, served_at=state._served.get(key, item.served_at))
            submit(con, item, annotator, dict(body.verdicts), added=body.added, rating=body.rating, note=body.note)
            state._served.pop(key, None)
        return {"campaign_id": campaign_id, "clip_id": item.clip_id, "annotator": annotator,
                "verdicts": len(body.verdicts)}

    @api.get("/audit/campaigns/{campaign_id}/report", summary="per-tag precision, flagged tags, progress")
    def audit_report(con: Con, who: Who, campaign_id: int) -> dict:
        from curation.audit.report import campaign_report

        with bound(who, "browse"):
            _campaign(con, campaign_id)
            matrix, _state, _view = state.vocabulary(con, "tfidf")
            report = campaign_report(con, campaign_id, matrix=matrix)
        return {"campaign": _plain(report.campaign), "precision": records(report.precision),
                "flags": records(report.flags), "clean_reference": report.clean_reference,
                "progress": records(report.progress), "alpha_overall": _plain(report.alpha_overall)}

    # -------------------------------------------------------------------------------------------------- jobs
    @api.get("/jobs", summary="tagging and captioning jobs, newest first")
    def jobs(con: Con, who: Who) -> dict:
        from curation.store.extraction import jobs_frame

        with bound(who, "runs"):
            return {"jobs": records(jobs_frame(con))}

    def _current_job():
        from curation.extraction.jobs import current_job

        return current_job(str(Path(state.db_path).resolve()))

    def _job_json() -> dict:
        job = _current_job()
        if job is None:
            return {"job": None}
        progress = job.progress
        return {"job": {"running": job.running, "error": job.error,
                        "progress": None if progress is None else {
                            "job_id": progress.job_id, "planned": progress.planned, "finished": progress.finished,
                            "failed": progress.failed, "per_second": progress.per_second, "eta_s": progress.eta_s},
                        "report": None if job.report is None else _plain(job.report.as_dict())}}

    @api.post("/jobs", status_code=201, summary="start a tagging or captioning job in the server (one at a time)")
    def start_job(con: Con, who: Who, body: models.JobBody) -> dict:
        from curation.extraction.backends import build_backend
        from curation.extraction.jobs import start_background_job

        name = who.name(body.by)
        with bound(who, "runs"):
            backend = build_backend(body.backend, body.task, base_url=body.base_url, model=body.model,
                                    concurrency=body.concurrency)
            # Refused while a job runs on this database, whether started here or on the Tagging page.
            start_background_job(str(Path(state.db_path).resolve()), state.cursor(), backend, task=body.task,
                                 limit=body.limit, force=body.force, by=name, captioner=body.captioner)
        return _job_json()

    @api.get("/jobs/current", summary="progress of the server's current (or last) job, started here or in the app")
    def job_status(who: Who) -> dict:
        who.require("runs")
        return _job_json()

    @api.post("/jobs/current/stop", summary="stop the server's running job, started here or in the app (it keeps "
                                            "what it wrote)")
    def stop_job(who: Who) -> dict:
        who.require("runs")
        job = _current_job()
        if job is None or not job.running:
            raise NotFoundError("no tagging job is running in this server")
        job.stop()
        return _job_json()

    # -------------------------------------------------------------------------------------------------- runs
    @api.get("/runs", summary="training runs, newest first (refreshed from their backends first)")
    def runs(con: Con, who: Who) -> dict:
        from curation.runs.compare import runs_table
        from curation.runs.follow import refresh_runs

        with bound(who, "runs"):
            refresh_runs(con)
            return {"runs": records(runs_table(con))}

    @api.post("/runs", status_code=201, summary="launch one run per K (exported now) or on an existing export")
    def launch(con: Con, who: Who, body: models.LaunchBody) -> dict:
        from curation.runs.launch import LaunchRequest, launch_runs

        name = who.name(body.by)
        fields = body.model_dump(exclude={"by", "ks"})
        with bound(who, "runs"):
            run_ids = launch_runs(con, LaunchRequest(**fields, ks=tuple(body.ks), by=name))
        return {"run_ids": run_ids}

    @api.post("/runs/{run_id}/cancel", summary="end a queued or running run")
    def cancel(con: Con, who: Who, run_id: str, body: models.CancelBody) -> dict:
        from curation.runs.follow import cancel_run

        name = who.name(body.by)
        with bound(who, "runs"):
            cancel_run(con, run_id, by=name)
        return {"run_id": run_id, "state": "cancelled"}

    @api.get("/runs/compare", summary="metrics, config differences and probe results of several runs")
    def compare(con: Con, who: Who, run_id: Annotated[list[str], Query(min_length=1)]) -> dict:
        from curation.runs.compare import compare_runs

        with bound(who, "runs"):
            result = compare_runs(con, run_id)
        return {"runs": _plain(result.runs), "metrics": records(result.metrics),
                "config_diff": records(result.config_diff.reset_index()), "probe_table": records(result.probe_table),
                "best": result.best}

    @api.get("/runs/{run_id}/metrics", summary="a run's training and validation metrics")
    def run_metrics(con: Con, who: Who, run_id: str) -> dict:
        from curation.runs.compare import run_detail

        with bound(who, "runs"):
            detail = run_detail(con, run_id)
        return {"run": _plain(detail.run), "metrics": records(detail.metrics), "probes": records(detail.probes)}

    # ------------------------------------------------------------------------------------------------ tokens
    @api.get("/tokens", summary="API tokens (an admin sees everyone's, others their own) with their last use")
    def tokens(con: Con, who: Who) -> dict:
        from curation.admin.tokens import list_tokens

        with bound(who, None):
            return {"tokens": [t.as_dict() for t in list_tokens(con)]}

    @api.post("/tokens", status_code=201, summary="a new token (shown once: store it now)")
    def create_token(con: Con, who: Who, body: models.TokenBody) -> dict:
        from curation.admin.tokens import create_token as create

        with bound(who, None):
            secret, record = create(con, users_path(state.db_path), body.user, label=body.label,
                                    by=body.by if who.actor is None else None)
        return {"token": secret, **record.as_dict()}

    @api.delete("/tokens/{token_id}", summary="revoke a token (refused at once from then on)")
    def revoke_token(con: Con, who: Who, token_id: int) -> dict:
        from curation.admin.tokens import revoke_token as revoke

        with bound(who, None):
            return revoke(con, token_id, by="api" if who.actor is None else None).as_dict()

    # --------------------------------------------------------------------------------------- forwarded CLI
    @api.post("/cli", summary="run a `python -m curation` command in the server (how the CLI works while the "
                              "server holds the database); answers its exit code and output")
    def cli(who: Who, body: models.CliBody) -> dict:
        if state.run_cli is None:
            raise NotFoundError("this server runs no forwarded commands")
        # A forwarded decision takes its turn with every other decision write of this process in the library
        # (curation/store/decisions.WRITE_LOCK: ids are max + 1).
        return state.run_cli(body.argv, db_path=state.db_path, cwd=body.cwd, client_db=body.db, caller=who)

    return api


class UtsError_(UtsError, ValueError):
    """A query that cannot be answered as asked (HTTP 400)."""


def _decision_of(body):
    from curation.vocabulary.decisions import Decision

    if body.action == "merge":
        return Decision.merge(body.tags, into=body.into)
    if body.action == "rename":
        return Decision.rename(body.tag, to=body.into)
    if body.action == "prune":
        return Decision.prune(body.tags)
    if body.action == "restore":
        return Decision.restore(body.tags)
    if body.action == "clip_add":
        return Decision.clip_add(body.clip_id, body.tag)
    if body.action == "clip_remove":
        return Decision.clip_remove(body.clip_id, body.tag)
    if body.action == "use_extractors":
        return Decision.use_extractors(body.extractors)
    return Decision.undo(body.decision_id)


def _decision_json(record, in_effect: bool) -> dict:
    return {"decision_id": record.decision_id, "decided_at": record.decided_at.isoformat(),
            "decided_by": record.decided_by, "action": record.action, "payload": record.payload,
            "reason": record.reason, "description": record.describe(), "in_effect": in_effect}


def _retrying(write: Callable, state: ApiState):
    """Run one library write; retry it whole when a concurrent write made DuckDB refuse the transaction (it was
    rolled back: nothing of it stays). Decision writes already take turns in the library
    (curation/store/decisions.WRITE_LOCK); this covers the other writes (suggestion verdicts)."""
    for attempt in range(CONFLICT_RETRIES):
        try:
            return write()
        except (duckdb.TransactionException, duckdb.ConstraintException) as exc:
            if attempt == CONFLICT_RETRIES - 1:
                raise UtsError_(f"the database stayed busy with concurrent writes ({exc}); try again") from None
            time.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")

