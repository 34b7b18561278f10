"""Aggregating per-view score maps into a 3D anomaly volume (ModMap Sec. 3.2.4: max over pixels, views, modalities).

Every pixel with depth > 0 is lifted to world coordinates and its score goes to the voxel that contains it;
voxels keep the max (or, for ablations, the mean) of the scores they receive. Voxels that receive none are
*unobserved* and come out as NaN, distinct from a score of 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from mv3dad.data.scene import View
from mv3dad.errors import GridTooLargeError
from mv3dad.geometry.grid import VoxelGrid
from mv3dad.volume.backends import create_backend, resolve_backend
from mv3dad.volume.grid_for import as_grid, grid_for_views, view_lifting
from mv3dad.volume.resample import check_aspect, resize_bilinear

REDUCTIONS = ("max", "mean")
DEFAULT_MAX_BYTES = 4 * 2**30


def required_bytes(grid: VoxelGrid, reduce: str = "max") -> int:
    """Bytes a :class:`VolumeAccumulator` allocates for ``grid``: its state plus the float32 result.

    max: float32 running max (4 B/voxel); mean: float32 sum + int32 count (8 B/voxel); plus 4 B/voxel for the
    NaN-marked float32 array that :meth:`VolumeAccumulator.result` returns.
    """
    state = {"max": 4, "mean": 8}[reduce]
    return grid.size * (state + 4)


def _finite_float32(scores, where: str) -> np.ndarray:
    """Check a score map is a finite real 2D array; return it as float32 with -0.0 turned into +0.0."""
    a = np.asarray(scores)
    if a.ndim != 2:
        raise ValueError(f"{where}: a score map must be (h, w), got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{where}: scores must be real numbers, got dtype {a.dtype}")
    bad = ~np.isfinite(a)
    if bad.any():
        v, u = np.argwhere(bad)[0]
        raise ValueError(f"{where}: scores hold {int(bad.sum())} NaN/inf values (first at row {v}, column {u})")
    return a.astype(np.float32, copy=False)


class VolumeAccumulator:
    """A streaming score volume: add one view's map at a time; memory O(grid + one view).

    Args:
        grid: the voxel grid (a :class:`VoxelGrid`, or a volume DataArray such as the ground truth, whose grid
            is used).
        reduce: ``"max"`` (the method's aggregation) or ``"mean"`` (ablation: float32 sum / count).
        backend: ``"auto"`` (CuPy when CUDA is usable, else Numba), ``"numba"``, ``"cupy"`` or ``"torch"``.
        max_bytes: refuse grids whose :func:`required_bytes` exceed this, before allocating anything.
        name: the score's name, used as the result's DataArray name.

    Raises:
        GridTooLargeError: the grid needs more than ``max_bytes``.
        ValueError: unknown ``reduce`` or ``backend``.
        RuntimeError: ``backend="cupy"`` without cupy or without a CUDA device.
    """

    def __init__(self, grid: VoxelGrid | xr.DataArray, reduce: str = "max", backend: str = "auto",
                 max_bytes: int = DEFAULT_MAX_BYTES, name: str = "anomaly") -> None:
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
        self.grid = as_grid(grid)
        need = required_bytes(self.grid, reduce)
        if need > max_bytes:
            X, Y, Z = self.grid.shape
            raise GridTooLargeError(
                f"a {X}x{Y}x{Z} grid at {self.grid.voxel_size:g} mm with reduce={reduce!r} needs {need} bytes "
                f"({need / 2**30:.2f} GiB), more than max_bytes={max_bytes} ({max_bytes / 2**30:.2f} GiB); "
                "use a larger voxel size, a smaller region, or raise max_bytes")
        self.reduce = reduce
        self.name = name
        self.backend = resolve_backend(backend)
        self._impl = create_backend(self.backend, self.grid, reduce)
        self.n_maps = 0
        self.n_points = 0

    def add(self, score_map, view: View, where: str | None = None) -> int:
        """Back-project one view's score map.

        Args:
            score_map: (h, w) scores, any real dtype; resampled bilinearly to the depth map's (H, W) when the
                sizes differ (same aspect ratio required, see :func:`mv3dad.volume.resample.check_aspect`).
            view: the view whose depth and camera place the pixels.
            where: name used in error messages (default ``"map <n>"``, n counting from 0).

        Returns:
            the number of pixels that landed inside the grid.
        """
        where = where or f"map {self.n_maps}"
        try:
            depth, kinv, c2w = view_lifting(view)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        scores = _finite_float32(score_map, where)
        check_aspect(scores.shape, depth.shape, where)
        scores = np.ascontiguousarray(resize_bilinear(scores, *depth.shape))
        landed = self._impl.add_view(depth, scores, kinv, c2w)
        self.n_maps += 1
        self.n_points += landed
        return landed

    def add_points(self, points, scores) -> int:
        """Add scores at world points (mm), e.g. from a point cloud.

        Args:
            points: (P, 3) world coordinates in mm (converted to float32, like the lifted pixels).
            scores: (P,) finite scores.

        Returns:
            the number of points that landed inside the grid.
        """
        pts = np.ascontiguousarray(points, dtype=np.float32)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(f"points must be (P, 3), got shape {pts.shape}")
        s = _finite_float32(np.asarray(scores).reshape(1, -1), "points' scores")[0]
        if s.shape[0] != pts.shape[0]:
            raise ValueError(f"got {pts.shape[0]} points but {s.shape[0]} scores")
        landed = self._impl.add_points(pts, np.ascontiguousarray(s))
        self.n_points += landed
        return landed

    @property
    def observed(self) -> np.ndarray:
        """(X, Y, Z) bool, the voxels that received at least one score."""
        return self._impl.observed().reshape(self.grid.shape)

    def result(self) -> xr.DataArray:
        """The float32 volume (dims x, y, z; coords in mm); NaN marks unobserved voxels."""
        values = self._impl.values().reshape(self.grid.shape)
        return self.grid.to_dataarray(values, name=self.name, score_name=self.name, reduce=self.reduce,
                                      n_maps=self.n_maps, n_points=self.n_points)


def _modalities(m, where: str) -> list:
    """A view's entry of ``maps``: one (h, w) map or several (a (M, h, w) array or a sequence of (h, w) maps)."""
    if isinstance(m, np.ndarray) or hasattr(m, "__array__"):
        a = np.asarray(m)
        if a.ndim == 3:
            return list(a)
        return [a]
    if isinstance(m, Sequence) and not isinstance(m, str):
        return list(m)
    raise ValueError(f"{where}: expected an (h, w) or (M, h, w) score array, got {type(m).__name__}")


def backproject(maps: Sequence, views: Sequence[View], grid: VoxelGrid | xr.DataArray | None = None,
                voxel_size: float = 2.0, margin: float | None = None, reduce: str = "max",
                backend: str = "auto", max_bytes: int = DEFAULT_MAX_BYTES, name: str = "anomaly") -> xr.DataArray:
    """Aggregate per-view score maps into one volume (one call of :class:`VolumeAccumulator` per map).

    Args:
        maps: one entry per view: an (h, w) map, or several maps of that view (e.g. image and depth modality)
            as an (M, h, w) array or a list; all are aggregated together.
        views: the views, aligned with ``maps``.
        grid: the volume's grid (a :class:`VoxelGrid` or a DataArray such as the ground truth); None = the
            bounding box of the back-projected pixels plus ``margin`` (see :func:`grid_for_views`).
        voxel_size: voxel edge in mm when ``grid`` is None.
        margin: mm around the bounding box when ``grid`` is None (None = two voxels).
        reduce, backend, max_bytes, name: see :class:`VolumeAccumulator`.

    Returns:
        (X, Y, Z) float32 DataArray, NaN where unobserved.
    """
    if len(maps) != len(views):
        raise ValueError(f"got {len(maps)} score maps for {len(views)} views")
    grid = grid_for_views(views, voxel_size, margin) if grid is None else grid
    acc = VolumeAccumulator(grid, reduce=reduce, backend=backend, max_bytes=max_bytes, name=name)
    for i, (m, view) in enumerate(zip(maps, views)):
        parts = _modalities(m, f"view {i}")
        for j, part in enumerate(parts):
            acc.add(part, view, where=f"view {i}" if len(parts) == 1 else f"view {i}, map {j}")
    return acc.result()
