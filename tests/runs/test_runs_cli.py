"""``python -m curation runs ...``: a K sweep launched from the command line (here with the contract-following
fake trainer of tests/run_dirs.py), listed, imported, shown, and refused cancels."""
from __future__ import annotations

import json

from helpers import make_cut, write_jsonl
from run_dirs import append_lines, fake_training_workdir, train_line, write_config

from curation import store
from curation.cli.main import main
from curation.ingest.ingest import ingest_path
from curation.runs import backends as launcher


def test_a_k_sweep_from_the_command_line(db_path, tmp_path, capsys):
    con = store.connect(db_path)
    cuts = [make_cut(f"c{i}", tags=[f"t{j}" for j in range(i % 7 + 1)], duration=2.0) for i in range(20)]
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
    con.close()
    workdir = fake_training_workdir(tmp_path / "fakeproj")
    code = main(["runs", "launch", "--db", str(db_path), "--k", "3", "--k", "5", "--k", "800", "--objective", "par",
                 "--steps", "5", "--env", "FAKE_MODE=finish", "--set", "num_workers=0", "--workdir", str(workdir),
                 "--runs-dir", str(tmp_path / "runs"), "--exports-dir", str(tmp_path / "exports"), "--by", "ana"])
    assert code == 0
    run_ids = capsys.readouterr().out.split()
    assert len(run_ids) == 3  # 800 is clipped to the vocabulary's 7 tags
    for pid in list(launcher._children):
        launcher._children[pid].wait(timeout=60)
    assert main(["runs", "import", "--db", str(db_path)]) == 0
    assert capsys.readouterr().out.count("running -> finished") == 3
    assert main(["runs", "list", "--db", str(db_path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(r["k"] for r in listed) == [3, 5, 7]
    assert {r["state"] for r in listed} == {"finished"} and len({r["sweep_id"] for r in listed}) == 1
    assert {r["objective"] for r in listed} == {"par"}
    assert main(["runs", "show", run_ids[0], "--db", str(db_path)]) == 0
    shown = capsys.readouterr().out
    assert f"{run_ids[0]}: finished (step 4" in shown and "export #1 (K=3" in shown
    assert "--set num_workers=0" in shown and "fake trainer starting" in shown
    assert main(["runs", "cancel", run_ids[0], "--db", str(db_path)]) == 2
    assert "already finished" in capsys.readouterr().err
    assert main(["runs", "list", "--exports", "--db", str(db_path), "--json"]) == 0
    assert sorted(e["k"] for e in json.loads(capsys.readouterr().out)) == [3, 5, 7]


def test_importing_a_run_directory_and_bad_input(db_path, tmp_path, capsys):
    run_dir = tmp_path / "elsewhere" / "r9"
    write_config(run_dir)
    append_lines(run_dir / "metrics.jsonl", [train_line(0), train_line(1)], partial='{"kind": "tr')
    assert main(["runs", "import", str(run_dir), "--db", str(db_path)]) == 0
    out = capsys.readouterr().out
    assert "r9: 2 metric lines" in out and "(new run)" in out and "still being written" in out
    assert main(["runs", "import", str(tmp_path / "missing"), "--db", str(db_path)]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["runs", "show", "nope", "--db", str(db_path)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    assert main(["runs", "launch", "--db", str(db_path), "--k", "3", "--env", "oops", "--by", "ana"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["runs", "launch", "--db", str(db_path), "--k", "3", "--audit-folds", "1", "--by", "ana",
                 "--exports-dir", str(tmp_path / "exports")]) == 2
    assert "model-audit folds 1: expected 0 (off) or at least 2" in capsys.readouterr().err
    assert not (tmp_path / "exports").exists()   # refused before anything was exported
