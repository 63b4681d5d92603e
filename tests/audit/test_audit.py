"""Audit campaigns: the sampling design, the annotator queue, validation, and eight concurrent annotators."""
from __future__ import annotations

import threading

import pandas as pd
import pytest
from helpers import make_cut, write_jsonl

from curation.audit.campaigns import AuditError, create_campaign, next_item, stratified_sample, submit
from curation.ingest.ingest import ingest_path
from curation.store import audit as store_audit


def _corpus(con, tmp_path, n_clips=300, tags_per_clip=10):
    cuts = []
    for i in range(n_clips):
        domain = ("speech", "music", "environment")[i % 3]
        common = [f"{domain}-tag{j}" for j in range(tags_per_clip - 1)]
        rare = f"rare{i % 40}" if i % 10 == 0 else f"{domain}-common"
        cuts.append(make_cut(f"c{i:04d}", tags=(*common, rare), domain=domain))
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))


def test_sampling_is_seeded_and_stratified(con, tmp_path):
    _corpus(con, tmp_path)
    first = create_campaign(con, "a", sample_size=60, by="ana", seed=7)
    again = create_campaign(con, "b", sample_size=60, by="ana", seed=7)
    other = create_campaign(con, "c", sample_size=60, by="ana", seed=8)
    slots = con.execute("SELECT campaign_id, position, clip_key, stratum FROM audit_slots WHERE slot = 1 "
                        "ORDER BY campaign_id, position").df()
    by_campaign = {cid: group[["clip_key", "stratum"]].reset_index(drop=True) for cid, group in slots.groupby("campaign_id")}
    assert by_campaign[first].equals(by_campaign[again])
    assert not by_campaign[first].equals(by_campaign[other])
    counts = by_campaign[first]["stratum"].value_counts()
    # Equal allocation: the rare band (30 clips, a tenth of the corpus) gets as many clips as the common ones.
    assert len(by_campaign[first]) == 60 and counts.max() - counts.min() <= 1
    assert any("df 1-9" in stratum for stratum in counts.index)
    assert con.execute("SELECT count(*) FROM audit_slots WHERE campaign_id = ?", [first]).fetchall()[0][0] == 120


def test_small_strata_give_all_they_have():
    frame = pd.DataFrame({"clip_key": range(23), "stratum": ["big"] * 20 + ["tiny"] * 3})
    sample = stratified_sample(frame, 10, seed=0)
    assert sorted(sample["stratum"].value_counts().to_dict().items()) == [("big", 7), ("tiny", 3)]
    assert list(sample["position"]) == list(range(1, 11))
    assert len(stratified_sample(frame, 100, seed=0)) == 23


def test_queue_never_serves_a_clip_twice_and_validates(con, tmp_path):
    _corpus(con, tmp_path, n_clips=6, tags_per_clip=3)
    campaign = create_campaign(con, "small", sample_size=6, by="ana", annotators_per_clip=2)
    seen = []
    while (item := next_item(con, campaign, "bo")) is not None:
        assert next_item(con, campaign, "bo").clip_key == item.clip_key  # an open item is resumed, not replaced
        with pytest.raises(AuditError, match="no verdict"):
            submit(con, item, "bo", {})
        with pytest.raises(AuditError, match="held by"):
            submit(con, item, "cy", {t: "correct" for t in item.tags})
        with pytest.raises(AuditError, match="expected one of"):
            submit(con, item, "bo", {t: "maybe" for t in item.tags})
        with pytest.raises(AuditError, match="1 to 5"):
            submit(con, item, "bo", {t: "correct" for t in item.tags}, rating=9)
        submit(con, item, "bo", {t: "wrong" for t in item.tags}, added=["Rain", " "], rating=2, note="<b>x</b>")
        with pytest.raises(AuditError, match="already submitted"):
            submit(con, item, "bo", {t: "wrong" for t in item.tags})
        seen.append(item.clip_key)
    assert len(seen) == len(set(seen)) == 6
    assert con.execute("SELECT DISTINCT tag FROM audit_added_tags").fetchall() == [("rain",)]
    with pytest.raises(AuditError, match="exists already"):
        create_campaign(con, "small", sample_size=1, by="ana")


def test_eight_concurrent_annotators_lose_and_duplicate_nothing(con, tmp_path):
    _corpus(con, tmp_path, n_clips=300, tags_per_clip=10)
    campaign = create_campaign(con, "load", sample_size=300, by="ana", annotators_per_clip=2)
    errors, counts = [], {}
    start = threading.Barrier(8)  # all eight go for the first free slot together, the herd that used to fail

    def annotate(name: str) -> None:
        cursor = con.cursor()  # DuckDB 2: one cursor per thread
        done = 0
        try:
            start.wait(timeout=60)
            while done < 500:
                item = next_item(cursor, campaign, name)
                assert item is not None, "queue ran dry"
                submit(cursor, item, name, {t: ("correct" if hash(t) % 3 else "wrong") for t in item.tags})
                done += len(item.tags)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        counts[name] = done

    threads = [threading.Thread(target=annotate, args=(f"annotator{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert all(done == 500 for done in counts.values())
    total, distinct = con.execute("SELECT count(*), count(DISTINCT (campaign_id, clip_key, annotator, tag)) "
                                  "FROM audit_verdicts").fetchall()[0]
    assert total == distinct == 8 * 500
    # No clip judged twice by one annotator; no slot handed to two annotators; every claim submitted.
    assert con.execute("SELECT count(*) FROM (SELECT clip_key, annotator FROM audit_slots WHERE annotator IS NOT NULL "
                       "GROUP BY ALL HAVING count(*) > 1)").fetchall()[0][0] == 0
    assert con.execute("SELECT count(*) FROM audit_slots WHERE annotator IS NOT NULL AND submitted_at IS NULL"
                       ).fetchall()[0][0] == 0
    per_annotator = store_audit.verdict_frame(con, campaign).groupby("annotator").size()
    assert per_annotator.to_dict() == {f"annotator{i}": 500 for i in range(8)}
