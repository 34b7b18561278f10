"""Bad input to the metrics gives a clear ValueError naming the problem (and the instance where there is one)."""

import numpy as np
import pytest

from mv3dad.metrics import aupro, aupro_at, auroc, pixel_auroc, pro_curve

S = [np.array([[0.1, 0.9]]), np.array([[0.3, 0.2]])]
G = [np.array([[0, 1]]), np.array([[0, 0]])]


def test_empty_ground_truth_everywhere():
    with pytest.raises(ValueError, match="AUPRO is undefined without anomalous regions"):
        aupro(S, [np.zeros((1, 2)), np.zeros((1, 2))])
    with pytest.raises(ValueError, match="pixel AUROC is undefined"):
        pixel_auroc(S, [np.zeros((1, 2)), np.zeros((1, 2))])


def test_no_normal_element():
    with pytest.raises(ValueError, match="normal"):
        aupro([np.array([[0.1, 0.2]])], [np.array([[1, 1]])])


@pytest.mark.parametrize("scores,gts,match", [
    (S, [G[0], np.zeros((2, 1))], r"instance 1: score shape \(1, 2\) != ground-truth shape \(2, 1\)"),
    (S, [G[0], np.array([[0.0, np.nan]])], r"gts\[1\].*NaN"),
    (S, [G[0], np.array([[0, 2]])], r"gts\[1\].*binary"),
    ([S[0], np.array([[0.1, np.inf]])], G, r"scores\[1\].*inf"),
    ([S[0], np.array([0.1, 0.2])], G, "instance 1"),
    ([S[0], np.zeros((1, 2, 1))], G, "instance 1"),
    (S, G[:1], "2 score arrays but 1"),
    ([], [], "no instances"),
    (np.zeros((2, 2)), G, "list of 2D/3D arrays"),
    (np.zeros((2, 1, 2)), G, "ambiguous"),
])
def test_bad_pairs(scores, gts, match):
    with pytest.raises(ValueError, match=match):
        aupro(scores, gts)


def test_bad_options():
    with pytest.raises(ValueError, match="evaluate"):
        aupro(S, G, evaluate="some")
    with pytest.raises(ValueError, match="mode"):
        aupro(S, G, mode="fast")
    with pytest.raises(ValueError, match="num_thresholds"):
        aupro(S, G, num_thresholds=10)
    with pytest.raises(ValueError, match="num_thresholds"):
        pro_curve(S, G, mode="mvtec", num_thresholds=1)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="limits"):
            aupro(S, G, bad)
    with pytest.raises(ValueError, match="limits"):
        aupro_at(S, G, ())
    with pytest.raises(TypeError, match="list of arrays"):
        aupro("x", G)


def test_auroc_errors():
    with pytest.raises(ValueError, match="both classes"):
        auroc([0.1, 0.2, 0.3], [1, 1, 1])
    with pytest.raises(ValueError, match="both classes"):
        auroc([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="NaN"):
        auroc([0.1, 0.2], [0, np.nan])
    with pytest.raises(ValueError, match="NaN"):
        auroc([0.1, np.nan], [0, 1])
    with pytest.raises(ValueError, match="2 scores but 3 labels"):
        auroc([0.1, 0.2], [0, 1, 1])
