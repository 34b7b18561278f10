"""Choosing the voxel grid of a volume: a given grid (e.g. the ground truth's) or the views' bounding box."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import xarray as xr

from mv3dad.data.scene import View
from mv3dad.geometry.grid import VoxelGrid


def view_lifting(view: View) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The float32 inputs of the back-projection kernels for one view.

    Returns:
        depth: (H, W) float32 C-contiguous depth (mm, 0 = none).
        kinv: (3, 3) float32 inverse intrinsics.
        c2w: (3, 4) float32 top of the camera-to-world transform.
    """
    cam = view.camera
    depth = np.ascontiguousarray(view.depth, dtype=np.float32)
    if depth.ndim != 2 or depth.shape != (cam.height, cam.width):
        raise ValueError(f"depth shape {depth.shape} does not match its camera ({cam.height}x{cam.width})")
    kinv = np.linalg.inv(cam.K).astype(np.float32)
    c2w = np.ascontiguousarray(cam.cam_to_world[:3], dtype=np.float32)
    return depth, kinv, c2w


def as_grid(grid: VoxelGrid | xr.DataArray) -> VoxelGrid:
    """A :class:`VoxelGrid` from a grid or from a volume DataArray (e.g. the ground truth)."""
    if isinstance(grid, VoxelGrid):
        return grid
    if isinstance(grid, xr.DataArray):
        return VoxelGrid.from_dataarray(grid)
    raise TypeError(f"grid must be a VoxelGrid or an xarray.DataArray, got {type(grid).__name__}")


def grid_for_views(views: Iterable[View], voxel_size: float = 2.0, margin: float | None = None) -> VoxelGrid:
    """The grid covering every back-projected pixel of ``views`` plus ``margin`` mm on each side.

    One streaming pass (Numba, CPU) over the views' depth maps: no point array is built, memory is O(one view).

    Args:
        views: the views (depth + camera).
        voxel_size: voxel edge in mm.
        margin: mm added on each side of the points' bounding box; None = two voxels.

    Returns:
        a grid with origin at ``lo - margin + voxel_size / 2``.
    """
    from mv3dad.volume.backends.numba_backend import view_bounds

    margin = 2 * voxel_size if margin is None else float(margin)
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for i, view in enumerate(views):
        try:
            depth, kinv, c2w = view_lifting(view)
        except ValueError as e:
            raise ValueError(f"view {i}: {e}") from None
        vlo, vhi = view_bounds(depth, kinv, c2w)
        lo, hi = np.minimum(lo, vlo), np.maximum(hi, vhi)
    if not np.all(np.isfinite(lo) & np.isfinite(hi)):
        raise ValueError(f"cannot choose a grid from the views: their back-projected bounds are {lo} .. {hi} "
                         "(no pixel with depth > 0, or a depth of inf); give one with grid=...")
    return VoxelGrid.from_bounds(lo, hi, voxel_size=voxel_size, margin=margin)
