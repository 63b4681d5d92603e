"""A real `python -m curation serve` on a free loopback port: the UI at /, the API at /api/v1, and the CLI working
while the server holds the database (the command-line contract of issue 16, exactly as written there)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request

import pytest
from conftest import PROJECT, ServeProcess, add_users, cli

from curation import store
from curation.admin import tokens as admin_tokens
from curation.admin.users import users_file_path


def _get(url: str, token: str | None = None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read()


def test_the_command_line_contract(demo_db, tmp_path):
    local_copy = tmp_path / "local" / "demo.duckdb"
    local_copy.parent.mkdir()
    shutil.copy(demo_db, local_copy)
    local_stats = cli("stats", "--db", str(local_copy), "--json")
    local_merge = cli("decide", "merge", "dog", "dogs", "--into", "dog", "--db", str(local_copy), "--by", "ana")
    assert local_merge.returncode == 0, local_merge.stderr

    server = ServeProcess(demo_db, tmp_path / "serve.log")
    try:
        server.wait_ready()
        status, page = _get(server.url + "/")
        assert status == 200 and b"<html" in page.lower()
        status, body = _get(server.url + "/api/v1/stats")
        assert status == 200 and json.loads(body) == json.loads(local_stats.stdout)

        stats = cli("stats", "--db", str(demo_db), "--json")
        assert stats.returncode == 0, stats.stderr
        assert stats.stdout == local_stats.stdout  # forwarded, byte for byte the local output
        merge = cli("decide", "merge", "dog", "dogs", "--into", "dog", "--db", str(demo_db), "--by", "ana")
        assert merge.returncode == 0, merge.stderr
        assert merge.stdout == local_merge.stdout == "decision #1: merge dog, dogs -> dog (by ana)\n"

        status, body = _get(server.url + "/api/v1/decisions")
        decisions = json.loads(body)["decisions"]
        assert [(d["decision_id"], d["description"], d["decided_by"]) for d in decisions] == [
            (1, "merge dog, dogs -> dog", "ana")]
    finally:
        server.stop()
    assert not demo_db.with_name(demo_db.name + ".server.json").exists()  # removed on a clean stop


def test_forwarded_commands_keep_errors_paths_and_refusals(serve, tmp_path):
    db = str(serve.db)
    refused = cli("decide", "merge", "no-such-tag", "--into", "dog", "--db", db, "--by", "ana")
    assert refused.returncode == 2 and refused.stderr.startswith("error: unknown tag 'no-such-tag'")
    # A relative --out is the caller's folder, not the server's.
    work = tmp_path / "work"
    work.mkdir()
    export = subprocess.run([sys.executable, "-m", "curation", "export", "--k", "5", "--out", "rel/v5", "--db", db],
                            cwd=work, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(PROJECT)}, check=False)
    assert export.returncode == 0, export.stderr
    assert (work / "rel" / "v5" / "label_5.json").exists()
    # restore cannot run while the server holds the file, and says why.
    backup = tmp_path / "backup.duckdb"
    shutil.copy(serve.db, backup)
    restore = cli("restore", str(backup), "--db", db, "--force")
    assert restore.returncode == 2
    assert "cannot run through the server" in restore.stderr and "stop the server first" in restore.stderr
    # --server names the server explicitly (UTS_SERVER does the same).
    explicit = cli("decide", "prune", "dog", "--db", db, "--by", "ana", "--server", serve.url)
    assert explicit.returncode == 0 and explicit.stdout.startswith("decision #")
    by_setting = cli("stats", "--db", db, env={"UTS_SERVER": serve.url})
    assert by_setting.returncode == 0 and "clips" in by_setting.stdout
    other = cli("stats", "--db", str(tmp_path / "other.duckdb"), "--server", serve.url)
    assert other.returncode == 2 and "this server holds" in other.stderr


def test_with_a_users_file_a_token_acts_as_its_user_and_local_commands_still_work(demo_db, tmp_path):
    add_users(demo_db, root="admin", bo="annotator")
    con = store.connect(demo_db)
    bo_token = admin_tokens.create_token(con, users_file_path(demo_db), "bo")[0]
    con.close()
    server = ServeProcess(demo_db, tmp_path / "serve.log")
    try:
        server.wait_ready()
        with pytest.raises(urllib.error.HTTPError) as no_token:
            _get(server.url + "/api/v1/stats")
        assert no_token.value.code == 401
        # On this machine, the CLI uses the key in the server file (it could open the database itself).
        local = cli("decide", "prune", "dog", "--db", str(demo_db), "--by", "root")
        assert local.returncode == 0, local.stderr
        # With a token, the command runs as the token's user, with their role.
        as_bo = cli("decide", "prune", "cat", "--db", str(demo_db), "--by", "bo", "--server", server.url,
                    env={"UTS_TOKEN": bo_token})
        assert as_bo.returncode == 2 and "may not decide" in as_bo.stderr
        far = cli("export", "--k", "5", "--out", str(tmp_path / "x"), "--db", str(demo_db), "--server", server.url,
                  env={"UTS_TOKEN": bo_token})
        assert far.returncode == 2 and "--out would name files on the server's machine" in far.stderr
        status, _body = _get(server.url + "/api/v1/stats", token=bo_token)
        assert status == 200
    finally:
        server.stop()


def test_after_sigkill_the_database_reopens_and_acknowledged_decisions_are_kept(serve):
    merged = cli("decide", "merge", "dog", "dogs", "--into", "dog", "--db", str(serve.db), "--by", "ana")
    assert merged.returncode == 0, merged.stderr
    serve.kill()
    assert serve.db.with_name(serve.db.name + ".server.json").exists()  # left behind, but its pid is gone
    stats = cli("stats", "--db", str(serve.db), "--json")
    assert stats.returncode == 0, stats.stderr  # runs locally again: the stale file is not followed
    con = store.connect(serve.db)
    assert con.execute("SELECT count(*) FROM decisions").fetchall()[0][0] == 1
    con.close()
    again = ServeProcess(serve.db, serve.db.with_name("again.log"))
    try:
        again.wait_ready()
        _status, body = _get(again.url + "/api/v1/decisions")
        assert [d["decision_id"] for d in json.loads(body)["decisions"]] == [1]
    finally:
        again.stop()


def test_concurrent_writers_through_the_api_and_the_cli_lose_and_duplicate_nothing(serve, demo_template):
    import threading

    from curation.client import ApiError, Client
    from curation.vocabulary.decisions import list_decisions
    from curation.vocabulary.ranking import load_tag_matrix

    template = store.connect(demo_template, read_only=True)  # the same corpus, a file nobody holds
    clip_id = str(load_tag_matrix(template).clip_ids[0])
    template.close()
    acknowledged, errors, forwarded = [], [], []

    def writer(index: int) -> None:
        api = Client(db=serve.db)
        for i in range(10):
            try:
                api.add_tag(clip_id, f"w{index}-{i}", by=f"writer{index}")
                acknowledged.append(f"w{index}-{i}")
            except ApiError as exc:
                errors.append(str(exc))

    def command_line() -> None:
        for i in range(3):
            forwarded.append(cli("decide", "add-tag", clip_id, f"cli-{i}", "--db", str(serve.db), "--by", "cli"))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)] + [threading.Thread(target=command_line)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(acknowledged) == 40
    assert [result.returncode for result in forwarded] == [0, 0, 0], [r.stderr for r in forwarded]
    serve.stop()
    con = store.connect(serve.db)
    try:
        tags = [r.payload["tag"] for r in list_decisions(con) if r.action == "clip_add"]
    finally:
        con.close()
    assert sorted(tags) == sorted([*acknowledged, "cli-0", "cli-1", "cli-2"])  # each exactly once
