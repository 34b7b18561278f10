"""AUPRO / AUROC on small cases computed by hand (see the comments for each expected value)."""

import numpy as np
import pytest

from mv3dad.metrics import MetricsConfig, aupro, aupro_at, auroc, evaluate, instance_scores, pixel_auroc, pro_curve

# one 2D map, one region of 2 elements (scores 0.9, 0.5), four normal elements (0.5, 0.2, 0.5, 0.1): a tie
# between the region and two normal elements at 0.5.
TIE_S = [np.array([[0.9, 0.5, 0.5, 0.2, 0.5, 0.1]])]
TIE_G = [np.array([[1, 1, 0, 0, 0, 0]], dtype=np.uint8)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ties_exact_curve_and_areas(dtype):
    s = [a.astype(dtype) for a in TIE_S]
    c = pro_curve(s, TIE_G)
    # thresholds +inf, 0.9, 0.5 (region and 2 normals enter together), 0.2, 0.1
    np.testing.assert_allclose(c.fpr, [0, 0, 0.5, 0.75, 1])
    np.testing.assert_allclose(c.pro, [0, 0.5, 1, 1, 1])
    # area to 1: 0.5 * (0.5 + 1) / 2 + 0.5 * 1 = 0.875
    assert aupro(s, TIE_G, 1.0) == pytest.approx(0.875, abs=1e-12)
    # to 0.25: PRO(0.25) = 0.75 interpolated; (0.5 + 0.75) / 2 * 0.25 / 0.25 = 0.625
    assert aupro(s, TIE_G, 0.25) == pytest.approx(0.625, abs=1e-12)
    # Mann-Whitney: 0.9 beats 4 normals, 0.5 beats 2 and ties 2 -> (4 + 2 + 2 / 2) / 8
    assert pixel_auroc(s, TIE_G) == pytest.approx(7 / 8, abs=1e-12)


def test_ties_mvtec_mode():
    # 4 thresholds on the sorted normals [0.1, 0.2, 0.5, 0.5] at positions 0..3, FPR = 1 - (pos + 1) / 4,
    # overlap counts scores strictly above: PRO = [1, 1, 0.5, 0.5]; plus (1, 1).
    c = pro_curve(TIE_S, TIE_G, mode="mvtec", num_thresholds=4)
    np.testing.assert_allclose(c.fpr, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(c.pro, [0.5, 0.5, 1, 1, 1])
    # 0.25 * 0.5 + 0.25 * 0.75 + 0.5 * 1 = 0.8125
    assert aupro(TIE_S, TIE_G, 1.0, mode="mvtec", num_thresholds=4) == pytest.approx(0.8125, abs=1e-12)


def _blobs(rng, n=3, shape=(24, 24)):
    gts = []
    for _ in range(n):
        g = np.zeros(shape, np.uint8)
        for _ in range(2):
            r, c = rng.integers(0, shape[0] - 5, 2)
            g[r:r + rng.integers(1, 5), c:c + rng.integers(1, 5)] = 1
        gts.append(g)
    return gts


@pytest.mark.parametrize("limit", [0.01, 0.3, 1.0])
def test_perfect_and_inverted_predictors(limit):
    rng = np.random.default_rng(1)
    gts = _blobs(rng)
    perfect = [np.where(g == 1, 2 + rng.random(g.shape), rng.random(g.shape)) for g in gts]
    inverted = [-p for p in perfect]
    assert aupro(perfect, gts, limit) == pytest.approx(1.0, abs=1e-12)
    assert aupro(inverted, gts, limit) == pytest.approx(0.0, abs=1e-12)
    assert pixel_auroc(perfect, gts) == 1.0 and pixel_auroc(inverted, gts) == 0.0


def test_instance_without_ground_truth_adds_false_positives():
    a_s, a_g = np.array([[0.8, 0.8, 0.1, 0.1]]), np.array([[1, 1, 0, 0]])
    b_s, b_g = np.array([[0.9, 0.1, 0.1, 0.1]]), np.zeros((1, 4), np.uint8)
    assert aupro([a_s], [a_g], 1.0) == pytest.approx(1.0)
    # with b: 6 normals; 0.9 -> (1/6, 0), 0.8 -> (1/6, 1), 0.1 -> (1, 1)
    c = pro_curve([a_s, b_s], [a_g, b_g])
    np.testing.assert_allclose(c.fpr, [0, 1 / 6, 1 / 6, 1])
    np.testing.assert_allclose(c.pro, [0, 0, 1, 1])
    assert aupro([a_s, b_s], [a_g, b_g], 1.0) == pytest.approx(5 / 6, abs=1e-12)
    assert aupro([a_s, b_s], [a_g, b_g], 0.3) == pytest.approx((0.3 - 1 / 6) / 0.3, abs=1e-12)


def test_regions_weighted_equally():
    # regions of 1 and 3 elements; the threshold 0.7 catches the small one and 1 of 3 of the large one
    s = np.array([[0.9, 0.0, 0.7, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1, 0.1]])
    g = np.array([[1, 0, 1, 1, 1], [0, 0, 0, 0, 0]])
    c = pro_curve([s], [g])
    assert c.pro[c.thresholds == 0.7][0] == pytest.approx((1 + 1 / 3) / 2)
    assert c.pro[c.thresholds == 0.9][0] == pytest.approx(0.5)


@pytest.mark.parametrize("ndim", [2, 3])
def test_diagonal_neighbours_form_one_region(ndim):
    # a and b touch only at a corner (one region under 8-/26-connectivity); c is apart. Detecting a alone:
    # PRO = (1/2 + 0) / 2 = 0.25 (it would be 1/3 with 4-/6-connectivity).
    shape = (5,) * ndim
    g = np.zeros(shape, np.uint8)
    a, b, c = (0,) * ndim, (1,) * ndim, (4,) * ndim
    for p in (a, b, c):
        g[p] = 1
    s = np.zeros(shape)
    s[a] = 1.0
    curve = pro_curve([s], [g])
    assert curve.pro[1] == pytest.approx(0.25) and curve.fpr[1] == 0


def test_evaluate_modes_with_unobserved_elements():
    nan = np.nan
    s = [np.array([[0.9, nan, 0.5, nan, 0.1]])]
    g = [np.array([[1, 1, 0, 0, 0]])]
    # observed: region {0.9, -inf}, normals {0.5, 0.1}: PRO stays 0.5 until FPR 1
    np.testing.assert_allclose(pro_curve(s, g).pro, [0, 0.5, 0.5, 0.5, 1])
    assert aupro(s, g, 1.0) == pytest.approx(0.5)
    assert pixel_auroc(s, g) == pytest.approx(0.5)
    # observed_only: region {0.9}, normals {0.5, 0.1}: perfect
    assert aupro(s, g, 1.0, evaluate="observed_only") == pytest.approx(1.0)
    # all: normals {0.5, 0.1, -inf}; (0,.5) -> (1/3,.5) -> (2/3,.5) -> (1,1): 1/3 + 1/3 * 0.75 = 7/12
    assert aupro(s, g, 1.0, evaluate="all") == pytest.approx(7 / 12)


def test_observed_only_drops_unobserved_regions():
    s = [np.array([[0.9, 0.1, np.nan, 0.2]])]
    g = [np.array([[1, 0, 1, 0]])]
    # the region at index 2 is unobserved: dropped, the other is found perfectly
    assert aupro(s, g, 1.0, evaluate="observed_only") == pytest.approx(1.0)
    # observed: the unobserved region is missed (-inf), PRO = 0.5 up to FPR 1
    assert aupro(s, g, 1.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="without anomalous regions"):
        aupro([np.array([[np.nan, 0.1]])], [np.array([[1, 0]])], evaluate="observed_only")


def test_aupro_at_matches_single_limits():
    rng = np.random.default_rng(2)
    gts = _blobs(rng)
    s = [rng.random(g.shape) + 0.3 * g for g in gts]
    got = aupro_at(s, gts)
    assert list(got) == [0.01, 0.05, 0.1, 0.3]
    for x, v in got.items():
        assert v == aupro(s, gts, x)
        assert 0 <= v <= 1
    assert got[0.3] > got[0.01]  # the signal makes the curve rise


def test_stacked_array_and_dataarray_inputs():
    xr = pytest.importorskip("xarray")
    rng = np.random.default_rng(3)
    gts = _blobs(rng)
    s = [rng.random(g.shape) for g in gts]
    ref = aupro(s, gts, 0.3)
    assert aupro(tuple(s), tuple(gts), 0.3) == ref
    assert aupro([xr.DataArray(a, dims=("x", "y")) for a in s], gts, 0.3) == ref
    vols, gvols = [a[..., None] for a in s], [g[..., None] for g in gts]
    assert aupro(np.stack(vols), np.stack(gvols), 0.3) == aupro(vols, gvols, 0.3)
    with pytest.raises(ValueError, match="ambiguous"):  # one volume or a stack of maps?
        aupro(np.stack(s), np.stack(gts), 0.3)


def test_instance_scores_and_evaluate():
    vols = [np.array([[0.2, np.nan], [0.4, 0.1]]), np.array([[0.9, 0.3], [np.nan, 0.0]])]
    np.testing.assert_allclose(instance_scores(vols), [0.4, 0.9])
    np.testing.assert_allclose(instance_scores(vols, "mean"), [0.7 / 3, 0.4])
    gts = [np.zeros((2, 2)), np.array([[1, 0], [0, 0]])]
    out = evaluate(vols, gts, config=MetricsConfig(fpr_limits=(0.3, 1.0)))  # 2D maps: p_auroc, aupro_<pct>
    assert out == {"i_auroc": 1.0, "p_auroc": 1.0, "aupro_30": pytest.approx(1.0), "aupro_100": pytest.approx(1.0),
                   "n_test": 2, "n_anomalous": 1}
    with pytest.raises(ValueError, match="instance 1: no evaluated"):
        instance_scores([np.ones((2, 2)), np.full((2, 2), np.nan)])
    with pytest.raises(ValueError, match="reduce"):
        instance_scores(vols, "median")


def test_auroc_hand_values():
    # positives 3, 2; negatives 2, 1: pairs (3>2, 3>1, 2=2, 2>1) -> 3.5 / 4
    assert auroc([3, 2, 2, 1], [1, 1, 0, 0]) == 0.875
    assert auroc([1, 1, 1, 1], [1, 0, 1, 0]) == 0.5
    assert auroc(np.array([0.1, 0.9]), np.array([True, False])) == 0.0
