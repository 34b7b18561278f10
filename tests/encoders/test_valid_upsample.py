"""``to_original_valid``: token maps reach pixels through valid tokens only (normalised convolution)."""

import numpy as np
import pytest
import torch

from mv3dad.encoders.preprocess import SquareFit, to_original, to_original_valid

DTYPES = [torch.float32]
FIT = SquareFit(100, 130, 224)  # a 16 x 16 token grid on a 130 x 130 padded square


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_valid_equals_to_original(dtype, device):
    m = torch.randn(2, 3, 16, 16, dtype=dtype, device=device)
    out = to_original_valid(m, torch.ones(16, 16, dtype=torch.bool, device=device), FIT)
    assert out.shape == (2, 3, 100, 130) and out.dtype == torch.float32
    assert torch.allclose(out, to_original(m, FIT), atol=1e-5)
    assert torch.equal(to_original_valid(m, torch.ones(2, 3, 16, 16, dtype=torch.bool), FIT, mode="nearest"),
                       to_original(m, FIT, mode="nearest").float())


@pytest.mark.parametrize("bad", [1e30, float("inf"), float("nan")])
@pytest.mark.parametrize("dtype", DTYPES)
def test_an_invalid_token_never_leaks(bad, dtype):
    gen = torch.Generator().manual_seed(0)
    m = torch.rand(16, 16, generator=gen, dtype=dtype)
    valid = torch.ones(16, 16, dtype=torch.bool)
    m[5, 6], valid[5, 6] = bad, False
    for mode in ("bilinear", "nearest"):
        out = to_original_valid(m, valid, FIT, mode=mode)
        finite = torch.isfinite(out)
        assert out[finite].min() >= 0 and out[finite].max() <= 1  # convex combinations of valid values only
        if mode == "nearest":  # NaN exactly on the pixels of the invalid token
            assert torch.equal(~finite, ~to_original(valid, FIT, mode="nearest"))
    # bilinear: every pixel has a valid neighbour token, so none is NaN; the token's pixels take its neighbours
    out = to_original_valid(m, valid, FIT)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_pixels_far_from_valid_tokens_are_nan(dtype):
    m = torch.full((16, 16), 7.0, dtype=dtype)
    valid = torch.zeros(16, 16, dtype=torch.bool)
    valid[:4, :4] = True
    out = to_original_valid(m, valid, FIT)
    px = FIT.side / 16  # original pixels per token
    assert torch.isnan(out[int(8 * px):, :]).all() and torch.isnan(out[:, int(8 * px):]).all()
    assert torch.allclose(out[: int(3 * px), : int(3 * px)], torch.tensor(7.0))  # a constant stays constant
    assert torch.isnan(to_original_valid(m, torch.zeros(16, 16, dtype=torch.bool), FIT)).all()


def test_numpy_inputs_broadcast_valid_and_bad_shapes():
    m = np.random.default_rng(0).normal(size=(4, 16, 16)).astype(np.float32)
    valid = np.ones((16, 16), bool)
    valid[0, 0] = False
    out = to_original_valid(m, valid, FIT)
    assert out.shape == (4, 100, 130)
    with pytest.raises(ValueError, match="share h, w"):
        to_original_valid(m, np.ones((8, 8), bool), FIT)
    with pytest.raises(ValueError, match="mode"):
        to_original_valid(m, valid, FIT, mode="bicubic")
