import math

import numpy as np
import pytest
import torch

from mv3dad.pretrain.augment import CropParams, MultiCrop, apply_crops, prepare_view


def _view(h=28, w=28, seed=0):
    rng = np.random.default_rng(seed)
    d = rng.uniform(300, 400, (h, w)).astype(np.float32)
    d[rng.random((h, w)) < 0.2] = 0
    return d


@pytest.mark.parametrize("angle,fx,fy", [(0, True, False), (0, False, True), (math.pi / 2, False, False),
                                         (math.pi, True, False), (-math.pi / 2, True, True)])
def test_flips_and_right_angle_rotations_permute_pixels(angle, fx, fy):
    view = prepare_view(_view(), "depth")
    out = apply_crops(view, [CropParams(0.0, 0.0, 1.0, 1.0, angle, fx, fy)], 28, "depth")[0]
    assert torch.equal(out.flatten().sort().values, view.flatten().sort().values)  # same multiset
    if angle == 0 and fx and not fy:
        assert torch.equal(out, view.flip(-1))


def test_random_crops_are_spatial_only():
    d = _view(40, 52)
    view = prepare_view(d, "depth")
    values = set(np.unique(view.numpy()).tolist())
    mc = MultiCrop("depth", 28, 14, 4, min_valid_fraction=0.0)
    g, loc = mc(d, np.random.default_rng(0))
    assert g.shape == (2, 1, 28, 28) and loc.shape == (4, 1, 14, 14)
    seen = set(np.unique(torch.cat([g.flatten(), loc.flatten()]).numpy()).tolist())
    assert seen <= values | {0.0}  # nearest sampling: no new depth value, no jitter
    with pytest.raises(ValueError, match="photometric"):
        MultiCrop("depth", 28, 14, 2, photometric=True)


def test_crops_with_too_little_depth_are_resampled():
    d = np.zeros((56, 56), np.float32)
    d[:, :14] = 500.0  # only a quarter of the view is measured
    fractions = {}
    for attempts in (1, 20):
        mc = MultiCrop("depth", 28, 14, 8, local_scale=(0.05, 0.1), min_valid_fraction=0.5, attempts=attempts)
        rng = np.random.default_rng(0)
        crops = [mc(d, rng)[1] for _ in range(3)]
        fractions[attempts] = torch.stack([(c > 0).float().mean(dim=(1, 2, 3)) for c in crops])
    assert (fractions[20] >= 0.5).float().mean() >= 0.9
    assert (fractions[1] >= 0.5).float().mean() < 0.6


def test_image_crops_normalised():
    img = np.random.default_rng(0).random((30, 40, 3)).astype(np.float32)
    g, loc = MultiCrop("image", 28, 14, 2, photometric=True)(img, np.random.default_rng(1))
    assert g.shape == (2, 3, 28, 28) and loc.shape == (2, 3, 14, 14)
    assert g.min() < -0.5 and g.max() > 0.5  # ImageNet-normalised
