"""Model-based audit: confident-learning thresholds and suspects (against a plain-Python reference of the binary
confident joint), planted label noise found above chance through the real loop (ingest -> export -> run dir ->
``python -m curation model-audit``, which scores out of sample in a subprocess), and the CLI's JSON contract."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import make_cut, write_jsonl
from run_dirs import finish, write_config

from curation import store
from curation.audit.model_audit import (
    CONTEXT_MODES,
    DEFAULT_CONTEXT,
    DEFAULT_FBANK_STATS,
    DISPUTES_MATRIX,
    FBANK_STATS,
    ModelAuditError,
    OosScores,
    confident_thresholds,
    evaluate_planted_biases,
    find_suspects,
    precision_comparison,
    read_oos_scores,
    run_model_audit,
    scores_written,
    store_audit_of,
    suspect_mask,
    tag_estimates,
)
from curation.cli.main import build_parser
from curation.cli.main import main as cli_main
from curation.store import model_audit as store_model_audit

# ------------------------------------------------------------------------------------- hand-built score matrix

# 6 clips x 2 tags. Tag "a" asserted on clips 0-2, tag "b" on clips 0 and 5.
SCORES = np.array([[0.9, 0.8],
                   [0.8, 0.1],
                   [0.1, 0.2],   # a asserted with p=0.1: a hallucination suspect
                   [0.2, 0.1],
                   [0.7, 0.0],   # a not asserted with p=0.7: a miss suspect
                   [0.1, 0.9]])
TARGETS = np.array([[1, 1], [1, 0], [1, 0], [0, 0], [0, 0], [0, 1]], dtype=bool)


def reference_suspects(scores, targets):
    """cleanlab's rule for one binary class, written as loops: an example counts for every class whose probability
    reaches that class's average self-confidence; with two, the more probable wins; off-diagonal = issue."""
    n, k = scores.shape
    found = {}
    for j in range(k):
        pos = [scores[i, j] for i in range(n) if targets[i, j]]
        neg = [1 - scores[i, j] for i in range(n) if not targets[i, j]]
        t1 = sum(pos) / len(pos) if pos else math.nan
        t0 = sum(neg) / len(neg) if neg else math.nan
        for i in range(n):
            p = scores[i, j]
            above = {c: prob for c, prob, t in ((1, p, t1), (0, 1 - p, t0)) if not math.isnan(t) and prob >= t}
            if not above:
                continue
            guess = max(above, key=lambda c: (above[c], c))
            if guess != int(targets[i, j]):
                found[(i, j)] = "hallucination" if targets[i, j] else "miss"
    return found


def test_thresholds_are_per_tag_average_self_confidence():
    t_asserted, t_omitted = confident_thresholds(SCORES, TARGETS)
    assert t_asserted == pytest.approx([(0.9 + 0.8 + 0.1) / 3, (0.8 + 0.9) / 2])
    assert t_omitted == pytest.approx([(0.8 + 0.3 + 0.9) / 3, (0.9 + 0.8 + 0.9 + 1.0) / 4])


def test_suspects_match_the_reference_confident_joint_and_rank_best_first():
    suspects = find_suspects(SCORES, TARGETS, [f"c{i}" for i in range(6)], ["a", "b"])
    got = {(int(r.clip_id[1:]), ["a", "b"].index(r.tag)): r.kind for r in suspects.itertuples()}
    assert got == reference_suspects(SCORES, TARGETS)
    assert got[(2, 0)] == "hallucination" and got[(4, 0)] == "miss"
    assert list(suspects["score"]) == sorted(suspects["score"], reverse=True)
    row = suspects[(suspects["clip_id"] == "c2") & (suspects["tag"] == "a")].iloc[0]
    assert row["score"] == pytest.approx(0.9)  # 1 - p for a hallucination


@pytest.mark.parametrize("seed", range(5))
def test_suspects_match_the_reference_on_random_matrices(seed):
    rng = np.random.default_rng(seed)
    scores = rng.uniform(size=(40, 5))
    targets = rng.uniform(size=(40, 5)) < np.array([0.05, 0.3, 0.5, 0.9, 0.0])
    hallucination, miss = suspect_mask(scores, targets, *confident_thresholds(scores, targets))
    got = {(i, j): "hallucination" for i, j in zip(*np.nonzero(hallucination))}
    got.update({(i, j): "miss" for i, j in zip(*np.nonzero(miss))})
    assert got == reference_suspects(scores, targets)
    assert not miss[:, 4].any()  # a tag asserted nowhere has no threshold: nothing is called a miss of it


def test_rare_tag_thresholds_make_a_rare_tags_errors_visible():
    """With one global cut at 0.5 a rare tag's misses (p = 0.4, above where its own clips sit) would never show."""
    rng = np.random.default_rng(0)
    scores = np.clip(rng.normal(0.05, 0.02, size=(200, 1)), 0, 1)
    targets = np.zeros((200, 1), bool)
    targets[:10] = True
    scores[:10] = 0.35
    scores[10:13] = 0.4  # unasserted, likelier than the tag's own clips (0.35): misses
    suspects = find_suspects(scores, targets, [f"c{i}" for i in range(200)], ["rare"])
    assert set(suspects[suspects["kind"] == "miss"]["clip_id"]) == {"c10", "c11", "c12"}


def test_tag_estimates_count_suspects_and_estimate_precision():
    suspects = find_suspects(SCORES, TARGETS, [f"c{i}" for i in range(6)], ["a", "b"])
    tags = tag_estimates(SCORES, TARGETS, ["a", "b"], suspects).set_index("tag")
    assert tags.loc["a", "asserted"] == 3 and tags.loc["a", "hallucinations"] == 1
    assert tags.loc["a", "estimated_precision"] == pytest.approx(2 / 3)
    assert tags.loc["a", "misses"] == 1


def test_bad_shapes_are_refused():
    with pytest.raises(ModelAuditError, match="same"):
        confident_thresholds(SCORES, TARGETS[:3])


# --------------------------------------------------------------------------- a tiny corpus with planted noise

RATE = 16000
N_CLIPS = 40
HALLUCINATED = {1, 5, 9, 13}      # low-tone clips the "captioner" also calls high
MISSED = {2, 6, 10, 14}           # high-tone clips whose "high" it leaves out


def _tone(kind: str, seconds: float, rng) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    freq = (300.0 if kind == "low" else 3000.0) * rng.uniform(0.95, 1.05)
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def build_corpus(root: Path, db: Path) -> Path:
    """Ingest clips whose tags carry planted noise, export them, and write a finished run directory naming the
    export; returns the run directory (imported as run 'r1')."""
    rng = np.random.default_rng(0)
    (root / "audio").mkdir(parents=True)
    cuts = []
    for i in range(N_CLIPS):
        kind = "low" if i % 2 else "high"
        seconds = float(rng.uniform(1.2, 2.0))
        sf.write(root / "audio" / f"c{i}.wav", _tone(kind, seconds, rng), RATE)
        tags = ["tone", kind]
        if i in HALLUCINATED:
            tags.append("high")
        if i in MISSED:
            tags.remove("high")
        cut = make_cut(f"clip-{i:02d}", tags=tags, source=f"audio/c{i}.wav", duration=seconds)
        cut["recording"].update(sampling_rate=RATE, num_samples=int(seconds * RATE), duration=seconds)
        cut["supervisions"][0]["duration"] = seconds
        cuts.append(cut)
    manifest = write_jsonl(root / "cuts.jsonl", cuts)
    assert cli_main(["ingest", str(manifest), "--db", str(db)]) == 0
    export = root / "export"
    assert cli_main(["export", "--db", str(db), "--k", "3", "--out", str(export), "--by", "test"]) == 0
    run_dir = root / "runs" / "r1"
    write_config(run_dir, export={"dir": str(export), "export_id": 1, "k": 3})
    finish(run_dir, 100, 0.5)
    assert cli_main(["runs", "import", str(run_dir), "--db", str(db)]) == 0
    return run_dir


@pytest.fixture
def planted(tmp_path, db_path, capsys):
    run_dir = build_corpus(tmp_path / "corpus", db_path)
    capsys.readouterr()
    return run_dir


def test_cli_finds_planted_noise_above_chance_and_keeps_the_json_contract(planted, db_path, capsys):
    # fbank features: the run directory has no checkpoint; the scores are computed in a real subprocess.
    code = cli_main(["model-audit", "--db", str(db_path), "--run", "r1", "--folds", "4", "--features", "fbank",
                     "--json"])
    out = capsys.readouterr().out
    assert code == 0
    suspects = json.loads(out)
    assert isinstance(suspects, list) and suspects
    for row in suspects:
        assert set(row) == {"clip_id", "tag", "kind", "score"}
        assert row["kind"] in ("hallucination", "miss")
        assert isinstance(row["score"], float) and 0.0 <= row["score"] <= 1.0
    assert [r["score"] for r in suspects] == sorted((r["score"] for r in suspects), reverse=True)
    planted_pairs = ({(f"clip-{i:02d}", "high", "hallucination") for i in HALLUCINATED}
                     | {(f"clip-{i:02d}", "high", "miss") for i in MISSED})
    top = {(r["clip_id"], r["tag"], r["kind"]) for r in suspects[: len(planted_pairs)]}
    precision = len(top & planted_pairs) / len(planted_pairs)
    chance = len(planted_pairs) / (N_CLIPS * 3)   # 8 wrong pairs among 40 clips x 3 tags
    assert precision >= 0.75 > 5 * chance
    # Stored for the run, per clip and tag, and the suspects in the same order.
    con = store.connect(db_path, read_only=True)
    try:
        stored = store_model_audit.suspects_frame(con, "r1")
        assert list(zip(stored["clip_id"], stored["tag"], stored["kind"])) == [
            (r["clip_id"], r["tag"], r["kind"]) for r in suspects]
        scores = store_model_audit.scores_frame(con, "r1", ["clip-01"])
        assert set(scores["tag"]) >= {"tone", "low", "high"}  # asserted pairs are always stored
        audit = store_model_audit.audit_row(con, "r1")
        assert audit["folds"] == 4 and audit["scores_file"] == str(planted / "model_audit" / "oos_scores.npz")
        assert audit["stored_pairs"] + audit["omitted_pairs"] == N_CLIPS * 3
        assert set(store_model_audit.disputed_clip_keys(con, "r1", tag="high")) >= {
            int(k) for k in stored[stored["tag"] == "high"]["clip_key"]}
    finally:
        con.close()
    # A second call reuses the run's scores and gives the same answer.
    assert cli_main(["model-audit", "--db", str(db_path), "--run", "r1", "--folds", "4", "--features", "fbank",
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == suspects


def test_the_command_the_library_and_the_scorer_offer_the_same_log_mel_settings():
    """The CLI writes the settings out (building its parser must not import pandas), the library repeats the
    scorer's (it imports no torch): a setting added to one and not the others would be refused or silently ignored."""
    from training import oos_scores

    assert (FBANK_STATS, DEFAULT_FBANK_STATS) == (oos_scores.FBANK_STATS, oos_scores.DEFAULT_FBANK_STATS)
    commands = next(a for a in build_parser()._actions if a.dest == "command")
    option = next(a for a in commands.choices["model-audit"]._actions if a.dest == "fbank_stats")
    assert (tuple(option.choices), option.default) == (FBANK_STATS, DEFAULT_FBANK_STATS)
    assert (CONTEXT_MODES, DEFAULT_CONTEXT, DISPUTES_MATRIX) == (oos_scores.CONTEXT_MODES, oos_scores.DEFAULT_CONTEXT,
                                                             oos_scores.DISPUTES_MATRIX)
    option = next(a for a in commands.choices["model-audit"]._actions if a.dest == "context")
    assert (tuple(option.choices), option.default) == (CONTEXT_MODES, DEFAULT_CONTEXT)


def test_unknown_or_unfinished_runs_are_refused(planted, db_path, capsys):
    assert cli_main(["model-audit", "--db", str(db_path), "--run", "nope", "--json"]) == 2
    assert "no such run" in capsys.readouterr().err
    (planted / "finished.json").unlink()
    write_config(planted.parent / "r2", export={"dir": "/nowhere"})
    assert cli_main(["runs", "import", str(planted.parent / "r2"), "--db", str(db_path)]) == 0
    capsys.readouterr()
    assert cli_main(["model-audit", "--db", str(db_path), "--run", "r2", "--json"]) == 2
    assert "expected a finished run" in capsys.readouterr().err


def _oos(clip_ids, labels, scores, targets) -> OosScores:
    return OosScores(list(clip_ids), list(labels), np.asarray(scores, float), np.asarray(targets, bool),
                     np.zeros(len(clip_ids), int), {"folds": 2, "features": "fbank", "method": "test"})


def test_precision_comparison_puts_the_model_beside_the_audit(planted, db_path):
    con = store.connect(db_path)
    try:
        clip_ids = [f"clip-{i:02d}" for i in range(N_CLIPS)]
        targets = np.array([[True, i % 2 == 1, i % 2 == 0] for i in range(N_CLIPS)])
        scores = np.where(targets, 0.9, 0.05)
        scores[0, 2] = 0.01          # one "high" hallucination on clip-00
        store_audit_of(con, "r1", _oos(clip_ids, ["tone", "low", "high"], scores, targets))
        first = store_model_audit.suspects_frame(con, "r1")
        assert ("clip-00", "high", "hallucination") in set(zip(first["clip_id"], first["tag"], first["kind"]))
        # Re-auditing replaces the run's rows (nothing from the first audit survives).
        store_audit_of(con, "r1", _oos(clip_ids, ["tone", "low", "high"], np.where(targets, 0.9, 0.05), targets))
        assert store_model_audit.suspects_frame(con, "r1").empty
        store_audit_of(con, "r1", _oos(clip_ids, ["tone", "low", "high"], scores, targets))
        from curation.audit.campaigns import create_campaign, next_item, submit

        campaign_id = create_campaign(con, "pilot", sample_size=N_CLIPS, by="ana", annotators_per_clip=1, seed=0)
        judged = 0
        while (item := next_item(con, campaign_id, "ana")) is not None and judged < N_CLIPS:
            submit(con, item, "ana", {tag: ("wrong" if tag == "high" and item.clip_id == "clip-00" else "correct")
                                      for tag in item.tags})
            judged += 1
        table = precision_comparison(con, "r1", "pilot").set_index("tag")
        assert table.loc["high", "estimated_precision"] == pytest.approx(1 - 1 / 20)
        assert table.loc["high", "judged"] > 0
        assert bool(table.loc["high", "agrees"]) is True
        assert table.loc["tone", "estimated_precision"] == 1.0 and bool(table.loc["tone", "agrees"]) is True
    finally:
        con.close()


# ------------------------------------------------------------------------------------- evaluation harness

def test_evaluate_planted_biases_scores_a_perfect_and_a_useless_ranking():
    class Bias:
        def __init__(self, name, kind, tag):
            self.name, self.kind, self.tag = name, kind, tag

    clip_ids = [f"c{i}" for i in range(20)]
    targets = np.zeros((20, 2), bool)
    targets[:10, 0] = True                       # "verb" asserted on c0-c9; it fired (hallucinated) on c0-c3
    truth = [(c, ["x"] if i >= 4 else [], [], ["fake_reverb"] if i < 4 else []) for i, c in enumerate(clip_ids)]
    perfect = np.where(targets, 0.9, 0.1)
    perfect[:4, 0] = 0.05
    concept = {"verb": "verb", "other": "other"}.get
    table = evaluate_planted_biases(_oos(clip_ids, ["verb", "other"], perfect, targets), truth,
                                    [Bias("fake_reverb", "hallucination", "verb")], concept).iloc[0]
    assert (table["candidates"], table["planted"], table["precision_at_n"]) == (10, 4, 1.0)
    assert table["random_precision_at_n"] == pytest.approx(0.4)
    flat = np.full((20, 2), 0.5)
    table = evaluate_planted_biases(_oos(clip_ids, ["verb", "other"], flat, targets), truth,
                                    [Bias("fake_reverb", "hallucination", "verb")], concept).iloc[0]
    assert table["flagged"] == 0


def test_a_suspects_first_campaign_queues_the_most_disputed_clips_first(planted, db_path, capsys):
    from curation.audit.campaigns import next_item, submit
    from curation.store import audit as store_audit

    con = store.connect(db_path)
    try:
        clip_ids = [f"clip-{i:02d}" for i in range(N_CLIPS)]
        targets = np.array([[True, i % 2 == 1, i % 2 == 0] for i in range(N_CLIPS)])
        scores = np.where(targets, 0.9, 0.05)
        scores[7, 2], scores[3, 1], scores[20, 2] = 0.95, 0.0, 0.01   # a miss (0.95), two hallucinations (1.0, 0.99)
        store_audit_of(con, "r1", _oos(clip_ids, ["tone", "low", "high"], scores, targets))
    finally:
        con.close()
    assert cli_main(["audit", "create", "aimed", "--size", "10", "--annotators", "1", "--by", "ana",
                     "--suspects-of", "r1", "--db", str(db_path)]) == 0
    assert cli_main(["audit", "create", "nothing", "--size", "10", "--by", "ana", "--suspects-of", "r9",
                     "--db", str(db_path)]) == 2
    assert "has no model audit" in capsys.readouterr().err
    con = store.connect(db_path)
    try:
        campaigns = store_audit.campaigns(con)
        campaign = campaigns[campaigns["name"] == "aimed"].iloc[0]
        served = []
        while (item := next_item(con, int(campaign["campaign_id"]), "ana")) is not None:
            served.append(item.clip_id)
            submit(con, item, "ana", dict.fromkeys(item.tags, "correct"))
        assert served[:3] == ["clip-03", "clip-20", "clip-07"]   # best suspect first
        assert len(served) == 10 and len(set(served)) == 10      # filled up from the other clips
    finally:
        con.close()


def test_browse_filters_the_clips_the_model_disputes(planted, db_path):
    from curation.explore.browse import BrowseFilters, browse_page
    from curation.vocabulary.decisions import list_decisions, replay
    from curation.vocabulary.ranking import compute_vocabulary, load_tag_matrix

    con = store.connect(db_path)
    try:
        clip_ids = [f"clip-{i:02d}" for i in range(N_CLIPS)]
        targets = np.array([[True, i % 2 == 1, i % 2 == 0] for i in range(N_CLIPS)])
        scores = np.where(targets, 0.9, 0.05)
        scores[7, 2], scores[3, 1], scores[20, 2] = 0.95, 0.0, 0.01
        store_audit_of(con, "r1", _oos(clip_ids, ["tone", "low", "high"], scores, targets))
        state = replay(list_decisions(con))
        view = compute_vocabulary(load_tag_matrix(con), state)

        def shown(**filters) -> list[str]:
            return [r.clip_id for r in browse_page(con, BrowseFilters(**filters), view=view, state=state,
                                                   limit=50).rows]

        assert shown(disputed_by_run="r1") == ["clip-03", "clip-07", "clip-20"]
        assert shown(disputed_by_run="r1", disputed_tag="high") == ["clip-07", "clip-20"]
        assert shown(disputed_by_run="r1", canonical_tags=("low",)) == ["clip-03", "clip-07"]
        assert shown(disputed_by_run="r2") == []
        assert shown(disputed_by_run="r1", disputed_min_score=0.97) == ["clip-03", "clip-20"]   # the 0.95 miss goes
        assert shown(disputed_by_run="r1", disputed_min_score=0.995) == ["clip-03"]
    finally:
        con.close()


def test_a_run_launched_with_audit_folds_writes_the_scores_the_model_audit_then_reuses(planted, db_path):
    """The real trainer and scorer through the local backend: the job trains, then scores every clip of its export
    out of sample (the model audit's settings); auditing the finished run stores those scores without encoding
    the corpus again, and finds the planted errors."""
    from curation.runs import backends
    from curation.runs.follow import refresh_runs
    from curation.runs.launch import LaunchRequest, launch_runs
    from curation.store import runs as store_runs

    con = store.connect(db_path)
    try:
        request = LaunchRequest(objective="mtc", size="tiny", steps=2, device="cpu", export_id=1, audit_folds=4,
                                extra_set=("max_batch_s=8", "max_clip_s=2", "num_workers=0", "val_every=2"),
                                by="ana")
        [run_id] = launch_runs(con, request, runs_root=planted.parent)
        run = store_runs.get_run(con, run_id)
        assert backends._children[int(run["backend_id"])].wait(timeout=240) == 0
        assert refresh_runs(con, [run_id]) == [(run_id, "running", "finished")]
        run_dir = Path(run["run_dir"])
        log = (run_dir / "train.log").read_text()
        assert "model-audit scores:" in log and "training.oos_scores" in log
        assert json.loads((run_dir / "job_exit.json").read_text())["stage"] == "done"
        assert scores_written(run_dir, 4) and not scores_written(run_dir, 5)
        written = (run_dir / "model_audit" / "oos_scores.npz").stat().st_mtime_ns
        audit = run_model_audit(con, run_id, folds=4)
        assert audit.reused_scores and (run_dir / "model_audit" / "oos_scores.npz").stat().st_mtime_ns == written
        top = {(r.clip_id, r.tag) for r in audit.suspects.head(len(HALLUCINATED) + len(MISSED)).itertuples()}
        planted_pairs = {(f"clip-{i:02d}", "high") for i in (*HALLUCINATED, *MISSED)}
        assert len(top & planted_pairs) >= len(planted_pairs) // 2
        assert store_model_audit.audit_row(con, run_id)["folds"] == 4
    finally:
        con.close()


def test_audit_folds_of_one_are_refused_before_anything_runs(tmp_path):
    from curation.errors import UsageError
    from curation.runs import backends
    from curation.runs.launch import LaunchRequest

    with pytest.raises(UsageError, match="model-audit folds 1"):
        LaunchRequest(export_id=1, audit_folds=1, by="ana").check()
    with pytest.raises(backends.LaunchError, match="model-audit folds 1"):
        backends.JobSpec(export_dir="/x", run_dir=tmp_path / "r", audit_folds=1).check()
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------- large corpora: memory-mapped, in row blocks

def _assert_same_audit(con, run_id: str, other: str) -> None:
    """Both runs' stored audits agree: every table, row for row (floats to 1e-12: sums over other blocks round
    differently)."""
    import pandas as pd

    rows = [store_model_audit.audit_row(con, r) for r in (run_id, other)]
    for row in rows:
        row.pop("created_at")
        row.pop("run_id")
    assert rows[0] == rows[1]
    for read in (store_model_audit.scores_frame, store_model_audit.suspects_frame, store_model_audit.tags_frame):
        pd.testing.assert_frame_equal(read(con, run_id), read(con, other), rtol=1e-12)


def test_an_audit_read_in_row_blocks_stores_what_one_block_stores(db_path, tmp_path, monkeypatch):
    """A real corpus's scores (360k clips x 3,000 tags: 4.3 GB) are memory-mapped and worked through in row blocks;
    cut into blocks of a few clips, the audit must store exactly what it stores in one piece, and its suspects
    must still be the reference confident joint's, best first."""
    from curation.audit import model_audit as model_audit_module
    from curation.ingest.ingest import ingest_path
    from training.oos_scores import write_scores

    clip_ids = [f"clip-{i:02d}" for i in range(60)]
    cuts = [make_cut(c, tags=["tone"]) for c in clip_ids[:55]]   # 5 scored clips the store does not hold
    rng = np.random.default_rng(3)
    labels = ["a", "b", "c", "d", "e", "f", "g"]
    targets = rng.uniform(size=(60, 7)) < np.array([0.05, 0.2, 0.4, 0.5, 0.7, 0.9, 0.0])
    scores = np.clip(np.where(targets, 0.6, 0.3) + rng.normal(0, 0.3, size=(60, 7)), 0, 1).astype(np.float32)
    run_dir = tmp_path / "runs" / "r1"
    meta = write_scores(run_dir, clip_ids, labels, scores, targets, np.arange(60) % 3,
                        {"run_id": "r1", "folds": 3, "features": "fbank", "method": "test"})
    assert meta["format"] == 2
    oos = model_audit_module.read_oos_scores(run_dir)
    assert isinstance(oos.scores, np.memmap) and oos.scores.dtype == np.float32 and oos.targets.dtype == bool
    con = store.connect(db_path)
    try:
        ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
        whole = store_audit_of(con, "whole", oos)
        monkeypatch.setattr(model_audit_module, "ROW_BLOCK_CELLS", 15)   # blocks of 2 clips
        assert len(model_audit_module.row_blocks(60, 7)) == 30
        blocks = store_audit_of(con, "blocks", model_audit_module.read_oos_scores(run_dir))
        _assert_same_audit(con, "blocks", "whole")
        assert blocks.suspects.equals(whole.suspects)
        assert whole.unknown_clips == 5 and store_model_audit.audit_row(con, "whole")["unknown_clips"] == 5
    finally:
        con.close()
    # Suspects on clips the store does not hold are found but neither stored nor returned.
    expected = {cell: kind for cell, kind in reference_suspects(scores.astype(np.float64), targets).items()
                if cell[0] < 55}
    got = {(clip_ids.index(r.clip_id), labels.index(r.tag)): r.kind for r in whole.suspects.itertuples()}
    assert got == expected and len(got) > 10
    assert list(whole.suspects["score"]) == sorted(whole.suspects["score"], reverse=True)


def test_scores_files_of_the_first_format_are_still_read_and_bad_ones_refused(tmp_path):
    from training.oos_scores import write_scores

    out = tmp_path / "r1" / "model_audit"
    out.mkdir(parents=True)
    scores = np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32)
    targets = np.array([[1, 0], [0, 1]], dtype=np.uint8)
    np.savez_compressed(out / "oos_scores.npz", clip_ids=np.array(["a", "b"]), labels=np.array(["x", "y"]),
                        scores=scores, targets=targets, folds=np.array([0, 1]))
    (out / "oos_scores.json").write_text(json.dumps({"folds": 2}))
    old = read_oos_scores(tmp_path / "r1")
    assert np.array_equal(old.scores, scores) and np.array_equal(old.targets, targets.astype(bool))
    # A scoring interrupted before its metadata was written leaves no scores, never new matrices beside old ids.
    write_scores(tmp_path / "r2", ["a", "b"], ["x", "y"], scores, targets, np.array([0, 1]), {"folds": 2})
    (tmp_path / "r2" / "model_audit" / "oos_scores.json").unlink()
    with pytest.raises(ModelAuditError, match="no out-of-sample scores"):
        read_oos_scores(tmp_path / "r2")
    write_scores(tmp_path / "r3", ["a", "b"], ["x", "y"], scores, np.array([[2, 0], [0, 1]]), np.array([0, 1]),
                 {"folds": 2})
    with pytest.raises(ModelAuditError, match=r"'targets' holds values other than 0 and 1 \(clips 0-1\)"):
        read_oos_scores(tmp_path / "r3")
    write_scores(tmp_path / "r4", ["a", "b"], ["x", "y"], scores + 1, targets, np.array([0, 1]), {"folds": 2})
    with pytest.raises(ModelAuditError, match=r"outside \[0, 1\]"):
        read_oos_scores(tmp_path / "r4")
    (tmp_path / "r4" / "model_audit" / "oos_scores.targets.npy").write_bytes(b"not an array")
    with pytest.raises(ModelAuditError, match="unreadable out-of-sample scores"):
        read_oos_scores(tmp_path / "r4")


def test_hallucinations_are_found_with_the_context_head_and_misses_with_the_audio_head(db_path, tmp_path):
    """Where the scorer wrote the context head's probabilities (the disputes matrix), hallucinations are confident
    learning on them (their own thresholds) and misses on the audio head's scores; an asserted pair is stored with
    the probability it was judged by. The model's merge and prune evidence keeps reading the scores."""
    from curation.ingest.ingest import ingest_path
    from training.oos_scores import write_scores

    clip_ids = [f"clip-{i:02d}" for i in range(40)]
    rng = np.random.default_rng(5)
    labels = ["a", "b", "c"]
    targets = rng.uniform(size=(40, 3)) < 0.4
    scores = np.clip(np.where(targets, 0.6, 0.3) + rng.normal(0, 0.25, size=(40, 3)), 0, 1).astype(np.float32)
    disputes = np.clip(np.where(targets, 0.6, 0.3) + rng.normal(0, 0.2, size=(40, 3)), 0, 1).astype(np.float32)
    targets[0, 0], disputes[0, 0], scores[0, 0] = True, 0.01, 0.9   # the context head disputes clip 0's "a"
    run_dir = tmp_path / "runs" / "r1"
    write_scores(run_dir, clip_ids, labels, scores, targets, np.arange(40) % 2,
                 {"run_id": "r1", "folds": 2, "features": "fbank", "method": "test", "context": "discount"},
                 disputes=disputes)
    oos = read_oos_scores(run_dir)
    assert isinstance(oos.disputes, np.memmap) and np.array_equal(oos.dispute_scores, disputes)
    con = store.connect(db_path)
    try:
        ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", [make_cut(c, tags=["tone"]) for c in clip_ids]))
        audit = store_audit_of(con, "r1", oos)
        stored = store_model_audit.audit_row(con, "r1")
        probability = con.execute("SELECT probability FROM model_audit_scores s JOIN clips c USING (clip_key) "
                                  "WHERE s.run_id = 'r1' AND c.clip_id = 'clip-00' AND s.tag = 'a'").fetchone()[0]
    finally:
        con.close()
    from_context = reference_suspects(disputes.astype(np.float64), targets)
    from_audio = reference_suspects(scores.astype(np.float64), targets)
    expected = {**{c: k for c, k in from_context.items() if k == "hallucination"},
                **{c: k for c, k in from_audio.items() if k == "miss"}}
    got = {(clip_ids.index(r.clip_id), labels.index(r.tag)): r.kind for r in audit.suspects.itertuples()}
    assert got == expected and got[(0, 0)] == "hallucination" and (0, 0) not in from_audio
    assert expected != from_audio and any(k == "miss" for k in got.values())
    assert probability == pytest.approx(0.01) and "context=discount" in stored["method"]
    tags = audit.tags.set_index("tag")
    assert tags.loc["a", "mean_probability_asserted"] == pytest.approx(disputes[targets[:, 0], 0].mean())
    assert tags.loc["a", "threshold_asserted"] == pytest.approx(scores[targets[:, 0], 0].mean())  # a miss's bar
    # A metadata file that names a disputes matrix the folder lacks is refused, not read as "no context".
    (run_dir / "model_audit" / DISPUTES_MATRIX).unlink()
    with pytest.raises(ModelAuditError, match="unreadable out-of-sample scores"):
        read_oos_scores(run_dir)
    write_scores(run_dir, clip_ids, labels, scores, targets, np.arange(40) % 2, {"folds": 2},
                 disputes=disputes + 1)
    with pytest.raises(ModelAuditError, match=r"'disputes' holds values outside \[0, 1\]"):
        read_oos_scores(run_dir)


def test_scores_made_without_the_context_head_are_recomputed_by_the_default_audit(tmp_path):
    from curation.audit.model_audit import _scores_current
    from training.oos_scores import write_scores

    scores = np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32)
    targets = np.array([[1, 0], [0, 1]], dtype=np.uint8)
    settings = {"folds": 2, "features": "fbank", "fbank_stats": DEFAULT_FBANK_STATS, "repeats": 3}
    write_scores(tmp_path / "old", ["a", "b"], ["x", "y"], scores, targets, np.array([0, 1]), settings)
    assert not _scores_current(tmp_path / "old", 2, "fbank")                  # before the context head
    assert _scores_current(tmp_path / "old", 2, "fbank", context="none")
    write_scores(tmp_path / "new", ["a", "b"], ["x", "y"], scores, targets, np.array([0, 1]),
                 {**settings, "context": "discount"}, disputes=scores)
    assert _scores_current(tmp_path / "new", 2, "fbank")
