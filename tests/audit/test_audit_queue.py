"""An annotator's place in their queue: progress, skip (the clip comes back last, its slot is free for others
meanwhile), and going back to revise the last submitted clip."""
from __future__ import annotations

import pytest
from helpers import make_cut, write_jsonl

from curation.audit.campaigns import (
    AuditError,
    create_campaign,
    next_item,
    previous_item,
    queue_progress,
    skip_item,
    submit,
)
from curation.ingest.ingest import ingest_path


@pytest.fixture
def campaign(con, tmp_path):
    cuts = [make_cut(f"c{i}", tags=("music", f"t{i}")) for i in range(5)]
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts))
    return con, create_campaign(con, "q", sample_size=5, by="ana", annotators_per_clip=1, seed=1)


def _all_correct(con, item, who, rating=4, **kw):
    submit(con, item, who, {tag: "correct" for tag in item.tags}, rating=rating, **kw)


def test_progress_counts_the_clip_on_screen_among_the_queue(campaign):
    con, cid = campaign
    item = next_item(con, cid, "bo")
    progress = queue_progress(con, cid, "bo")
    assert (progress.position, progress.total) == (1, 5)
    _all_correct(con, item, "bo")
    next_item(con, cid, "bo")
    progress = queue_progress(con, cid, "bo")
    assert (progress.position, progress.total) == (2, 5)
    # Another annotator's claim shrinks bo's queue: one annotator per clip.
    next_item(con, cid, "cy")
    assert queue_progress(con, cid, "bo").total == 4


def test_skip_gives_the_slot_back_and_the_clip_comes_back_last(campaign):
    con, cid = campaign
    first = next_item(con, cid, "bo")
    skipped = [first.clip_key]
    second = skip_item(con, first, "bo", avoid_clip_keys=skipped)
    assert second.clip_key != first.clip_key
    # While skipped, the slot is free: another annotator may claim the skipped clip.
    holders = con.execute("SELECT annotator FROM audit_slots WHERE campaign_id = ? AND clip_key = ?",
                          [cid, first.clip_key]).fetchall()
    assert holders == [(None,)]
    seen = [second.clip_key]
    item = second
    while item is not None:
        _all_correct(con, item, "bo")
        item = next_item(con, cid, "bo", avoid_clip_keys=skipped)
        if item is not None:
            seen.append(item.clip_key)
    assert seen[-1] == first.clip_key and len(seen) == 5  # last, and nothing asked twice
    with pytest.raises(AuditError, match="nothing to skip"):
        skip_item(con, second, "bo")


def test_back_revises_the_last_submission_in_place(campaign):
    con, cid = campaign
    first = next_item(con, cid, "bo")
    submit(con, first, "bo", {tag: "wrong" for tag in first.tags}, added=["rain"], rating=2, note="noisy")
    second = next_item(con, cid, "bo")
    past = previous_item(con, cid, "bo")
    assert past.item.clip_key == first.clip_key and past.rating == 2 and past.note == "noisy"
    assert set(past.verdicts.values()) == {"wrong"} and past.added == ("rain",)
    _all_correct(con, past.item, "bo", rating=5, revise=True)
    rows = con.execute("SELECT verdict, count(*) FROM audit_verdicts WHERE campaign_id = ? AND clip_key = ? "
                       "GROUP BY verdict", [cid, first.clip_key]).fetchall()
    assert rows == [("correct", len(first.tags))]  # replaced, not added beside the old answers
    assert con.execute("SELECT count(*) FROM audit_added_tags WHERE clip_key = ?", [first.clip_key]).fetchall() == [(0,)]
    assert con.execute("SELECT rating FROM audit_caption_ratings WHERE clip_key = ?", [first.clip_key]).fetchall() == [(5,)]
    # The open clip is still held; a revise of a clip not yet submitted is refused.
    with pytest.raises(AuditError, match="nothing to revise"):
        _all_correct(con, second, "bo", revise=True)
    assert next_item(con, cid, "bo").clip_key == second.clip_key
    with pytest.raises(AuditError, match="already submitted"):
        _all_correct(con, first, "bo")
