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


def supersample_depth(depth: np.ndarray, factor: int, max_jump_mm: float = 5.0) -> np.ndarray:
    """Upsample a depth map by an integer ``factor`` to densify its back-projected points.

    An output pixel takes the bilinear interpolation of its four nearest input pixels where all four are measured
    and differ by at most ``max_jump_mm`` (the same smooth surface); elsewhere (silhouettes, depth steps, holes) it
    takes its nearest input pixel, so no point is invented between two surfaces or inside a hole.

    Args:
        depth: (H, W) depth in mm, 0 = no measurement.
        factor: integer upsampling factor >= 1.

    Returns:
        (H * factor, W * factor) float32 depth, 0 where the nearest input pixel has no measurement.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    if int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be an integer >= 1, got {factor}")
    if factor == 1:
        return depth
    H, W = depth.shape
    y0, y1, wy = _axis_weights(H * factor, H)
    x0, x1, wx = _axis_weights(W * factor, W)
    corners = [depth[np.ix_(y, x)] for y in (y0, y1) for x in (x0, x1)]  # 4 x (H f, W f)
    stack = np.stack(corners)
    wy, wx = wy[:, None], wx[None, :]
    bil = (corners[0] * (1 - wy) * (1 - wx) + corners[1] * (1 - wy) * wx
           + corners[2] * wy * (1 - wx) + corners[3] * wy * wx)
    smooth = (stack.min(0) > 0) & (stack.max(0) - stack.min(0) <= max_jump_mm)
    nearest = np.repeat(np.repeat(depth, factor, axis=0), factor, axis=1)
    return np.where(smooth, bil, nearest).astype(np.float32)


def supersample_factor(view, voxel_size: float, max_factor: int = 8) -> int:
    """Smallest integer factor that makes a view's pixel footprint on the object at most half a voxel.

    Footprint = median measured depth / focal length (mm per pixel); at that density every voxel of the
    observed surface receives points, which a sparse low-resolution scan would leave as unobserved holes.
    """
    d = view.depth[view.depth > 0]
    if d.size == 0:
        return 1
    footprint = float(np.median(d)) / float(min(view.camera.K[0, 0], view.camera.K[1, 1]))
    return int(np.clip(np.ceil(2 * footprint / voxel_size), 1, max_factor))


def supersample_view(view, factor: int, max_jump_mm: float = 5.0):
    """The view at ``factor`` times its resolution: depth by :func:`supersample_depth`, image by pixel
    replication, camera by :meth:`Camera.scaled` (pixel centres preserved)."""
    from mv3dad.data.scene import View

    if factor == 1:
        return view
    depth = supersample_depth(view.depth, factor, max_jump_mm)
    h, w = depth.shape
    image = np.repeat(np.repeat(view.image, factor, axis=0), factor, axis=1)
    return View(image, depth, view.camera.scaled(w, h))
