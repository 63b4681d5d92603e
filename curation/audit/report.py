"""The numbers behind the bias dashboards of one audit campaign, assembled from the store and audit_stats.

Place in the flow: audit verdicts (DuckDB) -> (this module) -> the Audit dashboard page and
``python -m curation audit report``.

Example::

    report = campaign_report(con, "pilot")
    report.flags[report.flags.biased]        # tags whose 95% precision interval lies below the clean level
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from curation.audit import stats as audit_stats
from curation.audit.campaigns import AuditError
from curation.store import audit as store_audit
from curation.vocabulary.decisions import list_decisions, replay
from curation.vocabulary.ranking import TagMatrix, compute_vocabulary, load_tag_matrix


@dataclass(frozen=True)
class AuditReport:
    campaign: dict
    verdicts: pd.DataFrame  # clip_id, annotator, tag, verdict
    precision: pd.DataFrame  # audit_stats.tag_precision
    flags: pd.DataFrame  # audit_stats.flag_biased_tags against the clean reference, family-wise 95% (Bonferroni)
    clean_reference: str  # how the clean level was chosen
    miss: pd.DataFrame  # audit_stats.miss_rate
    rates: dict  # by -> audit_stats.hallucination_rate_by frame (domain, source, frequency_band, caption_length_band)
    domain_by_tag: pd.DataFrame  # hallucination rate per (domain, tag), for the heat-map
    over_assertion: pd.DataFrame  # audit_stats.over_assertion on the audited clips
    pairwise_kappa: pd.DataFrame
    alpha_overall: float
    alpha_by_tag: pd.DataFrame
    quality: pd.DataFrame  # audit_stats.annotator_quality
    progress: pd.DataFrame  # per annotator: clips submitted, median seconds


def family_z(n_tests: int, family_alpha: float = 0.05) -> float:
    """Bonferroni: every tag is tested at once, so each test gets alpha / n_tests (two-sided). With plain 95%
    intervals, dozens of clean tags would be flagged by chance alone (seen on the demo audit)."""
    from scipy.stats import norm

    return float(norm.ppf(1 - family_alpha / (2 * max(n_tests, 1))))


def campaign_report(con: duckdb.DuckDBPyConnection, campaign: str | int, clean_tags: list[str] | None = None,
                    matrix: TagMatrix | None = None) -> AuditReport:
    """``clean_tags``: tags trusted as the reference level; by default the campaign's pooled precision over
    all tags is the reference (a tag is flagged when its whole interval lies below the captioner's average).
    ``matrix``: the corpus's tag matrix when the caller holds it already (the app caches it); else loaded."""
    campaigns = store_audit.campaigns(con)
    match = campaigns[(campaigns["name"] == campaign) | (campaigns["campaign_id"].astype(str) == str(campaign))]
    if match.empty:
        raise AuditError(f"no audit campaign {campaign!r}; known: {', '.join(campaigns['name']) or 'none'}")
    row = match.iloc[0].to_dict()
    campaign_id = int(row["campaign_id"])
    verdicts = store_audit.verdict_frame(con, campaign_id)
    added = store_audit.added_frame(con, campaign_id)
    ratings = store_audit.rating_frame(con, campaign_id)
    precision = audit_stats.tag_precision(verdicts)
    reference_tags = clean_tags if clean_tags is not None else precision["tag"].tolist()
    flags = audit_stats.flag_biased_tags(precision, clean_tags=reference_tags,
                                         z=family_z(int((precision["judged"] > 0).sum())))
    clips = store_audit.audited_clip_attributes(con, campaign_id)
    state = replay(list_decisions(con))
    view = compute_vocabulary(matrix if matrix is not None else load_tag_matrix(con), state)
    tag_df = view.ranking[["tag", "df"]]
    rates = {
        "domain": audit_stats.hallucination_rate_by(verdicts, clips, by="domain"),
        "source": audit_stats.hallucination_rate_by(verdicts, clips, by="source"),
        "caption_length_band": audit_stats.hallucination_rate_by(verdicts, clips, by="caption_length_band"),
        "frequency_band": audit_stats.hallucination_rate_by(verdicts, tag_df, by="frequency_band"),
    }
    judged = verdicts[verdicts["verdict"].isin(("correct", "wrong"))].merge(clips[["clip_id", "domain"]], on="clip_id")
    domain_by_tag = (judged.assign(wrong=judged["verdict"].eq("wrong"))
                     .groupby(["domain", "tag"], as_index=False).agg(judged=("wrong", "size"), wrong=("wrong", "sum")))
    domain_by_tag["hallucination_rate"] = domain_by_tag["wrong"] / domain_by_tag["judged"]
    comparison = store_audit.caption_comparison_rows(con, clips["clip_id"].tolist())
    members = state.members()
    over = audit_stats.over_assertion(_over_assertion_rows(comparison, state), variants=members)
    timings = ratings[["annotator", "clip_id", "seconds"]].dropna() if not ratings.empty else None
    progress = (ratings.groupby("annotator", as_index=False)
                .agg(clips_submitted=("clip_id", "nunique"), median_seconds=("seconds", "median"))
                if not ratings.empty else pd.DataFrame(columns=["annotator", "clips_submitted", "median_seconds"]))
    return AuditReport(
        campaign=row, verdicts=verdicts, precision=precision, flags=flags,
        clean_reference="given clean tags" if clean_tags is not None else "pooled precision of all judged tags",
        miss=audit_stats.miss_rate(verdicts, added), rates=rates, domain_by_tag=domain_by_tag, over_assertion=over,
        pairwise_kappa=audit_stats.pairwise_kappa(verdicts), alpha_overall=audit_stats.alpha_overall(verdicts),
        alpha_by_tag=audit_stats.alpha_by_tag(verdicts),
        quality=audit_stats.annotator_quality(verdicts, timings), progress=progress)


def _over_assertion_rows(comparison: pd.DataFrame, state) -> pd.DataFrame:
    """One row per (audited clip, canonical tag) with the clip's generated and original captions."""
    rows = []
    for clip in comparison.itertuples():
        raw_tags = clip.raw_tags if isinstance(clip.raw_tags, (list, np.ndarray)) else []
        originals = list(clip.original_captions) if isinstance(clip.original_captions, (list, np.ndarray)) else []
        for tag in sorted({state.canonical(t) for t in raw_tags}):
            rows.append((clip.clip_id, clip.domain, tag, clip.generated_caption or "", originals))
    return pd.DataFrame(rows, columns=["clip_id", "domain", "tag", "generated_caption", "original_captions"])


def tag_clip_ids(report: AuditReport, tag: str, verdict: str | None = None) -> list[str]:
    """The audited clips of a tag (optionally only those judged ``verdict``), for "open its clips"."""
    frame = report.verdicts[report.verdicts["tag"] == tag]
    if verdict is not None:
        frame = frame[frame["verdict"] == verdict]
    return sorted(np.unique(frame["clip_id"]).tolist())
