"""Model-based merge and prune evidence (curation/audit/model_overlap.py): AUC and its interval against a brute-force
count, a renamed concept found as "cannot tell apart" while distinct tags are not, a caption habit found as "no
better than chance", names in today's vocabulary, and ``python -m curation model-evidence --json``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import make_cut, write_jsonl

from curation import store
from curation.audit.model_audit import ModelAuditError, OosScores, store_audit_of
from curation.audit.model_overlap import (
    auc_with_interval,
    evidence_records,
    group_evidence,
    model_evidence,
    mutual_confusion,
    overlapping_pairs,
    pair_separability,
    tag_predictability,
)
from curation.cli.main import main as cli_main
from curation.ingest.ingest import ingest_path
from curation.vocabulary.decisions import Decision, list_decisions, record_decision, replay


def brute_auc(positive, negative) -> float:
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


@pytest.mark.parametrize("seed", range(4))
def test_auc_matches_pairwise_counting_with_ties(seed):
    rng = np.random.default_rng(seed)
    positive = rng.integers(0, 6, size=17).astype(float)   # many ties
    negative = rng.integers(0, 5, size=23).astype(float)
    auc, low, high = auc_with_interval(positive, negative)
    assert auc == pytest.approx(brute_auc(positive, negative))
    assert 0.0 <= low <= auc <= high <= 1.0


def test_auc_interval_narrows_with_more_clips_and_is_nan_without_one_side():
    rng = np.random.default_rng(0)
    small = auc_with_interval(rng.normal(0.3, 1, 10), rng.normal(0, 1, 10))
    large = auc_with_interval(rng.normal(0.3, 1, 1000), rng.normal(0, 1, 1000))
    assert (large[2] - large[1]) < (small[2] - small[1]) / 5
    assert np.isnan(auc_with_interval([], [0.1])[0])


# 60 clips: "siren" and "alarm" name one sound at random (the model cannot know which name a clip got), "dog" is
# a distinct sound, "studio" is asserted on every other clip regardless of the audio (a caption habit).
LABELS = ["siren", "alarm", "dog", "studio"]


def corpus_scores(seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 60
    targets = np.zeros((n, 4), bool)
    targets[0:12, 0] = True            # siren
    targets[12:24, 1] = True           # alarm (the same sound)
    targets[24:40, 2] = True           # dog
    targets[::2, 3] = True             # studio on every other clip
    scores = np.full((n, 4), 0.05) + rng.uniform(0, 0.03, size=(n, 4))
    scores[0:24, 0] = 0.5 + rng.uniform(-0.1, 0.1, 24)   # the model hears the sound, not the name
    scores[0:24, 1] = 0.5 + rng.uniform(-0.1, 0.1, 24)
    scores[24:40, 2] = 0.9
    scores[:, 3] = rng.uniform(0.3, 0.7, n)              # studio: nothing in the audio goes with it
    return [f"c{i:02d}" for i in range(n)], scores, targets


def test_a_renamed_concept_cannot_be_told_apart_and_distinct_tags_can():
    _, scores, targets = corpus_scores()
    confusion = mutual_confusion(scores, targets)
    assert confusion[0, 1] > 0.8 and confusion[0, 2] < 0.3    # the screen lets siren~alarm through, not siren~dog
    pairs = overlapping_pairs(scores, targets, LABELS).set_index(["tag_a", "tag_b"])
    assert pairs.loc[("siren", "alarm"), "verdict"] == "cannot tell apart"
    assert 0.3 < pairs.loc[("siren", "alarm"), "separability"] < 0.7
    assert ("siren", "dog") not in pairs.index or pairs.loc[("siren", "dog"), "verdict"] == "tells apart"
    assert pair_separability(scores, targets, 0, 2)["separability"] == pytest.approx(1.0)


def test_a_caption_habit_is_no_better_than_chance_and_a_real_sound_is_predictable():
    _, scores, targets = corpus_scores()
    tags = tag_predictability(scores, targets, LABELS).set_index("tag")
    assert tags.loc["studio", "verdict"] == "no better than chance"
    assert tags.loc["studio", "auc_low"] <= 0.5 <= tags.loc["studio", "auc_high"]
    assert tags.loc["dog", "verdict"] == "predictable" and tags.loc["dog", "auc"] == pytest.approx(1.0)
    few = tag_predictability(scores[:, :1], targets[:, :1] & (np.arange(60) < 3)[:, None], ["siren"])
    assert few.loc[0, "verdict"] == "too few clips"


def _write_scores(run_dir: Path, clip_ids, scores, targets) -> OosScores:
    out = run_dir / "model_audit"
    out.mkdir(parents=True)
    np.savez_compressed(out / "oos_scores.npz", clip_ids=np.array(clip_ids), labels=np.array(LABELS),
                        scores=scores.astype(np.float32), targets=targets.astype(np.uint8),
                        folds=np.zeros(len(clip_ids), np.int32))
    meta = {"run_id": "r1", "folds": 2, "features": "fbank", "method": "test"}
    (out / "oos_scores.json").write_text(json.dumps(meta), encoding="utf-8")
    return OosScores(list(clip_ids), LABELS, scores, targets, np.zeros(len(clip_ids), int),
                     {**meta, "scores_file": str(out / "oos_scores.npz")})


@pytest.fixture
def audited(db_path, tmp_path):
    clip_ids, scores, targets = corpus_scores()
    cuts = [make_cut(c, tags=[t for t, on in zip(LABELS, targets[i]) if on] or ["quiet"])
            for i, c in enumerate(clip_ids)]
    con = store.connect(db_path)
    try:
        ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
        store_audit_of(con, "r1", _write_scores(tmp_path / "runs" / "r1", clip_ids, scores, targets))
    finally:
        con.close()
    return db_path


def test_evidence_of_a_run_in_todays_vocabulary(audited):
    con = store.connect(audited)
    try:
        evidence = model_evidence(con, "r1", state=replay(list_decisions(con)))
        assert [tuple(r) for r in evidence.cannot_tell_apart()[["tag_a", "tag_b"]].to_numpy()] == [("siren", "alarm")]
        assert evidence.unpredictable()["tag"].tolist() == ["studio"]
        reasons = group_evidence(evidence, ("siren", "alarm", "klaxon"))
        assert reasons[0].startswith("model (run r1): cannot tell apart siren and alarm (separability")
        assert reasons[-1] == "model (run r1): its export does not label klaxon"
        assert group_evidence(evidence, ("siren", "dog"))[0].startswith("model (run r1): tells apart siren and dog")
        # Once merged (or pruned), a pair or tag is no longer suggested.
        record_decision(con, Decision.merge(["alarm"], into="siren"), by="ana")
        record_decision(con, Decision.prune(["studio"]), by="ana")
        evidence = model_evidence(con, "r1", state=replay(list_decisions(con)))
        assert evidence.cannot_tell_apart().empty and evidence.unpredictable().empty
        # Today's tags are read by their columns of the memory-mapped matrix, not from a copy: the same figures
        # as a copy of the columns still distinct, each under its own name.
        kept = [j for j, label in enumerate(LABELS) if label not in ("alarm", "studio")]
        names = [LABELS[j] for j in kept]
        assert sorted(evidence.tags["tag"]) == sorted(names)
        pd.testing.assert_frame_equal(evidence.tags, tag_predictability(np.array(evidence.oos.scores[:, kept]),
                                                                        evidence.oos.targets[:, kept], names))
        assert evidence.tags.set_index("tag").loc["dog", "auc"] == pytest.approx(1.0)
        with pytest.raises(ModelAuditError, match="no model audit"):
            model_evidence(con, "r9")
    finally:
        con.close()


def test_cli_prints_the_merge_and_prune_evidence(audited, capsys):
    assert cli_main(["model-evidence", "--db", str(audited), "--run", "r1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["run_id"] == "r1"
    assert [(r["tag_a"], r["tag_b"], r["verdict"]) for r in out["merge"]] == [("siren", "alarm", "cannot tell apart")]
    assert set(out["merge"][0]) >= {"separability", "separability_low", "separability_high", "overlap", "a_only",
                                    "b_only", "both", "mutual_confusion"}
    assert out["merge"][0]["a_only"] == 12 and out["merge"][0]["b_only"] == 12
    assert [r["tag"] for r in out["prune"]] == ["studio"] and out["prune"][0]["asserted"] == 30
    assert cli_main(["model-evidence", "--db", str(audited), "--run", "r1"]) == 0
    text = capsys.readouterr().out
    assert "merge?  siren ~ alarm" in text and "prune?  studio" in text
    assert cli_main(["model-evidence", "--db", str(audited), "--run", "nope", "--json"]) == 2
    assert "no model audit" in capsys.readouterr().err


def test_evidence_records_hold_no_nan_or_numpy_types():
    _, scores, targets = corpus_scores()

    class Evidence:
        run_id = "r1"
        pairs = overlapping_pairs(scores, targets, LABELS)
        tags = tag_predictability(scores, targets, LABELS)

        def cannot_tell_apart(self):
            return self.pairs[self.pairs["verdict"] == "cannot tell apart"]

        def unpredictable(self):
            return self.tags[self.tags["verdict"] == "no better than chance"]

    json.dumps(evidence_records(Evidence(), all_pairs=True), allow_nan=False)
