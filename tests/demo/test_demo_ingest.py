"""`python -m curation demo`: the corpus is ingested with its ground truth and declared captioner biases."""
from __future__ import annotations

from helpers import table_snapshot

from curation import store
from curation.cli.main import main
from curation.demo.synth import CAPTIONER_BIASES
from curation.store import corpus as store_corpus


def _build(db_path, capsys, *extra):
    assert main(["demo", "--db", str(db_path), "--clips", "30", "--seed", "5", *extra]) == 0
    return capsys.readouterr().out


def test_demo_is_ingested_with_truth_and_biases(db_path, capsys):
    _build(db_path, capsys)
    con = store.connect(db_path)
    stats = store_corpus.corpus_stats(con)
    assert stats["clips"] == 30 and set(stats["domains"]) <= {"speech", "music", "environment"}
    assert len(stats["domains"]) == 3
    assert con.execute("SELECT count(*) FROM clips WHERE NOT audio_ok").fetchall()[0][0] == 0
    assert con.execute("SELECT count(*) FROM clip_truth").fetchall()[0][0] == 30
    declared = store_corpus.corpus_meta(con, "captioner_biases")
    assert {b["name"]: b["rate"] for b in declared} == {b.name: b.rate for b in CAPTIONER_BIASES}
    # Every clip has one generated caption from the simulated captioner and 1-2 original ones.
    per_clip = con.execute("""SELECT count(*) FILTER (WHERE kind = 'generated'), count(*) FILTER (WHERE kind = 'original')
                              FROM captions GROUP BY clip_key""").fetchall()
    assert all(g == 1 and 1 <= o <= 2 for g, o in per_clip)
    assert con.execute("SELECT DISTINCT captioner FROM captions WHERE kind = 'generated'").fetchall() == [
        ("sim-captioner-v1",)]
    con.close()


def test_demo_is_deterministic_for_a_seed(tmp_path, capsys):
    snapshots = []
    for name in ("a", "b"):
        db = tmp_path / name / "uts.duckdb"
        db.parent.mkdir()
        _build(db, capsys)
        con = store.connect(db)
        snapshot = table_snapshot(con)
        truth = list(store_corpus.iter_table_rows(con, "clip_truth"))
        con.close()
        # Audio paths differ by folder; everything else must be identical.
        snapshot["clips"] = [row[:4] + row[5:12] + row[13:] for row in snapshot["clips"]]  # path, probed_at differ
        for volatile in ("ingests", "ingest_missing_audio"):
            snapshot.pop(volatile)
        snapshots.append((snapshot, truth))
    assert snapshots[0] == snapshots[1]


def test_demo_if_empty_leaves_an_existing_corpus_alone(db_path, capsys):
    _build(db_path, capsys)
    out = _build(db_path, capsys, "--if-empty")
    assert "already holds 30 clips" in out
    con = store.connect(db_path)
    assert con.execute("SELECT count(*) FROM ingests").fetchall()[0][0] == 1
    con.close()


def test_the_demo_build_can_compute_the_tag_map_so_its_first_visit_is_instant(db_path, capsys):
    from curation.vocabulary.tagmap import projection_is_cached

    out = _build(db_path, capsys, "--tag-map")  # what `make demo` runs
    assert "tag map projection of" in out
    con = store.connect(db_path)
    cached, n_tags = projection_is_cached(con)
    con.close()
    assert cached and n_tags > 10
