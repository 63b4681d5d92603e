"""scripts/quickstart.sh end to end: the demo corpus -> merges -> export -> tiny MTC run -> probe -> import.

Checks what a user would notice if the quickstart broke: it fails, an artefact a later step needs is missing, or
the app would show no run, no decision, no probe. ~2 min on the shared 2-core machine (the script at its defaults).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import PROJECT, SHARED_DATA

from curation import store

SCRIPT = PROJECT / "scripts" / "quickstart.sh"
K = 50


def _run(work: Path, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "SHARED_DATA": str(SHARED_DATA), "K": str(K)}
    return subprocess.run(["bash", str(SCRIPT), str(work)], cwd=PROJECT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_quickstart_runs_the_whole_flow(tmp_path: Path):
    work = tmp_path / "quickstart"
    result = _run(work, timeout=600)
    assert result.returncode == 0, f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"

    export = work / "exports" / f"v{K}"
    assert (export / f"label_{K}.json").is_file() and (export / "cuts.jsonl.gz").is_file()
    run = work / "runs" / f"mtc_tiny_k{K}"
    assert (run / "metrics.jsonl").is_file() and (run / "finished.json").is_file()

    con = store.connect(work / "uts.duckdb", read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
        assert con.execute("SELECT count(*) FROM decisions").fetchone()[0] >= 1
        probes = con.execute("SELECT count(*) FROM probe_results").fetchone()[0]
    finally:
        con.close()

    if (SHARED_DATA / "esc50" / "esc50_subset.csv").is_file():
        lines = (run / "results.jsonl").read_text().splitlines()
        assert any('"encoder": "pretrained"' in line for line in lines), lines
        assert probes == len(lines)
    else:
        assert "probe skipped" in result.stdout
        assert not (run / "results.jsonl").exists() and probes == 0
    assert "make demo DB=" in result.stdout


def test_quickstart_refuses_a_folder_that_is_not_empty(tmp_path: Path):
    (tmp_path / "keep.txt").write_text("mine")
    result = _run(tmp_path, timeout=60)
    assert result.returncode != 0 and "not empty" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
