"""Localisation figures that need no instance score: is the score higher *on* the defect, and where do peaks fall?

- :func:`twin_contrast`: the location held fixed. For every (anomalous, nominal) pair of test instances on one
  grid, the mean score over the anomalous instance's ground-truth voxels that both volumes observe; the figure is
  the fraction of pairs where the anomalous instance scores higher there (0.5 = the defect changes nothing).
- :func:`argmax_on_defect`: whether a volume's maximum (the instance score) lies within ``near_mm`` of a
  ground-truth voxel.
- :func:`oracle_ceiling`: V-AUPRO and V-AUROC of an oracle that scores 1 on every observed ground-truth voxel and 0
  on every other observed voxel: ground-truth voxels that no view observes count as missed for every method on
  the same back-projection, so no method scores above it.
- :func:`outline_share`: the share of instance maxima and of each view's top 1 % pixels that lie within one
  token of the foreground's outline, next to the share of all foreground pixels there (silhouette artefacts).

Volumes are (X, Y, Z) float arrays with NaN = unobserved; per-view maps are (V, H, W) with NaN = unscored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mv3dad.metrics.evaluate import aupro_key
from mv3dad.metrics.pro import aupro_at
from mv3dad.metrics.roc import pixel_auroc


@dataclass(frozen=True)
class TwinContrast:
    """Outcome of :func:`twin_contrast`.

    Attributes:
        wins: pairs where the anomalous instance's mean score on its defect is higher than the nominal one's.
        pairs: (anomalous, nominal) pairs with at least one defect voxel observed in both volumes.
    """

    wins: int
    pairs: int

    @property
    def contrast(self) -> float:
        """``wins / pairs`` (NaN without pairs)."""
        return self.wins / self.pairs if self.pairs else float("nan")


def twin_contrast(anomalous: Sequence[np.ndarray], defects: Sequence[np.ndarray],
                  nominal: Sequence[np.ndarray]) -> TwinContrast:
    """Twin contrast of anomalous against nominal instances scored on one grid.

    Args:
        anomalous: A volumes (X, Y, Z) of the anomalous instances; NaN = unobserved.
        defects: A boolean (X, Y, Z) ground truths of the anomalous instances on the same grid.
        nominal: M volumes (X, Y, Z) of the nominal instances.

    Returns:
        The wins and the counted pairs (of the A x M): a pair counts when some defect voxel is observed in both.
    """
    wins = pairs = 0
    for v, g in zip(anomalous, defects, strict=True):
        v, g = np.asarray(v), np.asarray(g, bool)
        for n in nominal:
            n = np.asarray(n)
            both = g & ~np.isnan(v) & ~np.isnan(n)
            if both.any():
                wins += bool(v[both].mean() > n[both].mean())
                pairs += 1
    return TwinContrast(wins, pairs)


def argmax_on_defect(volume: np.ndarray, defect: np.ndarray, voxel_size: float, near_mm: float) -> bool:
    """Whether the maximum of ``volume`` lies within ``near_mm`` of a defect voxel.

    Args:
        volume: (X, Y, Z) scores, NaN = unobserved (NaN ignored; all NaN -> False).
        defect: (X, Y, Z) boolean ground truth on the same grid (none -> False).
        voxel_size: voxel edge in mm.
        near_mm: distance between voxel centres, in mm, that still counts as on the defect.
    """
    volume, defect = np.asarray(volume), np.asarray(defect, bool)
    if not defect.any() or np.isnan(volume).all():
        return False
    peak = np.unravel_index(np.nanargmax(volume), volume.shape)
    return bool(ndimage.distance_transform_edt(~defect)[peak] * voxel_size <= near_mm)


def oracle_ceiling(volumes: Sequence[np.ndarray], gts: Sequence[np.ndarray],
                   limits: tuple[float, ...] = (0.01,), evaluate: str = "observed") -> dict[str, float]:
    """Figures of the oracle that scores 1 on the observed ground truth and 0 elsewhere on the observed elements.

    Args:
        volumes: N score volumes (X, Y, Z) (or maps (H, W)); only their NaN pattern (what is observed) is used.
        gts: N binary ground truths of the same shapes (at least one 1 in all).
        limits: FPR limits of the AUPRO.
        evaluate: which elements count (see :mod:`mv3dad.metrics.inputs`).

    Returns:
        ``{"v_aupro_1": ..., "v_auroc": ...}`` for volumes (``aupro_1``, ``p_auroc`` for maps), one AUPRO key per
        limit (:func:`~mv3dad.metrics.evaluate.aupro_key`).
    """
    oracle = [np.where(np.isnan(v), np.nan, np.asarray(g, np.float32)) for v, g in zip(volumes, gts, strict=True)]
    volumetric = oracle[0].ndim == 3
    pro = aupro_at(oracle, list(gts), limits, evaluate)
    out = {aupro_key(x, volumetric): float(a) for x, a in pro.items()}
    out["v_auroc" if volumetric else "p_auroc"] = pixel_auroc(oracle, list(gts), evaluate)
    return out


def near_outline(fg: np.ndarray, token_px: float) -> np.ndarray:
    """(H, W) boolean: foreground pixels within ``token_px`` pixels of the background (and every background pixel).

    Args:
        fg: (H, W) boolean foreground mask.
        token_px: one token's side in the map's pixels (e.g. ``14 * W / image_size``).
    """
    return ndimage.distance_transform_edt(np.asarray(fg, bool)) <= token_px


@dataclass(frozen=True)
class OutlineShare:
    """Outcome of :func:`outline_share`.

    Attributes:
        foreground_near_outline: mean over the counted views of the share of their scored foreground pixels
            within one token of the outline (what a map unrelated to the outline would give).
        top1_near_outline: mean over the counted views of the share of their top 1 % pixels there.
        peaks_near_outline: instances whose maximum over its counted views lies there.
        n_instances: instances (an instance without a counted view counts, as not near).
        n_views: counted views (views with at least ``min_pixels`` scored foreground pixels).
    """

    foreground_near_outline: float
    top1_near_outline: float
    peaks_near_outline: int
    n_instances: int
    n_views: int

    @property
    def peak_share(self) -> float:
        """``peaks_near_outline / n_instances`` (NaN without instances)."""
        return self.peaks_near_outline / self.n_instances if self.n_instances else float("nan")


def outline_share(maps: Sequence[np.ndarray], fg_masks: Sequence[np.ndarray], token_px: float,
                  top: float = 0.01, min_pixels: int = 100) -> OutlineShare:
    """Share of instance maxima and of each view's top pixels within one token of the foreground outline.

    Args:
        maps: per instance, (V, H, W) per-view score maps; NaN = unscored.
        fg_masks: per instance, (V, H, W) boolean foreground masks (e.g. ``depth > 0``).
        token_px: one token's side in the maps' pixels.
        top: the fraction of each view's scored foreground pixels taken as its top (1 %).
        min_pixels: views with fewer scored foreground pixels are skipped.
    """
    fg_share, top_share, peaks_near = [], [], 0
    for inst_maps, inst_fg in zip(maps, fg_masks, strict=True):
        peak = (-np.inf, False)
        for m, fg in zip(np.asarray(inst_maps, np.float32), np.asarray(inst_fg, bool), strict=True):
            near = near_outline(fg, token_px)
            ok = fg & ~np.isnan(m)
            if ok.sum() < min_pixels:
                continue
            hi = ok & (m >= np.quantile(m[ok], 1.0 - top))
            fg_share.append(near[ok].mean())
            top_share.append(near[hi].mean())
            k = np.flatnonzero(ok.ravel())[np.argmax(m[ok])]
            peak = max(peak, (float(m.ravel()[k]), bool(near.ravel()[k])))
        peaks_near += peak[1]
    mean = (lambda x: float(np.mean(x)) if x else float("nan"))
    return OutlineShare(mean(fg_share), mean(top_share), int(peaks_near), len(maps), len(fg_share))
