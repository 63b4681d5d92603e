"""Tagging and captioning jobs against a real chat-completions server on a loopback port."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from chat_server import ScriptedChatServer, labels_for
from helpers import PROJECT, write_jsonl

from curation import store
from curation.cli.main import main as cli_main
from curation.extraction.backends import OpenAIChatBackend
from curation.extraction.jobs import run_job
from curation.extraction.prompt import PROMPT_HASH
from curation.ingest import text_index
from curation.ingest.ingest import ingest_path
from curation.store import extraction as store_extraction


@pytest.fixture
def server():
    chat = ScriptedChatServer(latency_s=0.0, slow_s=2.5).start()
    yield chat
    chat.stop()


def _ingest_captions(con, tmp_path: Path, captions: list[str]) -> dict[str, str]:
    """A flat JSONL of id, audio_path, caption (no tags, no duration, audio not on disk yet)."""
    rows = [{"id": f"c{i:03d}", "audio_path": f"later/c{i:03d}.wav", "caption": text}
            for i, text in enumerate(captions)]
    ingest_path(con, write_jsonl(tmp_path / "captions.jsonl", rows))
    return {r["id"]: r["caption"] for r in rows}


def _tags_by_clip(con, extractor: str) -> dict[str, tuple[str, ...]]:
    rows = con.execute("""SELECT c.clip_id, list(t.tag ORDER BY t.tag) FROM clip_tags ct JOIN tags t USING (tag_id)
                          JOIN clips c USING (clip_key) WHERE ct.extractor = ? GROUP BY 1""", [extractor]).fetchall()
    return {clip: tuple(tags) for clip, tags in rows}


def _attempts(con) -> dict[str, tuple]:
    rows = con.execute("""SELECT c.clip_id, a.ok, a.error, a.raw_answer, a.job_id FROM extraction_attempts a
                          JOIN clips c USING (clip_key)""").fetchall()
    return {r[0]: r[1:] for r in rows}


def test_scripted_server_job_gets_the_right_tags_and_failures(con, tmp_path, server):
    good = [f"A dog barks near a {word} street" for word in ("busy", "quiet", "wet", "long", "narrow", "dark")]
    special = ["[[malformed]] a dog", "[[fenced]] a dog", "[[429]] rain on a roof", "[[500]] wind",
               "[[slow]] thunder", "[[drop]] engine"]
    captions = _ingest_captions(con, tmp_path, good + special)
    assert con.execute("SELECT count(*) FROM clip_tags").fetchall()[0][0] == 0  # clips await extraction
    backend = OpenAIChatBackend(base_url=server.base_url, model="scripted", concurrency=4, timeout_s=1.0,
                                retries=1)
    report = run_job(con, backend, task="tags", by="ana")
    assert (report.status, report.planned, report.done, report.failed) == ("finished", 12, 8, 4)
    tags = _tags_by_clip(con, "openai:scripted")
    for clip_id, caption in captions.items():
        if caption in good or caption.startswith("[[429]]"):
            assert tags[clip_id] == tuple(sorted(set(labels_for(caption))))
    fenced = next(c for c, text in captions.items() if text.startswith("[[fenced]]"))
    assert tags[fenced] == ("dog-bark", "fenced")  # 7 dropped, duplicate collapsed, _ -> -
    attempts = _attempts(con)
    by_caption = {captions[c]: a for c, a in attempts.items()}
    assert by_caption["[[malformed]] a dog"][1].startswith("unparseable answer")
    assert "dog and bark" in by_caption["[[malformed]] a dog"][2]  # the raw answer is kept
    assert by_caption["[[500]] wind"][1].startswith("HTTP 500")
    assert by_caption["[[slow]] thunder"][1].startswith("timed out")
    assert by_caption["[[drop]] engine"][1].startswith("connection failed")
    assert server.requests_by_caption["[[429]] rain on a roof"] == 2  # one 429, one retry that succeeded
    assert server.requests_by_caption["[[500]] wind"] == 2  # first try + 1 retry
    # Every tag row names its producer and the prompt version; the job row has the counts.
    assert con.execute("SELECT DISTINCT prompt_hash FROM clip_tags").fetchall() == [(PROMPT_HASH,)]
    job = store_extraction.job_row(con, report.job_id)
    assert (job["status"], job["done"], job["failed"], job["started_by"]) == ("finished", 8, 4, "ana")
    # A second run retries only the failures; the successes are skipped.
    server.requests_by_caption.clear()
    again = run_job(con, backend, task="tags")
    assert (again.planned, again.skipped) == (4, 8)
    assert set(server.requests_by_caption) == set(special) - {"[[fenced]] a dog", "[[429]] rain on a roof"}


def test_server_without_json_mode_gets_plain_requests(con, tmp_path):
    chat = ScriptedChatServer(reject_json_mode=True).start()
    try:
        _ingest_captions(con, tmp_path, [f"bird song number {i}" for i in range(10)])
        backend = OpenAIChatBackend(base_url=chat.base_url, model="plain", concurrency=1)
        report = run_job(con, backend, task="tags")
    finally:
        chat.stop()
    assert (report.done, report.failed) == (10, 0)
    assert chat.json_mode_requests == 1 and not backend.json_output  # refused once, then plain text


def test_killed_job_restarts_where_it_stopped_and_asks_nothing_twice(tmp_path):
    db = tmp_path / "kill.duckdb"
    con = store.connect(db)
    captions = _ingest_captions(con, tmp_path, [f"clip number {i} with a barking dog" for i in range(1500)])
    con.close()
    # 700 answers, then the server holds every request: the job cannot finish before the kill, however slow or
    # fast the machine is (the previous version raced the job with a poll loop).
    chat = ScriptedChatServer(latency_s=0.01, answer_limit=700).start()
    command = [sys.executable, "-m", "curation", "extract-tags", "--db", str(db), "--backend", "openai",
               "--base-url", chat.base_url, "--model", "killme", "--concurrency", "8", "--no-progress"]
    try:
        job = subprocess.Popen(command, cwd=PROJECT, env={**os.environ, "PYTHONPATH": str(PROJECT)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        # 700 answered + 8 held in flight: every answer has reached the job. Batches of 256 are committed as they
        # fill, so two were committed; one more second lets the writer finish, then kill -9.
        while sum(chat.requests_by_caption.values()) < 708 and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(1.0)
        assert job.poll() is None, f"the job ended before it could be killed: {job.communicate()[1][-2000:]!r}"
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=30)
        chat.answer_limit = None  # the restarted job is answered in full
        chat.release.set()
        first_run = dict(chat.requests_by_caption)
        con = store.connect(db)
        committed = {c for c, (ok, *_rest) in _attempts(con).items() if ok}
        assert 0 < len(committed) < 1500
        report = run_job(con, OpenAIChatBackend(base_url=chat.base_url, model="killme", concurrency=8), task="tags")
    finally:
        chat.stop()
    assert report.skipped == len(committed) and report.done == 1500 - len(committed) and report.failed == 0
    assert len(_tags_by_clip(con, "openai:killme")) == 1500
    # Clips committed before the kill were not asked again.
    for clip_id in committed:
        assert chat.requests_by_caption[captions[clip_id]] == first_run[captions[clip_id]] == 1
    jobs = store_extraction.jobs_frame(con)
    assert sorted(jobs["status"]) == ["finished", "interrupted"]
    con.close()


def test_cli_contract_lexicon_backend(db_path, tmp_path, capsys):
    # The lexicon extractor is no longer the default (issue 14: the open-vocabulary one is): named here each time.
    con = store.connect(db_path)
    _ingest_captions(con, tmp_path, ["Two dogs are barking loudly in a small room", "A woman talks as water pours",
                                     "The weather report", "", "Birds chirping outdoors with wind blowing"])
    con.close()
    assert cli_main(["extract-tags", "--db", str(db_path), "--backend", "lexicon", "--limit", "2",
                     "--no-progress"]) == 0
    first = capsys.readouterr().out
    assert "done 2, failed 0, skipped 0" in first
    assert cli_main(["extract-tags", "--db", str(db_path), "--backend", "lexicon", "--no-progress", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # The empty caption is not eligible; "The weather report" holds no audio term: a recorded failure.
    assert (report["done"], report["failed"], report["skipped"], report["not_eligible"]) == (1, 1, 2, 1)
    assert cli_main(["extract-tags", "--db", str(db_path), "--backend", "lexicon", "--no-progress", "--force"]) == 0
    assert "done 3, failed 1, skipped 0" in capsys.readouterr().out
    con = store.connect(db_path, read_only=True)
    tags = _tags_by_clip(con, "offline:lexicon-v1")
    con.close()
    assert tags["c000"] == ("bark", "dog", "loud", "room") and "bird" in tags["c004"]


def test_cli_reports_a_missing_server_setting(db_path, capsys):
    assert cli_main(["extract-tags", "--db", str(db_path), "--backend", "openai", "--model", "m"]) == 2
    assert "--base-url is required" in capsys.readouterr().err


def _write_tone(path: Path, seconds: float = 0.5, rate: int = 16_000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)


def test_caption_job_sends_audio_and_stores_captioner_and_settings(con, tmp_path, server):
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(3):
        _write_tone(audio / f"a{i}.wav")
    rows = [{"id": f"a{i}", "audio_path": f"audio/a{i}.wav", "caption": "an old caption from a manifest"}
            for i in range(3)] + [{"id": "gone", "audio_path": "audio/gone.wav"}]
    ingest_path(con, write_jsonl(tmp_path / "clips.jsonl", rows))
    backend = OpenAIChatBackend(base_url=server.base_url, model="omni-captioner", concurrency=2, audio=True,
                                temperature=0.6, top_p=0.95, max_tokens=512)
    report = run_job(con, backend, task="captions", by="ana")
    # 'gone' has an audio path but no file: a failure that says so, never a crash.
    assert (report.done, report.failed) == (3, 1)
    assert server.audio_parts == 3
    rows = con.execute("""SELECT c.clip_id, g.captioner, g.text, g.settings FROM captions g JOIN clips c
                          USING (clip_key) WHERE g.kind = 'generated' ORDER BY 1, 2""").fetchall()
    mine = [r for r in rows if r[1] == "openai:omni-captioner"]
    assert [r[0] for r in mine] == ["a0", "a1", "a2"]
    assert all(r[2].endswith("In summary, a test clip.") for r in mine)
    assert json.loads(mine[0][3])["temperature"] == 0.6 and json.loads(mine[0][3])["top_p"] == 0.95
    # Each clip now carries captions from two captioners, and the text index knows the new words.
    assert {r[1] for r in rows if r[0] == "a0"} == {"manifest", "openai:omni-captioner"}
    found = text_index.search(con, "base64 characters")
    assert len(found) == 3
    assert _attempts(con)["gone"][1].startswith("audio unreadable")
    # Tagging can then read this captioner's captions specifically.
    tagged = run_job(con, OpenAIChatBackend(base_url=server.base_url, model="tagger"), task="tags",
                     captioner="openai:omni-captioner")
    assert tagged.done == 3
    assert set(_tags_by_clip(con, "openai:tagger")["a0"]) >= {"a", "sound", "of"}


def test_a_server_that_is_not_there_stops_the_job_with_a_clear_error(con, tmp_path):
    import socket

    from curation.extraction.backends import BackendUnavailable

    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        free_port = sock.getsockname()[1]
    _ingest_captions(con, tmp_path, [f"a dog number {i}" for i in range(50)])
    backend = OpenAIChatBackend(base_url=f"http://127.0.0.1:{free_port}/v1", model="m", concurrency=4, retries=0)
    with pytest.raises(BackendUnavailable) as caught:
        run_job(con, backend, task="tags")
    # Checked before any request is sent (GET /models): the job stops at once, naming the URL and the likely fix.
    assert f"--base-url http://127.0.0.1:{free_port}/v1: no connection (not reachable at the start" in str(caught.value)
    assert "the URL right (it ends in /v1)" in str(caught.value)
    job = store_extraction.jobs_frame(con)
    assert list(job["status"]) == ["failed"] and "ServersUnavailable" in job["message"][0]
    assert con.execute("SELECT count(*) FROM clip_tags").fetchall()[0][0] == 0
