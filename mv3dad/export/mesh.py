"""Thresholded isosurface of a score volume as a triangle mesh in world mm (PLY, STL or GLB through trimesh).

The surface is marching cubes at level 0.5 over the indicator "score >= ``threshold``" sampled at the voxel
centres: it runs half-way between a voxel inside the region and its neighbour outside it, so it encloses exactly
the voxels whose score is >= ``threshold`` (a lone voxel becomes an octahedron of half-voxel radius).
Unobserved (NaN) voxels are outside, and the volume is padded by one outside voxel on every side so that the
surface is closed where the region touches the grid's border.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from mv3dad.export.checks import volume_parts
from mv3dad.io import atomic_file

MESH_FORMATS = ("ply", "stl", "glb")


def isosurface(da: xr.DataArray, threshold: float, where: str = "volume"):
    """Marching-cubes surface enclosing the voxels with score >= ``threshold``.

    Args:
        da: score volume (dims x, y, z; mm coordinates; NaN = unobserved).
        threshold: iso level (a score).
        where: how to name the volume in error messages (e.g. its file name).

    Returns:
        ``trimesh.Trimesh`` with vertices in world mm, faces oriented outwards.

    Raises:
        DataError: bad volume or no observed voxel; ValueError: no voxel reaches ``threshold``.
    """
    import trimesh
    from skimage.measure import marching_cubes

    parts = volume_parts(da, where=where, need_observed=True)
    threshold = float(threshold)
    if not np.isfinite(threshold):
        raise ValueError(f"{where}: threshold must be finite, got {threshold}")
    inside = np.nan_to_num(parts.scores, nan=-np.inf) >= threshold
    if not inside.any():
        raise ValueError(f"{where}: no voxel has a score >= threshold {threshold:.6g} "
                         f"(max {float(np.nanmax(parts.scores)):.6g})")
    vol = np.pad(inside.astype(np.float32), 1)
    verts, faces, _normals, _values = marching_cubes(vol, level=0.5, spacing=(parts.grid.voxel_size,) * 3,
                                                     allow_degenerate=False)
    verts = verts + (parts.grid.origin - parts.grid.voxel_size)
    # skimage winds faces so that normals point towards higher values; flip them to point outwards
    mesh = trimesh.Trimesh(vertices=verts, faces=faces[:, ::-1], process=True)
    return mesh


def save_mesh(mesh, path: str | Path, fmt: str | None = None) -> Path:
    """Write a trimesh mesh as PLY (binary), STL (binary) or GLB, chosen by ``fmt`` or the file suffix."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in MESH_FORMATS:
        raise ValueError(f"{path}: mesh format must be one of {MESH_FORMATS}, got {fmt!r}")
    data = mesh.export(file_type=fmt)
    with atomic_file(path) as tmp:
        tmp.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path
