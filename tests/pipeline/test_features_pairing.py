"""Encoders with different patch sizes pair up: an image ViT-B/14 and the depth ViT-S/16 give one token grid,
validity on that grid, pixel-aligned through SquareFit(h, w, image_size)."""

import numpy as np
import pytest
import torch

from mv3dad.data.scene import Sample, View
from mv3dad.encoders import SquareFit, to_original_valid
from mv3dad.geometry.camera import Camera
from mv3dad.pipeline.features import EncoderConfig, FeatureExtractor, input_sizes, load_encoders


def _sample(h=40, w=56, n=2):
    """Views whose depth is measured on the left 28 of 56 columns (half the padded 56-px square)."""
    rng = np.random.default_rng(0)
    cam = Camera.look_at([0, 0, 500], [0, 0, 0], [0, 1, 0], 100.0, 100.0, w, h)
    views = []
    for _ in range(n):
        depth = np.zeros((h, w), np.float32)
        depth[:, :28] = rng.uniform(400, 450, size=(h, 28))
        views.append(View(rng.uniform(size=(h, w, 3)).astype(np.float32), depth, cam))
    return Sample("toy", "000", views)


def _cfg(**kw):
    return EncoderConfig(**{"image_encoder": "vit_base_patch14_dinov2", "depth_encoder": "dinov3_depth_vits16",
                            "random_init": True, "image_size": 56, "image_layers": 1, "depth_layers": 1,
                            "precision": "fp32", "device": "cpu", **kw})


@pytest.fixture(scope="module")
def encoders():
    return load_encoders(_cfg())  # loading no longer refuses unequal patch sizes


def test_vitb14_and_dinov3_vits16_share_the_token_grid(encoders):
    img, dep = encoders
    assert (img.patch_size, dep.patch_size) == (14, 16)
    cfg = _cfg()
    assert input_sizes(cfg, img, dep) == (56, 64, 4)  # 56 px /14 -> 4 x 4; 64 px /16 -> 4 x 4
    assert input_sizes(_cfg(image_size=896), img, dep) == (896, 1024, 64)  # the paper's size
    ext = FeatureExtractor(img, dep, cfg)
    assert ext.identity != FeatureExtractor(img, dep, _cfg(image_size=112, pair_grids="resample")).identity
    fs = ext.compute(_sample())
    assert fs.img.shape == (2, 768, 4, 4) and fs.dep.shape == (2, 384, 4, 4) and fs.valid.shape == (2, 4, 4)
    # left half of the padded square measured -> left two token columns valid (rows 0-2 hold 40 of 56 rows)
    expect = torch.zeros(4, 4, dtype=torch.bool)
    expect[:3, :2] = True
    assert torch.equal(fs.valid[0], expect) and torch.equal(fs.valid[1], expect)
    # back to pixels as the predictor does: valid tokens land on the measured pixels
    m = to_original_valid(torch.ones(4, 4), fs.valid[0], SquareFit(40, 56, cfg.image_size), mode="nearest")
    assert m.shape == (40, 56)
    assert torch.isfinite(m[:, :28]).all() and torch.isnan(m[:, 28:]).all()


def test_resample_mode_and_modmap_preprocessing(encoders):
    img, dep = encoders
    cfg = _cfg(image_size=112, pair_grids="resample", preprocess="modmap")
    assert input_sizes(cfg, img, dep) == (112, 112, 8)  # depth at 112 px: 7 x 7 tokens, resampled to 8 x 8
    fs = FeatureExtractor(img, dep, cfg).compute(_sample())
    assert fs.img.shape[-2:] == fs.dep.shape[-2:] == fs.valid.shape[-2:] == (8, 8)
    expect = torch.zeros(8, 8, dtype=torch.bool)
    expect[:6, :4] = True  # validity from the measured pixels on the image grid (not from the edge-padded input)
    assert torch.equal(fs.valid[0], expect)
    from mv3dad.encoders import EncoderError

    with pytest.raises(EncoderError, match="multiple of its patch size 16"):
        load_encoders(_cfg(image_size=56, pair_grids="resample"))
