"""The weight-free encoders ``geometric`` (depth) and ``texture`` (image) of ``mv3dad.encoders.classical``."""

import math

import numpy as np
import pytest
import torch

from mv3dad.encoders import EncoderError, build_encoder, preprocess_depth, preprocess_image
from mv3dad.encoders.classical import CLASSICAL_VERSION

DTYPES = [torch.float32]
# geometric channel indices (scale s adds 8 s)
NX, NY, NZ, SPREAD, KMEAN, KSTD, HSIGN, RESID = range(8)
# texture channel indices (scale s adds 12 s)
HIST, MEAN_R, CONTRAST = slice(0, 8), 8, 11


@pytest.fixture(scope="module")
def geo():
    return build_encoder("geometric")


@pytest.fixture(scope="module")
def tex():
    return build_encoder("texture")


def _grid(s, device, dtype):
    v, u = torch.meshgrid(torch.arange(s, device=device, dtype=dtype), torch.arange(s, device=device, dtype=dtype),
                          indexing="ij")
    return u, v


def _plane(s=224, device="cpu", dtype=torch.float32, a=0.3, bu=0.2, bv=0.1):
    u, v = _grid(s, device, dtype)
    return (a + bu * u / s + bv * v / s)[None, None]


def _smooth_surface(s=224, device="cpu", dtype=torch.float32):
    u, v = _grid(s, device, dtype)
    return (0.5 + 0.2 * torch.sin(u / 23.0) * torch.cos(v / 31.0) + 0.1 * v / s)[None, None]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [224, 448])
def test_shapes_on_the_vit_token_grid(geo, tex, size, dtype, device):
    d = torch.rand(2, 1, size, size, dtype=dtype, device=device) * 0.9 + 0.1
    x = torch.randn(2, 3, size, size, dtype=dtype, device=device)
    fg, ft = geo.to(device).features(d), tex.to(device).features(x)
    assert fg.shape == (2, 16, size // 14, size // 14) and ft.shape == (2, 24, size // 14, size // 14)
    assert fg.dtype == ft.dtype == torch.float32 and torch.isfinite(fg).all() and torch.isfinite(ft).all()
    assert geo.patch_size == tex.patch_size == 14 and geo.embed_dim == 16 and tex.embed_dim == 24
    assert torch.equal(geo.features(d), fg)  # deterministic


@pytest.mark.parametrize("dtype", DTYPES)
def test_built_without_weights_or_random_init(dtype):
    for name, modality, chans in (("geometric", "depth", 1), ("texture", "image", 3)):
        for pretrained in (True, False):
            enc = build_encoder(name, pretrained=pretrained, modality=modality, img_size=448)
            assert enc.modality == modality and enc.in_chans == chans and enc.layers == 1
            assert enc.meta["arch"] == name
            assert enc.meta["weights_source"] == f"classical:{name}/v{CLASSICAL_VERSION}"
    with pytest.raises(EncoderError, match="depth encoder"):
        build_encoder("geometric", modality="image")
    with pytest.raises(EncoderError, match="image encoder"):
        build_encoder("texture", modality="depth")
    with pytest.raises(EncoderError, match="no weights"):
        build_encoder("texture", weights="x.safetensors")
    with pytest.raises(EncoderError, match="input channel"):
        build_encoder("texture").features(torch.zeros(1, 1, 28, 28, dtype=dtype))


def test_encoder_identity_is_stable():
    from mv3dad.pipeline.features import EncoderConfig, encoder_identity, load_encoders

    img, dep = load_encoders(EncoderConfig(image_encoder="texture", depth_encoder="geometric", image_size=448,
                                           device="cpu"))
    a, b = encoder_identity(img), encoder_identity(dep)
    assert a == encoder_identity(build_encoder("texture", img_size=224))
    assert a["weights"] == f"classical:texture/v{CLASSICAL_VERSION}" and a["embed_dim"] == 24
    assert b["weights"] == f"classical:geometric/v{CLASSICAL_VERSION}" and b["modality"] == "depth"


def test_works_on_the_preprocessed_views(geo, tex):
    rng = np.random.default_rng(0)
    depth = rng.uniform(400, 600, (90, 120)).astype(np.float32)
    depth[:20] = 0
    image = rng.uniform(0, 1, (90, 120, 3)).astype(np.float32)
    fd = geo.features(geo.preprocess([depth], 224))
    fi = tex.features(tex.preprocess([image], 224))
    assert fd.shape == fi.shape[:1] + (16,) + fi.shape[2:]
    assert torch.equal(geo.preprocess([depth], 224)[0], preprocess_depth(depth, 224))
    assert torch.equal(tex.preprocess([image], 224)[0], preprocess_image(image, 224))


# ------------------------------------------------------------------------------------------------------ geometric


@pytest.mark.parametrize("dtype", DTYPES)
def test_plane_gives_its_normal_and_no_spread_curvature_or_residual(geo, dtype, device):
    s = 224
    f = geo.features(_plane(s, device, dtype))
    for sc in (0, 8):
        assert f[:, sc + RESID].abs().max() < 1e-3
        assert f[:, sc + SPREAD].abs().max() < 1e-4
        assert f[:, sc + KMEAN].abs().max() < 1e-3 and f[:, sc + KSTD].abs().max() < 1e-3
        assert f[:, sc + HSIGN].abs().max() < 1e-3
        # slopes per image side: dz/du * S = 0.2, dz/dv * S = 0.1
        n = torch.tensor([-0.2, -0.1, 1.0])
        n = n / n.norm()
        assert torch.allclose(f[0, sc:sc + 3], n.view(3, 1, 1).expand(3, 16, 16), atol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_holes_do_not_leak_into_the_statistics(geo, dtype):
    """Unmeasured pixels (0) inside tokens: on a plane every statistic stays that of the plane."""
    gen = torch.Generator().manual_seed(0)
    d = _plane(224, dtype=dtype)
    holes = torch.rand(d.shape, generator=gen) < 0.03  # isolated unmeasured pixels
    holes[..., 30:37, 40:45] = True  # and a blob across token borders
    holes[..., 100:140, 101] = True  # and a one-pixel line
    f_full, f_holes = geo.features(d), geo.features(d.masked_fill(holes, 0.0))
    assert torch.allclose(f_holes, f_full, atol=1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_other_tokens_do_not_change_a_fully_valid_token(geo, dtype):
    d = _smooth_surface(224, dtype=dtype)
    ref = geo.features(d)
    far = d.clone()
    far[..., :, 8 * 14:] = 0  # every token two or more tokens right of token column 5 loses its depth
    far[..., 3 * 14 + 5, :3 * 14] = 0  # and a row of pixels inside tokens of row 3 (> 1 token left of column 5)
    f = geo.features(far)
    assert torch.allclose(f[..., 4:7, 5], ref[..., 4:7, 5], atol=1e-6)  # both scales: neighbourhood untouched
    near = d.clone()
    near[..., 6 * 14:7 * 14, 6 * 14 + 3:6 * 14 + 9] = 0  # pixels of the neighbouring token (6, 6)
    f = geo.features(near)
    assert torch.allclose(f[:, :8, 5, 5], ref[:, :8, 5, 5], atol=1e-6)  # the token's own scale: unchanged
    assert not torch.allclose(f[:, :8, 6, 6], ref[:, :8, 6, 6], atol=1e-6)


def test_a_token_without_depth_is_zero(geo):
    d = _smooth_surface(224)
    d[..., 2 * 14:3 * 14, 7 * 14:8 * 14] = 0
    f = geo.features(d)
    assert torch.equal(f[0, :8, 2, 7], torch.zeros(8))
    assert (f[0, 8:, 2, 7] != 0).any()  # its neighbourhood still has depth
    assert torch.equal(geo.features(torch.zeros(1, 1, 56, 56)), torch.zeros(1, 16, 4, 4))


@pytest.mark.parametrize("dtype", DTYPES)
def test_bump_raises_curvature_and_residual_of_its_token(geo, dtype):
    s = 224
    u, v = _grid(s, "cpu", dtype)
    bump = 0.03 * torch.exp(-((u - 4.5 * 14) ** 2 + (v - 6.5 * 14) ** 2) / (2 * 3.0 ** 2))[None, None]
    plane = _plane(s, dtype=dtype)
    flat, toward, dent = geo.features(plane), geo.features(plane - bump), geo.features(plane + bump)
    for f in (toward, dent):
        assert f[0, KMEAN, 6, 4] > 0.2 + flat[0, KMEAN, 6, 4]
        assert f[0, RESID, 6, 4] > 0.05 and f[0, RESID, 6, 4] > 100 * flat[0, RESID].max()
        others = torch.ones(16, 16, dtype=torch.bool)
        others[5:8, 3:6] = False
        assert f[0, KMEAN, 6, 4] > 10 * f[0, KMEAN][others].max()
    assert toward[0, HSIGN, 6, 4] > 0.1 and dent[0, HSIGN, 6, 4] < -0.1  # a bump toward the camera is positive


# -------------------------------------------------------------------------------------------------------- texture


def _normalised(rgb):
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (rgb - mean) / std


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_image_has_no_gradient_or_contrast(tex, dtype, device):
    rgb = torch.tensor([0.2, 0.5, 0.9], dtype=dtype, device=device).view(1, 3, 1, 1).expand(1, 3, 224, 224)
    f = tex.features(_normalised(rgb).to(dtype))
    for sc in (0, 12):
        assert f[0, sc:sc + 8].abs().max() < 1e-5
        assert f[0, sc + CONTRAST].abs().max() < 1e-3
        assert torch.allclose(f[0, sc + 8:sc + 11], (2 * (rgb[0, :, :16, :16] - 0.5)).float(), atol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rotated_stripes_move_mass_between_orientation_bins(tex, dtype):
    s = 224
    u, v = _grid(s, "cpu", dtype)
    hists = []
    for deg in (0, 45, 90, 135):
        t = math.radians(deg)
        phase = (u * math.cos(t) + v * math.sin(t)) * (2 * math.pi / 9.0)  # the gradient points along angle t
        gray = 0.5 + 0.3 * torch.sin(phase)
        f = tex.features(_normalised(gray.expand(1, 3, s, s)))
        for sc in (0, 12):
            h = f[0, sc:sc + 8, 2:-2, 2:-2].mean(dim=(1, 2))
            assert h.argmax().item() == deg // 22.5
            assert h[int(deg // 22.5)] > 3 * h[(int(deg // 22.5) + 4) % 8]
            assert f[0, sc + CONTRAST, 2:-2, 2:-2].min() > 0.5  # 4 * std of a 0.3 sine ~ 0.85
        hists.append(f[0, :8, 2:-2, 2:-2].mean(dim=(1, 2)))
    assert (hists[0] - hists[2]).abs().sum() > hists[0].sum()  # rotating by 90 degrees moves most of the mass


def test_neighbourhood_scale_equals_a_direct_computation(geo, tex):
    """Scale 1 is combined from per-token moments; it must equal the statistic over the 42 x 42 px window."""
    d = _smooth_surface(224)
    gen = torch.Generator().manual_seed(1)
    d = d.masked_fill(torch.rand(d.shape, generator=gen) < 0.2, 0.0)
    win = (slice(4 * 14, 7 * 14), slice(6 * 14, 9 * 14))  # around token (5, 7)
    z = d[0, 0][win].double().numpy()
    vv, uu = np.nonzero(z > 0)
    a = np.stack([np.ones_like(uu), uu, vv], 1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(a, z[vv, uu], rcond=None)
    rms = np.sqrt(np.mean((z[vv, uu] - a @ coef) ** 2))
    assert geo.features(d)[0, 8 + RESID, 5, 7].item() == pytest.approx(20 * rms, rel=1e-4, abs=1e-6)

    rgb = torch.rand(1, 3, 224, 224, generator=gen)
    gray = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)[0]
    f = tex.features(_normalised(rgb))
    assert f[0, 12 + CONTRAST, 5, 7].item() == pytest.approx(8 * gray[win].double().std(unbiased=False).item(),
                                                             rel=1e-4)
    assert f[0, 12 + MEAN_R, 5, 7].item() == pytest.approx(2 * (rgb[0, 0][win].mean().item() - 0.5), abs=1e-5)


# -------------------------------------------------------------------------------------------------------- shading
@pytest.mark.parametrize("dtype", DTYPES)
def test_shading_is_the_mean_log_brightness_at_two_scales(dtype, device):
    enc = build_encoder("shading").to(device)
    assert enc.modality == "image" and enc.embed_dim == 2
    s = 224
    u, _ = _grid(s, device, torch.float32)
    gray = (0.2 + 0.6 * (u // 14) / (s // 14 - 1))[None, None]  # constant within each token, brighter to the right
    f = enc.features(_normalised(gray.expand(1, 3, s, s).cpu()).to(device=device, dtype=dtype))
    assert f.shape == (1, 2, 16, 16) and torch.isfinite(f).all()
    tok = gray[0, 0, ::14, ::14].float()
    assert torch.allclose(f[0, 0], 0.5 * (torch.log(tok + 0.02) + 1.5), atol=2e-3)
    assert torch.allclose(f[0, 1, :, 1:-1], f[0, 0, :, 1:-1], atol=0.02)  # a smooth ramp: the window mean is close
    assert (f[0, 0, :, 1:] > f[0, 0, :, :-1]).all()  # follows the brightness
