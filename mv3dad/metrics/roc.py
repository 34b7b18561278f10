"""AUROC: of instance scores (I-AUROC) and of pooled element scores (P-AUROC / V-AUROC), exact with ties."""

from __future__ import annotations

import numpy as np

from mv3dad.metrics.inputs import as_instances, check_binary, check_scores, pool

REDUCTIONS = ("max", "mean")


def _mann_whitney(neg: np.ndarray, pos: np.ndarray) -> float:
    """P(pos > neg) + 1/2 P(pos == neg) over all pairs, exactly (integer pair counts).

    The larger set is sorted and the smaller one located in it by binary search: O(n log n), no pair loop.
    """
    if len(pos) <= len(neg):
        big, small = np.sort(neg), pos  # pairs won by pos: negatives below it, ties count 1/2
        twice = np.searchsorted(big, small, side="left") + np.searchsorted(big, small, side="right")
    else:
        big, small = np.sort(pos), neg  # pairs won by pos: positives above each negative
        twice = 2 * len(big) - np.searchsorted(big, small, side="left") - np.searchsorted(big, small, side="right")
    return int(twice.sum(dtype=np.int64)) / (2.0 * len(neg) * len(pos))


def auroc(scores, labels) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels``.

    Computed as the Mann-Whitney statistic P(score of a positive > score of a negative) + 1/2 P(equal), which
    equals the trapezoid area under the ROC curve that goes straight through each group of tied scores.

    Args:
        scores: (N,) real scores, finite (e.g. one per instance: I-AUROC).
        labels: (N,) binary labels, 1/True = anomalous.

    Raises:
        ValueError: on a length mismatch, NaN/inf scores, non-binary or NaN labels, or a single class.
    """
    s = check_scores(np.asarray(scores).ravel(), "auroc scores")
    y = check_binary(np.asarray(labels).ravel(), "auroc labels")
    if s.shape != y.shape:
        raise ValueError(f"auroc: {s.size} scores but {y.size} labels")
    if np.isnan(s).any():
        raise ValueError(f"auroc: scores hold NaN at index {int(np.flatnonzero(np.isnan(s))[0])}")
    if y.all() or not y.any():
        raise ValueError(f"auroc is undefined when all {y.size} labels are {int(y[0]) if y.size else '-'}: "
                         "both classes are needed")
    return _mann_whitney(s[~y], s[y])


def pixel_auroc(scores, gts, evaluate: str = "observed") -> float:
    """AUROC over the evaluated elements of all instances (P-AUROC for 2D maps, V-AUROC for volumes).

    Args:
        scores: N score arrays, (H, W) or (X, Y, Z); NaN = non-evaluated element.
        gts: N binary arrays of the same shapes.
        evaluate: which elements count, see :mod:`mv3dad.metrics.inputs` ("observed", "all", "observed_only").

    Raises:
        ValueError: on bad input (naming the instance) or when the evaluated elements hold a single class.
    """
    p = pool(scores, gts, evaluate, regions=False)
    if len(p.pos) == 0 or len(p.neg) == 0:
        raise ValueError(f"pixel AUROC is undefined: {len(p.pos)} anomalous and {len(p.neg)} normal evaluated "
                         "elements; both are needed")
    return _mann_whitney(p.neg, p.pos)


def instance_scores(scores, reduce: str = "max") -> np.ndarray:
    """One score per instance from its map or volume, ignoring NaN (non-evaluated) elements.

    Args:
        scores: N score arrays (any shape); NaN = non-evaluated.
        reduce: "max" (default, as for I-AUROC in MVTec 3D-AD / SiM3D) or "mean".

    Returns:
        (N,) float64 instance scores.

    Raises:
        ValueError: on an unknown reduction or an instance without any evaluated element.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    out = np.empty(len(scores := as_instances(scores, "scores")))
    for i, s in enumerate(scores):
        s = check_scores(s, f"scores[{i}]")
        v = s[~np.isnan(s)]
        if v.size == 0:
            raise ValueError(f"instance {i}: no evaluated (non-NaN) element to score")
        out[i] = v.max() if reduce == "max" else v.mean(dtype=np.float64)
    return out
