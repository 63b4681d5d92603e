"""Several OpenAI-compatible servers kept busy by one job: pull-based dispatch, health checks, re-sends.

Place in the flow: extract / caption. ``OpenAIChatBackend`` (curation/extraction/backends.py) runs a ``ServerPool``
in its event loop when it is given one or several base URLs; the job (curation/extraction/jobs.py) only sees
``Answer``s, one per request, and the pool's ``report()``.

How the work is spread: each server gets ``concurrency`` workers, and a worker takes the next request the moment
its previous one is answered. A server that answers in 50 ms therefore takes twice the requests of one that needs
100 ms, and no server waits while another has a queue.

What happens when a server fails (after the openai client's own retries with backoff):
- A request that failed with a server-level error (connection failed, timed out, HTTP 5xx or 429) triggers a
  health check of that server (``GET {base_url}/models``, one at a time per server). If the check fails too, or
  the server failed ``drop_after`` requests in a row, the server is taken out of rotation: its workers stop, the
  requests it had in flight go back to the queue (their answers, if any still came, are never used), and the
  reason is kept for the report.
- A request whose server passed the check is sent to another server: the failure may be the request's (a
  caption that makes the model crash) or a passing one. After failing on ``MAX_SERVERS_PER_REQUEST`` live servers
  (or on every live one) it is answered as a failure with its last error: recorded as a failed attempt, retried
  by the next run, never a crash. Failures on a server that was later dropped do not count against a request.
- A dropped server is checked again every ``reprobe_s`` seconds (0: never) and rejoins when its check passes.
- When no server is left, the pool stops with ``ServersUnavailable``; every answer received before is handed to
  the job, which records it (the job is resumable as always).

Exactly once: a request is taken from the iterator once and wrapped in one ``_Pending``, which is at any time in
exactly one place (the re-send queue or one worker) and settles once; a settled item is never handed out again.

Example::

    pool = ServerPool(backend, ["http://gpu1:8000/v1", "http://gpu2:8000/v1"], iter(requests), out_queue, stop)
    asyncio.run(pool.run())   # answers arrive on out_queue; pool.report() says who answered what
"""
from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from curation.extraction.backends import Answer, Request, ServersUnavailable, short_error

MAX_SERVERS_PER_REQUEST = 2  # live servers a request may fail on before it is recorded as a failed attempt
HEALTH_TIMEOUT_S = 5.0  # the health check's own limit (at most the request timeout)
STOP_POLL_S = 0.05  # how often the pool looks at the job's stop switch (set from another thread)


@dataclass(eq=False)
class _Server:
    url: str
    json_output: bool  # JSON mode requested from this server (dropped for good when it refuses it)
    client: object = None  # AsyncOpenAI
    answered: int = 0  # requests it answered (the answer was handed to the job)
    errors: int = 0  # server-level failures (connection, timeout, 5xx, 429) after the client's retries
    in_a_row: int = 0  # server-level failures since its last answer
    busy_s: float = 0.0  # summed time of its answered requests
    live: bool = True
    reason: str | None = None  # why it was (last) taken out of rotation
    drops: int = 0
    rejoins: int = 0
    workers: set = field(default_factory=set)
    health: asyncio.Future | None = None

    def report(self) -> dict:
        return {"url": self.url, "state": "live" if self.live else "dropped", "answered": self.answered,
                "errors": self.errors, "mean_ms": round(1000 * self.busy_s / self.answered, 1) if self.answered
                else None, "drops": self.drops, "rejoins": self.rejoins, "reason": self.reason}


@dataclass(eq=False)
class _Pending:
    request: Request
    failed_on: dict[str, str] = field(default_factory=dict)  # url -> the server-level error it got there
    last: Answer | None = None  # the last failure (what is recorded if no server can answer it)
    settled: bool = False


class ServerPool:
    """One job's requests spread over ``urls`` (see the module docstring). Runs inside one event loop."""

    def __init__(self, backend, urls: list[str], requests: Iterator[Request], out: queue.Queue,
                 stop: threading.Event) -> None:
        self.backend = backend
        self.servers = [_Server(url, backend.json_for(url)) for url in urls]
        self.requests = requests
        self.out = out
        self.stop = stop
        self.retry: deque[_Pending] = deque()
        self.exhausted = False  # the request iterator has no more
        self.in_flight = 0  # items taken and not yet settled or put back
        self.answered = 0
        self.failure: BaseException | None = None
        self._running = False  # past the start-up health checks
        self._done: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._tasks: set[asyncio.Task] = set()
        self._health_http = None

    # ------------------------------------------------------------------------------------------ report

    def report(self) -> list[dict]:
        """Per server: url, state (live | dropped), answered, errors, mean_ms, drops, rejoins, reason."""
        return [server.report() for server in self.servers]

    # ------------------------------------------------------------------------------------------ running

    async def run(self) -> None:
        import httpx2
        from openai import AsyncOpenAI

        backend = self.backend
        try:  # nothing to ask (everything already done): no server is contacted, not even checked
            first = next(self.requests)
        except StopIteration:
            return
        self.requests = itertools.chain([first], self.requests)
        self._done, self._changed = asyncio.Event(), asyncio.Event()
        limits = httpx2.Limits(max_connections=backend.concurrency, max_keepalive_connections=backend.concurrency)
        clients = []
        try:
            self._health_http = httpx2.AsyncClient(timeout=min(HEALTH_TIMEOUT_S, backend.timeout_s))
            for server in self.servers:
                http = httpx2.AsyncClient(limits=limits, timeout=backend.timeout_s)
                clients.append(http)
                server.client = AsyncOpenAI(base_url=server.url, api_key=backend.api_key, timeout=backend.timeout_s,
                                            max_retries=backend.retries, http_client=http)
            # A server that does not answer its health check at the start never gets a request.
            checks = await asyncio.gather(*(self._check(server) for server in self.servers))
            for server, why in zip(self.servers, checks):
                if why is not None:
                    self._drop(server, f"not reachable at the start: {why}")
            if not any(s.live for s in self.servers):
                raise ServersUnavailable(self.report(), 0, at_start=True)
            self._running = True
            for server in self.servers:
                if server.live:
                    self._start_workers(server)
            while not self._done.is_set():
                if self.stop.is_set():
                    break
                try:
                    await asyncio.wait_for(self._done.wait(), STOP_POLL_S)
                except TimeoutError:
                    pass
        finally:
            self._done.set()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for http in clients:
                await http.aclose()
            if self._health_http is not None:
                await self._health_http.aclose()
        if isinstance(self.failure, ServersUnavailable) and self._running:
            # Counted again now: answers that arrived while the last server was being dropped are handed out too.
            raise ServersUnavailable(self.report(), self.answered, at_start=False)
        if self.failure is not None:
            raise self.failure

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _start_workers(self, server: _Server) -> None:
        for _ in range(self.backend.concurrency):
            server.workers.add(self._spawn(self._worker(server)))

    def _notify(self) -> None:
        """Wake every worker waiting for work (a new event for the next wait: waiting is cancellation-safe)."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _finish_if_done(self) -> None:
        if self.exhausted and not self.retry and self.in_flight == 0:
            self._done.set()
            self._notify()

    def _fail(self, error: BaseException) -> None:
        if self.failure is None:
            self.failure = error
        self._done.set()
        self._notify()

    # ------------------------------------------------------------------------------------------ workers

    async def _take(self, server: _Server) -> _Pending | None:
        """The next request for ``server``: a re-sent one it has not failed yet, else a new one; None when the
        job is over or the server out of rotation."""
        while True:
            if self._done.is_set() or not server.live:
                return None
            for i, item in enumerate(self.retry):
                if server.url not in item.failed_on:
                    del self.retry[i]
                    self.in_flight += 1
                    return item
            if not self.exhausted:
                try:
                    request = next(self.requests)
                except StopIteration:
                    self.exhausted = True
                    self._finish_if_done()
                    continue
                except BaseException as exc:  # noqa: BLE001 (the request source failed, e.g. a database read:
                    # the job stops and the consumer re-raises it in its own thread)
                    self._fail(exc)
                    return None
                self.in_flight += 1
                return _Pending(request)
            await self._changed.wait()

    async def _worker(self, server: _Server) -> None:
        me = asyncio.current_task()
        holding: _Pending | None = None
        try:
            while True:
                holding = await self._take(server)
                if holding is None:
                    return
                started = time.perf_counter()
                try:
                    answer, fault = await self.backend.ask(server, holding.request)
                except Exception as exc:  # noqa: BLE001 (a client-side bug must not lose the request: it is
                    # recorded as a failed attempt with the error, and the next run asks again)
                    self._settle(holding, Answer(holding.request.key, None,
                                                 f"client error: {type(exc).__name__}: {short_error(exc)}"))
                    holding = None
                    continue
                if fault is None:
                    server.in_a_row = 0
                    server.answered += 1
                    server.busy_s += time.perf_counter() - started
                    self._settle(holding, replace(answer, server=server.url))
                    holding = None
                    continue
                server.errors += 1
                server.in_a_row += 1
                if server.live and server.in_a_row >= self.backend.drop_after:
                    self._drop(server, f"{server.in_a_row} requests in a row failed, the last: {answer.error}",
                               keep=me)
                elif server.live:
                    why = await self._health(server)  # shared: concurrent failures wait for one check
                    if why is not None and server.live:
                        self._drop(server, f"{answer.error}; health check: {why}", keep=me)
                item, holding = holding, None
                if server.live:  # the server is fine: the request failed here, it may succeed elsewhere
                    item.failed_on[server.url] = answer.error or "failed"
                    item.last = replace(answer, server=server.url)
                self._put_back(item)
                if not server.live:
                    return
        except asyncio.CancelledError:
            # Its server left the rotation while the request was out: another server takes it. (When the job
            # ends, stopped or without servers, nothing more is handed out: the clip stays unattempted.)
            if holding is not None and not self._done.is_set():
                self._put_back(holding)
            raise
        finally:
            server.workers.discard(me)

    # ------------------------------------------------------------------------------------------ outcomes

    def _settle(self, item: _Pending, answer: Answer) -> None:
        self.in_flight -= 1
        if not item.settled:  # never twice: one answer per request reaches the job
            item.settled = True
            self.answered += 1
            self.out.put(answer)
        self._finish_if_done()

    def _live_failures(self, item: _Pending) -> tuple[int, bool]:
        """(live servers this item failed on, whether a live server it has not failed on remains)."""
        live = {s.url for s in self.servers if s.live}
        failed_live = sum(1 for url in item.failed_on if url in live)
        return failed_live, bool(live - set(item.failed_on))

    def _put_back(self, item: _Pending) -> None:
        """Back to the queue, or answered as a failure when no live server may still answer it."""
        failed_live, somewhere_left = self._live_failures(item)
        if item.last is not None and (failed_live >= MAX_SERVERS_PER_REQUEST or not somewhere_left):
            self._settle(item, item.last)
            return
        self.in_flight -= 1
        self.retry.append(item)
        self._notify()

    def _drop(self, server: _Server, reason: str, keep: asyncio.Task | None = None) -> None:
        """Out of rotation: its workers stop (their requests go back to the queue), the reason is kept."""
        if not server.live:
            return
        server.live, server.reason, server.drops = False, reason, server.drops + 1
        for task in list(server.workers):
            if task is not keep:
                task.cancel()
        if not any(s.live for s in self.servers):
            if self._running:  # (at the start, run() raises once every server was checked)
                self._fail(ServersUnavailable(self.report(), self.answered, at_start=False))
            return
        # Requests only this server could still take are answered as failures now.
        for item in [i for i in self.retry if i.last is not None]:
            failed_live, somewhere_left = self._live_failures(item)
            if failed_live >= MAX_SERVERS_PER_REQUEST or not somewhere_left:
                self.retry.remove(item)
                self.in_flight += 1
                self._settle(item, item.last)
        if self.backend.reprobe_s > 0:
            self._spawn(self._reprobe(server))
        self._notify()

    async def _reprobe(self, server: _Server) -> None:
        while not self._done.is_set() and not server.live:
            await asyncio.sleep(self.backend.reprobe_s)
            if await self._check(server) is None and not self._done.is_set():
                server.live, server.in_a_row, server.rejoins = True, 0, server.rejoins + 1
                self._start_workers(server)
                self._notify()

    # ------------------------------------------------------------------------------------------ health

    async def _health(self, server: _Server) -> str | None:
        """One health check per server at a time; every worker that saw a failure meanwhile shares its result."""
        if server.health is None or server.health.done():
            server.health = self._spawn(self._check(server))
        return await asyncio.shield(server.health)

    async def _check(self, server: _Server) -> str | None:
        """None when ``GET {url}/models`` gets any HTTP answer below 500, else why not."""
        import httpx2

        try:
            response = await self._health_http.get(f"{server.url}/models",
                                                   headers={"Authorization": f"Bearer {self.backend.api_key}"})
        except httpx2.TimeoutException:
            return f"GET /models: no answer within {min(HEALTH_TIMEOUT_S, self.backend.timeout_s):g} s"
        except httpx2.HTTPError as exc:
            return f"GET /models: {short_error(exc) or type(exc).__name__}"
        if response.status_code >= 500:
            return f"GET /models: HTTP {response.status_code}"
        return None
