"""All the benchmark metrics of a test set in one call, set by a ``MetricsConfig``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mv3dad.metrics.pro import DEFAULT_LIMITS, aupro_at
from mv3dad.metrics.roc import auroc, instance_scores, pixel_auroc
from mv3dad.metrics.inputs import as_instances, check_binary


@dataclass
class MetricsConfig:
    """How the metrics are computed.

    Attributes:
        fpr_limits: FPR integration limits of the AUPRO; the first is the headline (1 % in SiM3D).
        evaluate: which elements count: "observed" (observed elements plus every ground-truth element,
            unobserved ground truth scored as missed), "all" (NaN scored as -inf) or "observed_only".
        mode: "exact" (every distinct score is a threshold) or "mvtec" (MVTec 3D-AD / CFM algorithm).
        num_thresholds: thresholds of the "mvtec" mode; None = 99 as in CFM. Must be None with "exact".
        instance_reduce: instance score from its map or volume for I-AUROC: "max" or "mean" (NaN ignored).
    """

    fpr_limits: tuple[float, ...] = DEFAULT_LIMITS
    evaluate: str = "observed"
    mode: str = "exact"
    num_thresholds: int | None = None
    instance_reduce: str = "max"


def evaluate(scores, gts, config: MetricsConfig | None = None, labels=None) -> dict[str, float]:
    """I-AUROC, P-AUROC and AUPRO at every limit of the config for N instances.

    Args:
        scores: N score arrays, (H, W) maps or (X, Y, Z) volumes; NaN = non-evaluated element.
        gts: N binary arrays of the same shapes.
        config: metric settings; None = defaults.
        labels: (N,) instance labels for I-AUROC; None = whether the instance's ground truth has a 1.

    Returns:
        {"i_auroc": ..., "p_auroc": ..., "aupro@0.01": ..., ...}; "i_auroc" is NaN when the labels hold a
        single class (e.g. a set of anomalous instances only), "aupro@..." NaN when no ground truth has a 1.
    """
    cfg = config or MetricsConfig()
    scores, gts = as_instances(scores, "scores"), as_instances(gts, "gts")
    if labels is None:
        labels = [check_binary(g, f"gts[{i}]").any() for i, g in enumerate(gts)]
    y = check_binary(np.asarray(labels).ravel(), "labels")
    out = {"i_auroc": float("nan"), "p_auroc": float("nan")}
    if 0 < y.sum() < y.size:
        out["i_auroc"] = auroc(instance_scores(scores, cfg.instance_reduce), y)
    pro = {x: float("nan") for x in cfg.fpr_limits}
    if any(g.any() for g in gts):
        out["p_auroc"] = pixel_auroc(scores, gts, cfg.evaluate)
        pro = aupro_at(scores, gts, cfg.fpr_limits, cfg.evaluate, cfg.mode, cfg.num_thresholds)
    out.update({f"aupro@{x:g}": v for x, v in pro.items()})
    return out
