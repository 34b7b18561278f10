"""PLY point cloud of the observed voxel centres, coloured by score, for overlay in CloudCompare or MeshLab.

Binary little-endian PLY, one vertex per observed voxel (in x-major voxel order) with properties
``x y z`` (float32, world mm of the voxel centre), ``red green blue`` (uchar, the score through a matplotlib
colour map between ``vmin`` and ``vmax``) and ``scalar_anomaly`` (float32, the raw score; CloudCompare
shows ``scalar_*`` properties as scalar fields). Header comments record units, colour map and range.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from mv3dad.export.checks import volume_parts
from mv3dad.io import atomic_file


def score_colors(scores: np.ndarray, vmin: float, vmax: float, cmap: str = "turbo") -> np.ndarray:
    """(N,) scores -> (N, 3) uint8 RGB through a matplotlib colour map (clipped to [vmin, vmax])."""
    import matplotlib

    span = vmax - vmin if vmax > vmin else 1.0
    t = np.clip((np.asarray(scores, dtype=np.float64) - vmin) / span, 0.0, 1.0)
    rgba = matplotlib.colormaps[cmap](t)
    return np.round(rgba[:, :3] * 255).astype(np.uint8)


def write_ply_points(da: xr.DataArray, path: str | Path, cmap: str = "turbo", vmin: float | None = None,
                     vmax: float | None = None, threshold: float | None = None) -> Path:
    """Write the observed voxel centres of a score volume as a coloured binary PLY point cloud.

    Args:
        da: score volume (dims x, y, z; mm coordinates; NaN = unobserved).
        path: output ``.ply``.
        cmap: matplotlib colour map name.
        vmin, vmax: colour range; default the observed scores' min and max.
        threshold: keep only voxels with score >= threshold (default: every observed voxel).

    Raises:
        DataError: bad volume or no observed voxel; ValueError: no voxel reaches ``threshold``.
    """
    parts = volume_parts(da, where=str(path), need_observed=True)
    keep = parts.observed if threshold is None else parts.observed & (np.nan_to_num(parts.scores, nan=-np.inf)
                                                                      >= threshold)
    if not keep.any():
        raise ValueError(f"{path}: no observed voxel has a score >= {threshold} "
                         f"(max {np.nanmax(parts.scores):.6g})")
    idx = np.argwhere(keep)
    scores = parts.scores[keep]
    observed = parts.scores[parts.observed]
    vmin = float(observed.min()) if vmin is None else float(vmin)
    vmax = float(observed.max()) if vmax is None else float(vmax)
    vertex = np.empty(len(idx), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"),
                                       ("green", "u1"), ("blue", "u1"), ("scalar_anomaly", "<f4")])
    xyz = parts.grid.index_to_world(idx)
    for i, c in enumerate("xyz"):
        vertex[c] = xyz[:, i]
    rgb = score_colors(scores, vmin, vmax, cmap)
    vertex["red"], vertex["green"], vertex["blue"] = rgb.T
    vertex["scalar_anomaly"] = scores
    header = "\n".join([
        "ply", "format binary_little_endian 1.0",
        f"comment mv3dad score volume {parts.name!r}: observed voxel centres, units mm",
        f"comment voxel_size_mm {parts.grid.voxel_size!r}",
        f"comment colormap {cmap} vmin {vmin!r} vmax {vmax!r}",
        f"element vertex {len(vertex)}",
        "property float x", "property float y", "property float z",
        "property uchar red", "property uchar green", "property uchar blue",
        "property float scalar_anomaly", "end_header", ""]).encode("ascii")
    path = Path(path)
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(vertex.tobytes())
    return path
