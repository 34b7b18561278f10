"""evaluate's alignment of predictions and ground truth, checked with oracle predictions."""

import json

import numpy as np
import pytest

from mv3dad.data import open_dataset
from mv3dad.export import save_volume
from mv3dad.geometry.grid import VoxelGrid
from mv3dad.metrics import aupro
from mv3dad.pipeline.evaluate import gt_mask_2d, gt_on_grid, run_evaluate
from mv3dad.volume import backproject
from mv3dad.volume.resample import supersample_factor, supersample_view


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    from mv3dad.synth.generate import SynthConfig, generate_benchmark

    root = tmp_path_factory.mktemp("ev") / "data"
    generate_benchmark(root, SynthConfig(categories=("container",), views=6, image_size=96, test_instances=4,
                                         preview=False, seed=3))
    return root


def test_gt_on_shifted_grid():
    g = VoxelGrid(np.zeros(3), 2.0, (4, 4, 4))
    vals = np.zeros(g.shape, np.uint8)
    vals[1, 2, 3] = 1
    gt = g.to_dataarray(vals)
    shifted = VoxelGrid(np.array([2.0, 0.0, 0.0]), 2.0, (4, 4, 4))  # one voxel further along x
    out = gt_on_grid(gt, shifted)
    assert out[0, 2, 3] == 1 and out.sum() == 1
    assert gt_on_grid(None, g).sum() == 0


def test_oracle_maps_back_project_onto_the_ground_truth(bench):
    """Per-view ground-truth masks, back-projected like predict does, recover the ground-truth volume."""
    ds = open_dataset(bench)
    s = next(s for s in ds["container"].test if s.gt is not None)
    views = [supersample_view(v, supersample_factor(v, 2.0)) for v in s.views]
    maps = [gt_mask_2d(s.gt, v).astype(np.float32) for v in views]
    assert sum(m.sum() for m in maps) > 0
    vol = backproject(maps, views, grid=s.gt)
    sparse = backproject([gt_mask_2d(s.gt, v).astype(np.float32) for v in s.views], s.views, grid=s.gt)
    dense_score = aupro([vol.values], [s.gt.values], fpr_limit=0.01)
    assert dense_score > 0.4  # the rest of the ground truth is seen by no view (e.g. inside a hole)
    assert dense_score > aupro([sparse.values], [s.gt.values], fpr_limit=0.01)  # supersampling fills holes
    inverted = [1 - m for m in maps]
    assert aupro([backproject(inverted, views, grid=s.gt).values], [s.gt.values], 0.01) < 0.1


def test_evaluate_scores_an_oracle_prediction_perfectly(bench, tmp_path):
    ds = open_dataset(bench)
    pred = tmp_path / "pred"
    (pred / "container").mkdir(parents=True)
    scores = {}
    for s in ds["container"].test:
        if s.gt is not None:
            vol = s.gt.astype(np.float32)
        else:
            from mv3dad.volume import grid_for_views

            vol = grid_for_views(s.views).to_dataarray(np.zeros(grid_for_views(s.views).shape, np.float32))
        save_volume(vol, pred / "container" / f"{s.instance_id}.npz")
        scores[s.instance_id] = {"score": float(vol.max()), "label": s.label}
    (pred / "scores.json").write_text(json.dumps({"scores": {"container": scores}, "n_views": 6}))
    res, table = run_evaluate(pred, bench)
    assert res["container"]["i_auroc"] == 1.0
    assert res["container"]["v_aupro_1"] == pytest.approx(1.0)
    assert res["container"]["v_auroc"] == 1.0
    assert "| container |" in table and "V-AUROC" in table
    res, _ = run_evaluate(pred, bench, ceiling=True)
    assert res["container"]["ceiling"]["v_aupro_1"] == pytest.approx(1.0)  # the oracle observes all of the GT
    for s in ds["container"].test:  # a prediction that observes nothing of the defects: the ceiling is 0
        if s.gt is not None:
            vol = s.gt.astype(np.float32).where(s.gt == 0)
            save_volume(vol, pred / "container" / f"{s.instance_id}.npz")
    res, _ = run_evaluate(pred, bench, ceiling=True)
    assert res["container"]["ceiling"]["v_aupro_1"] == pytest.approx(0.0)
    assert res["container"]["ceiling"]["v_auroc"] <= 0.5


def test_random_encoders_are_the_same_in_every_build():
    import torch

    from mv3dad.pipeline.features import EncoderConfig, load_encoders

    cfg = EncoderConfig(image_encoder="vit_small_patch14_dinov2", random_init=True, image_size=28)
    torch.rand(7)  # whatever random calls came before
    a_img, a_dep = load_encoders(cfg)
    b_img, b_dep = load_encoders(cfg)
    for a, b in ((a_img, b_img), (a_dep, b_dep)):
        assert a.meta["weights_source"] == "random:seed=0"
        for (k, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(p, q), k
