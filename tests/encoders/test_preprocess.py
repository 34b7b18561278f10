import numpy as np
import pytest
import torch

from mv3dad.encoders.preprocess import (DepthScaling, SquareFit, pad_square, preprocess_depth, preprocess_image,
                                        resize_nearest, scale_depth, to_original, token_validity)


def _depth(h=30, w=50, seed=0):
    rng = np.random.default_rng(seed)
    d = rng.uniform(400, 600, (h, w)).astype(np.float32)
    d[0, :5] = np.nan
    d[1, :5] = np.inf
    d[2, :5] = -3
    d[3, :5] = 0
    return d


@pytest.mark.parametrize("shape", [(30, 50), (30, 50, 3), (50, 30, 1)])
def test_image_shapes_gray_to_rgb_and_edge_padding(shape):
    img = np.random.default_rng(0).random(shape).astype(np.float32)
    side = max(shape[:2])
    x = preprocess_image(img, side)  # no resize: padding can be checked exactly
    assert x.shape == (3, side, side)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    rgb = x * std + mean
    h, w = shape[:2]
    assert torch.allclose(rgb[:, h:, :w], rgb[:, h - 1: h, :w].expand_as(rgb[:, h:, :w]), atol=1e-5)
    assert torch.allclose(rgb[:, :h, w:], rgb[:, :h, w - 1: w].expand_as(rgb[:, :h, w:]), atol=1e-5)
    if len(shape) == 2 or shape[2] == 1:
        assert torch.allclose(rgb[0], rgb[1], atol=1e-5) and torch.allclose(rgb[1], rgb[2], atol=1e-5)
    assert preprocess_image(img, 56).shape == (3, 56, 56)


def test_image_bad_shape():
    with pytest.raises(ValueError, match="image must be"):
        preprocess_image(np.zeros((4, 4, 2)), 14)


def test_depth_invalid_zero_range_and_padding():
    d = _depth()
    s = scale_depth(d)
    assert (s[:4, :5] == 0).all()
    valid = s[4:]
    assert valid.min() >= 0.1 - 1e-6 and valid.max() <= 1 + 1e-6
    x = preprocess_depth(d, 50)
    assert x.shape == (1, 50, 50)
    assert (x[0, 30:] == 0).all()  # zero padding at the bottom
    assert torch.equal(x[0, :30], torch.from_numpy(s))


def test_depth_scaling_invariant_to_unit_and_offset():
    d = _depth()
    valid = np.isfinite(d) & (d > 0)
    moved = np.where(valid, d * 0.001 + 7.0, d)  # metres and another working distance; invalid stays invalid
    assert np.allclose(scale_depth(d), scale_depth(moved), atol=1e-4)
    with pytest.raises(ValueError):
        DepthScaling(lo_percentile=50, hi_percentile=10)
    assert (scale_depth(np.zeros((4, 4))) == 0).all()


def test_nearest_resize_never_mixes_values():
    d = preprocess_depth(_depth(), 98)
    src = set(np.unique(preprocess_depth(_depth(), 50).numpy()).tolist())
    assert set(np.unique(d.numpy()).tolist()) <= src


@pytest.mark.parametrize("hw", [(30, 50), (50, 30), (40, 40)])
def test_inverse_mapping_round_trip(hw):
    h, w = hw
    labels = np.zeros((h, w), np.float32)
    labels[5:15, 10:25] = 1
    labels[20:, :8] = 2
    fit = SquareFit(h, w, size=2 * max(h, w))
    grid = resize_nearest(torch.from_numpy(pad_square(labels, "zeros"))[None], fit.size)[0]
    back = to_original(grid, fit, mode="nearest")
    assert back.shape == (h, w)
    assert torch.equal(back, torch.from_numpy(labels))
    tokens = torch.full((2, 3, fit.size // 14, fit.size // 14), 5.0)
    out = to_original(tokens, fit)
    assert out.shape == (2, 3, h, w) and torch.allclose(out, torch.tensor(5.0))


def test_token_validity():
    x = torch.zeros(1, 1, 28, 28)
    x[..., :14, :14] = 0.5
    x[..., 14:, 14:21] = 0.5  # half a token
    v = token_validity(x, 14, 0.5)
    assert v.tolist() == [[[True, False], [False, True]]]
    assert token_validity(x, 14, 0.6).tolist() == [[[True, False], [False, False]]]
