"""Model-based evidence for the vocabulary: tags the trained model cannot tell apart (merge evidence) and tags it
cannot predict at all (prune evidence), from a run's out-of-sample scores.

Place in the flow: ``python -m curation model-audit`` (RUN_DIR/model_audit/oos_scores.npz: every clip of the run's
export scored by heads that never saw its labels) -> (this module) -> the merge and prune suggestions on the
Vocabulary page (ui/suggestions.py) and ``python -m curation model-evidence``. It sits in the audit layer because
it reads the model audit; the vocabulary layer below knows nothing of it.

The idea is cleanlab's "overlapping classes" (Northcutt et al., JAIR 2021: classes the model confuses with each
other in both directions are candidates to merge), adapted to multi-label tags, where two tags may both be right
on one clip. Per pair of tags (a, b), only the clips that assert exactly one of them say whether the model tells
them apart:

- **separability** = the AUC of ``p_a - p_b`` for telling the clips tagged a (not b) from those tagged b (not a)
  (Mann-Whitney, ties counted half). 1.0: the model always gives the a-clips more of a than the b-clips; 0.5: it
  cannot tell which of the two names a clip was given, i.e. the audio behind them is the same to it (a synonym
  the captioner uses at random, or a renamed concept); ``overlap = min(1, 2 * (1 - separability))``.
- **predictability** of one tag = the out-of-sample AUC of ``p_tag`` for telling the clips asserting it from the
  others, with a Hanley-McNeil 95% interval. An interval that reaches 0.5 means no evidence that the audio carries
  the tag at all (a caption habit, or a tag too vague to hear): a prune reason.

Both are evidence for a person to weigh, not decisions: a model that cannot tell two tags apart may be too weak
(see the per-tag predictability of each), and a tag it cannot predict may be rare or subtle. Thresholds are
conventions stated here (``CANNOT_TELL_APART_AUC``, ``MIN_CLIPS``), not fitted to any corpus.

Example::

    evidence = model_evidence(con, "r1", state=replay(list_decisions(con)))
    evidence.pairs.head()        # tag_a, tag_b, separability, overlap, a_only, b_only, verdict
    evidence.tags.query("verdict == 'no better than chance'")
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from curation.audit.model_audit import ModelAuditError, OosScores, asserted_counts, read_oos_scores
from curation.store import model_audit as store_model_audit
from curation.vocabulary.decisions import CurationState

# Each side of a pair (clips asserting a but not b, and b but not a) and each side of a tag (asserted / not)
# needs this many clips before the model's view of it is reported: below it an AUC says little.
MIN_CLIPS = 8
# A pair separated no better than this is called "cannot tell apart" (AUC 0.5-0.65: what is usually read as a
# failed-to-poor discrimination); up to DISTINCT_AUC "hardly tells apart"; above it the model tells them apart.
CANNOT_TELL_APART_AUC = 0.65
DISTINCT_AUC = 0.8
# Pairs are first screened by mutual confusion, the multi-label form of the confident joint's off-diagonal: how
# much of tag a the model gives the clips tagged b, relative to what it gives a's own clips (mean p_a over b's
# clips / mean p_a over a's clips, capped at 1), averaged over both directions. A rare synonym the model scores
# low everywhere still gets 1 this way (its own clips score as low as the other's), where a correlation of the two
# score profiles would miss it. One (K x N) @ (N x K) product on at most SCREEN_CLIPS clips; only the MAX_PAIRS
# most confused pairs (at least MIN_MUTUAL_CONFUSION) get the exact pair statistics.
SCREEN_CLIPS = 20_000
MAX_PAIRS = 500
MIN_MUTUAL_CONFUSION = 0.5
# Per-tag statistics copy this many (clip, tag) cells of the scores at a time (a block of whole columns).
COLUMN_BLOCK_CELLS = 32_000_000
Z_95 = 1.959964

PAIR_COLUMNS = ("tag_a", "tag_b", "separability", "separability_low", "separability_high", "overlap", "a_only",
                "b_only", "both", "mutual_confusion", "verdict")
TAG_COLUMNS = ("tag", "asserted", "auc", "auc_low", "auc_high", "verdict")


@dataclass(frozen=True)
class ModelEvidence:
    run_id: str
    pairs: pd.DataFrame   # PAIR_COLUMNS, least separable first
    tags: pd.DataFrame    # TAG_COLUMNS, least predictable first
    labels: dict          # current canonical name -> column of the scores matrix
    oos: OosScores

    def cannot_tell_apart(self) -> pd.DataFrame:
        return self.pairs[self.pairs["verdict"] == "cannot tell apart"].reset_index(drop=True)

    def unpredictable(self) -> pd.DataFrame:
        return self.tags[self.tags["verdict"] == "no better than chance"].reset_index(drop=True)


# ------------------------------------------------------------------------------------------------ statistics

def auc_with_interval(positive: np.ndarray, negative: np.ndarray) -> tuple[float, float, float]:
    """(AUC, low, high): P(a positive scores above a negative), ties counted half (Mann-Whitney U / n1 n2), with
    the Hanley-McNeil (1982) 95% interval, clipped to [0, 1]. NaN when either side is empty."""
    positive, negative = _floats(positive), _floats(negative)
    n1, n2 = len(positive), len(negative)
    if not n1 or not n2:
        return float("nan"), float("nan"), float("nan")
    # U = for each positive, the negatives below it plus half those equal to it: two binary searches per positive
    # in the sorted negatives (sorted positives search faster). Exact, and for a rare tag (few positives) ~5x
    # faster than ranking all scores; this runs once per tag of a corpus.
    negative = np.sort(negative)
    positive = np.sort(positive)
    below = np.searchsorted(negative, positive, side="left")
    up_to = np.searchsorted(negative, positive, side="right")
    u = float(below.sum()) + 0.5 * float((up_to - below).sum())
    auc = u / (n1 * n2)
    low, high = hanley_interval(np.array([auc]), np.array([n1]), np.array([n2]))
    return float(auc), float(low[0]), float(high[0])


def _floats(values) -> np.ndarray:
    """Scores as a float array, float32 kept (the scores file's own precision; it sorts faster)."""
    values = np.asarray(values)
    return values if values.dtype in (np.float32, np.float64) else values.astype(np.float64)


def hanley_interval(auc: np.ndarray, n1: np.ndarray, n2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """95% interval of AUCs from n1 positives and n2 negatives (Hanley & McNeil 1982), clipped to [0, 1]."""
    auc = np.asarray(auc, dtype=np.float64)
    n1 = np.asarray(n1, dtype=np.float64)
    n2 = np.asarray(n2, dtype=np.float64)
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = (auc * (1 - auc) + (n1 - 1) * (q1 - auc * auc) + (n2 - 1) * (q2 - auc * auc)) / (n1 * n2)
    half = Z_95 * np.sqrt(np.clip(variance, 0.0, None))
    return np.clip(auc - half, 0.0, 1.0), np.clip(auc + half, 0.0, 1.0)


def tag_predictability(scores: np.ndarray, targets: np.ndarray, labels: list[str],
                       min_clips: int = MIN_CLIPS, columns: list[int] | None = None) -> pd.DataFrame:
    """Per tag: asserted clips, out-of-sample AUC with its 95% interval, and a verdict: "too few clips" (either
    side below ``min_clips``), "no better than chance" (the interval reaches 0.5), else "predictable".
    ``columns``: the matrix column of each label (default: label i is column i)."""
    rows = []
    n_tags = len(labels)
    columns = list(range(n_tags)) if columns is None else list(columns)
    # A block of columns at a time, copied out column-major: a (clips x tags) float64 copy of a large corpus's
    # scores would not fit, and reading a row-major (memory-mapped) matrix one column at a time strides through
    # all of it per tag.
    step = max(1, COLUMN_BLOCK_CELLS // max(len(scores), 1))
    for start in range(0, n_tags, step):
        picked = columns[start:start + step]
        block_scores = np.ascontiguousarray(_floats(scores[:, picked]).T)
        block_targets = np.ascontiguousarray(np.asarray(targets[:, picked], dtype=bool).T)
        for offset, (column, asserted) in enumerate(zip(block_scores, block_targets)):
            tag = labels[start + offset]
            n_pos, n_neg = int(asserted.sum()), int((~asserted).sum())
            if n_pos < min_clips or n_neg < min_clips:
                rows.append((tag, n_pos, np.nan, np.nan, np.nan, "too few clips"))
                continue
            auc, low, high = auc_with_interval(column[asserted], column[~asserted])
            rows.append((tag, n_pos, auc, low, high, "no better than chance" if low <= 0.5 else "predictable"))
    frame = pd.DataFrame(rows, columns=list(TAG_COLUMNS))
    return frame.sort_values(["auc", "tag"], na_position="last", kind="mergesort").reset_index(drop=True)


def pair_separability(scores: np.ndarray, targets: np.ndarray, a: int, b: int) -> dict:
    """How well the out-of-sample scores tell tag column ``a`` from ``b`` on the clips asserting exactly one."""
    target_a, target_b = np.asarray(targets[:, a], dtype=bool), np.asarray(targets[:, b], dtype=bool)
    only_a = target_a & ~target_b
    only_b = target_b & ~target_a
    diff = np.asarray(scores[:, a], dtype=np.float64) - np.asarray(scores[:, b], dtype=np.float64)
    auc, low, high = auc_with_interval(diff[only_a], diff[only_b])
    return {"separability": auc, "separability_low": low, "separability_high": high,
            "overlap": float("nan") if np.isnan(auc) else min(1.0, 2 * (1 - auc)),
            "a_only": int(only_a.sum()), "b_only": int(only_b.sum()),
            "both": int((target_a & target_b).sum())}


def pair_verdict(separability: float, a_only: int, b_only: int, min_clips: int = MIN_CLIPS) -> str:
    if a_only < min_clips or b_only < min_clips or np.isnan(separability):
        return "too few clips"
    if separability <= CANNOT_TELL_APART_AUC:
        return "cannot tell apart"
    return "hardly tells apart" if separability <= DISTINCT_AUC else "tells apart"


def mutual_confusion(scores: np.ndarray, targets: np.ndarray, *, seed: int = 0,
                     columns: np.ndarray | None = None) -> np.ndarray:
    """(K, K) symmetric (K: ``columns``, default all): for tags a, b the mean over both directions of min(1,
    mean p_a over the clips tagged b / mean p_a over the clips tagged a), on at most SCREEN_CLIPS clips (a seeded
    sample). NaN-free: a tag without clips in the sample gets 0 with every other."""
    rows = np.arange(len(scores))
    if len(rows) > SCREEN_CLIPS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, SCREEN_CLIPS, replace=False))
    columns = np.arange(scores.shape[1]) if columns is None else np.asarray(columns)
    # Rows first, then columns: only the sampled rows are ever copied out of a (memory-mapped) matrix.
    p = np.asarray(scores[rows], dtype=np.float64)[:, columns]
    t = np.asarray(targets[rows], dtype=np.float64)[:, columns]
    counts = t.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        # given[a, b] = mean p_a over the clips tagged b
        given = (p.T @ t) / counts[None, :]
        own = np.diag(given)
        ratio = np.minimum(1.0, given / own[:, None])
    ratio = np.nan_to_num(ratio, nan=0.0, posinf=0.0)
    return (ratio + ratio.T) / 2


def overlapping_pairs(scores: np.ndarray, targets: np.ndarray, labels: list[str], *, min_clips: int = MIN_CLIPS,
                      max_pairs: int = MAX_PAIRS, seed: int = 0, columns: list[int] | None = None) -> pd.DataFrame:
    """The pairs of tags the model confuses most (screened by ``mutual_confusion``), with their
    separability and verdict, least separable first. Tags asserted on fewer than ``min_clips`` clips are left
    out (nothing can be said of them)."""
    columns = np.arange(len(labels)) if columns is None else np.asarray(columns)
    usable = np.nonzero(asserted_counts(targets)[columns] >= min_clips)[0]    # positions in labels / columns
    if len(usable) < 2:
        return pd.DataFrame(columns=list(PAIR_COLUMNS))
    confusion = mutual_confusion(scores, targets, seed=seed, columns=columns[usable])
    upper_i, upper_j = np.triu_indices(len(usable), k=1)
    alike = confusion[upper_i, upper_j]
    keep = np.nonzero(alike >= MIN_MUTUAL_CONFUSION)[0]
    keep = keep[np.argsort(-alike[keep], kind="mergesort")][:max_pairs]
    out = []
    for index in keep:
        a, b = int(usable[upper_i[index]]), int(usable[upper_j[index]])
        stats = pair_separability(scores, targets, int(columns[a]), int(columns[b]))
        out.append({"tag_a": labels[a], "tag_b": labels[b], **stats, "mutual_confusion": float(alike[index]),
                    "verdict": pair_verdict(stats["separability"], stats["a_only"], stats["b_only"], min_clips)})
    frame = pd.DataFrame(out, columns=list(PAIR_COLUMNS))
    return frame.sort_values(["separability", "tag_a", "tag_b"], na_position="last",
                             kind="mergesort").reset_index(drop=True)


# ------------------------------------------------------------------------------------- a run, today's vocabulary

def _current_labels(labels: list[str], state: CurationState | None) -> tuple[dict, list[str]]:
    """Today's canonical name -> scores column for the export's labels that are still distinct and not pruned
    (a label merged since into another label, or pruned, is dropped: the suggestion it would make is done)."""
    columns: dict[str, int] = {}
    names = []
    for j, label in enumerate(labels):
        name = state.canonical(label) if state is not None else label
        if (state is not None and state.is_pruned(name)) or name in columns:
            continue
        columns[name] = j
        names.append(name)
    return columns, names


def model_evidence(con: duckdb.DuckDBPyConnection, run_id: str, *, state: CurationState | None = None,
                   min_clips: int = MIN_CLIPS) -> ModelEvidence:
    """The merge and prune evidence of ``run_id``'s model audit, named in today's vocabulary (``state``: the
    replayed decisions; pairs already merged and tags already pruned are left out)."""
    audit = store_model_audit.audit_row(con, run_id)
    if audit is None:
        raise ModelAuditError(f"--run {run_id}: no model audit stored; run python -m curation model-audit --run "
                              f"{run_id} first")
    scores_file = Path(audit["scores_file"])
    oos = read_oos_scores(scores_file.parent.parent)
    columns, names = _current_labels(oos.labels, state)
    # The labels still distinct today, by their columns of the matrices as read (memory-mapped, never copied
    # whole: a merge leaves most columns, and a copy of them would be most of a large corpus's matrix).
    picked = [columns[name] for name in names]
    return ModelEvidence(run_id=run_id,
                         pairs=overlapping_pairs(oos.scores, oos.targets, names, min_clips=min_clips, columns=picked),
                         tags=tag_predictability(oos.scores, oos.targets, names, min_clips=min_clips, columns=picked),
                         labels=columns, oos=oos)


def group_evidence(evidence: ModelEvidence, tags, state: CurationState | None = None,
                   min_clips: int = MIN_CLIPS) -> list[str]:
    """Model-based reasons for (or against) merging a suggested group: for each pair of its members that the
    run's export labels, whether the model tells them apart, in words. Members the export does not label are
    named once."""
    names = [state.canonical(t) if state is not None else t for t in tags]
    names = list(dict.fromkeys(names))
    known = [n for n in names if n in evidence.labels]
    reasons = []
    for i, a in enumerate(known):
        for b in known[i + 1:]:
            stats = pair_separability(evidence.oos.scores, evidence.oos.targets, evidence.labels[a],
                                      evidence.labels[b])
            verdict = pair_verdict(stats["separability"], stats["a_only"], stats["b_only"], min_clips)
            if verdict == "too few clips":
                reasons.append(f"model (run {evidence.run_id}): too few clips to compare {a} and {b} "
                               f"({stats['a_only']} + {stats['b_only']} with only one of them)")
                continue
            reasons.append(f"model (run {evidence.run_id}): {verdict} {a} and {b} (separability "
                           f"{stats['separability']:.2f}, 95% {stats['separability_low']:.2f}-"
                           f"{stats['separability_high']:.2f}, on {stats['a_only']} + {stats['b_only']} clips with "
                           "only one of them)")
    missing = [n for n in names if n not in evidence.labels]
    if missing and known:
        reasons.append(f"model (run {evidence.run_id}): its export does not label {', '.join(missing)}")
    return reasons


def evidence_records(evidence: ModelEvidence, *, all_pairs: bool = False) -> dict:
    """The CLI's JSON: {"run_id", "merge": [pairs the model cannot tell apart (or every screened pair)],
    "prune": [tags it cannot predict]}, numbers rounded."""
    pairs = evidence.pairs if all_pairs else evidence.cannot_tell_apart()

    def clean(frame: pd.DataFrame) -> list[dict]:
        records = []
        for row in frame.to_dict(orient="records"):
            records.append({k: (None if isinstance(v, float) and np.isnan(v) else
                                round(v, 4) if isinstance(v, float) else
                                int(v) if isinstance(v, (np.integer,)) else v) for k, v in row.items()})
        return records

    return {"run_id": evidence.run_id, "merge": clean(pairs), "prune": clean(evidence.unpredictable())}
