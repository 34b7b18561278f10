"""The figures of a test set in one call: the one evaluation API (``mv3dad evaluate`` reads files and calls it).

:func:`evaluate` takes the instances' score arrays, ground truths and labels (and, optionally, the instance scores
the method reported) and returns one dict of figures, named for volumes (``v_``) or for 2D maps::

    volumes (X, Y, Z): {"i_auroc", "v_aupro_1", "v_aupro_30", "v_auroc", "n_test", "n_anomalous"}
    maps (H, W):       {"i_auroc", "p_auroc", "aupro_1", "aupro_30", "n_test", "n_anomalous"}

``aupro_<p>`` is the normalised AUPRO up to an FPR of ``p`` % (one key per limit of
:attr:`MetricsConfig.fpr_limits`, 1 % and 30 % by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mv3dad.metrics.inputs import as_instances, check_binary
from mv3dad.metrics.pro import aupro_at
from mv3dad.metrics.roc import auroc, instance_scores as reduce_instances, pixel_auroc

EVALUATE_LIMITS = (0.01, 0.3)
"""FPR limits of the AUPRO that :func:`evaluate` reports by default: 1 % (the headline) and 30 %."""


@dataclass
class MetricsConfig:
    """How the metrics are computed.

    Attributes:
        fpr_limits: FPR integration limits of the AUPRO; the first is the headline (1 % in SiM3D).
        evaluate: which elements count: "observed" (observed elements plus every ground-truth element,
            unobserved ground truth scored as missed), "all" (NaN scored as -inf) or "observed_only".
        mode: "exact" (every distinct score is a threshold) or "mvtec" (MVTec 3D-AD / CFM algorithm).
        num_thresholds: thresholds of the "mvtec" mode; None = 99 as in CFM. Must be None with "exact".
        instance_reduce: instance score from its map or volume for I-AUROC when no instance scores are given:
            "max" or "mean" (NaN ignored).
    """

    fpr_limits: tuple[float, ...] = EVALUATE_LIMITS
    evaluate: str = "observed"
    mode: str = "exact"
    num_thresholds: int | None = None
    instance_reduce: str = "max"


def aupro_key(limit: float, volumetric: bool = True) -> str:
    """The figure name of the AUPRO up to ``limit``: ``v_aupro_1`` for 0.01 on volumes, ``aupro_30`` for 0.3 on maps."""
    return f"{'v_' if volumetric else ''}aupro_{100 * limit:g}"


def evaluate(scores, gts, labels=None, instance_scores=None, config: MetricsConfig | None = None) -> dict:
    """I-AUROC, AUPRO at each limit and V-AUROC (P-AUROC for maps) of N test instances, with the counts.

    Args:
        scores: N score arrays, all (X, Y, Z) volumes or all (H, W) maps; NaN = not evaluated (unobserved).
        gts: N binary arrays of the same shapes (all zeros for a nominal instance).
        labels: (N,) 0/1 instance labels (1 = anomalous); None = whether the instance's ground truth has a 1.
        instance_scores: (N,) instance scores for I-AUROC (e.g. those the method reported; NaN counts as the
            lowest); None = each array reduced with ``config.instance_reduce``.
        config: metric settings; None = :class:`MetricsConfig` defaults.

    Returns:
        For volumes ``{"i_auroc", "v_aupro_1", "v_aupro_30", "v_auroc", "n_test", "n_anomalous"}``; for maps
        ``{"i_auroc", "p_auroc", "aupro_1", "aupro_30", "n_test", "n_anomalous"}`` (one ``aupro`` key per
        limit, see :func:`aupro_key`). ``i_auroc`` is NaN when the labels hold a single class, the AUPROs and
        the V-/P-AUROC are NaN when no ground truth has a 1.
    """
    cfg = config or MetricsConfig()
    scores, gts = as_instances(scores, "scores"), as_instances(gts, "gts")
    if len(scores) != len(gts):
        raise ValueError(f"scores and gts: {len(scores)} and {len(gts)} instances")
    if not scores:
        raise ValueError("scores: no instance to evaluate")
    volumetric = scores[0].ndim == 3
    if labels is None:
        labels = [check_binary(g, f"gts[{i}]").any() for i, g in enumerate(gts)]
    y = check_binary(np.asarray(labels).ravel(), "labels").astype(np.int64)
    if y.size != len(scores):
        raise ValueError(f"labels: {y.size} labels for {len(scores)} instances")
    i_auroc = float("nan")
    if 0 < y.sum() < y.size:
        if instance_scores is None:
            inst = reduce_instances(scores, cfg.instance_reduce)
        else:
            inst = np.asarray(instance_scores, dtype=np.float64).ravel()
            if inst.size != y.size:
                raise ValueError(f"instance_scores: {inst.size} scores for {y.size} instances")
        finite = inst[np.isfinite(inst)]
        lowest = float(finite.min()) - 1.0 if finite.size else 0.0
        i_auroc = auroc(np.where(np.isnan(inst), lowest, inst), y)  # NaN ranks below every score
    pro = {x: float("nan") for x in cfg.fpr_limits}
    elem_auroc = float("nan")
    if any(np.asarray(g).any() for g in gts):
        pro = aupro_at(scores, gts, cfg.fpr_limits, cfg.evaluate, cfg.mode, cfg.num_thresholds)
        elem_auroc = pixel_auroc(scores, gts, cfg.evaluate)
    out: dict = {"i_auroc": i_auroc}
    if not volumetric:
        out["p_auroc"] = elem_auroc
    out.update({aupro_key(x, volumetric): float(v) for x, v in pro.items()})
    if volumetric:
        out["v_auroc"] = elem_auroc
    out.update(n_test=int(y.size), n_anomalous=int(y.sum()))
    return out
