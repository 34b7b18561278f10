"""Localisation figures (mv3dad.metrics.localisation) on hand cases."""

import math

import numpy as np
import pytest

from mv3dad.metrics import aupro_key
from mv3dad.metrics.localisation import (argmax_on_defect, near_outline, oracle_ceiling, outline_share,
                                         twin_contrast)

NAN = np.nan


def test_twin_contrast_hand_case():
    g = np.zeros((3, 1, 1), bool)
    g[0] = g[1] = True
    a = np.array([0.9, NAN, 0.0]).reshape(3, 1, 1)   # defect voxel 1 unobserved here: only voxel 0 counts
    n1 = np.array([0.5, 0.1, 0.0]).reshape(3, 1, 1)  # 0.9 > 0.5: win
    n2 = np.array([0.95, 0.0, 0.0]).reshape(3, 1, 1)  # 0.9 < 0.95: loss
    n3 = np.array([NAN, 0.0, 1.0]).reshape(3, 1, 1)   # no defect voxel observed in both: not a pair
    t = twin_contrast([a], [g], [n1, n2, n3])
    assert (t.wins, t.pairs, t.contrast) == (1, 2, 0.5)
    assert math.isnan(twin_contrast([a], [g], [n3]).contrast)
    with pytest.raises(ValueError):
        twin_contrast([a], [], [n1])


def test_argmax_on_defect_hand_case():
    v = np.zeros((10, 1, 1))
    v[6] = 1.0
    g = np.zeros((10, 1, 1), bool)
    g[3] = True  # the peak is 3 voxels = 6 mm away at 2 mm voxels
    assert argmax_on_defect(v, g, voxel_size=2.0, near_mm=6.0)
    assert not argmax_on_defect(v, g, voxel_size=2.0, near_mm=5.9)
    v[6] = NAN  # NaN ignored: the peak is now the first zero (voxel 0), 6 mm away
    assert argmax_on_defect(v, g, 2.0, 6.0) and not argmax_on_defect(v, g, 2.0, 5.0)
    assert not argmax_on_defect(v, np.zeros_like(g), 2.0, 100.0)
    assert not argmax_on_defect(np.full((10, 1, 1), NAN), g, 2.0, 100.0)


def test_oracle_ceiling():
    v = [np.array([[[0.3], [NAN]], [[0.1], [0.2]]]), np.array([[[0.0], [0.5]], [[0.4], [0.6]]])]
    g = [np.array([[[1], [0]], [[0], [0]]]), np.array([[[0], [1]], [[0], [0]]])]
    out = oracle_ceiling(v, g)
    assert set(out) == {aupro_key(0.01), "v_auroc"} and out["v_aupro_1"] == pytest.approx(1.0)
    assert out["v_auroc"] == 1.0
    g[0][0, 1, 0] = 1  # an unobserved defect voxel: missed by the oracle too
    out = oracle_ceiling(v, g, (0.01, 0.3))
    assert out["v_aupro_1"] == pytest.approx(0.75) and out["v_aupro_30"] == pytest.approx(0.75)
    assert out["v_auroc"] == pytest.approx(2 / 3)  # 2 of 3 defect voxels above every normal one, 1 below (-inf)
    out2 = oracle_ceiling([x[..., 0] for x in v], [x[..., 0] for x in g])
    assert set(out2) == {"aupro_1", "p_auroc"}


def test_near_outline():
    fg = np.zeros((7, 7), bool)
    fg[1:6, 1:6] = True
    near = near_outline(fg, 1.0)
    assert near[1, 1] and near[1, 3] and not near[2, 2] and not near[3, 3] and near[0, 0]
    assert near_outline(fg, 2.0)[2, 2] and not near_outline(fg, 2.0)[3, 3]


def test_outline_share_hand_case():
    fg = np.zeros((12, 12), bool)
    fg[1:11, 1:11] = True  # 100 foreground pixels; 36 within one pixel of the outline
    m = np.zeros((12, 12))
    m[5, 5] = 2.0  # inner peak
    inner = outline_share([m[None]], [fg[None]], token_px=1.0)
    assert inner.n_instances == 1 and inner.n_views == 1
    assert inner.foreground_near_outline == pytest.approx(0.36)
    assert inner.top1_near_outline == 0.0 and inner.peaks_near_outline == 0
    edge = m.copy()
    edge[1, 4] = 3.0  # a higher peak on the outline, in a second view of the same instance
    two = outline_share([np.stack([m, edge])], [np.stack([fg, fg])], token_px=1.0)
    assert two.n_views == 2 and two.peaks_near_outline == 1 and two.peak_share == 1.0
    assert two.top1_near_outline == pytest.approx(0.5)  # view 1: inner top pixel, view 2: outline top pixel
    # a view with too few scored pixels is skipped; the instance still counts, as not near
    sparse = np.full((12, 12), NAN)
    sparse[1, 1] = 5.0
    skip = outline_share([m[None], sparse[None]], [fg[None], fg[None]], token_px=1.0)
    assert skip.n_instances == 2 and skip.n_views == 1 and skip.peaks_near_outline == 0
    assert math.isnan(outline_share([sparse[None]], [fg[None]], 1.0).top1_near_outline)
