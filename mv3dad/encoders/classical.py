"""Weight-free (classical) encoders on the ViTs' 14-px token grid: ``geometric`` (depth), ``texture`` and ``shading``
(image).

Both are deterministic functions of the preprocessed input (no weights, no seed), vectorised torch ops only. They
mimic the part of the timm ViT interface that :class:`~mv3dad.encoders.vit.Encoder` uses (like ``patch14`` in
:mod:`mv3dad.encoders.patches`), so ``build_encoder("geometric")`` / ``build_encoder("texture")`` wrap them like any
other encoder, ``pretrained`` is irrelevant and ``--random-init`` is never needed. Input (B, C_in, S, S), S a
multiple of 14; output (B, C, S/14, S/14), float32. Every channel is multiplied by a fixed constant (the same for
every view and dataset, never data dependent) so that channels have comparable ranges and Euclidean kNN on the
feature vectors is meaningful. :data:`CLASSICAL_VERSION` goes into ``weights_source`` (``classical:NAME/vVERSION``):
change it whenever a channel changes, so that caches and runs keyed on the encoder identity are invalidated.

Two spatial scales, both centred on the token: ``s = 0`` the token itself (14 x 14 px) and ``s = 1`` its 3 x 3
token neighbourhood (42 x 42 px; tokens outside the view contribute nothing). Statistics of the larger scale are
combined exactly from per-token moments (parallel-axis rule), so they equal a direct computation over the window.

``geometric`` (modality ``depth``, C_in 1, C = 16)
---------------------------------------------------
The input is the preprocessed depth of :func:`~mv3dad.encoders.preprocess.preprocess_depth`: per view, measured
depth mapped affinely to ``[0.1, 1]`` (robust percentiles), 0 = no measurement. Neither the metric scale nor the
camera intrinsics survive preprocessing, so normals are computed in the *input frame* from the depth-image
gradients: with ``z`` the scaled depth and ``u, v`` the pixel column and row, ``n = normalise(-S dz/du, -S dz/dv,
1)`` (slopes in scaled-depth units per image side S, so they do not depend on the input resolution; the view's
depth scaling is affine, so these are the camera-frame normals up to that view's depth-to-lateral scale).

Normals are taken on 2 x 2-pixel cells (7 x 7 per token; the cell mean halves the scanner's depth noise and
quantisation). A cell counts only when all 4 of its pixels are measured, so its value is the surface at the cell
centre: an unmeasured pixel (0) never enters a statistic nor shifts the point a cell stands for. Derivatives are
the mean of the forward and backward cell differences whose both cells count (one-sided where only one exists;
none: the cell has no normal), and never cross a token border; curvature uses the pairs of adjacent cells of a
token that both have a normal. The plane fit uses every measured *pixel* (float64 moments). Hence a token's
``s = 0`` channels depend on its own pixels only, every statistic is an average over measured pixels / usable cells
only, and a window without any gives 0 in all its channels.

=====  =====================================================================================================
index  channel (scale s in {0, 1}: index = 8 s + k)
=====  =====================================================================================================
8s+0   mean normal x (mean of the unit normals of the window's cells; in [-1, 1])
8s+1   mean normal y
8s+2   mean normal z (toward the camera; in (0, 1])
8s+3   normal spread: ``10 * (1 - |mean normal|)`` (0 on a plane; grows with the spread of orientations)
8s+4   curvature mean: mean over adjacent-cell pairs of ``7 * |n_a - n_b|`` (normal change per token width;
       0 on a plane)
8s+5   curvature std: standard deviation of the same ``7 * |n_a - n_b|`` over the window's pairs
8s+6   signed curvature: ``3 *`` mean over pairs of ``-7 * (n_b - n_a)`` along the pair's axis (x component for
       horizontal pairs, y for vertical ones; about minus the divergence of n): positive on a bump toward the
       camera, negative in a dent
8s+7   plane-fit residual: ``20 *`` RMS of the scaled depth minus its least-squares plane ``a + b u + c v`` over
       the window's measured pixels (0 on any plane)
=====  =====================================================================================================

``texture`` (modality ``image``, C_in 3, C = 24)
--------------------------------------------------
The input is the ImageNet-normalised RGB of :func:`~mv3dad.encoders.preprocess.preprocess_image`; it is mapped back
to ``[0, 1]`` and to luminance ``Y = 0.299 R + 0.587 G + 0.114 B``. Gradients: Sobel / 8 (derivative per pixel,
replicated border). At ``s = 0`` they are taken on the input image and pooled over the token; at ``s = 1`` on the
image 2x average-pooled (coarser structures) and pooled over the 3 x 3 token neighbourhood. Orientation histograms
have 8 unsigned orientation bins (bin k centred on ``k * 22.5`` degrees of the gradient direction, modulo 180),
each pixel votes its gradient magnitude, split linearly between its two nearest bins (no normalisation per token,
so a flat region gives 0 and contrast is kept).

=======  ===================================================================================================
index    channel (scale s in {0, 1}: index = 12 s + k)
=======  ===================================================================================================
12s+0-7  ``50 *`` mean over the window's pixels of the magnitude-weighted vote for orientation bin k (bin 0: a
         horizontal gradient, i.e. a vertical edge; bin 4: a vertical gradient)
12s+8    ``2 * (mean R - 0.5)`` (local mean colour, [-1, 1])
12s+9    ``2 * (mean G - 0.5)``
12s+10   ``2 * (mean B - 0.5)``
12s+11   local contrast: ``8 *`` standard deviation of Y over the window
=======  ===================================================================================================

``shading`` (modality ``image``, C_in 3, C = 2)
-------------------------------------------------
The low-frequency brightness only, a crossmodal target that the ``geometric`` channels can predict (the rig's lights
travel with the camera, so brightness is a function of the camera-frame normal and the albedo): from the same
luminance ``Y`` as ``texture``, channel ``s`` (scale 0 or 1) is ``0.5 * (mean of log(Y + 0.02) over the window +
1.5)``.

The gains were set once so that, on the foreground tokens of a synthetic 448-px vase sample, each channel's
standard deviation is of order 0.2-1 (e.g. geometric residual 0.6 / 1.0, texture orientation bins 0.15-0.45).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mv3dad.encoders.preprocess import GRAY_WEIGHTS, IMAGENET_MEAN, IMAGENET_STD

GEOMETRIC_ARCH = "geometric"
TEXTURE_ARCH = "texture"
SHADING_ARCH = "shading"
CLASSICAL_VERSION = "1"
PATCH = 14

# fixed per-channel scale constants (see the module docstring)
_SPREAD_GAIN, _CURV_GAIN, _HSIGN_GAIN, _RESIDUAL_GAIN = 10.0, 1.0, 3.0, 20.0
_HIST_GAIN, _MEAN_GAIN, _CONTRAST_GAIN = 50.0, 2.0, 8.0
_SHADING_GAIN, _SHADING_OFFSET = 0.5, 1.5
_N_BINS = 8
_EPS = 1e-12


# ---------------------------------------------------------------------------------------------------------------
# token-grid moments


def _token_sum(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, K, H, W) -> (B, K, H/p, W/p): sum over each p x p token."""
    b, k, h, w = x.shape
    return x.reshape(b, k, h // p, p, w // p, p).sum(dim=(3, 5))


def _to_pixels(t: torch.Tensor, p: int) -> torch.Tensor:
    """(B, K, h, w) -> (B, K, h p, w p): each token's value on its pixels."""
    b, k, h, w = t.shape
    return t[:, :, :, None, :, None].expand(b, k, h, p, w, p).reshape(b, k, h * p, w * p)


def _safe_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(b > 0, a / b.clamp_min(_EPS), torch.zeros_like(a))


def token_moments(x: torch.Tensor, w: torch.Tensor, p: int, pairs: list[tuple[int, int]]
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted per-token moments.

    Args:
        x: (B, K, H, W) variables; H, W multiples of p.
        w: (B, 1, H, W) non-negative weights (0: the pixel does not count).
        p: token side.
        pairs: (i, j) index pairs whose centred cross moment is wanted.

    Returns:
        ``W`` (B, 1, h, w) total weight, ``M`` (B, K, h, w) weighted means (0 where W = 0), ``C`` (B, len(pairs),
        h, w) centred weighted sums ``sum w (x_i - M_i)(x_j - M_j)`` (not divided by W).
    """
    wt = _token_sum(w, p)
    m = _safe_div(_token_sum(w * x, p), wt)
    d = x - _to_pixels(m, p)
    c = torch.cat([_token_sum(w * d[:, i:i + 1] * d[:, j:j + 1], p) for i, j in pairs], 1) if pairs else \
        x.new_zeros(x.shape[0], 0, *wt.shape[2:])
    return wt, m, c


def combine_neighbourhood(wt: torch.Tensor, m: torch.Tensor, c: torch.Tensor, pairs: list[tuple[int, int]],
                          r: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Moments of :func:`token_moments` over each token's (2r+1) x (2r+1) token neighbourhood.

    Exact (the parallel-axis rule: ``C = sum_n C_n + W_n (M_n - M)(M_n - M)^T``); tokens outside the grid
    contribute nothing. Same outputs as :func:`token_moments`.
    """
    if r == 0:
        return wt, m, c
    k = m.shape[1]
    h, w = wt.shape[2:]
    packed = F.pad(torch.cat([wt, m, c], 1), (r, r, r, r))
    parts = []
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            s = packed[:, :, dy:dy + h, dx:dx + w]
            parts.append((s[:, :1], s[:, 1:1 + k], s[:, 1 + k:]))
    wt_all = sum(wn for wn, _, _ in parts)
    m_all = _safe_div(sum(wn * mn for wn, mn, _ in parts), wt_all)
    c_all = []
    for q, (i, j) in enumerate(pairs):
        dev = [(mn[:, i:i + 1] - m_all[:, i:i + 1], mn[:, j:j + 1] - m_all[:, j:j + 1]) for _, mn, _ in parts]
        c_all.append(sum(cn[:, q:q + 1] + wn * di * dj for (wn, _, cn), (di, dj) in zip(parts, dev)))
    return wt_all, m_all, torch.cat(c_all, 1) if c_all else c


# ---------------------------------------------------------------------------------------------------------------
# token-local pixel operations (on token blocks (N, q, q): nothing crosses a token border)


def _pad_last(x: torch.Tensor, dim: int, before: int, after: int) -> torch.Tensor:
    """Zero-pad along ``dim`` (-1 or -2)."""
    return F.pad(x, (before, after) if dim == -1 else (0, 0, before, after))


def _deriv(f: torch.Tensor, m: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Derivative of token blocks ``f`` (..., q, q) along ``dim`` using only cells where ``m`` (bool, same shape).

    The mean of the forward and backward differences whose both ends are valid (one-sided where only one exists).
    Returns the derivative (0 where undefined) and where it is defined.
    """
    n = f.shape[dim]
    ok = m.narrow(dim, 1, n - 1) & m.narrow(dim, 0, n - 1)
    okf = ok.to(f.dtype)
    d = (f.narrow(dim, 1, n - 1) - f.narrow(dim, 0, n - 1)) * okf
    num = _pad_last(d, dim, 0, 1) + _pad_last(d, dim, 1, 0)
    cnt = _pad_last(okf, dim, 0, 1) + _pad_last(okf, dim, 1, 0)
    return num / cnt.clamp_min(1.0), cnt > 0


def _box3_sum(t: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w) -> sum over each token's 3 x 3 token neighbourhood (zero outside the grid)."""
    return F.avg_pool2d(t, 3, stride=1, padding=1, count_include_pad=True) * 9.0


def _plane_residual(sums: torch.Tensor) -> torch.Tensor:
    """RMS residual of the least-squares plane from raw float64 sums (..., 10) =
    (w, u, v, uu, uv, vv, z, uz, vz, zz); 0 where there is no pixel."""
    sw, su, sv, suu, suv, svv, sz, suz, svz, szz = sums.unbind(-1)
    inv = torch.where(sw > 0, 1.0 / sw.clamp_min(1e-300), torch.zeros_like(sw))
    cuu, cuv, cvv = suu - su * su * inv, suv - su * sv * inv, svv - sv * sv * inv
    cuz, cvz, czz = suz - su * sz * inv, svz - sv * sz * inv, szz - sz * sz * inv
    lam = 1e-10 * sw  # a tiny ridge: pixels on a line or a single pixel still give a (zero) residual
    a, d = cuu + lam, cvv + lam
    det = (a * d - cuv * cuv).clamp_min(1e-300)
    bu = (d * cuz - cuv * cvz) / det
    bv = (a * cvz - cuv * cuz) / det
    ssr = (czz - bu * cuz - bv * cvz).clamp_min(0)
    return (ssr * inv).sqrt()


def _shift_plane_sums(sums: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """Raw plane sums (B, 10, h, w) with coordinates moved by (dx, dy) token units (u' = u + dx, v' = v + dy)."""
    sw, su, sv, suu, suv, svv, sz, suz, svz, szz = sums.unbind(1)
    return torch.stack([sw, su + dx * sw, sv + dy * sw, suu + 2 * dx * su + dx * dx * sw,
                        suv + dx * sv + dy * su + dx * dy * sw, svv + 2 * dy * sv + dy * dy * sw,
                        sz, suz + dx * sz, svz + dy * sz, szz], 1)


# ---------------------------------------------------------------------------------------------------------------
# the timm-like modules


class _Proj:
    def __init__(self, in_chans: int) -> None:
        self.in_channels = in_chans


class _PatchEmbedStub(nn.Module):
    def __init__(self, in_chans: int, patch: int) -> None:
        super().__init__()
        self.proj = _Proj(in_chans)
        self.patch_size = (patch, patch)


class ClassicalTokens(nn.Module):
    """Base of the weight-free encoders: the part of the timm ViT interface that ``Encoder`` uses.

    Attributes:
        patch_embed: ``patch_embed.proj.in_channels`` and ``patch_embed.patch_size`` (14).
        blocks: one identity block (the features are "block 1").
        embed_dim: number of output channels.
        modality: ``"image"`` or ``"depth"``.
        arch: registry name.
    """

    num_prefix_tokens = 0
    modality = "image"
    arch = ""
    in_chans = 3
    embed_dim = 0

    def __init__(self) -> None:
        super().__init__()
        self.patch_embed = _PatchEmbedStub(self.in_chans, PATCH)
        self.blocks = nn.ModuleList([nn.Identity()])
        # no weights; an empty parameter only tells ``Encoder`` which device the module lives on
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)
        self.requires_grad_(False)

    @property
    def version(self) -> str:
        return f"classical:{self.arch}/v{CLASSICAL_VERSION}"

    def tokens(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_chans or x.shape[2] % PATCH or x.shape[3] % PATCH:
            raise ValueError(f"{self.arch} expects (B, {self.in_chans}, H, W) with H, W multiples of {PATCH}, "
                             f"got {tuple(x.shape)}")
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.tokens(x.float())

    def forward_intermediates(self, x: torch.Tensor, indices=None, norm: bool = True, output_fmt: str = "NCHW",
                              intermediates_only: bool = True) -> list[torch.Tensor]:
        """The timm call :class:`Encoder` makes; returns ``[features]`` in NCHW."""
        if output_fmt != "NCHW" or not intermediates_only:
            raise ValueError(f"{type(self).__name__} supports output_fmt='NCHW' with intermediates_only=True only")
        return [self(x)]


class GeometricTokens(ClassicalTokens):
    """Depth (B, 1, S, S), 0 = unmeasured -> (B, 16, S/14, S/14) geometric descriptors (module docstring)."""

    modality = "depth"
    arch = GEOMETRIC_ARCH
    in_chans = 1
    embed_dim = 16
    cell = 2  # normals and curvature on 2 x 2-pixel cells (masked means): 7 x 7 cells per token

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        p, c = PATCH, self.cell
        q = p // c
        b, _, hh, ww = x.shape
        h, w = hh // p, ww // p
        n_tok = b * h * w
        # token blocks, one row per token: (N, p * p)
        zt = x.reshape(b, h, p, w, p).permute(0, 1, 3, 2, 4).reshape(n_tok, p * p)
        valid = zt > 0

        # plane fit over the measured pixels: raw float64 moments by one matmul per group
        coord = (torch.arange(p, device=x.device, dtype=torch.float64) + 0.5) / p - 0.5  # token units
        cu, cv = coord.repeat(p), coord.repeat_interleave(p)
        mono_w = torch.stack([torch.ones_like(cu), cu, cv, cu * cu, cu * cv, cv * cv], 1)  # (p*p, 6)
        z64 = zt.double()
        plane = torch.cat([valid.double() @ mono_w, z64 @ mono_w[:, :3], (z64 * z64).sum(1, keepdim=True)], 1)
        plane = plane.reshape(b, h, w, 10).permute(0, 3, 1, 2)

        # cells: 2 x 2 means, a cell counts only when all its pixels are measured (so its value is the surface at
        # the cell centre: an unmeasured pixel never enters, nor shifts the point a cell stands for)
        zc = _cell_sum(zt.reshape(n_tok, q, c, q, c)) / (c * c)
        cok = _cell_sum(valid.to(x.dtype).reshape(n_tok, q, c, q, c)) == c * c
        zc = zc * cok
        gain = float(max(hh, ww)) / c  # slope in scaled depth per image side
        gu, ou = _deriv(zc, cok, -1)
        gv, ov = _deriv(zc, cok, -2)
        nok = ou & ov
        inv = torch.rsqrt(1.0 + gain * gain * (gu * gu + gv * gv)) * nok
        nx, ny = -gain * gu * inv, -gain * gv * inv
        nsum = torch.stack([nok.sum(dim=(1, 2)), nx.sum(dim=(1, 2)), ny.sum(dim=(1, 2)), inv.sum(dim=(1, 2))], 1)

        # curvature: normal change between neighbouring cells (pairs of cells that both have a normal)
        ksum = []
        for dim, comp in ((-1, nx), (-2, ny)):
            n = q
            ok = (nok.narrow(dim, 1, n - 1) & nok.narrow(dim, 0, n - 1)).to(x.dtype)
            dn = [t.narrow(dim, 1, n - 1) - t.narrow(dim, 0, n - 1) for t in (nx, ny, inv)]
            kap = q * (dn[0] * dn[0] + dn[1] * dn[1] + dn[2] * dn[2]).sqrt() * ok
            hsg = -q * (comp.narrow(dim, 1, n - 1) - comp.narrow(dim, 0, n - 1)) * ok
            ksum.append(torch.stack([ok.sum(dim=(1, 2)), kap.sum(dim=(1, 2)), (kap * kap).sum(dim=(1, 2)),
                                     hsg.sum(dim=(1, 2))], 1))
        sums = torch.cat([nsum, ksum[0] + ksum[1]], 1).reshape(b, h, w, 8).permute(0, 3, 1, 2)

        out = []
        for r in (0, 1):
            if r == 0:
                s32, pl = sums, plane
            else:
                s32 = _box3_sum(sums)
                padded = F.pad(plane, (1, 1, 1, 1))
                pl = sum(_shift_plane_sums(padded[:, :, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w], dx, dy)
                         for dy in (-1, 0, 1) for dx in (-1, 0, 1))
            wn, nmean = s32[:, :1], _safe_div(s32[:, 1:4], s32[:, :1])
            spread = (1.0 - nmean.norm(dim=1, keepdim=True)).clamp_min(0) * (wn > 0)
            wk = s32[:, 4:5]
            kmean, k2, hmean = _safe_div(s32[:, 5:6], wk), _safe_div(s32[:, 6:7], wk), _safe_div(s32[:, 7:8], wk)
            kstd = (k2 - kmean * kmean).clamp_min(0).sqrt()
            resid = _plane_residual(pl.permute(0, 2, 3, 1)).unsqueeze(1).to(x.dtype)
            out += [nmean, _SPREAD_GAIN * spread, _CURV_GAIN * kmean, _CURV_GAIN * kstd, _HSIGN_GAIN * hmean,
                    _RESIDUAL_GAIN * resid]
        return torch.cat(out, 1)


def _cell_sum(t: torch.Tensor) -> torch.Tensor:
    """(N, q, c, q, c) -> (N, q, q) sums over the c x c cells (strided adds: faster than a multi-dim sum)."""
    c = t.shape[2]
    return sum(t[:, :, i, :, j] for i in range(c) for j in range(c))


def _sobel(gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, H, W) -> d/du, d/dv by Sobel / 8 with a replicated border (separable slicing, no convolution)."""
    g = F.pad(gray, (1, 1, 1, 1), mode="replicate")
    du = g[..., :, 2:] - g[..., :, :-2]  # (H + 2, W)
    dv = g[..., 2:, :] - g[..., :-2, :]  # (H, W + 2)
    gx = (du[..., :-2, :] + du[..., 2:, :] + 2 * du[..., 1:-1, :]) * 0.125
    gy = (dv[..., :, :-2] + dv[..., :, 2:] + 2 * dv[..., :, 1:-1]) * 0.125
    return gx, gy


def token_orientation_histogram(gray: torch.Tensor, p: int, n_bins: int = _N_BINS) -> torch.Tensor:
    """(B, 1, H, W) -> (B, n_bins, H/p, W/p): per token, the mean over its pixels of the gradient magnitude split
    linearly between the pixel's two nearest unsigned orientation bins (bin k centred on ``k * 180 / n_bins``
    degrees)."""
    gx, gy = _sobel(gray)
    b, _, hh, ww = gray.shape
    h, w = hh // p, ww // p
    mag = torch.sqrt(gx * gx + gy * gy).reshape(b, -1)
    pos = torch.atan2(gy, gx).reshape(b, -1) * (n_bins / math.pi)  # (-n_bins, n_bins]
    pos = pos + (pos < 0).to(pos.dtype) * n_bins  # unsigned orientation: [0, n_bins]
    lo = pos.floor()
    w_hi = mag * (pos - lo)
    # n_bins + 2 slots per token so that no modulo is needed per pixel: slots n_bins, n_bins + 1 wrap to 0, 1
    slots = n_bins + 2
    rows = torch.arange(hh, device=gray.device) // p
    cols = torch.arange(ww, device=gray.device) // p
    tok = (rows[:, None] * w + cols[None, :]).reshape(1, -1)
    idx = (torch.arange(b, device=gray.device)[:, None] * (h * w) + tok) * slots + lo.long()
    size = b * h * w * slots
    hist = torch.bincount(idx.reshape(-1), (mag - w_hi).reshape(-1), minlength=size)
    hist = hist + torch.bincount((idx + 1).reshape(-1), w_hi.reshape(-1), minlength=size)
    hist = hist.reshape(b, h, w, slots)
    hist = torch.cat([hist[..., :2] + hist[..., n_bins:], hist[..., 2:n_bins]], -1)
    return hist.to(gray.dtype).permute(0, 3, 1, 2) / (p * p)


def _luminance(x: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised RGB (B, 3, S, S) -> (B, 1, S, S) luminance of the un-normalised image in [0, 1] (one 1 x 1
    convolution)."""
    mean, std, lum = x.new_tensor(IMAGENET_MEAN), x.new_tensor(IMAGENET_STD), x.new_tensor(GRAY_WEIGHTS)
    return F.conv2d(x, (std * lum).view(1, 3, 1, 1), (mean * lum).sum().view(1)).clamp(0, 1)


class TextureTokens(ClassicalTokens):
    """ImageNet-normalised RGB (B, 3, S, S) -> (B, 24, S/14, S/14) texture descriptors (module docstring)."""

    modality = "image"
    arch = TEXTURE_ARCH
    in_chans = 3
    embed_dim = 24

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        p = PATCH
        mean, std = x.new_tensor(IMAGENET_MEAN), x.new_tensor(IMAGENET_STD)
        gray = _luminance(x)
        # scale 0: full-resolution gradients per token; scale 1: half resolution, 3 x 3 token neighbourhood
        h0 = token_orientation_histogram(gray, p)
        h1 = _box3_sum(token_orientation_histogram(F.avg_pool2d(gray, 2), p // 2))
        n1 = _box3_sum(torch.ones_like(h1[:, :1]))
        h1 = h1 / n1
        # local mean colour and contrast (centred moments, combined exactly over the neighbourhood)
        rgb = (_token_sum(x, p) / (p * p) * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)).clamp(0, 1)
        mom = token_moments(gray, torch.ones_like(gray), p, [(0, 0)])
        out = []
        for r, hist in ((0, h0), (1, h1)):
            wt, _, cg = combine_neighbourhood(*mom, [(0, 0)], r)
            contrast = _safe_div(cg, wt).clamp_min(0).sqrt()
            col = rgb if r == 0 else _box3_sum(rgb) / n1
            out += [_HIST_GAIN * hist, _MEAN_GAIN * (col - 0.5), _CONTRAST_GAIN * contrast]
        return torch.cat(out, 1)


class ShadingTokens(ClassicalTokens):
    """ImageNet-normalised RGB (B, 3, S, S) -> (B, 2, S/14, S/14): the low-frequency shading (module docstring).

    A crossmodal target that geometry can predict: under lights that travel with the camera, a surface's
    brightness is a function of its camera-frame normal (the ``geometric`` channels) and its albedo, so a
    depth -> image mapper can learn it and a changed albedo (a stain) leaves a residual.
    """

    modality = "image"
    arch = SHADING_ARCH
    in_chans = 3
    embed_dim = 2

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        p = PATCH
        m0 = _token_sum(torch.log(_luminance(x) + 0.02), p) / (p * p)
        m1 = _box3_sum(m0) / _box3_sum(torch.ones_like(m0))
        return torch.cat([_SHADING_GAIN * (m0 + _SHADING_OFFSET), _SHADING_GAIN * (m1 + _SHADING_OFFSET)], 1)


CLASSICAL_ENCODERS: dict[str, type[ClassicalTokens]] = {GEOMETRIC_ARCH: GeometricTokens, TEXTURE_ARCH: TextureTokens,
                                                        SHADING_ARCH: ShadingTokens}

__all__ = ["CLASSICAL_ENCODERS", "CLASSICAL_VERSION", "ClassicalTokens", "GEOMETRIC_ARCH", "GeometricTokens",
           "SHADING_ARCH", "ShadingTokens", "TEXTURE_ARCH", "TextureTokens", "combine_neighbourhood", "token_moments",
           "token_orientation_histogram"]
