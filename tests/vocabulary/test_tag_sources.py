"""Which extractors' tag rows feed the vocabulary: a tagging job's preview, the use_extractors decision, undo."""
from __future__ import annotations

import pytest
from helpers import make_cut, write_jsonl

from curation.extraction.backends import OfflineTagBackend
from curation.extraction.jobs import preview_job, producer_of, run_job
from curation.ingest.ingest import ingest_path
from curation.vocabulary.decisions import Decision, DecisionError, list_decisions, record_decision, replay
from curation.vocabulary.ranking import compute_vocabulary, load_tag_matrix

CAPTIONS = [
    "A dog barks twice while rain falls on a tin roof. In summary, a dog in the rain.",
    "An acoustic guitar plays a slow melody with a soft piano. In summary, calm music.",
    "Heavy traffic and car horns on a busy street. In summary, city traffic.",
    "A man speaks over a crackling fire. In summary, speech by a campfire.",
]


@pytest.fixture
def corpus(con, tmp_path):
    cuts = [make_cut(f"clip{i}", tags=("field recording", f"only{i}"), caption=CAPTIONS[i % len(CAPTIONS)])
            for i in range(8)]
    ingest_path(con, write_jsonl(tmp_path / "cuts.jsonl", cuts), extractor="human-v1")
    return con


def _vocabulary(con):
    return compute_vocabulary(load_tag_matrix(con), replay(list_decisions(con)))


def test_preview_counts_what_a_job_would_add_and_writes_nothing(corpus):
    backend = OfflineTagBackend()
    before = corpus.execute("SELECT count(*) FROM clip_tags").fetchall()[0][0]
    preview = preview_job(corpus, backend, task="tags")
    assert corpus.execute("SELECT count(*) FROM clip_tags").fetchall()[0][0] == before
    assert corpus.execute("SELECT count(*) FROM extraction_jobs").fetchall()[0][0] == 0
    assert preview.planned == 8 and preview.clips_tagged_by_others == 8
    assert [row["extractor"] for row in preview.tags_by_extractor] == ["human-v1"]
    assert preview.sampled == 8  # fewer clips than the sample: measured on all of them, so exact
    report = run_job(corpus, backend, task="tags", by="ana")
    assert report.tag_rows > 0 and preview.estimated_tag_rows == report.tag_rows


def test_a_new_extractor_feeds_the_vocabulary_only_by_a_decision_that_undo_reverts(corpus):
    record_decision(corpus, Decision.use_extractors(["human-v1"]), by="ana", reason="keep the curated tags")
    ranking_before = _vocabulary(corpus).ranking[["tag", "df"]].to_dict("records")
    backend = OfflineTagBackend()
    run_job(corpus, backend, task="tags", by="ana")
    assert _vocabulary(corpus).ranking[["tag", "df"]].to_dict("records") == ranking_before

    both = record_decision(corpus, Decision.use_extractors(["human-v1", producer_of(backend)]), by="ana")
    with_job = _vocabulary(corpus)
    assert len(with_job.ranking) > len(ranking_before)
    assert both.describe() == f"use the tags of {', '.join(sorted(['human-v1', producer_of(backend)]))}"

    record_decision(corpus, Decision.use_extractors([producer_of(backend)]), by="ana")
    only_job = _vocabulary(corpus)
    assert "field recording" not in set(only_job.ranking["tag"])

    record_decision(corpus, Decision.undo(both.decision_id + 1), by="ana")
    assert _vocabulary(corpus).ranking[["tag", "df"]].to_dict("records") == \
        with_job.ranking[["tag", "df"]].to_dict("records")


def test_use_extractors_refuses_unknown_names_and_no_ops(corpus):
    with pytest.raises(DecisionError, match="unknown extractor 'humann'"):
        record_decision(corpus, Decision.use_extractors(["humann"]), by="ana")
    record_decision(corpus, Decision.use_extractors(["human-v1"]), by="ana")
    with pytest.raises(DecisionError, match="already feed the vocabulary"):
        record_decision(corpus, Decision.use_extractors(["human-v1"]), by="ana")
    with pytest.raises(DecisionError, match="non-empty list"):
        record_decision(corpus, Decision("use_extractors", {"extractors": []}), by="ana")
