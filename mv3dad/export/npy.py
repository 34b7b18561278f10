"""NumPy volumes: ``.npz`` (the canonical saved volume, grid included) and bare ``.npy`` (+ a JSON sidecar).

``.npz`` arrays (no pickled objects; read with ``np.load(path, allow_pickle=False)``):

- ``scores``: (X, Y, Z) float32, NaN = unobserved voxel;
- ``origin``: (3,) float64, world mm of the centre of voxel (0, 0, 0);
- ``voxel_size``: () float64, voxel edge in mm;
- ``units``: () unicode, ``"mm"``;
- ``name``: () unicode, the score's name (e.g. ``"anomaly"``).

A ``.npy`` file holds only the (X, Y, Z) float32 array and so loses the grid; it is therefore written with a
sidecar ``<file>.npy.json`` holding ``origin``, ``voxel_size``, ``units``, ``name`` and ``shape``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import xarray as xr

from mv3dad.errors import DataError
from mv3dad.export.checks import to_dataarray, volume_parts
from mv3dad.geometry.grid import VoxelGrid
from mv3dad.io import atomic_file

NPZ_KEYS = ("scores", "origin", "voxel_size", "units", "name")


def save_npz(da: xr.DataArray, path: str | Path) -> Path:
    """Write a score volume to ``path`` (.npz, zip-deflate compressed: unobserved NaN voxels cost next to
    nothing; see the module docstring for the layout)."""
    parts = volume_parts(da, where=str(path))
    path = Path(path)
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, scores=parts.scores, origin=parts.grid.origin.astype(np.float64),
                     voxel_size=np.float64(parts.grid.voxel_size), units=np.str_("mm"),
                     name=np.str_(parts.name))
    return path


def load_npz(path: str | Path) -> xr.DataArray:
    """Read a volume written by :func:`save_npz` (never unpickles). Raises DataError naming the file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                raise DataError(f"{path}: not an mv3dad volume, missing arrays {missing} (has {z.files})")
            arrays = {k: z[k] for k in NPZ_KEYS}
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: cannot read as .npz ({exc})") from exc
    except ValueError as exc:  # object arrays would need pickle
        raise DataError(f"{path}: refused ({exc})") from exc
    return _from_arrays(path, arrays["scores"], arrays["origin"], arrays["voxel_size"],
                        str(arrays["units"]), str(arrays["name"]))


def save_npy(da: xr.DataArray, path: str | Path) -> Path:
    """Write the bare (X, Y, Z) float32 scores to ``path`` and the grid to ``<path>.json``."""
    parts = volume_parts(da, where=str(path))
    path = Path(path)
    side = sidecar_path(path)
    meta = {"origin": parts.grid.origin.tolist(), "voxel_size": parts.grid.voxel_size, "units": "mm",
            "name": parts.name, "shape": list(parts.grid.shape), "dims": ["x", "y", "z"],
            "nan": "unobserved voxel"}
    with atomic_file(path) as tmp, atomic_file(side) as tmp_side:
        with open(tmp, "wb") as f:
            np.save(f, parts.scores, allow_pickle=False)
        tmp_side.write_text(json.dumps(meta, indent=1))
    return path


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of a ``.npy`` volume: ``vol.npy`` -> ``vol.npy.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def load_npy(path: str | Path) -> xr.DataArray:
    """Read a ``.npy`` volume and its ``.npy.json`` sidecar. Raises DataError naming the file."""
    path, side = Path(path), sidecar_path(path)
    try:
        scores = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: cannot read as .npy ({exc})") from exc
    if not side.is_file():
        raise DataError(f"{path}: the grid sidecar {side.name} is missing; a bare .npy has no origin or "
                        "voxel size")
    try:
        meta = json.loads(side.read_text())
        origin, voxel_size = meta["origin"], meta["voxel_size"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{side}: not a valid volume sidecar ({exc!r})") from exc
    return _from_arrays(path, scores, origin, voxel_size, meta.get("units", "mm"), meta.get("name", "anomaly"))


def _from_arrays(path, scores, origin, voxel_size, units, name) -> xr.DataArray:
    scores = np.asarray(scores)
    if scores.ndim != 3 or not np.issubdtype(scores.dtype, np.number):
        raise DataError(f"{path}: scores must be a numeric (X, Y, Z) array, got {scores.dtype} {scores.shape}")
    if units != "mm":
        raise DataError(f"{path}: units must be 'mm', got {units!r}")
    try:
        grid = VoxelGrid(np.asarray(origin, dtype=np.float64), float(voxel_size), scores.shape)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: bad grid ({exc})") from exc
    return to_dataarray(scores, grid, name)
