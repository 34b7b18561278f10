"""Axis-aligned voxel grids in world millimetres, and their xarray form.

A volume of scores is an ``xarray.DataArray`` with dims ``("x", "y", "z")`` whose coordinates are the voxel
centres in mm, with attributes ``voxel_size_mm`` and ``units = "mm"``. In score volumes NaN marks an unobserved
voxel (no pixel of any view landed in it), which is distinct from a score of 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

DIMS = ("x", "y", "z")


@dataclass(frozen=True, eq=False)
class VoxelGrid:
    """A regular grid of cubic voxels.

    Attributes:
        origin: (3,) world position in mm of the centre of voxel (0, 0, 0).
        voxel_size: edge length of a voxel in mm.
        shape: (X, Y, Z) number of voxels along world x, y, z.
    """

    origin: np.ndarray
    voxel_size: float
    shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "origin", np.asarray(self.origin, dtype=np.float64).reshape(3))
        object.__setattr__(self, "voxel_size", float(self.voxel_size))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if not self.voxel_size > 0:
            raise ValueError(f"voxel_size must be positive, got {self.voxel_size}")
        if len(self.shape) != 3 or min(self.shape) <= 0:
            raise ValueError(f"shape must be three positive ints, got {self.shape}")

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, VoxelGrid) and self.shape == other.shape
                and np.isclose(self.voxel_size, other.voxel_size) and np.allclose(self.origin, other.origin))

    @property
    def size(self) -> int:
        """Number of voxels."""
        return int(np.prod(self.shape))

    @staticmethod
    def from_bounds(lo, hi, voxel_size: float = 2.0, margin: float = 0.0) -> "VoxelGrid":
        """The smallest lattice-aligned grid whose voxels cover the box ``[lo - margin, hi + margin]`` (mm).

        Voxel faces lie on multiples of ``voxel_size`` (voxel centres at ``(k + 1/2) * voxel_size``), so any two
        grids made this way at the same voxel size share one lattice and map onto each other by an index shift.
        """
        vs = float(voxel_size)
        lo = np.floor((np.asarray(lo, dtype=np.float64) - margin) / vs) * vs
        hi = np.ceil((np.asarray(hi, dtype=np.float64) + margin) / vs) * vs
        shape = np.maximum(np.rint((hi - lo) / vs).astype(int), 1)
        return VoxelGrid(lo + vs / 2, vs, tuple(shape))

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voxel-centre coordinates in mm along x, y and z."""
        return tuple(self.origin[i] + self.voxel_size * np.arange(self.shape[i]) for i in range(3))

    def world_to_index(self, points: np.ndarray) -> np.ndarray:
        """(P, 3) world mm -> (P, 3) int64 voxel indices (may be out of range)."""
        return np.floor((np.asarray(points) - self.origin) / self.voxel_size + 0.5).astype(np.int64)

    def index_to_world(self, idx: np.ndarray) -> np.ndarray:
        """(P, 3) voxel indices -> (P, 3) world mm of the voxel centres."""
        return self.origin + self.voxel_size * np.asarray(idx, dtype=np.float64)

    def contains(self, idx: np.ndarray) -> np.ndarray:
        """(P, 3) indices -> (P,) bool, inside the grid."""
        idx = np.asarray(idx)
        return np.all((idx >= 0) & (idx < np.asarray(self.shape)), axis=-1)

    def to_dataarray(self, values: np.ndarray, name: str = "anomaly", **attrs) -> xr.DataArray:
        """Wrap (X, Y, Z) ``values`` as a DataArray with mm coordinates."""
        values = np.asarray(values)
        if values.shape != self.shape:
            raise ValueError(f"values have shape {values.shape}, grid has {self.shape}")
        x, y, z = self.axes()
        return xr.DataArray(values, dims=DIMS, coords={"x": x, "y": y, "z": z}, name=name,
                            attrs={"voxel_size_mm": self.voxel_size, "units": "mm", **attrs})

    @staticmethod
    def from_dataarray(da: xr.DataArray) -> "VoxelGrid":
        """The grid of a DataArray made by :meth:`to_dataarray` (or any regular x/y/z mm grid)."""
        if tuple(da.dims) != DIMS:
            raise ValueError(f"expected dims {DIMS}, got {tuple(da.dims)}")
        coords = [np.asarray(da[d].values, dtype=np.float64) for d in DIMS]
        vs = da.attrs.get("voxel_size_mm")
        if vs is None:
            steps = [np.diff(c) for c in coords if len(c) > 1]
            if not steps:
                raise ValueError("cannot infer voxel size of a 1x1x1 volume without a voxel_size_mm attribute")
            vs = float(steps[0][0])
        return VoxelGrid(np.array([c[0] for c in coords]), float(vs), tuple(len(c) for c in coords))
