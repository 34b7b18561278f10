"""Preprocessing shared by encoder training and inference: views -> square network inputs, and back.

A view of H x W pixels is padded at the bottom and right to a square of side ``max(H, W)`` and resized to
``size x size`` (a multiple of the patch size, 14). :func:`to_original` inverts this for any map on the
square grid (token maps, pixel maps), which back-projection needs.

Depth scaling (documented in ``docs/encoders.md``): invalid depth (0, NaN, inf, negative) becomes 0; the valid
depth of the *whole view* is mapped affinely so that its ``lo_percentile`` goes to ``floor`` and its
``hi_percentile`` goes to 1, then clipped to ``[floor, 1]``. The value 0 is reserved for "no measurement" and
never produced by a measured pixel. The mapping is invariant to the depth unit and to a constant offset, so
scanners and datasets with different units and working distances give comparable inputs; robust percentiles
(not min/max) keep a few flying pixels or a small defect from changing the scale of the whole view, so the same
surface seen by the same rig view in two instances maps to (almost) the same values, token by token.

Two preprocessings (``EncoderConfig.preprocess``, side by side in ``docs/encoders.md``): ``"default"`` (above;
:func:`preprocess_image`, :func:`preprocess_depth`) and ``"modmap"``, the ModMap authors' (:func:`preprocess_image_modmap`,
:func:`preprocess_depth_modmap`: grayscale, edge square-pad, bicubic resize, 3 channels, divided by the maximum,
mean 0.445 / std 0.269; depth: non-finite -> 0, edge square-pad, nearest resize, divided by the maximum). Both pad
at the bottom/right (the authors centre the view), so :class:`SquareFit` and :func:`to_original` hold for both.
Token validity never reads the network input (the ``modmap`` depth is edge-padded, so the pad would look measured):
it comes from the measured-pixel mask on the depth encoder's input grid (:func:`depth_validity_input`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MODMAP_MEAN = 0.445  # the ModMap authors' gray-image normalisation
MODMAP_STD = 0.269
PREPROCESS_MODES = ("default", "modmap")
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, as OpenCV's grayscale read


@dataclass(frozen=True)
class DepthScaling:
    """How valid depth is mapped to ``[floor, 1]`` (0 stays "no measurement").

    Attributes:
        lo_percentile: percentile of the view's valid depth mapped to ``floor``.
        hi_percentile: percentile of the view's valid depth mapped to 1.
        floor: value given to the nearest valid depth, > 0 so that it differs from "no measurement".
    """

    lo_percentile: float = 1.0
    hi_percentile: float = 99.0
    floor: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.lo_percentile < self.hi_percentile <= 100:
            raise ValueError(f"depth scaling percentiles must satisfy 0 <= lo < hi <= 100, got "
                             f"{self.lo_percentile}, {self.hi_percentile}")
        if not 0 < self.floor < 1:
            raise ValueError(f"depth scaling floor must be in (0, 1), got {self.floor}")


@dataclass(frozen=True)
class SquareFit:
    """Where an H x W view lies on the square network grid.

    Attributes:
        height: original view height H in pixels.
        width: original view width W in pixels.
        size: side of the square network input in pixels.
    """

    height: int
    width: int
    size: int

    @property
    def side(self) -> int:
        """Side of the padded square in original pixels (the view occupies its top-left H x W corner)."""
        return max(self.height, self.width)


def valid_depth(depth: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels with a measurement (finite and > 0)."""
    return np.isfinite(depth) & (depth > 0)


def clean_depth(depth: np.ndarray) -> np.ndarray:
    """(H, W) float32 copy of ``depth`` with every invalid value (NaN, inf, <= 0) set to 0."""
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    return np.where(valid_depth(depth), depth, np.float32(0)).astype(np.float32)


def scale_depth(depth: np.ndarray, scaling: DepthScaling = DepthScaling()) -> np.ndarray:
    """Map a depth map to ``[0, 1]``: invalid -> 0, valid -> ``[floor, 1]`` (see module docstring).

    Args:
        depth: (H, W) depth in any unit; 0, NaN, inf and negatives are invalid.
        scaling: the percentile mapping.

    Returns:
        (H, W) float32; 0 exactly where the input is invalid. A view whose valid depth is constant maps to
        ``floor``.
    """
    d = clean_depth(depth)
    valid = d > 0
    out = np.zeros_like(d)
    if not valid.any():
        return out
    v = d[valid].astype(np.float64)
    lo, hi = np.percentile(v, [scaling.lo_percentile, scaling.hi_percentile])
    span = max(float(hi - lo), 1e-9 * max(abs(float(hi)), 1.0))
    t = np.clip((v - lo) / span, 0.0, 1.0)
    out[valid] = scaling.floor + (1.0 - scaling.floor) * t
    return out


def pad_square(x: np.ndarray, mode: str) -> np.ndarray:
    """(H, W[, C]) -> (S, S[, C]), S = max(H, W), padded bottom/right by ``"edge"`` replication or ``"zeros"``."""
    h, w = x.shape[:2]
    s = max(h, w)
    pad = [(0, s - h), (0, s - w)] + [(0, 0)] * (x.ndim - 2)
    return np.pad(x, pad, mode="edge") if mode == "edge" else np.pad(x, pad, mode="constant")


def image_to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3) image, float in [0, 1] or uint8 -> (H, W, 3) float32 in [0, 1]."""
    img = np.asarray(image)
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    elif img.dtype == np.uint16:
        img = img.astype(np.float32) / 65535.0
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {np.shape(image)}")
    return img.astype(np.float32)


def preprocess_image(image: np.ndarray, size: int) -> torch.Tensor:
    """One image -> a normalised square network input.

    Args:
        image: (H, W) gray or (H, W, 3) RGB, float in [0, 1] (uint8 is divided by 255).
        size: output side in pixels (a multiple of the encoder's patch size).

    Returns:
        (3, size, size) float32: padded to square by edge replication (bottom/right), resized bilinearly with
        antialiasing, gray replicated to 3 channels, normalised with the ImageNet mean and std.
    """
    img = image_to_rgb(image)
    x = torch.from_numpy(np.ascontiguousarray(pad_square(img.astype(np.float32), "edge"))).permute(2, 0, 1)
    x = F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return normalize_image(x)


def normalize_image(x: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) in [0, 1] -> ImageNet-normalised."""
    mean = x.new_tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(3, 1, 1)
    return (x.clamp(0, 1) - mean) / std


def preprocess_depth(depth: np.ndarray, size: int, scaling: DepthScaling = DepthScaling()) -> torch.Tensor:
    """One depth map -> a square network input.

    Args:
        depth: (H, W) depth; 0, NaN, inf, negatives are invalid.
        size: output side in pixels.
        scaling: how valid depth is mapped to ``[floor, 1]``.

    Returns:
        (1, size, size) float32 in [0, 1]: scaled per view (:func:`scale_depth`), padded to square with zeros
        (bottom/right), resized with nearest neighbour (never mixing valid and invalid depth), 0 = invalid.
    """
    d = pad_square(scale_depth(depth, scaling), "zeros")
    return resize_nearest(torch.from_numpy(np.ascontiguousarray(d))[None], size)


def resize_nearest(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """(..., h, w) -> (..., size) by nearest neighbour (pixel-centre aligned, ``nearest-exact``)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    lead = x.shape[:-2]
    y = F.interpolate(x.reshape(1, -1, *x.shape[-2:]).float(), size=size, mode="nearest-exact")
    return y.reshape(*lead, *size).to(x.dtype)


def to_original(grid_map: torch.Tensor | np.ndarray, fit: SquareFit, mode: str = "bilinear") -> torch.Tensor:
    """Bring a map on the square network grid back to the original view.

    Args:
        grid_map: (..., h, w) map on the square grid (a token map with h = w = size/14, or a pixel map).
        fit: where the view lies on the square (:class:`SquareFit`).
        mode: ``"bilinear"`` for scores/features, ``"nearest"`` for labels and masks.

    Returns:
        (..., H, W) float32 (or the input dtype for ``nearest``): resized to the padded square in original
        pixels, then cropped to the view's top-left H x W corner.
    """
    m = torch.as_tensor(grid_map)
    if m.ndim < 2:
        raise ValueError(f"grid_map must be (..., h, w), got shape {tuple(m.shape)}")
    lead, (h, w) = m.shape[:-2], m.shape[-2:]
    s = fit.side
    flat = m.reshape(1, -1, h, w)
    if mode == "nearest":
        up = F.interpolate(flat.float(), size=(s, s), mode="nearest-exact").to(m.dtype)
    elif mode == "bilinear":
        up = F.interpolate(flat.float(), size=(s, s), mode="bilinear", align_corners=False)
    else:
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    return up[..., : fit.height, : fit.width].reshape(*lead, fit.height, fit.width)


def to_original_valid(grid_map: torch.Tensor | np.ndarray, valid: torch.Tensor | np.ndarray, fit: SquareFit,
                      mode: str = "bilinear") -> torch.Tensor:
    """Like :func:`to_original`, but only valid tokens reach pixels (normalised convolution).

    ``bilinear``: ``map * valid`` and ``valid`` are upsampled with the same bilinear kernel and divided, so a
    pixel is the bilinear average of the valid tokens around it (the four weights renormalised); invalid tokens
    (whatever their value, even NaN or inf) never contribute. ``nearest``: a pixel takes its nearest token's value
    if that token is valid. NaN where no valid token contributes (upsampled weight 0).

    Args:
        grid_map: (..., h, w) map on the square grid (a token map with h = w = size/14).
        valid: (..., h, w) or (h, w) bool (broadcast to ``grid_map``): which tokens may be used.
        fit: where the view lies on the square (:class:`SquareFit`).
        mode: ``"bilinear"`` or ``"nearest"``.

    Returns:
        (..., H, W) float32, NaN where no valid token contributes. With every token valid, ``bilinear`` equals
        :func:`to_original` (up to rounding).
    """
    m = torch.as_tensor(grid_map).float()
    v = torch.as_tensor(valid, device=m.device).bool()
    if m.ndim < 2 or v.shape[-2:] != m.shape[-2:]:
        raise ValueError(f"grid_map (..., h, w) and valid (..., h, w) must share h, w, got shapes "
                         f"{tuple(m.shape)} and {tuple(v.shape)}")
    v = v.expand_as(m)
    if mode == "nearest":
        return to_original(torch.where(v, m, torch.full_like(m, float("nan"))), fit, mode="nearest")
    if mode != "bilinear":
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    num = to_original(torch.where(v, m, torch.zeros_like(m)), fit, mode="bilinear")
    den = to_original(v.float(), fit, mode="bilinear")
    return torch.where(den > 0, num / den.clamp_min(1e-12), torch.full_like(num, float("nan")))


def token_validity(depth_input: torch.Tensor, patch_size: int, min_fraction: float = 0.5,
                   grid: int | None = None) -> torch.Tensor:
    """Which tokens see enough measured depth.

    Args:
        depth_input: (B, 1, S, S) preprocessed depth with the ``default`` preprocessing, or the measured-pixel mask
            of :func:`depth_validity_input` (any preprocessing); > 0 = measured.
        patch_size: the encoder's patch size p.
        min_fraction: a token is valid when at least this fraction of its pixels is measured.
        grid: the token grid the features end up on (None: S/p); the fraction is then taken over each of the
            grid's S/grid x S/grid cells (S must be a multiple of ``grid``).

    Returns:
        (B, S/p, S/p) bool, or (B, grid, grid).
    """
    valid = (depth_input > 0).float()
    s = valid.shape[-1]
    cell = patch_size if grid is None else s // grid
    if s % cell or (grid is not None and s != grid * cell):
        raise ValueError(f"input side {s} is not a whole number of {grid or s // patch_size} token cells")
    return F.avg_pool2d(valid, cell)[:, 0] >= min_fraction


def depth_validity_input(depth: np.ndarray, size: int) -> torch.Tensor:
    """(1, size, size) float32 mask of measured pixels laid out like the network input: 1 where the view has a
    measurement (finite and > 0), 0 elsewhere and in the bottom/right pad, resized with nearest neighbour
    (``nearest-exact``). With the ``default`` preprocessing this equals ``preprocess_depth(depth, size) > 0``."""
    m = pad_square(valid_depth(np.asarray(depth, dtype=np.float32)).astype(np.float32), "zeros")
    return resize_nearest(torch.from_numpy(np.ascontiguousarray(m))[None], size)


def image_to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3) image, float in [0, 1], uint8 or uint16 -> (H, W) float32 in [0, 1]; RGB
    is weighted with ITU-R BT.601 (0.299, 0.587, 0.114), as OpenCV's ``IMREAD_GRAYSCALE``."""
    img = np.asarray(image)
    scale = 255.0 if img.dtype == np.uint8 else (65535.0 if img.dtype == np.uint16 else 1.0)
    img = img.astype(np.float32) / np.float32(scale)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[2] == 3:
        img = img @ np.asarray(GRAY_WEIGHTS, np.float32)
    if img.ndim != 2:
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {np.shape(image)}")
    return img.astype(np.float32)


def _divide_by_max(x: torch.Tensor) -> torch.Tensor:
    m = x.max()
    return x / m if float(m) > 0 else x


def preprocess_image_modmap(image: np.ndarray, size: int) -> torch.Tensor:
    """One image -> the ModMap authors' network input (``--preprocess modmap``).

    Gray (BT.601 weights for RGB), padded to square by edge replication (bottom/right; the authors centre the view),
    resized bicubically with antialiasing (as torchvision's ``Resize(BICUBIC)`` on tensors), repeated to 3
    channels, divided by its maximum, normalised with mean 0.445 and std 0.269.

    Returns:
        (3, size, size) float32.
    """
    g = pad_square(image_to_gray(image), "edge")
    x = torch.from_numpy(np.ascontiguousarray(g))[None, None]
    x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)[0]
    x = _divide_by_max(x.repeat(3, 1, 1))
    return (x - MODMAP_MEAN) / MODMAP_STD


def preprocess_depth_modmap(depth: np.ndarray, size: int) -> torch.Tensor:
    """One depth map -> the ModMap authors' network input (``--preprocess modmap``).

    Non-finite values (inf; also NaN) and negatives -> 0, padded to square by edge replication (bottom/right), resized
    with nearest neighbour (``nearest``, as torchvision's ``NEAREST``), divided by the map's maximum. No
    percentile scaling: the input keeps the depth's affine offset (far surfaces near 1, near ones below).

    Returns:
        (1, size, size) float32 in [0, 1].
    """
    d = np.asarray(depth, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {d.shape}")
    d = np.where(np.isfinite(d) & (d > 0), d, np.float32(0))
    x = torch.from_numpy(np.ascontiguousarray(pad_square(d, "edge")))[None, None]
    x = F.interpolate(x, size=(size, size), mode="nearest")[0]
    return _divide_by_max(x)


def check_preprocess(mode: str) -> str:
    """``mode`` if it names a preprocessing, else a ValueError naming the choices."""
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"preprocess must be one of {PREPROCESS_MODES}, got {mode!r}")
    return mode
