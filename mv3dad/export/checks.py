"""Checking a score volume before it is written, and splitting it into (scores, grid, name)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from mv3dad.errors import DataError
from mv3dad.geometry.grid import DIMS, VoxelGrid


@dataclass(frozen=True, eq=False)
class VolumeParts:
    """A score volume taken apart.

    Attributes:
        scores: (X, Y, Z) float32; NaN = unobserved voxel.
        grid: the voxel grid (origin = centre of voxel (0, 0, 0) in mm, voxel size in mm).
        name: the score's name (the DataArray's name, "anomaly" when it has none).
    """

    scores: np.ndarray
    grid: VoxelGrid
    name: str

    @property
    def observed(self) -> np.ndarray:
        """(X, Y, Z) bool, True where a score was observed."""
        return ~np.isnan(self.scores)


def volume_parts(da: xr.DataArray, where: str = "volume", need_observed: bool = False) -> VolumeParts:
    """Validate a score volume and return its parts.

    Args:
        da: DataArray with dims ("x", "y", "z") and regular mm coordinates (see :class:`VoxelGrid`).
        where: how to name the volume in error messages (e.g. its file name).
        need_observed: refuse a volume whose voxels are all NaN (nothing to draw or export sparsely).

    Raises:
        DataError: wrong dims, irregular coordinates, non-numeric values, +-inf scores, or (with
            ``need_observed``) no observed voxel.
    """
    if not isinstance(da, xr.DataArray):
        raise DataError(f"{where}: expected an xarray.DataArray, got {type(da).__name__}")
    if tuple(da.dims) != DIMS:
        raise DataError(f"{where}: expected dims {DIMS}, got {tuple(da.dims)}")
    if not (np.issubdtype(da.dtype, np.floating) or np.issubdtype(da.dtype, np.integer)
            or da.dtype == bool):
        raise DataError(f"{where}: scores must be numeric, got dtype {da.dtype}")
    try:
        grid = VoxelGrid.from_dataarray(da)
    except ValueError as exc:
        raise DataError(f"{where}: {exc}") from exc
    for d, axis in zip(DIMS, grid.axes()):
        coord = np.asarray(da[d].values, dtype=np.float64)
        if not np.allclose(coord, axis, rtol=0, atol=1e-6 * max(1.0, grid.voxel_size)):
            raise DataError(f"{where}: coordinate {d!r} is not a regular grid of step {grid.voxel_size} mm")
    scores = np.asarray(da.values, dtype=np.float32)
    if np.isinf(scores).any():
        raise DataError(f"{where}: {int(np.isinf(scores).sum())} scores are +-inf; only finite scores "
                        "or NaN (unobserved) are allowed")
    if need_observed and np.isnan(scores).all():
        raise DataError(f"{where}: every voxel is NaN (unobserved); there is nothing to export")
    return VolumeParts(scores, grid, str(da.name) if da.name is not None else "anomaly")


def to_dataarray(scores: np.ndarray, grid: VoxelGrid, name: str, **attrs) -> xr.DataArray:
    """The inverse of :func:`volume_parts`: (X, Y, Z) float32 scores on ``grid`` as a score DataArray."""
    return grid.to_dataarray(np.asarray(scores, dtype=np.float32), name=name, **attrs)
