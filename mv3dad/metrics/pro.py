"""AUPRO: normalised area under the per-region-overlap (PRO) curve up to a false-positive-rate limit.

PRO(t) is the mean over all ground-truth regions (connected components, 8-connected in 2D, 26-connected in 3D,
pooled over the instances and weighted equally) of the fraction of each region's evaluated elements scored
above the threshold t; FPR(t) is the fraction of the evaluated ground-truth-0 elements of all instances scored
above t. Two modes:

- ``"exact"`` (default): every distinct score is a threshold ("score >= t"), tied scores enter together,
  the curve runs from (0, 0) to (1, 1), and the area is exact up to the linear interpolation at the limit.
- ``"mvtec"``: the MVTec 3D-AD evaluation algorithm also used by CFM (``calculate_au_pro``) and 3D-ADS / M3DM,
  for comparison with published numbers: ``num_thresholds`` thresholds taken from the sorted normal scores at
  positions ``linspace(0, K-1, num_thresholds)`` truncated to integers, FPR = 1 - (position+1)/K,
  overlap = fraction scored strictly above the threshold, plus the point (1, 1).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mv3dad.metrics.curve import partial_area, sweep
from mv3dad.metrics.inputs import Pooled, pool

MODES = ("exact", "mvtec")
DEFAULT_LIMITS = (0.01, 0.05, 0.1, 0.3)
MVTEC_NUM_THRESHOLDS = 99  # CFM's calculate_au_pro; 3D-ADS / M3DM use 100


class ProCurve(NamedTuple):
    """A PRO curve in increasing FPR order.

    Attributes:
        fpr: (M,) false positive rates, non-decreasing, from 0 to 1.
        pro: (M,) mean per-region overlap at each point.
        thresholds: (M,) threshold of each point (``+inf``: nothing flagged; ``-inf``: everything flagged).
    """

    fpr: np.ndarray
    pro: np.ndarray
    thresholds: np.ndarray


def _check_pooled(p: Pooled) -> None:
    if p.n_regions == 0:
        raise ValueError("AUPRO is undefined without anomalous regions: the ground truth of every instance is "
                         "empty (or, with evaluate='observed_only', has no observed element)")
    if len(p.neg) == 0:
        raise ValueError("AUPRO is undefined without evaluated normal (ground truth 0) elements: the FPR has "
                         "no denominator")


def _exact(p: Pooled, max_fpr: float | None = None) -> ProCurve:
    """The exact curve; with ``max_fpr`` only up to the first point beyond it (enough for the area)."""
    lowest = None
    if max_fpr is not None and max_fpr < 1:
        k = len(p.neg)
        m = min(int(np.floor(max_fpr * k)) + 1, k)  # smallest count of normal elements with FPR > max_fpr
        lowest = np.partition(p.neg, k - m)[k - m]  # m-th highest normal score
    t, fp, pro = sweep(p.neg, p.pos, p.region_weights(), lowest=lowest)
    return ProCurve(fp / len(p.neg), np.minimum(pro, 1.0), t.astype(np.float64))


def _mvtec(p: Pooled, num_thresholds: int) -> ProCurve:
    """The MVTec 3D-AD / CFM curve (see the module docstring)."""
    ok = np.sort(p.neg)
    k = len(ok)
    position = np.linspace(0, k - 1, num=num_thresholds, dtype=int)
    thr = ok[position]
    fpr = 1.0 - (position + 1) / k
    order = np.argsort(p.pos, kind="stable")
    pos = p.pos[order]
    top_sum = np.concatenate([[0.0], np.cumsum(p.region_weights()[order][::-1])])
    pro = np.minimum(top_sum[len(pos) - np.searchsorted(pos, thr, side="right")], 1.0)
    return ProCurve(np.concatenate([fpr[::-1], [1.0]]), np.concatenate([pro[::-1], [1.0]]),
                    np.concatenate([thr[::-1], [-np.inf]]).astype(np.float64))


def _curve(p: Pooled, mode: str, num_thresholds: int | None, max_fpr: float | None = None) -> ProCurve:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    _check_pooled(p)
    if mode == "exact":
        if num_thresholds is not None:
            raise ValueError("num_thresholds applies to mode='mvtec' only; the exact mode uses every score")
        return _exact(p, max_fpr)
    n = MVTEC_NUM_THRESHOLDS if num_thresholds is None else num_thresholds
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"num_thresholds must be an integer >= 2 (the curve needs FPR 0), got {num_thresholds!r}")
    return _mvtec(p, int(n))


def _check_limits(limits) -> tuple[float, ...]:
    limits = tuple(float(x) for x in limits)
    if not limits or not all(0 < x <= 1 for x in limits):
        raise ValueError(f"FPR limits must lie in (0, 1], got {limits}")
    return limits


def pro_curve(scores, gts, evaluate: str = "observed", mode: str = "exact",
              num_thresholds: int | None = None) -> ProCurve:
    """The PRO curve of N (score, ground truth) pairs.

    Args:
        scores: N score arrays, each (H, W) or (X, Y, Z) (or one (N, X, Y, Z) array);
            NaN = non-evaluated element.
        gts: N binary 0/1 arrays of the same shapes.
        evaluate: "observed" (default), "all" or "observed_only" (see :mod:`mv3dad.metrics.inputs`).
        mode: "exact" (default) or "mvtec".
        num_thresholds: thresholds of the "mvtec" mode (default 99, as CFM); not allowed with "exact".

    Raises:
        ValueError: bad input (naming the instance), no ground-truth region, or no evaluated normal element.
    """
    return _curve(pool(scores, gts, evaluate), mode, num_thresholds)


def aupro_at(scores, gts, limits=DEFAULT_LIMITS, evaluate: str = "observed", mode: str = "exact",
             num_thresholds: int | None = None) -> dict[float, float]:
    """Normalised AUPRO at several FPR limits from one curve: ``{limit: area / limit}``, each in [0, 1].

    Arguments as :func:`pro_curve`; ``limits`` are FPR integration limits in (0, 1].
    """
    limits = _check_limits(limits)
    c = _curve(pool(scores, gts, evaluate), mode, num_thresholds, max_fpr=max(limits))
    return {x: float(min(partial_area(c.fpr, c.pro, x), 1.0)) for x in limits}


def aupro(scores, gts, fpr_limit: float = 0.01, evaluate: str = "observed", mode: str = "exact",
          num_thresholds: int | None = None) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit``, in [0, 1] (V-AUPRO for volumes, AUPRO for maps).

    Args:
        scores: N score arrays, each (H, W) or (X, Y, Z) (or one (N, X, Y, Z) array);
            NaN = non-evaluated element.
        gts: N binary 0/1 arrays of the same shapes.
        fpr_limit: FPR integration limit in (0, 1]; the PRO at the limit is interpolated linearly.
        evaluate: "observed" (default), "all" or "observed_only" (see :mod:`mv3dad.metrics.inputs`).
        mode: "exact" (default, every distinct score a threshold) or "mvtec" (MVTec 3D-AD / CFM algorithm).
        num_thresholds: thresholds of the "mvtec" mode (default 99, as CFM); not allowed with "exact".

    Raises:
        ValueError: bad input (naming the instance), "AUPRO is undefined without anomalous regions" when every
            ground truth is empty, or no evaluated normal element.
    """
    return aupro_at(scores, gts, (fpr_limit,), evaluate, mode, num_thresholds)[float(fpr_limit)]
