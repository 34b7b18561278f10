"""The non-learned reference encoder ``patch14``."""

import pytest
import torch
import torch.nn.functional as F

from mv3dad.encoders import build_encoder


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("modality,chans", [("image", 3), ("depth", 1)])
def test_tokens_are_centred_pixel_patches(modality, chans, dtype):
    enc = build_encoder("patch14", modality=modality)
    assert enc.modality == modality and enc.in_chans == chans and enc.embed_dim == chans * 196
    x = torch.rand(2, chans, 28, 42, dtype=dtype)
    f = enc.features(x)
    assert f.shape == (2, chans * 196, 2, 3) and f.dtype == torch.float32
    ref = F.unfold(x.float(), 14, stride=14)
    assert torch.allclose(f.flatten(2), ref - ref.mean(dim=1, keepdim=True), atol=1e-6)
    assert torch.allclose(enc.features(x + 5.0), f, atol=1e-5)  # offset-free: brightness / distance removed
    assert enc.meta["weights_source"].startswith("none")
