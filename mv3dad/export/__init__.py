"""Saving and loading score volumes: NumPy (.npz canonical, .npy), Zarr, OpenVDB, PLY point clouds, meshes.

``save_volume(da, path, fmt=None)`` picks the writer from ``fmt`` or the path's suffix; ``load_volume(path)``
reads .npz, .npy (+ .npy.json sidecar), .zarr stores and .vdb files back into a score DataArray.
Every writer writes under a temporary name and renames, so a failed export leaves no partial file.
"""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from mv3dad.errors import DataError
from mv3dad.export.checks import volume_parts
from mv3dad.export.mesh import MESH_FORMATS, isosurface, save_mesh
from mv3dad.export.npy import load_npy, load_npz, save_npy, save_npz
from mv3dad.export.ply import write_ply_points
from mv3dad.export.vdb import load_vdb, read_vdb, write_vdb
from mv3dad.export.zarr_io import load_zarr, save_zarr
from mv3dad.io import ExportError

WRITERS = {"npz": save_npz, "npy": save_npy, "zarr": save_zarr, "vdb": write_vdb, "ply": write_ply_points}
READERS = {"npz": load_npz, "npy": load_npy, "zarr": load_zarr, "vdb": load_vdb}
FORMATS = tuple(WRITERS)


def volume_format(path: str | Path, fmt: str | None = None) -> str:
    """The format name for ``path``: ``fmt`` if given, else from the suffix (.npz .npy .zarr .vdb .ply).

    Raises:
        ValueError: unknown format, or ``fmt`` given while ``path``'s suffix names another format (``y.vdb`` with
            ``--to npz`` would write npz under a .vdb name).
    """
    suffix = Path(path).suffix.lstrip(".").lower()
    fmt = (fmt or suffix).lower()
    if fmt not in FORMATS:
        raise ValueError(f"{path}: unknown volume format {fmt!r}; choose one of {FORMATS}")
    if suffix in FORMATS and suffix != fmt:
        raise ValueError(f"{path}: the name says .{suffix} but the format is {fmt!r}; name it "
                         f"{Path(path).with_suffix('.' + fmt).name} or drop --to")
    return fmt


def save_volume(da: xr.DataArray, path: str | Path, fmt: str | None = None) -> Path:
    """Write score volume ``da`` to ``path`` in format ``fmt`` (default: from the suffix). Returns the path."""
    return WRITERS[volume_format(path, fmt)](da, path)


def load_volume(path: str | Path) -> xr.DataArray:
    """Read a score volume saved as .npz, .npy (+ sidecar), .zarr or .vdb. Raises DataError naming the file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in READERS:
        raise DataError(f"{path}: cannot read volumes of type {fmt!r}; readable: {tuple(READERS)}")
    return READERS[fmt](path)


__all__ = ["DataError", "ExportError", "FORMATS", "MESH_FORMATS", "isosurface", "load_npy", "load_npz",
           "load_vdb", "load_volume", "load_zarr", "read_vdb", "save_mesh", "save_npy", "save_npz",
           "save_volume", "save_zarr", "volume_format", "volume_parts", "write_ply_points", "write_vdb"]
