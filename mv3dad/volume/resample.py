"""Resampling a score map to its depth map's resolution (bilinear, pixel centres preserved)."""

from __future__ import annotations

import numpy as np


def _axis_weights(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices i0, i1 and weight of i1 for each output position (half-pixel-centre convention)."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def check_aspect(map_shape: tuple[int, int], depth_shape: tuple[int, int], where: str = "score map") -> None:
    """Raise ValueError unless a (h, w) map covers the (H, W) depth image with the same aspect ratio.

    The ratios must agree to within one map pixel along each axis (``|w - h*W/H| <= 1`` and ``|h - w*H/W| <= 1``),
    which admits rounded feature-map sizes (e.g. 37x50 for 480x640) and nothing cropped or transposed.
    """
    (h, w), (H, W) = map_shape, depth_shape
    if abs(w - h * W / H) > 1 or abs(h - w * H / W) > 1:
        raise ValueError(f"{where}: shape {h}x{w} does not have the aspect ratio of the depth map {H}x{W}; "
                         "a score map must cover the whole image (resize it, do not crop or pad)")


def resize_bilinear(scores: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a (h, w) map to (height, width) float32.

    Output pixel (u, v) samples the input at ``((u + 0.5) * w / width - 0.5, (v + 0.5) * h / height - 0.5)``,
    clamped to the border (like ``torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False)``,
    without anti-aliasing when shrinking). A map already of the target size is returned as float32 unchanged.

    Args:
        scores: (h, w) float map.

    Returns:
        (height, width) float32.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (h, w), got shape {scores.shape}")
    if scores.shape == (height, width):
        return scores.astype(np.float32, copy=False)
    s = scores.astype(np.float32, copy=False)
    y0, y1, wy = _axis_weights(height, s.shape[0])
    x0, x1, wx = _axis_weights(width, s.shape[1])
    wy = wy[:, None]
    rows = s[y0] * (1 - wy) + s[y1] * wy  # (height, w)
    return rows[:, x0] * (1 - wx) + rows[:, x1] * wx
