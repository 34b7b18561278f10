"""Acquisition artefacts of a structured-light scanner, different in every view.

From a clean rendering (:class:`mv3dad.synth.render.RenderOut`) to what the scanner delivers:

- image: exposure, blooming and saturation of specular highlights (lights travel with the camera, so the
  saturated patches move between views), read and shot noise;
- depth: missing measurements at grazing angles (|n . v| small), on saturated highlights of shiny materials,
  on very dark spots, in random ragged blobs and along part of the silhouette; depth noise growing with the
  square of the distance; quantisation.

``clean_view`` gives the artefact-free rendering used for a synth2real training instance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np
from scipy import ndimage

from mv3dad.synth.render import RenderOut

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) -> (...) Rec. 601 luma (element-wise, no BLAS call)."""
    return rgb[..., 0] * LUMA[0] + rgb[..., 1] * LUMA[1] + rgb[..., 2] * LUMA[2]


@dataclass
class ArtefactConfig:
    """Strength of the simulated acquisition artefacts (set a field to 0 to switch that artefact off).

    Attributes:
        exposure: gain from rendered radiance to image intensity (1 = nominal).
        bloom_sigma: Gaussian blur (fraction of the image width) of the radiance above saturation, added back as
            a halo around highlights.
        grazing_cos: depth is lost where the cosine between surface normal and viewing direction is below this
            (jittered in space by ``grazing_jitter``).
        grazing_jitter: amplitude of the smooth spatial jitter of ``grazing_cos``.
        spec_hole: depth is lost on highlights whose specular radiance exceeds this, with the material's
            ``spec_dropout`` probability (a smooth random field decides where).
        dark_hole: depth is lost where the (noise-free) image intensity is below this (too little signal).
        blobs: mean number of random ragged missing-depth blobs per view.
        blob_radius: mean blob radius as a fraction of the image width.
        edge_dropout: probability that a silhouette pixel (next to background or to a depth discontinuity) loses
            its depth (flying pixels removed).
        depth_noise_mm: standard deviation of the depth noise at 1000 mm; it grows with depth squared.
        depth_quant_mm: depth quantisation step (0 = none).
        image_noise: standard deviation of the image read noise (intensity units); shot noise is ``image_noise``
            times the square root of the intensity.
    """

    exposure: float = 1.0
    bloom_sigma: float = 0.006
    grazing_cos: float = 0.12
    grazing_jitter: float = 0.1
    spec_hole: float = 0.45
    dark_hole: float = 0.03
    blobs: float = 1.5
    blob_radius: float = 0.012
    edge_dropout: float = 0.5
    depth_noise_mm: float = 0.15
    depth_quant_mm: float = 0.05
    image_noise: float = 0.01

    @staticmethod
    def none() -> "ArtefactConfig":
        """A configuration without any artefact or noise."""
        return ArtefactConfig(bloom_sigma=0, grazing_cos=0, grazing_jitter=0, spec_hole=0, dark_hole=0, blobs=0,
                              edge_dropout=0, depth_noise_mm=0, depth_quant_mm=0, image_noise=0)


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """(H, W) float32 smooth random field in [0, 1] varying over about ``cells`` cells across the image
    (bilinear interpolation of a random lattice)."""
    g = rng.random((cells + 2, cells + 2)).astype(np.float32)
    iy, ty = _lerp_index(shape[0], cells + 2)
    ix, tx = _lerp_index(shape[1], cells + 2)
    rows = g[iy] * (1 - ty)[:, None] + g[iy + 1] * ty[:, None]  # (H, cells + 2)
    return rows[:, ix] * (1 - tx) + rows[:, ix + 1] * tx


def _lerp_index(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower lattice index and weight of n samples spanning m lattice values."""
    x = np.linspace(0, m - 1, n)
    i = np.minimum(np.floor(x).astype(np.int64), m - 2)
    return i, (x - i).astype(np.float32)


def image_from(render: RenderOut, rgb: bool, cfg: ArtefactConfig, rng: np.random.Generator | None) -> np.ndarray:
    """Scanner image: exposure, highlight blooming, noise, saturation. ``rng`` None: noise-free and without
    saturation (a soft shoulder keeps highlights below 1).

    Returns:
        (H, W) or (H, W, 3) float32 in [0, 1].
    """
    rad = render.color * np.float32(cfg.exposure)
    if not rgb:
        rad = luminance(rad)
    if rng is None:
        knee = np.float32(0.8)
        over = np.maximum(rad - knee, 0)
        return np.where(rad > knee, knee + 0.2 * (1 - np.exp(-over / 0.2)), rad).astype(np.float32)
    if cfg.bloom_sigma > 0:
        rad = _bloom(rad, cfg.bloom_sigma * rad.shape[1])
    if cfg.image_noise > 0:
        std = cfg.image_noise * np.sqrt(0.25 + np.clip(rad, 0, 1))
        rad = rad + std * rng.standard_normal(rad.shape, dtype=np.float32)
    return np.clip(rad, 0, 1).astype(np.float32)


def _bloom(rad: np.ndarray, sigma: float) -> np.ndarray:
    """Add a Gaussian halo (``sigma`` px) of the radiance above 1, computed around the saturated pixels only."""
    over = rad > 1.0 if rad.ndim == 2 else np.any(rad > 1.0, axis=2)
    if not over.any():
        return rad
    ys, xs = np.nonzero(over)
    pad = int(np.ceil(4 * sigma)) + 1
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, rad.shape[0])
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, rad.shape[1])
    box = rad[y0:y1, x0:x1]
    sig = (sigma, sigma, 0) if rad.ndim == 3 else sigma
    out = rad.copy()
    out[y0:y1, x0:x1] = box + 0.6 * ndimage.gaussian_filter(np.maximum(box - 1.0, 0), sig, mode="constant")
    return out


def depth_from(render: RenderOut, spec_dropout: np.ndarray, cfg: ArtefactConfig,
               rng: np.random.Generator | None) -> np.ndarray:
    """Scanner depth with missing measurements, noise and quantisation; ``rng`` None: the exact depth.

    Args:
        render: the clean rendering.
        spec_dropout: (M,) per material index, the chance that a saturated highlight loses depth.

    Returns:
        (H, W) float32 depth in mm, 0 = no measurement.
    """
    depth = render.depth
    if rng is None:
        return depth.copy()
    shape = depth.shape
    hit = depth > 0
    idx = np.flatnonzero(hit)
    gray = luminance(render.color) * np.float32(cfg.exposure)  # noise-free signal level decides dark holes
    # the random draws are the same whatever the settings and whatever the surface (one draw per pixel, blob
    # centres from fixed candidate pixels): an anomalous instance and its nominal twin (same split and index)
    # get identical artefacts away from the defects
    graz = smooth_field(rng, shape, 12)
    specf = smooth_field(rng, shape, 24)
    uni = rng.random(shape, dtype=np.float32).ravel()[idx]
    gauss = rng.standard_normal(shape, dtype=np.float32).ravel()[idx]
    blobs = _blobs(rng, hit, cfg.blobs, cfg.blob_radius * shape[1])  # last: its draws depend on the surface
    chance = np.asarray(spec_dropout, np.float32)
    return _scan_depth(depth, idx, render.cos_view, render.specular, render.material, gray.astype(np.float32),
                       graz, specf, chance, blobs, uni, gauss, np.float32(cfg.grazing_cos),
                       np.float32(cfg.grazing_jitter), np.float32(cfg.spec_hole), np.float32(cfg.dark_hole),
                       np.float32(cfg.edge_dropout), np.float32(cfg.depth_noise_mm), np.float32(cfg.depth_quant_mm),
                       np.float32(SILHOUETTE_JUMP_MM))


SILHOUETTE_JUMP_MM = 10.0


@nb.njit(cache=True, error_model="numpy")
def _scan_depth(depth, idx, cosv, spec, mat, gray, graz, specf, chance, blobs, uni, gauss, graz_cos, graz_jit,
                spec_hole, dark_hole, edge_dropout, noise, quant, jump):  # pragma: no cover - compiled
    h, w = depth.shape
    out = np.zeros_like(depth)
    for k in range(idx.shape[0]):
        y, x = idx[k] // w, idx[k] % w
        d = depth[y, x]
        if graz_cos > 0 and cosv[y, x] < graz_cos + graz_jit * (graz[y, x] - 0.5):
            continue
        if spec_hole > 0 and spec[y, x] > spec_hole and specf[y, x] < chance[max(mat[y, x], 0)]:
            continue
        if dark_hole > 0 and gray[y, x] < dark_hole:
            continue
        if blobs[y, x]:
            continue
        if edge_dropout > 0 and uni[k] < edge_dropout and 0 < y < h - 1 and 0 < x < w - 1:
            # a silhouette: a neighbour without surface, or a depth jump that a slanted surface does not explain
            a, b, c, e = depth[y - 1, x], depth[y + 1, x], depth[y, x - 1], depth[y, x + 1]
            if min(a, b, c, e) <= 0 or abs(a + b - 2 * d) > jump or abs(c + e - 2 * d) > jump:
                continue
        z = d + noise * (d / 1000.0) ** 2 * gauss[k]
        if quant > 0:
            z = np.float32(np.round(z / quant) * quant)
        out[y, x] = max(z, np.float32(1e-3))
    return out


def _blobs(rng: np.random.Generator, hit: np.ndarray, mean: float, radius_px: float) -> np.ndarray:
    """Ragged blobs centred on random hit pixels (count ~ Poisson(mean)).

    The centres are the first hit pixels among 256 uniformly drawn candidates, so the blobs depend on the surface
    only at those candidates (not on how many pixels it covers).
    """
    out = np.zeros(hit.shape, bool)
    n = int(rng.poisson(mean))
    cand = rng.integers(0, hit.size, 256)
    radii = rng.uniform(0.4, 1.6, 256)
    flat = hit.ravel()
    ys, xs = np.divmod(cand, hit.shape[1])
    k = 0
    for j in range(256):
        if k == n:
            break
        if not flat[cand[j]]:
            smooth_field(rng, (1, 1), 4)  # this candidate's outline draws, unused (keeps the stream aligned)
            continue
        k += 1
        r = max(radius_px * radii[j], 1.0)
        h = int(np.ceil(2 * r))
        y0, y1 = max(ys[j] - h, 0), min(ys[j] + h + 1, hit.shape[0])
        x0, x1 = max(xs[j] - h, 0), min(xs[j] + h + 1, hit.shape[1])
        yy, xx = np.mgrid[y0:y1, x0:x1]
        d = np.hypot(yy - ys[j], xx - xs[j]) / r
        rough = smooth_field(rng, d.shape, 4)
        out[y0:y1, x0:x1] |= d + 0.8 * (rough - 0.5) < 1.0
    return out


def scanner_view(render: RenderOut, rgb: bool, spec_dropout: np.ndarray, cfg: ArtefactConfig,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(image, depth) as the scanner delivers them, with this view's own random artefacts."""
    image = image_from(render, rgb, cfg, rng)
    return image, depth_from(render, spec_dropout, cfg, rng)


def clean_view(render: RenderOut, rgb: bool, cfg: ArtefactConfig) -> tuple[np.ndarray, np.ndarray]:
    """(image, depth) without artefacts or noise (synth2real training data)."""
    return image_from(render, rgb, cfg, None), depth_from(render, np.zeros(1), cfg, None)
