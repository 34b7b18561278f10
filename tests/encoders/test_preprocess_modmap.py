"""``--preprocess modmap``: the ModMap authors' preprocessing, on small arrays."""

import numpy as np
import pytest
import torch

from mv3dad.encoders import build_encoder, depth_validity_input, preprocess_depth, preprocess_depth_modmap
from mv3dad.encoders.preprocess import MODMAP_MEAN, MODMAP_STD, preprocess_image_modmap

RNG = np.random.default_rng(0)


def _unnorm(x):
    return x * MODMAP_STD + MODMAP_MEAN


def test_image_edge_pad_three_equal_channels_divided_by_max_and_normalised():
    img = RNG.uniform(0.1, 0.6, size=(2, 4)).astype(np.float32)
    x = preprocess_image_modmap(img, 4)  # square side 4: the resize is the identity
    assert x.shape == (3, 4, 4) and x.dtype == torch.float32
    assert torch.equal(x[0], x[1]) and torch.equal(x[0], x[2])
    y = _unnorm(x[0]).numpy()
    ref = np.concatenate([img, img[-1:], img[-1:]]) / img.max()  # edge rows at the bottom, then / max
    np.testing.assert_allclose(y, ref, atol=1e-5)
    assert y.max() == pytest.approx(1.0, abs=1e-6)


def test_image_gray_weights_and_scale_invariance():
    g = RNG.uniform(0.0, 1.0, size=(5, 3)).astype(np.float32)
    a = preprocess_image_modmap(g, 14)
    rgb = np.stack([g, g, g], axis=2)  # equal channels: the BT.601 weights sum to 1
    torch.testing.assert_close(preprocess_image_modmap(rgb, 14), a, atol=1e-5, rtol=1e-5)
    u8 = (g * 255).round().astype(np.uint8)  # dividing by the max removes the input's scale
    torch.testing.assert_close(preprocess_image_modmap(u8, 14), preprocess_image_modmap(u8 / 255.0, 14),
                               atol=1e-5, rtol=1e-5)
    red = np.zeros((4, 4, 3), np.float32)
    red[..., 0], red[0, 0, 1] = 0.5, 0.5  # one pixel also green: brighter in gray by 0.587 * 0.5
    y = _unnorm(preprocess_image_modmap(red, 4)[0]).numpy()
    assert y[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert y[1, 1] == pytest.approx(0.299 / (0.299 + 0.587), abs=1e-5)


def test_image_bicubic_resize_of_a_constant_is_constant():
    x = preprocess_image_modmap(np.full((6, 9), 0.3, np.float32), 28)
    torch.testing.assert_close(x, torch.full((3, 28, 28), (1 - MODMAP_MEAN) / MODMAP_STD))


def test_depth_inf_to_zero_edge_pad_nearest_divided_by_max():
    d = np.array([[100.0, 200.0, np.inf, 400.0],
                  [500.0, 0.0, 700.0, 800.0]], np.float32)
    x = preprocess_depth_modmap(d, 4)
    assert x.shape == (1, 4, 4)
    clean = np.where(np.isfinite(d), d, 0)
    ref = np.concatenate([clean, clean[-1:], clean[-1:]]) / 800.0
    np.testing.assert_allclose(x[0].numpy(), ref, atol=1e-7)
    up = preprocess_depth_modmap(d, 8)[0].numpy()  # nearest: every value becomes a 2 x 2 block
    np.testing.assert_array_equal(up, np.repeat(np.repeat(ref.astype(np.float32), 2, 0), 2, 1))
    assert preprocess_depth_modmap(np.zeros((3, 3), np.float32), 6).abs().max() == 0  # no division by 0


def test_depth_differs_from_default_and_validity_ignores_the_edge_pad():
    d = np.full((2, 4), 300.0, np.float32)
    d[0, 0] = 0
    m = preprocess_depth_modmap(d, 4)[0]
    assert (m[2:] > 0).all()  # the edge pad looks measured in the network input ...
    v = depth_validity_input(d, 4)[0]
    assert v[2:].sum() == 0 and v[0, 0] == 0 and v[:2].sum() == 7  # ... but not in the validity mask
    torch.testing.assert_close(depth_validity_input(d, 8), (preprocess_depth(d, 8) > 0).float())
    assert float(m.max()) == 1.0 and float(preprocess_depth(d, 4).max()) == pytest.approx(0.1)  # floor


def test_encoder_preprocess_dispatch():
    img_enc = build_encoder("patch14", modality="image")
    dep_enc = build_encoder("patch14", modality="depth")
    imgs = [RNG.uniform(size=(10, 12)).astype(np.float32)] * 2
    deps = [RNG.uniform(100, 200, size=(10, 12)).astype(np.float32)] * 2
    torch.testing.assert_close(img_enc.preprocess(imgs, 28, "modmap")[0], preprocess_image_modmap(imgs[0], 28))
    torch.testing.assert_close(dep_enc.preprocess(deps, 28, "modmap")[0], preprocess_depth_modmap(deps[0], 28))
    assert not torch.equal(dep_enc.preprocess(deps, 28)[0], preprocess_depth_modmap(deps[0], 28))
    with pytest.raises(ValueError, match="preprocess"):
        img_enc.preprocess(imgs, 28, "authors")
    from mv3dad.pipeline.features import EncoderConfig

    with pytest.raises(ValueError, match="preprocess"):
        EncoderConfig(preprocess="authors")
