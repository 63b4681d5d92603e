"""Average precision per tag and mAP (the validation and multi-label probe metric); checked against scikit-learn.

AP = sum over positives (in descending score order) of precision at that rank / number of positives, with tied
scores handled as scikit-learn does (one threshold per distinct score). Tags without positives get AP None and
are left out of the mean.
Example: ``mean_ap, per_tag = mean_average_precision(scores, targets)``
"""
from __future__ import annotations

import numpy as np


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float | None:
    positives = positives.astype(bool)
    n_pos = int(positives.sum())
    if n_pos == 0:
        return None
    order = np.argsort(-scores, kind="mergesort")
    s = scores[order]
    p = positives[order]
    tp = np.cumsum(p)
    # Keep the last index of each run of equal scores: one threshold per distinct score.
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp_at = tp[last]
    precision = tp_at / (last + 1)
    recall_gain = np.diff(np.r_[0, tp_at]) / n_pos
    return float(np.sum(precision * recall_gain))


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> tuple[float | None, list[float | None]]:
    """(mAP over tags with at least one positive, per-tag AP list)."""
    per_tag = [average_precision(scores[:, k], targets[:, k]) for k in range(scores.shape[1])]
    defined = [a for a in per_tag if a is not None]
    return (float(np.mean(defined)) if defined else None), per_tag
