"""Threshold sweeps over pooled scores (ties grouped) and the area under a curve up to an x limit."""

from __future__ import annotations

import numpy as np


def sweep(neg: np.ndarray, pos: np.ndarray, pos_weight: np.ndarray,
          lowest: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Operating points of the rule "score >= t" for every distinct score t, from the highest down.

    Elements with equal scores enter together (one point per distinct score), so ties give one straight
    segment between two points instead of an order-dependent staircase.

    Args:
        neg: (K,) scores of the negatives.
        pos: (P,) scores of the positives.
        pos_weight: (P,) weight of each positive.
        lowest: only thresholds t >= lowest are swept (the curve is cut there); None sweeps all.

    Returns:
        thresholds: (G+1,) ``+inf`` then the distinct scores in decreasing order.
        neg_count: (G+1,) int64 number of negatives with score >= threshold (starts at 0).
        pos_sum: (G+1,) float64 weight sum of the positives with score >= threshold.
    """
    if lowest is not None:
        keep = pos >= lowest
        neg, pos = neg[neg >= lowest], pos[keep]
        pos_weight = pos_weight[keep]
    neg = np.sort(neg)
    order = np.argsort(pos, kind="stable")
    merged, is_pos = _merge(neg, pos[order])
    first = np.flatnonzero(np.concatenate([[True], merged[1:] != merged[:-1]]))[::-1]  # tie groups, high first
    n_pos = np.concatenate([[0], np.cumsum(is_pos.view(np.int8), dtype=np.int64)])
    pos_count = len(pos) - n_pos[first]  # positives scored >= each group's score
    neg_count = len(merged) - first - pos_count
    top_sum = np.concatenate([[0.0], np.cumsum(pos_weight[order][::-1], dtype=np.float64)])
    pos_sum = top_sum[pos_count]
    inf = np.array([np.inf], dtype=merged.dtype)
    return (np.concatenate([inf, merged[first]]), np.concatenate([[0], neg_count]),
            np.concatenate([[0.0], pos_sum]))


def _merge(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge two increasing arrays in O(len(a) + len(b)) (plus a binary search of the shorter one).

    Returns:
        merged: (A+B,) increasing values.
        from_b: (A+B,) bool, True where the value comes from ``b``.
    """
    from_b = np.zeros(len(a) + len(b), dtype=bool)
    if len(b) <= len(a):
        from_b[np.searchsorted(a, b, side="left") + np.arange(len(b))] = True
    else:
        from_b[:] = True
        from_b[np.searchsorted(b, a, side="right") + np.arange(len(a))] = False
    merged = np.empty(len(from_b), dtype=np.result_type(a, b))
    merged[from_b], merged[~from_b] = b, a
    return merged, from_b


def partial_area(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoid area under the polyline (x, y) from x[0] to ``limit``, divided by ``limit``.

    y at ``limit`` is interpolated linearly between the two points around it.

    Args:
        x: (N,) non-decreasing, x[0] <= limit (repeated x values give vertical segments of no area).
        y: (N,) values at x.
        limit: upper integration bound, > 0; beyond x[-1] the area stops at x[-1].
    """
    j = int(np.searchsorted(x, limit, side="right"))  # x[:j] <= limit < x[j:]
    if j == 0:
        raise ValueError(f"limit {limit} lies below the curve's first x {x[0]}")
    area = float(np.sum((x[1:j] - x[:j - 1]) * (y[1:j] + y[:j - 1])) / 2)
    if j < len(x) and x[j - 1] < limit:
        y_lim = y[j - 1] + (y[j] - y[j - 1]) * (limit - x[j - 1]) / (x[j] - x[j - 1])
        area += 0.5 * (y[j - 1] + y_lim) * (limit - x[j - 1])
    return area / limit
