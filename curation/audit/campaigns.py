"""Auditing the captioner: campaigns with a stratified, seeded sample; annotator queues; per-tag verdicts.

Place in the flow: ingest -> (this module) audit campaigns -> verdicts in DuckDB -> audit_stats -> bias
dashboards. A campaign samples clips stratified by domain x source dataset x tag-frequency band (the band of
the clip's rarest canonical tag) with equal allocation across strata, so rare tags get audited too. Each
sampled clip has ``annotators_per_clip`` slots; an annotator claims one slot at a time, never two slots of one
clip, and two annotators racing for a slot cannot both get it: claims and submissions run one at a time under
``store_audit.WRITE_LOCK`` (the app is the one process writing the database, its sessions share one connection),
so neither ever meets a write conflict and neither fails while free slots remain.

An annotator may skip a clip (its slot is given back and the clip comes back once nothing else is left for
them), see where they are in their queue (``queue_progress``), and go back to revise what they last submitted
(``previous_item`` then ``submit(..., revise=True)``, which replaces that clip's answers in one transaction).

Example::

    campaign_id = create_campaign(con, "pilot", sample_size=200, by="ana")
    item = next_item(con, campaign_id, "bo")
    submit(con, item, "bo", {tag: "correct" for tag in item.tags}, added=["rain"], rating=4)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import duckdb
import numpy as np
import pandas as pd

from curation import store
from curation.admin import permissions
from curation.errors import UtsError
from curation.ingest.tag_text import normalize_tag, tag_text_problem
from curation.store import audit as store_audit
from curation.vocabulary.decisions import list_decisions, replay
from curation.vocabulary.ranking import compute_vocabulary, load_tag_matrix

VERDICTS = ("correct", "wrong", "unsure")
FREQUENCY_BAND_EDGES = (10, 100, 1000)  # df bands: 1-9, 10-99, 100-999, 1000+


class AuditError(UtsError, ValueError):
    """An audit request that cannot be carried out (unknown campaign, slot not yours, bad verdict, ...)."""


@dataclass(frozen=True)
class AuditItem:
    """One clip to judge, from one annotator's queue."""

    campaign_id: int
    clip_key: int
    slot: int
    clip_id: str
    caption: str
    original_captions: tuple[str, ...]
    audio_path: str | None
    domain: str | None
    source: str | None
    tags: tuple[str, ...]  # canonical tags to judge (merges applied; pruned ones are still judged)
    raw_tags: tuple[str, ...] = field(default=())
    served_at: float = field(default_factory=time.monotonic, compare=False)


def frequency_band(df: np.ndarray, edges=FREQUENCY_BAND_EDGES) -> np.ndarray:
    labels = [f"{lo}-{hi - 1}" for lo, hi in zip((1, *edges[:-1]), edges)] + [f"{edges[-1]}+"]
    return np.array(labels, dtype=object)[np.searchsorted(np.asarray(edges), df, side="right")]


def stratified_sample(frame: pd.DataFrame, sample_size: int, seed: int) -> pd.DataFrame:
    """Equal allocation over the strata present (a small stratum gives all it has, the rest is shared out),
    seeded; the result is shuffled so that any prefix of the queue covers the strata evenly."""
    rng = np.random.default_rng(seed)
    groups = {name: group.index.to_numpy() for name, group in frame.groupby("stratum", sort=True)}
    remaining = min(sample_size, len(frame))
    quota = dict.fromkeys(groups, 0)
    open_strata = sorted(groups)
    while remaining > 0 and open_strata:
        share = max(1, remaining // len(open_strata))
        for name in list(open_strata):
            take = min(share, len(groups[name]) - quota[name], remaining)
            quota[name] += take
            remaining -= take
            if quota[name] == len(groups[name]):
                open_strata.remove(name)
            if remaining == 0:
                break
    chosen = np.concatenate([rng.choice(groups[name], size=quota[name], replace=False)
                             for name in sorted(groups) if quota[name]]) if any(quota.values()) else np.array([], int)
    sample = frame.loc[rng.permutation(chosen)].reset_index(drop=True)
    sample["position"] = np.arange(1, len(sample) + 1)
    return sample


def create_campaign(con: duckdb.DuckDBPyConnection, name: str, *, sample_size: int, by: str,
                    annotators_per_clip: int = 2, seed: int = 0, suspects_of_run: str | None = None) -> int:
    """``suspects_of_run``: the "suspects first" strategy: the clips that run's model audit disputes most come
    first (curation/audit/model_audit.py), a stratified sample of the rest fills the campaign."""
    by = permissions.authorize("campaign", by)
    if not name.strip():
        raise AuditError("a campaign needs a name")
    if not by or not by.strip():
        raise AuditError("a campaign records who created it: expected a non-empty name")
    if sample_size < 1 or annotators_per_clip < 1:
        raise AuditError(f"sample_size={sample_size}, annotators_per_clip={annotators_per_clip}: expected >= 1")
    if store_audit.campaign_id_by_name(con, name.strip()) is not None:
        raise AuditError(f"a campaign named {name.strip()!r} exists already; choose another name")
    frame = store_audit.sampling_frame(con)
    if frame.empty:
        raise AuditError("no tagged clips to audit: ingest a tagged corpus first")
    frame["stratum"] = _strata(con, frame)
    if suspects_of_run is None:
        sample = stratified_sample(frame, sample_size, seed)
    else:
        from curation.audit.model_audit import suspects_first_sample

        sample = suspects_first_sample(con, frame, sample_size, seed, suspects_of_run)
    design = {"strata": "domain x source x frequency band of the clip's rarest canonical tag",
              "band_edges": list(FREQUENCY_BAND_EDGES), "allocation": "equal, remainder shared",
              "strata_counts": sample["stratum"].value_counts().sort_index().to_dict(),
              "strategy": "stratified" if suspects_of_run is None else f"suspects first (run {suspects_of_run})"}
    with store_audit.WRITE_LOCK, store.transaction(con):  # the new campaign_id is max + 1: one creator at a time
        return store_audit.insert_campaign(
            con, name=name.strip(), by=by.strip(), sample_size=len(sample), annotators_per_clip=annotators_per_clip,
            seed=seed, design=design, kind="listening", slots=sample[["position", "clip_key", "stratum"]])


def _strata(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> pd.Series:
    matrix = load_tag_matrix(con)
    view = compute_vocabulary(matrix, replay(list_decisions(con)))
    df_of_id = np.zeros(int(max(view.ranking["tag_id"].max(), view.canonical_rows.max()) + 1) if len(view.ranking)
                        else 1, dtype=np.int64)
    df_of_id[view.ranking["tag_id"].to_numpy()] = view.ranking["df"].to_numpy()
    rows = view.canonical_rows
    rarest = np.where(rows >= 0, df_of_id[np.maximum(rows, 0)], np.iinfo(np.int64).max).min(axis=1)
    rarest = np.where(rarest == np.iinfo(np.int64).max, 0, rarest)
    row_of_clip = pd.Series(np.arange(len(view.clip_ids)), index=view.clip_ids)
    bands = frequency_band(rarest[row_of_clip.loc[frame["clip_id"]].to_numpy()])
    return frame["domain"] + " | " + frame["source"] + " | df " + pd.Series(bands, index=frame.index)


@dataclass(frozen=True)
class QueueProgress:
    """Where an annotator stands in one campaign: ``position`` of ``total`` (the clip on screen counted)."""

    submitted: int
    open: int  # claimed, not yet submitted (the clip on screen)
    claimable: int  # clips with a free slot they could still get

    @property
    def total(self) -> int:
        return self.submitted + self.open + self.claimable

    @property
    def position(self) -> int:
        return min(self.submitted + 1, self.total)


@dataclass(frozen=True)
class PastSubmission:
    """What an annotator answered on a clip they already submitted (to revise it)."""

    item: AuditItem
    verdicts: dict
    added: tuple[str, ...]
    rating: int | None
    note: str | None


def next_item(con: duckdb.DuckDBPyConnection, campaign_id: int, annotator: str, *,
              avoid_clip_keys: list[int] | None = None) -> AuditItem | None:
    """The annotator's open item, or a newly claimed one (clips in ``avoid_clip_keys``, the ones they skipped,
    only once nothing else is free); None when nothing is left for them."""
    annotator = _annotator(permissions.authorize("audit", annotator))
    with store_audit.WRITE_LOCK, store.transaction(con):
        held = store_audit.open_slot_of(con, campaign_id, annotator)
        claimed = held or store_audit.claim_free_slot(con, campaign_id, annotator, avoid_clip_keys)
    if claimed is None:
        return None
    return _item(con, campaign_id, *claimed)


def skip_item(con: duckdb.DuckDBPyConnection, item: AuditItem, annotator: str, *,
              avoid_clip_keys: list[int] | None = None) -> AuditItem | None:
    """Give back the slot of ``item`` (not judged) and claim the next clip, preferring any clip not in
    ``avoid_clip_keys`` and not ``item`` itself; the skipped clip returns when nothing else is left. One
    transaction under the write lock: the slot is free for others the moment it is given back."""
    annotator = _annotator(permissions.authorize("audit", annotator))
    avoid = sorted({*(avoid_clip_keys or ()), item.clip_key})
    with store_audit.WRITE_LOCK, store.transaction(con):
        if not store_audit.release_open_slot(con, item.campaign_id, item.clip_key, item.slot, annotator):
            raise AuditError(f"clip {item.clip_id} slot {item.slot}: not an open slot of {annotator!r}; nothing to skip")
        held = store_audit.open_slot_of(con, item.campaign_id, annotator)
        claimed = held or store_audit.claim_free_slot(con, item.campaign_id, annotator, avoid)
    return _item(con, item.campaign_id, *claimed) if claimed is not None else None


def queue_progress(con: duckdb.DuckDBPyConnection, campaign_id: int, annotator: str) -> QueueProgress:
    return QueueProgress(*store_audit.queue_counts(con, campaign_id, _annotator(annotator)))


def previous_item(con: duckdb.DuckDBPyConnection, campaign_id: int, annotator: str, *,
                  before: AuditItem | None = None) -> PastSubmission | None:
    """The annotator's most recent submission in this campaign (or the one before ``before``, itself a past
    submission), with their answers; None when there is none."""
    annotator = _annotator(annotator)
    before_at = None
    if before is not None:
        row = store_audit.slot_holder(con, before.campaign_id, before.clip_key, before.slot)
        before_at = row[1]
    found = store_audit.last_submitted_slot_of(con, campaign_id, annotator, before_at)
    if found is None:
        return None
    clip_key, slot, _at = found
    answers = store_audit.submission_of(con, campaign_id, clip_key, annotator)
    item = _item(con, campaign_id, clip_key, slot)
    if answers["verdicts"]:  # the tags as they were judged (later merges must not change what is revised)
        item = replace(item, tags=tuple(sorted(answers["verdicts"])))
    return PastSubmission(item=item, verdicts=answers["verdicts"], added=tuple(answers["added"]),
                          rating=answers["rating"], note=answers["note"])


def _item(con: duckdb.DuckDBPyConnection, campaign_id: int, clip_key: int, slot: int) -> AuditItem:
    clip = store_audit.clip_for_audit(con, clip_key)
    state = replay(list_decisions(con))
    tags = tuple(sorted({state.canonical(tag) for tag in clip["raw_tags"] or ()}))
    return AuditItem(campaign_id=campaign_id, clip_key=clip_key, slot=slot, clip_id=clip["clip_id"],
                     caption=clip["caption"] or "", original_captions=tuple(clip["originals"] or ()),
                     audio_path=clip["audio_path"] if clip["audio_ok"] else None, domain=clip["domain"],
                     source=clip["source"], tags=tags, raw_tags=tuple(clip["raw_tags"] or ()))


def submit(con: duckdb.DuckDBPyConnection, item: AuditItem, annotator: str, verdicts: dict[str, str], *,
           added: list[str] | None = None, rating: int | None = None, note: str | None = None,
           revise: bool = False) -> None:
    """Store one clip's judgement (every tag's verdict, tags the audio has but the list misses, a 1-5 rating)
    in one transaction; refused unless the slot is this annotator's and still open, or, with ``revise``, already
    submitted by them (their earlier answers on it are replaced)."""
    annotator = _annotator(permissions.authorize("audit", annotator))
    missing = [tag for tag in item.tags if tag not in verdicts]
    if missing:
        raise AuditError(f"clip {item.clip_id}: no verdict for {', '.join(missing)}; every tag needs one")
    unknown = sorted(set(verdicts) - set(item.tags))
    if unknown:
        raise AuditError(f"clip {item.clip_id}: {', '.join(unknown)} are not tags of this clip")
    bad = {tag: v for tag, v in verdicts.items() if v not in VERDICTS}
    if bad:
        raise AuditError(f"clip {item.clip_id}: verdicts {bad}: expected one of {VERDICTS}")
    if rating is not None and not (isinstance(rating, int) and 1 <= rating <= 5):
        raise AuditError(f"rating {rating!r}: expected an integer from 1 to 5")
    added_tags = sorted({normalize_tag(tag) for tag in (added or []) if normalize_tag(tag)} - set(item.tags))
    for tag in added_tags:
        if (problem := tag_text_problem(tag)) is not None:
            raise AuditError(f"clip {item.clip_id}: added tag {tag!r}: expected {problem}")
    seconds = time.monotonic() - item.served_at
    with store_audit.WRITE_LOCK, store.transaction(con):
        holder, submitted_at = store_audit.slot_holder(con, item.campaign_id, item.clip_key, item.slot)
        if holder != annotator:
            raise AuditError(f"clip {item.clip_id} slot {item.slot} is held by {holder!r}, not {annotator!r}")
        if submitted_at is not None and not revise:
            raise AuditError(f"clip {item.clip_id}: already submitted by {annotator!r}")
        if revise and submitted_at is None:
            raise AuditError(f"clip {item.clip_id}: not submitted yet by {annotator!r}; nothing to revise")
        if revise:
            store_audit.delete_submission(con, item.campaign_id, item.clip_key, annotator)
        store_audit.write_submission(con, campaign_id=item.campaign_id, clip_key=item.clip_key, slot=item.slot,
                                     annotator=annotator, verdicts=dict(verdicts), added=added_tags,
                                     rating=rating, note=(note or None), seconds_spent=seconds)


def _annotator(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise AuditError("every verdict records its annotator: expected a non-empty name")
    return name.strip()


def campaign_table(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return store_audit.campaigns(con)
