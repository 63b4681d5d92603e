"""Tagging and captioning jobs: plan, ask a backend, parse, write in batches, resume after a crash.

Place in the flow: ingest -> extract / caption (this module) -> decide. A job takes every clip that lacks a
successful attempt by this producer (backend + model) and prompt version, asks the backend, and writes each
batch of outcomes (tags or captions, plus one attempt row per clip, failures with the raw answer) in one
transaction. A killed job therefore restarts where it stopped: committed clips are skipped, the rest are asked
again; nothing is extracted twice for the same producer + prompt unless ``force``.

Example::

    from curation.extraction.backends import OfflineTagBackend
    report = run_job(con, OfflineTagBackend(), task="tags", by="ana")
    print(report.done, report.failed, report.skipped, report.tags_per_clip)
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import duckdb

from curation import store
from curation.admin import permissions
from curation.errors import UsageError
from curation.extraction.backends import Answer, Request
from curation.extraction.prompt import PROMPT_HASH, LabelParseError, messages_for, parse_labels
from curation.ingest import text_index
from curation.store import extraction as store_extraction
from curation.store.extraction import OutcomeRow

CAPTION_PROMPT_VERSION = "uts-caption-v1"
CAPTION_PROMPT = ("Describe this audio clip in detail: the scene and environment, every sound source and event in "
                  "order, speech (speaker, language, tone) and music (genre, instruments, tempo, mood), and the "
                  "recording's qualities. End with a paragraph that starts with 'In summary,'.")
READ_BATCH = 512  # clips whose text is read from the database at a time
MAX_CAPTION_CHARS = 50_000  # the ingest's limit too: a longer answer is a runaway generation, not a caption


@dataclass(frozen=True)
class JobReport:
    job_id: int
    task: str  # 'tags' or 'captions'
    producer: str  # backend:model, stored as the tag rows' extractor or the captions' captioner
    prompt_hash: str
    status: str  # finished | stopped | failed
    planned: int  # clips this run set out to do
    done: int
    failed: int
    skipped: int  # eligible clips already done by this producer + prompt (not forced)
    not_eligible: int  # clips without a generated caption (tags) or without audio (captions)
    tag_rows: int
    seconds: float
    # Per server of an OpenAI-compatible job: url, state (live | dropped), answered, errors, mean_ms, drops,
    # rejoins, reason (why it was taken out of rotation); empty for other backends.
    servers: tuple[dict, ...] = ()

    @property
    def per_second(self) -> float:
        return (self.done + self.failed) / self.seconds if self.seconds > 0 else 0.0

    @property
    def tags_per_clip(self) -> float:
        return self.tag_rows / self.done if self.done else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "servers": [dict(s) for s in self.servers], "per_second": round(self.per_second, 2),
                "tags_per_clip": round(self.tags_per_clip, 2)}


@dataclass(frozen=True)
class Progress:
    job_id: int
    planned: int
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.perf_counter)
    status: str = "running"
    servers: tuple[dict, ...] = ()  # per server, as JobReport.servers (live while the job runs)

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def per_second(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.finished / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        rate = self.per_second
        return (self.planned - self.finished) / rate if rate > 0 else None


def producer_of(backend) -> str:
    return f"{backend.name}:{backend.model}"


def prompt_hash_of(backend, task: str) -> str:
    """The prompt version of a job: the tag prompt's hash, the lexicon's for the offline extractor, the caption
    prompt's for captioning (with the sampling settings that change what a captioner writes)."""
    if task == "tags":
        return getattr(backend, "prompt_hash", None) or PROMPT_HASH
    settings = {k: v for k, v in backend.settings.items() if k in ("temperature", "top_p", "max_tokens",
                                                                    "max_new_tokens")}
    return hashlib.sha256(json.dumps([CAPTION_PROMPT_VERSION, CAPTION_PROMPT, settings], sort_keys=True)
                          .encode()).hexdigest()[:16]


def run_job(con: duckdb.DuckDBPyConnection, backend, *, task: str = "tags", limit: int | None = None,
            force: bool = False, by: str | None = None, captioner: str | None = None, batch_size: int = 256,
            flush_every_s: float = 2.0, on_progress: Callable[[Progress], None] | None = None,
            stop: threading.Event | None = None) -> JobReport:
    """Run one job to the end (or until ``stop`` is set); returns its report. See the module docstring."""
    if task not in ("tags", "captions"):
        raise UsageError(f"task {task!r}: expected 'tags' or 'captions'")
    by = permissions.authorize("runs", by)  # model jobs use compute: admins in a signed-in app
    if limit is not None and limit < 0:
        raise UsageError(f"--limit {limit}: expected 0 or more clips")
    producer = producer_of(backend)
    prompt_hash = prompt_hash_of(backend, task)
    plan = store_extraction.plan_items(con, task=task, producer=producer, prompt_hash=prompt_hash, limit=limit,
                                       force=force, captioner=captioner)
    settings = {**backend.settings, "prompt_hash": prompt_hash, "force": force, "limit": limit,
                "captioner_read": captioner}
    job_id = store_extraction.start_job(con, task=task, backend=backend.name, model=backend.model,
                                        producer=producer, prompt_hash=prompt_hash, settings=settings, by=by,
                                        planned=len(plan.clip_keys))
    store_extraction.set_job_skipped(con, job_id, plan.already_done)
    progress = Progress(job_id, len(plan.clip_keys))
    started = time.perf_counter()
    buffer: list[OutcomeRow] = []
    tag_rows = 0
    last_flush = time.perf_counter()
    server_report = getattr(backend, "server_report", None)  # several servers: who answered what, who was dropped
    writing = False  # a write failed: what is buffered is not written again on the way out

    def servers() -> tuple[dict, ...]:
        return tuple(server_report()) if server_report is not None else ()

    def flush() -> None:
        nonlocal buffer, tag_rows, progress, last_flush, writing
        if not buffer:
            return
        writing = True
        report = servers()
        with store.transaction(con):
            if task == "tags":
                tag_rows += store_extraction.write_tag_batch(con, job_id, producer, prompt_hash, buffer)
            else:
                keys = store_extraction.write_caption_batch(con, job_id, producer, prompt_hash, backend.settings,
                                                            buffer)
                if keys:
                    text_index.index_clips(con, keys)
            if report:
                store_extraction.set_job_servers(con, job_id, list(report))
        writing = False
        done = sum(r.ok for r in buffer)
        progress = replace(progress, done=progress.done + done, failed=progress.failed + len(buffer) - done,
                           servers=report)
        buffer = []
        last_flush = time.perf_counter()
        if on_progress:
            on_progress(progress)

    if on_progress:
        on_progress(progress)
    reader = con.cursor()  # requests are drawn in the backend's thread, beside this thread's writes

    def requests():
        for start in range(0, len(plan.clip_keys), READ_BATCH):
            chunk = plan.clip_keys[start:start + READ_BATCH]
            for item in store_extraction.fetch_items(reader, chunk, task=task, captioner=captioner):
                yield _request_for(item, task)

    status, message = "finished", None
    try:
        for answer in backend.answers(requests()):
            buffer.append(_outcome(answer, task))
            if len(buffer) >= batch_size or time.perf_counter() - last_flush >= flush_every_s:
                flush()
            if stop is not None and stop.is_set():
                backend.stop()
                status, message = "stopped", "stopped by request"
                break
        flush()
    except KeyboardInterrupt:
        flush()
        status, message = "stopped", "interrupted (Ctrl-C); run again to continue"
        raise
    except BaseException as exc:
        status, message = "failed", f"{type(exc).__name__}: {exc}"[:2000]
        if not writing:  # the backend stopped (e.g. every server dropped): the answers it gave are kept
            flush()
        raise
    finally:
        reader.close()
        seconds = time.perf_counter() - started
        final_servers = servers()
        store_extraction.finish_job(con, job_id, status=status, seconds=seconds, message=message,
                                    servers=list(final_servers) or None)
        if on_progress:
            on_progress(replace(progress, status=status, servers=final_servers))
    return JobReport(job_id=job_id, task=task, producer=producer, prompt_hash=prompt_hash, status=status,
                     planned=len(plan.clip_keys), done=progress.done, failed=progress.failed,
                     skipped=plan.already_done, not_eligible=plan.not_eligible, tag_rows=tag_rows, seconds=seconds,
                     servers=final_servers)


@dataclass(frozen=True)
class JobPreview:
    """What a tagging job would change, before it runs (the app shows it and asks first)."""

    task: str
    producer: str  # the extractor name its tag rows will carry
    planned: int  # clips it would ask about
    skipped: int  # clips this producer + prompt already did (not forced)
    not_eligible: int
    clips_tagged_by_others: int  # planned clips that already carry tags of another extractor
    tags_by_extractor: list[dict]  # per extractor over the planned clips: extractor, tag_rows, clips, distinct_tags
    sampled: int  # clips the estimate below was measured on (0: no estimate; a model decides at run time)
    estimated_tag_rows: int | None  # tag rows the job would add (measured on ``sampled`` clips, scaled)
    estimated_new_tags: int | None  # distinct tag texts in the sample that the corpus does not have yet


# Backends that answer on this machine without a model or a server: the preview runs them on a sample.
PREVIEW_SAMPLED_BACKENDS = ("offline",)


def preview_job(con: duckdb.DuckDBPyConnection, backend, *, task: str = "tags", limit: int | None = None,
                force: bool = False, captioner: str | None = None, sample: int = 200) -> JobPreview:
    """Plan the job without writing anything: which clips it would take, how many of them already have tags
    from another extractor, and (for rule-based backends, measured on up to ``sample`` clips spread over the
    plan) how many tag rows and new tag texts it would add."""
    from curation.store import vocabulary as store_vocabulary

    if task not in ("tags", "captions"):
        raise UsageError(f"task {task!r}: expected 'tags' or 'captions'")
    producer = producer_of(backend)
    plan = store_extraction.plan_items(con, task=task, producer=producer, prompt_hash=prompt_hash_of(backend, task),
                                       limit=limit, force=force, captioner=captioner)
    keys = list(plan.clip_keys)
    others = store_vocabulary.clips_with_any_tag(con, keys, excluding=producer) if keys else 0
    by_extractor = store_vocabulary.extractor_summary(con, keys).to_dict("records") if keys else []
    sampled, rows, new_tags = 0, None, None
    if task == "tags" and keys and getattr(backend, "name", "") in PREVIEW_SAMPLED_BACKENDS:
        step = max(1, len(keys) // sample)
        chosen = keys[::step][:sample]
        items = store_extraction.fetch_items(con, chosen, task=task, captioner=captioner)
        labels: list[tuple[str, ...]] = [_outcome(answer, task).outputs
                                         for answer in backend.answers(_request_for(i, task) for i in items)]
        sampled = len(labels)
        if sampled:
            rows = round(sum(len(set(found)) for found in labels) * len(keys) / sampled)
            known = store_vocabulary.known_tag_texts(con)
            new_tags = len({tag for found in labels for tag in found} - known)
    return JobPreview(task=task, producer=producer, planned=len(keys), skipped=plan.already_done,
                      not_eligible=plan.not_eligible, clips_tagged_by_others=others, tags_by_extractor=by_extractor,
                      sampled=sampled, estimated_tag_rows=rows, estimated_new_tags=new_tags)


def _request_for(item: store_extraction.PendingItem, task: str) -> Request:
    if task == "tags":
        return Request(key=item.clip_key, messages=messages_for(item.caption), text=item.caption)
    return Request(key=item.clip_key, messages=[{"role": "user", "content": CAPTION_PROMPT}],
                   audio_path=item.audio_path)


def _outcome(answer: Answer, task: str) -> OutcomeRow:
    if answer.error is not None:
        return OutcomeRow(answer.key, False, (), answer.text, answer.error)
    if task == "tags":
        try:
            parsed = parse_labels(answer.text)
        except LabelParseError as exc:
            return OutcomeRow(answer.key, False, (), answer.text, f"unparseable answer: {exc.reason}")
        return OutcomeRow(answer.key, True, parsed.labels, answer.text, None)
    caption = (answer.text or "").strip()
    if not caption:
        return OutcomeRow(answer.key, False, (), answer.text, "empty caption")
    if len(caption) > MAX_CAPTION_CHARS:
        return OutcomeRow(answer.key, False, (), caption[:2000], f"caption longer than {MAX_CAPTION_CHARS} characters")
    return OutcomeRow(answer.key, True, (caption,), None, None)


# ------------------------------------------------------------------------------------------ background jobs

class BackgroundJob:
    """A job running in a thread of this process (the app): its latest progress, its report, a stop switch.

    ``cursor`` must be a cursor of its own (DuckDB connections are not shared between threads).
    """

    def __init__(self, cursor: duckdb.DuckDBPyConnection, backend, **job_kwargs) -> None:
        # Checked here, in the caller's thread, where the signed-in actor is bound (threads do not inherit it).
        job_kwargs["by"] = permissions.authorize("runs", job_kwargs.get("by"))
        self.stop_event = threading.Event()
        self.progress: Progress | None = None
        self.report: JobReport | None = None
        self.error: str | None = None
        self._cursor = cursor
        self._thread = threading.Thread(target=self._run, args=(backend, job_kwargs), name="uts-job", daemon=True)
        self._thread.start()

    def _run(self, backend, job_kwargs: dict) -> None:
        try:
            self.report = run_job(self._cursor, backend, stop=self.stop_event, on_progress=self._set_progress,
                                  **job_kwargs)
        except Exception as exc:  # shown on the page; the job row says 'failed' with the same message
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self._cursor.close()

    def _set_progress(self, progress: Progress) -> None:
        self.progress = progress

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self.stop_event.set()


# The job running in this process per database: the app's pages and the API of one server share it, so a job
# started from either is seen, followed and stopped from both, and a second one is refused whoever asks.
_RUNNING: dict[str, BackgroundJob] = {}
_RUNNING_LOCK = threading.Lock()


def current_job(db_key: str) -> BackgroundJob | None:
    """The last job started in this process on this database (running or finished), if any."""
    return _RUNNING.get(db_key)


def start_background_job(db_key: str, cursor: duckdb.DuckDBPyConnection, backend, **job_kwargs) -> BackgroundJob:
    """Start a job on this database unless one runs already (started from the app or the API); ``cursor`` is
    the job's own (closed when the job ends, or here when it is refused)."""
    from curation.errors import UsageError

    with _RUNNING_LOCK:
        running = _RUNNING.get(db_key)
        if running is not None and running.running:
            cursor.close()
            raise UsageError("a tagging job is already running on this database (started from the app or the API):"
                             " stop it or wait for it to finish")
        job = BackgroundJob(cursor, backend, **job_kwargs)
        _RUNNING[db_key] = job
        return job

