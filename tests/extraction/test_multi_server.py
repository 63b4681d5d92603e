"""One tagging job spread over several real chat servers on loopback ports, of different speeds, some of which die.

The servers are tests/chat_server.py in threads; ``die_after=N`` makes one really stop listening (and reset its open
connections) after N answers, mid-job. What is checked is what a user relies on: every clip's tags recorded exactly
once in the DuckDB store, the faster server doing more of the work, and the job saying which server was dropped
and why.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
from chat_server import ScriptedChatServer, labels_for
from helpers import write_jsonl

from curation import store
from curation.cli.main import main as cli_main
from curation.errors import UsageError
from curation.extraction.backends import OpenAIChatBackend, ServersUnavailable, parse_base_urls
from curation.extraction.jobs import run_job
from curation.ingest.ingest import ingest_path
from curation.store import extraction as store_extraction

PRODUCER = "openai:multi"


@pytest.fixture
def servers():
    started: list[ScriptedChatServer] = []

    def start(**options) -> ScriptedChatServer:
        server = ScriptedChatServer(**options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _ingest(con, tmp_path: Path, captions: list[str]) -> dict[str, str]:
    rows = [{"id": f"c{i:04d}", "audio_path": f"later/c{i:04d}.wav", "caption": text} for i, text in enumerate(captions)]
    ingest_path(con, write_jsonl(tmp_path / "captions.jsonl", rows))
    return {r["id"]: r["caption"] for r in rows}


def _captions(n: int) -> list[str]:
    return [f"clip {i} a dog barks near a {('busy', 'quiet', 'wet')[i % 3]} street number {i}" for i in range(n)]


def _backend(urls: list[str], **options) -> OpenAIChatBackend:
    settings = {"concurrency": 4, "timeout_s": 3.0, "retries": 1, "reprobe_s": 0, **options}
    return OpenAIChatBackend(base_url=urls, model="multi", **settings)


def _assert_recorded_once(con, captions: dict[str, str], expected_clips: set[str]) -> None:
    """Each expected clip has one successful attempt and exactly its tags, each tag row once; no other clip has any."""
    attempts = con.execute("""SELECT c.clip_id, a.ok FROM extraction_attempts a JOIN clips c USING (clip_key)
                              WHERE a.producer = ?""", [PRODUCER]).fetchall()
    assert sorted(clip for clip, _ in attempts) == sorted(expected_clips)
    assert all(ok for _, ok in attempts)
    rows = con.execute("""SELECT c.clip_id, t.tag FROM clip_tags ct JOIN tags t USING (tag_id)
                          JOIN clips c USING (clip_key) WHERE ct.extractor = ?""", [PRODUCER]).fetchall()
    assert len(rows) == len(set(rows)), "a tag row was written twice"
    by_clip: dict[str, set[str]] = {}
    for clip, tag in rows:
        by_clip.setdefault(clip, set()).add(tag)
    assert set(by_clip) == expected_clips
    for clip in expected_clips:
        assert by_clip[clip] == set(labels_for(captions[clip]))


def test_servers_of_different_speeds_share_the_job_and_a_dying_one_is_dropped_without_losing_a_clip(
        con, tmp_path, servers):
    fast = servers(latency_s=0.002)
    slow = servers(latency_s=0.06)
    dying = servers(latency_s=0.01, die_after=20)  # really stops listening after its 20th answer, mid-job
    captions = _ingest(con, tmp_path, _captions(150))
    backend = _backend([fast.base_url, slow.base_url, dying.base_url])
    report = run_job(con, backend, task="tags", by="ana")
    assert (report.status, report.planned, report.done, report.failed) == ("finished", 150, 150, 0)
    _assert_recorded_once(con, captions, set(captions))
    assert dying.died.is_set()
    by_url = {s["url"]: s for s in report.servers}
    assert list(by_url) == [fast.base_url, slow.base_url, dying.base_url]
    # Every recorded clip was answered by exactly one server: the per-server counts add up to the clips.
    assert sum(s["answered"] for s in report.servers) == 150
    assert by_url[fast.base_url]["answered"] > by_url[slow.base_url]["answered"] > 0
    gone = by_url[dying.base_url]
    # (a server answers what it had started before it died: a few more than 20; the client never counts more)
    assert gone["state"] == "dropped" and gone["drops"] == 1 and 0 < gone["answered"] <= dying.answered
    assert "health check" in gone["reason"] and "GET /models" in gone["reason"]
    assert by_url[fast.base_url]["state"] == by_url[slow.base_url]["state"] == "live"
    # Requests the dying server had in flight were sent again elsewhere: every caption reached a live server.
    asked_live = fast.requests_by_caption + slow.requests_by_caption
    unanswered_by_dying = set(captions.values()) - set(asked_live)
    assert len(unanswered_by_dying) == gone["answered"]
    # The job row keeps the same per-server report (the Tagging page and `GET /jobs` show it).
    stored = store_extraction.job_servers(con, report.job_id)
    assert [(s["url"], s["state"], s["answered"]) for s in stored] == [
        (s["url"], s["state"], s["answered"]) for s in report.servers]
    assert json.loads(store_extraction.jobs_frame(con)["servers"][0])[2]["state"] == "dropped"


def test_when_every_server_dies_the_job_stops_with_a_typed_error_and_keeps_what_was_answered(con, tmp_path, servers):
    first = servers(latency_s=0.005, die_after=15)
    second = servers(latency_s=0.005, die_after=25)
    captions = _ingest(con, tmp_path, _captions(120))
    with pytest.raises(ServersUnavailable) as caught:
        run_job(con, _backend([first.base_url, second.base_url]), task="tags")
    error = caught.value
    assert "all 2 server(s) failed" in str(error) and "run the same command again" in str(error)
    assert {s["state"] for s in error.servers} == {"dropped"}
    answered = sum(s["answered"] for s in error.servers)
    assert error.answered == answered > 0
    assert [s["answered"] <= server.answered for s, server in zip(error.servers, (first, second))] == [True, True]
    job = store_extraction.jobs_frame(con).iloc[0]
    assert job["status"] == "failed" and "ServersUnavailable" in job["message"]
    assert job["done"] == answered and job["failed"] == 0  # every answer received was recorded, none twice
    recorded = {clip for clip, in con.execute("""SELECT c.clip_id FROM extraction_attempts a JOIN clips c
                                                USING (clip_key)""").fetchall()}
    _assert_recorded_once(con, captions, recorded)
    assert len(recorded) == answered
    # Resumable as any job: a server that answers finishes the rest and is not asked about recorded clips.
    fresh = servers(latency_s=0.0)
    again = run_job(con, _backend([fresh.base_url]), task="tags")
    assert (again.status, again.skipped, again.done, again.failed) == ("finished", answered, 120 - answered, 0)
    assert not {captions[clip] for clip in recorded} & set(fresh.requests_by_caption)
    _assert_recorded_once(con, captions, set(captions))


def test_a_request_that_fails_on_every_server_is_one_recorded_failure_and_drops_no_server(con, tmp_path, servers):
    one, two = servers(latency_s=0.002), servers(latency_s=0.002)
    captions = _ingest(con, tmp_path, [*_captions(40), "[[500]] wind", "[[drop]] engine", "[[malformed]] dog"])
    report = run_job(con, _backend([one.base_url, two.base_url], retries=0), task="tags")
    assert (report.done, report.failed) == (40, 3)
    # A server error is tried on the other server before it is recorded; a bad answer is recorded at once.
    for text in ("[[500]] wind", "[[drop]] engine"):
        assert (one.requests_by_caption[text], two.requests_by_caption[text]) == (1, 1)
    assert one.requests_by_caption["[[malformed]] dog"] + two.requests_by_caption["[[malformed]] dog"] == 1
    errors = dict(con.execute("""SELECT c.clip_id, a.error FROM extraction_attempts a JOIN clips c USING (clip_key)
                                 WHERE NOT a.ok""").fetchall())
    by_text = {captions[clip]: error for clip, error in errors.items()}
    assert by_text["[[500]] wind"].startswith("HTTP 500") and by_text["[[drop]] engine"].startswith("connection")
    assert by_text["[[malformed]] dog"].startswith("unparseable answer")
    assert [s["state"] for s in report.servers] == ["live", "live"]  # the servers were fine: the requests were not


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_server_down_at_the_start_is_checked_again_and_rejoins(con, tmp_path, servers):
    steady = servers(latency_s=0.05)
    late_port = _free_port()
    late_url = f"http://127.0.0.1:{late_port}/v1"
    _ingest(con, tmp_path, _captions(80))
    backend = _backend([steady.base_url, late_url], concurrency=2, reprobe_s=0.1)

    def start_late_server_once_it_was_dropped() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                s["url"] == late_url and s["state"] == "dropped" for s in backend.server_report()):
            time.sleep(0.01)
        servers(latency_s=0.0, port=late_port)

    # Nothing listens on late_port when the job starts; a server comes up there once the job has dropped it. The
    # steady server alone needs 2 s (2 in flight, 50 ms each): the late one is back well before the job can end.
    threading.Thread(target=start_late_server_once_it_was_dropped, daemon=True).start()
    report = run_job(con, backend, task="tags")
    assert (report.status, report.done) == ("finished", 80)
    late = {s["url"]: s for s in report.servers}[late_url]
    assert late["state"] == "live" and (late["drops"], late["rejoins"]) == (1, 1)
    assert late["reason"].startswith("not reachable at the start") and late["answered"] > 0


def test_cli_takes_repeated_and_comma_separated_base_urls_and_reports_each_server(db_path, tmp_path, servers, capsys):
    a, b, c = servers(latency_s=0.002), servers(latency_s=0.002), servers(latency_s=0.002, die_after=5)
    con = store.connect(db_path)
    _ingest(con, tmp_path, _captions(30))
    con.close()
    assert cli_main(["extract-tags", "--db", str(db_path), "--backend", "openai", "--model", "multi",
                     "--base-url", a.base_url, "--base-url", f"{b.base_url},{c.base_url}/", "--concurrency", "2",
                     "--retries", "0", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "done 30, failed 0" in captured.out
    lines = {server.base_url: next(line for line in captured.out.splitlines() if f"  {server.base_url}: " in line)
             for server in (a, b, c)}
    assert lines[a.base_url].startswith(f"  {a.base_url}: live, answered ")
    assert lines[b.base_url].startswith(f"  {b.base_url}: live, answered ")
    assert lines[c.base_url].startswith(f"  {c.base_url}: dropped, answered ")
    assert "taken out of rotation 1x (last: connection failed" in lines[c.base_url]
    assert sum(int(line.split("answered ", 1)[1].split(",")[0]) for line in lines.values()) == 30
    # Said when it happens too, not only in the final report.
    assert f"server {c.base_url} taken out of rotation after " in captured.err
    # A URL listed twice, or without its scheme, is refused before anything is asked.
    assert cli_main(["extract-tags", "--db", str(db_path), "--backend", "openai", "--model", "multi",
                     "--base-url", f"{a.base_url},{a.base_url}", "--no-progress", "--force"]) == 2
    assert "listed twice" in capsys.readouterr().err
    assert cli_main(["extract-tags", "--db", str(db_path), "--backend", "openai", "--model", "multi",
                     "--base-url", "127.0.0.1:8000/v1", "--no-progress"]) == 2
    assert "expected a server URL starting with http://" in capsys.readouterr().err


def test_parse_base_urls():
    assert parse_base_urls("http://a:1/v1, http://b:2/v1/") == ("http://a:1/v1", "http://b:2/v1")
    assert parse_base_urls(["http://a:1/v1", "https://b/v1 http://c/v1"]) == (
        "http://a:1/v1", "https://b/v1", "http://c/v1")
    assert parse_base_urls(None) == parse_base_urls("") == ()
    with pytest.raises(UsageError, match="listed twice"):
        parse_base_urls(["http://a/v1", "http://a/v1/"])


def test_a_stopped_multi_server_job_ends_promptly(con, tmp_path, servers):
    slow = servers(latency_s=0.2)
    other = servers(latency_s=0.2)
    _ingest(con, tmp_path, _captions(100))
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.perf_counter()
    report = run_job(con, _backend([slow.base_url, other.base_url]), task="tags", stop=stop)
    assert report.status == "stopped" and time.perf_counter() - started < 5
    # What was answered before the stop is recorded (answers still arriving after it are not used).
    assert 0 < report.done < 100 and report.done <= sum(s["answered"] for s in report.servers)


def test_a_job_with_nothing_to_do_contacts_no_server(con, tmp_path):
    _ingest(con, tmp_path, _captions(3))
    report = run_job(con, _backend([f"http://127.0.0.1:{_free_port()}/v1"]), task="tags", limit=0)
    assert (report.status, report.planned) == ("finished", 0)
    assert [(s["state"], s["answered"], s["drops"]) for s in report.servers] == [("live", 0, 0)]


def test_a_caption_job_spreads_over_several_servers_too(con, tmp_path, servers):
    import numpy as np
    import soundfile

    one, two = servers(latency_s=0.02), servers(latency_s=0.02)
    (tmp_path / "audio").mkdir()
    rate = 16_000
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(rate // 4) / rate)).astype(np.float32)
    for i in range(8):
        soundfile.write(tmp_path / "audio" / f"a{i}.wav", tone, rate)
    ingest_path(con, write_jsonl(tmp_path / "clips.jsonl", [{"id": f"a{i}", "audio_path": f"audio/a{i}.wav"}
                                                            for i in range(8)]))
    backend = OpenAIChatBackend(base_url=f"{one.base_url},{two.base_url}", model="omni", concurrency=1, audio=True,
                                reprobe_s=0)
    report = run_job(con, backend, task="captions")
    assert (report.done, report.failed) == (8, 0)
    assert one.audio_parts > 0 and two.audio_parts > 0 and one.audio_parts + two.audio_parts == 8
    assert [s["answered"] for s in report.servers] == [one.audio_parts, two.audio_parts]
    captions = con.execute("""SELECT clip_key, count(*) FROM captions WHERE captioner = 'openai:omni'
                              GROUP BY 1""").fetchall()
    assert len(captions) == 8 and {n for _, n in captions} == {1}
