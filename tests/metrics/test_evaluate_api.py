"""The one evaluation API (mv3dad.metrics.evaluate): keys for volumes and maps, labels, instance scores, NaN rules."""

import math

import numpy as np
import pytest

from mv3dad.metrics import MetricsConfig, aupro, aupro_key, evaluate, pixel_auroc


def _volumes():
    rng = np.random.default_rng(0)
    scores = [rng.random((4, 4, 3)).astype(np.float32) for _ in range(4)]
    gts = [np.zeros((4, 4, 3), np.uint8) for _ in range(4)]
    gts[2][1:3, 1:3, 1] = 1
    gts[3][0, 0, :] = 1
    scores[2][1:3, 1:3, 1] += 1.0
    scores[3][0, 0, 0] = np.nan  # unobserved defect voxel: missed
    return scores, gts


def test_volume_keys_and_values():
    scores, gts = _volumes()
    out = evaluate(scores, gts, labels=[0, 0, 1, 1], instance_scores=[0.1, 0.2, 0.9, 0.8])
    assert list(out) == ["i_auroc", "v_aupro_1", "v_aupro_30", "v_auroc", "n_test", "n_anomalous"]
    assert out["i_auroc"] == 1.0 and out["n_test"] == 4 and out["n_anomalous"] == 2
    assert out["v_aupro_1"] == pytest.approx(aupro(scores, gts, 0.01))
    assert out["v_aupro_30"] == pytest.approx(aupro(scores, gts, 0.3))
    assert out["v_auroc"] == pytest.approx(pixel_auroc(scores, gts))


def test_instance_scores_default_to_the_max_and_nan_counts_lowest():
    scores, gts = _volumes()
    by_max = evaluate(scores, gts)  # labels from the ground truth, instance score = nanmax
    inst = [np.nanmax(s) for s in scores]
    assert by_max["i_auroc"] == evaluate(scores, gts, [0, 0, 1, 1], inst)["i_auroc"]
    # an anomalous instance with a NaN score ranks below every nominal one
    assert evaluate(scores, gts, [0, 0, 1, 1], [0.1, 0.2, float("nan"), 0.8])["i_auroc"] == 0.5


def test_map_keys_and_limits():
    maps = [np.array([[0.1, 0.2], [0.3, 0.4]]), np.array([[0.9, 0.1], [0.2, 0.3]])]
    gts = [np.zeros((2, 2)), np.array([[1, 0], [0, 0]])]
    out = evaluate(maps, gts, config=MetricsConfig(fpr_limits=(0.05,)))
    assert list(out) == ["i_auroc", "p_auroc", "aupro_5", "n_test", "n_anomalous"]
    assert aupro_key(0.01) == "v_aupro_1" and aupro_key(0.3, volumetric=False) == "aupro_30"


def test_undefined_figures_are_nan():
    scores = [np.ones((2, 2, 2)), np.zeros((2, 2, 2))]
    gts = [np.zeros((2, 2, 2))] * 2
    out = evaluate(scores, gts, labels=[0, 0])
    assert all(math.isnan(out[k]) for k in ("i_auroc", "v_aupro_1", "v_aupro_30", "v_auroc"))
    assert out["n_anomalous"] == 0


def test_bad_input_is_named():
    scores, gts = _volumes()
    with pytest.raises(ValueError, match="labels"):
        evaluate(scores, gts, labels=[0, 1])
    with pytest.raises(ValueError, match="instance_scores"):
        evaluate(scores, gts, labels=[0, 0, 1, 1], instance_scores=[1.0])
    with pytest.raises(ValueError, match="instances"):
        evaluate(scores, gts[:2])
