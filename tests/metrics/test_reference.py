"""The vectorised metrics against straightforward implementations written here, on random data.

- exact mode vs. a brute-force sweep (one boolean mask per distinct score);
- "mvtec" mode vs. a loop implementation of the MVTec 3D-AD / CFM algorithm (thresholds from the sorted normal
  scores, per-region overlaps, trapezoid with interpolation at the limit);
- exact mode vs. that MVTec algorithm with many thresholds, within the bound that follows from their spacing;
- AUROC vs. scikit-learn and the pairwise Mann-Whitney count;
- 2D maps vs. the same maps as 3D volumes.
"""

import numpy as np
import pytest
from scipy import ndimage

from mv3dad.metrics import aupro, aupro_at, auroc, pixel_auroc, pro_curve


def _data(seed, n=4, shape=(20, 24), levels=None):
    """n maps with a few rectangular defects (some instances without any), scores with signal; ``levels``
    quantises the scores to that many values (many ties)."""
    rng = np.random.default_rng(seed)
    scores, gts = [], []
    for i in range(n):
        g = np.zeros(shape, np.uint8)
        for _ in range(0 if i == 1 else rng.integers(1, 4)):
            r, c = rng.integers(0, shape[0] - 4), rng.integers(0, shape[1] - 4)
            g[r:r + rng.integers(1, 6), c:c + rng.integers(1, 6)] = 1
        s = rng.random(shape) + 0.6 * g * rng.random(shape)
        if levels:
            s = np.round(s * levels) / levels
        scores.append(s)
        gts.append(g)
    return scores, gts


def _regions(gts):
    """Pooled list of (instance index, boolean mask) of every 8-connected ground-truth component."""
    out = []
    for i, g in enumerate(gts):
        lab, n = ndimage.label(g, structure=np.ones((3, 3)))
        out += [(i, lab == k) for k in range(1, n + 1)]
    return out


def _area(xs, ys, limit):
    """Trapezoid area of the polyline up to ``limit`` (interpolating y there), divided by ``limit``."""
    area = 0.0
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x1 <= limit:
            area += (x1 - x0) * (y0 + y1) / 2
        elif x0 < limit:
            y_lim = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            area += (limit - x0) * (y0 + y_lim) / 2
            break
        else:
            break
    return area / limit


def _brute_force_exact(scores, gts):
    """The exact PRO curve: one point per distinct score t, flagging score >= t."""
    regions = _regions(gts)
    n_ok = sum(int((g == 0).sum()) for g in gts)
    fprs, pros = [0.0], [0.0]
    for t in sorted(set(np.concatenate([s.ravel() for s in scores]).tolist()), reverse=True):
        fp = sum(int(((s >= t) & (g == 0)).sum()) for s, g in zip(scores, gts))
        fprs.append(fp / n_ok)
        pros.append(np.mean([(scores[i][m] >= t).mean() for i, m in regions]))
    return np.array(fprs), np.array(pros)


def _mvtec_reference(scores, gts, num_thresholds):
    """The MVTec 3D-AD / CFM PRO curve: thresholds at integer positions of linspace over the sorted normal
    scores, FPR = 1 - (position + 1) / K, overlap = share of a region scored strictly above, plus (1, 1)."""
    regions = _regions(gts)
    ok = np.sort(np.concatenate([s[g == 0] for s, g in zip(scores, gts)]))
    fprs, pros = [1.0], [1.0]
    for pos in np.linspace(0, len(ok) - 1, num=num_thresholds).astype(int):
        t = ok[pos]
        fprs.append(1.0 - (pos + 1) / len(ok))
        pros.append(sum((scores[i][m] > t).sum() / m.sum() for i, m in regions) / len(regions))
    return np.array(fprs[::-1]), np.array(pros[::-1])


def _mvtec_area(fprs, pros, limit):
    """Trapezoid to ``limit`` as the MVTec 3D-AD code defines it (interpolating when limit is not a sample)."""
    keep = fprs <= limit
    area = np.sum((fprs[keep][1:] - fprs[keep][:-1]) * (pros[keep][1:] + pros[keep][:-1]) / 2)
    if limit not in fprs:
        j = np.searchsorted(fprs, limit, side="right")
        y = pros[j - 1] + (pros[j] - pros[j - 1]) * (limit - fprs[j - 1]) / (fprs[j] - fprs[j - 1])
        area += (limit - fprs[j - 1]) * (y + pros[j - 1]) / 2
    return area / limit


@pytest.mark.parametrize("seed,levels", [(0, None), (1, 20), (2, 4)])
def test_exact_mode_equals_brute_force(seed, levels):
    scores, gts = _data(seed, levels=levels)
    fprs, pros = _brute_force_exact(scores, gts)
    curve = pro_curve(scores, gts)
    np.testing.assert_allclose(curve.fpr, fprs, atol=1e-12)
    np.testing.assert_allclose(curve.pro, pros, atol=1e-12)
    for limit in (0.01, 0.05, 0.3, 1.0):
        assert aupro(scores, gts, limit) == pytest.approx(_area(fprs, pros, limit), abs=1e-12)


@pytest.mark.parametrize("seed,levels", [(3, None), (4, 10)])
@pytest.mark.parametrize("num_thresholds", [2, 7, 99, 100, 5000])
def test_mvtec_mode_equals_reference(seed, levels, num_thresholds):
    scores, gts = _data(seed, levels=levels)
    fprs, pros = _mvtec_reference(scores, gts, num_thresholds)
    curve = pro_curve(scores, gts, mode="mvtec", num_thresholds=num_thresholds)
    np.testing.assert_allclose(curve.fpr, fprs, atol=1e-12)
    np.testing.assert_allclose(curve.pro, pros, atol=1e-12)
    got = aupro_at(scores, gts, (0.01, 0.05, 0.3, 1.0), mode="mvtec", num_thresholds=num_thresholds)
    for limit, v in got.items():
        assert v == pytest.approx(_mvtec_area(fprs, pros, limit), abs=1e-12)


@pytest.mark.parametrize("num_thresholds", [30, 300, 3000])
def test_exact_mode_within_sampling_bound_of_mvtec_reference(num_thresholds):
    # Continuous scores (no ties): every MVTec sample is a vertex of the exact curve, and both curves rise
    # monotonically between two samples, so on each sampling interval they stay in one box of width <= d (the
    # largest FPR gap between samples, at most 1 / (T - 1) + 1 / K for T thresholds and K normal elements) and
    # height dy. Summed to the first sample at or beyond the limit: |difference| <= d * (PRO rise) / limit.
    scores, gts = _data(5, n=6)
    k = sum(int((g == 0).sum()) for g in gts)
    fprs, pros = _mvtec_reference(scores, gts, num_thresholds)
    d = np.diff(fprs).max()
    assert d <= 1 / (num_thresholds - 1) + 1 / k + 1e-15
    for limit in (0.05, 0.3, 1.0):
        exact = aupro(scores, gts, limit)
        bound = d * (pros[np.searchsorted(fprs, limit, side="left")] - pros[0]) / limit
        assert abs(exact - _mvtec_area(fprs, pros, limit)) <= bound + 1e-12


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_against_sklearn_and_pairs(seed):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    y = rng.random(300) < 0.3
    s = rng.integers(0, 12, 300) + 2.0 * y * rng.random(300)  # integer scores: many ties
    s = np.where(rng.random(300) < 0.5, np.floor(s), s)
    pairs = (s[y][:, None] > s[~y][None, :]).mean() + 0.5 * (s[y][:, None] == s[~y][None, :]).mean()
    assert auroc(s, y) == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)
    assert auroc(s, y) == pytest.approx(pairs, abs=1e-12)
    assert auroc(s, ~y) == pytest.approx(metrics.roc_auc_score(~y, s), abs=1e-12)  # more positives than negatives
    assert auroc(s, ~y) == pytest.approx(1 - pairs, abs=1e-12)
    scores, gts = _data(seed, levels=8)
    flat_s, flat_g = np.concatenate([a.ravel() for a in scores]), np.concatenate([g.ravel() for g in gts])
    assert pixel_auroc(scores, gts) == pytest.approx(metrics.roc_auc_score(flat_g, flat_s), abs=1e-12)


def test_2d_maps_equal_3d_volumes_with_components_in_single_slices():
    scores, gts = _data(6, n=5, levels=30)
    limits = (0.01, 0.05, 0.3, 1.0)
    ref = aupro_at(scores, gts, limits)
    # each map as a volume of depth 1: 26-connectivity on one slice is 8-connectivity
    assert aupro_at([s[..., None] for s in scores], [g[..., None] for g in gts], limits) == ref
    # all maps in one volume, one z slice each, separated by unobserved (NaN, ground truth 0) slices:
    # the components stay those of the maps, the NaN slices add no evaluated element
    h, w = scores[0].shape
    vol = np.full((h, w, 2 * len(scores) - 1), np.nan)
    gvol = np.zeros(vol.shape, np.uint8)
    vol[..., ::2] = np.stack(scores, axis=-1)
    gvol[..., ::2] = np.stack(gts, axis=-1)
    got = aupro_at([vol], [gvol], limits)
    for x in limits:
        assert got[x] == pytest.approx(ref[x], abs=1e-12)
    assert pixel_auroc([vol], [gvol]) == pytest.approx(pixel_auroc(scores, gts), abs=1e-12)
    # without the gaps, components touching across slices merge and the result changes
    merged = aupro_at([np.stack(scores, -1)], [np.stack(gts, -1)], limits)
    assert merged != ref
