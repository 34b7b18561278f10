"""Zarr volumes through xarray: one chunked float32 variable named after the score, mm coordinates, attributes.

Layout of the store (Zarr format 3 with zarr >= 3, format 2 with zarr 2; not consolidated):

- variable ``<name>`` (e.g. ``anomaly``): (x, y, z) float32, NaN = unobserved voxel, chunks of at most 64^3;
- coordinates ``x``, ``y``, ``z``: voxel centres in mm (attribute ``units = "mm"``);
- variable attributes ``voxel_size_mm``, ``units = "mm"``, ``origin_mm`` (centre of voxel (0, 0, 0));
- store attribute ``mv3dad_variable`` = the variable's name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from mv3dad.errors import DataError
from mv3dad.export.checks import to_dataarray, volume_parts
from mv3dad.geometry.grid import DIMS, VoxelGrid
from mv3dad.io import atomic_dir

CHUNK = 64


def save_zarr(da: xr.DataArray, path: str | Path, chunk: int = CHUNK) -> Path:
    """Write a score volume as a Zarr store at ``path`` (a folder; an existing one is replaced whole)."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    parts = volume_parts(da, where=str(path))
    out = to_dataarray(parts.scores, parts.grid, parts.name, origin_mm=parts.grid.origin.tolist())
    for d in DIMS:
        out[d].attrs["units"] = "mm"
    ds = out.to_dataset()
    ds.attrs["mv3dad_variable"] = parts.name
    chunks = tuple(min(chunk, s) for s in parts.grid.shape)
    path = Path(path)
    with atomic_dir(path) as tmp:
        ds.to_zarr(tmp, mode="w", consolidated=False, encoding={parts.name: {"chunks": chunks}})
    return path


def load_zarr(path: str | Path) -> xr.DataArray:
    """Read a volume written by :func:`save_zarr` into memory. Raises DataError naming the store."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: not a Zarr store (no such folder)")
    try:
        ds = xr.open_zarr(path, consolidated=False)
    except Exception as exc:  # zarr raises many types for a broken store
        raise DataError(f"{path}: cannot open as Zarr ({type(exc).__name__}: {exc})") from exc
    name = ds.attrs.get("mv3dad_variable")
    if name is None and len(ds.data_vars) == 1:
        name = next(iter(ds.data_vars))
    if name not in ds.data_vars:
        raise DataError(f"{path}: cannot tell which variable is the volume (variables {list(ds.data_vars)})")
    da = ds[name].load()
    if tuple(da.dims) != DIMS:
        raise DataError(f"{path}: variable {name!r} has dims {da.dims}, expected {DIMS}")
    try:
        grid = VoxelGrid.from_dataarray(da)
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from exc
    return to_dataarray(np.asarray(da.values), grid, str(name))
