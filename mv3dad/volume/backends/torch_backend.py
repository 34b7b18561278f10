"""Reference back-projection with torch ``scatter_reduce`` (CPU or CUDA tensors).

The lifting is written element-wise with the same float32 operations, in the same order, as the Numba and CuPy
kernels (no matmul, whose blocked/FMA sums would round differently), so all backends agree bit for bit on which
voxel a pixel falls into.
"""

from __future__ import annotations

import numpy as np
import torch

from mv3dad.geometry.grid import VoxelGrid


def _flat_index(wx, wy, wz, origin, vs, shape) -> torch.Tensor:
    """World float32 coordinates -> flat int64 voxel index, -1 outside the grid."""
    inside = torch.ones_like(wx, dtype=torch.bool)
    ids = []
    for w, o, n in zip((wx, wy, wz), origin, shape):
        f = (w - o) / vs + 0.5
        inside &= (f >= 0) & (f < n)
        ids.append(torch.floor(f).nan_to_num_(0.0, 0.0, 0.0).to(torch.int64))
    idx = (ids[0] * shape[1] + ids[1]) * shape[2] + ids[2]
    return idx.masked_fill_(~inside, -1)


def pixel_voxels(depth: torch.Tensor, kinv: torch.Tensor, c2w: torch.Tensor, origin: torch.Tensor,
                 vs: torch.Tensor, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Voxel of every pixel with depth > 0.

    Args:
        depth: (H, W) float32; kinv: (3, 3) float32; c2w: (3, 4) float32; origin: (3,) float32; vs: () float32.

    Returns:
        flat: (P,) int64 flat voxel index of the P pixels with depth > 0 (row-major order), -1 outside the grid.
        pix: (P,) int64 flat pixel index of those pixels.
    """
    H, W = depth.shape
    pix = torch.nonzero(depth.reshape(-1) > 0).squeeze(1)
    z = depth.reshape(-1)[pix]
    fu, fv = (pix % W).to(torch.float32), (pix // W).to(torch.float32)
    k, m = kinv, c2w
    c = [((k[r, 0] * fu + k[r, 1] * fv) + k[r, 2]) * z for r in range(3)]
    w = [((m[r, 0] * c[0] + m[r, 1] * c[1]) + m[r, 2] * c[2]) + m[r, 3] for r in range(3)]
    return _flat_index(*w, origin, vs, shape), pix


class TorchBackend:
    """Accumulates scores into a float32 grid with ``Tensor.scatter_reduce_`` (``"amax"``) or ``index_add_``.

    Args:
        grid: the voxel grid.
        reduce: ``"max"`` or ``"mean"``.
        device: torch device of the grid (default CPU).
    """

    name = "torch"

    def __init__(self, grid: VoxelGrid, reduce: str, device: str | torch.device = "cpu") -> None:
        self.reduce = reduce
        self.device = torch.device(device)
        self._shape = grid.shape
        self._origin = torch.as_tensor(grid.origin.astype(np.float32), device=self.device)
        self._vs = torch.tensor(grid.voxel_size, dtype=torch.float32, device=self.device)
        n = grid.size
        if reduce == "max":
            self._vol = torch.full((n,), -torch.inf, dtype=torch.float32, device=self.device)
        else:
            self._sum = torch.zeros(n, dtype=torch.float32, device=self.device)
            self._cnt = torch.zeros(n, dtype=torch.int32, device=self.device)

    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, device=self.device)

    def _scatter(self, idx: torch.Tensor, vals: torch.Tensor) -> int:
        vals = vals + 0.0  # -0.0 -> +0.0, so that every backend's max has the same bits
        if self.reduce == "max":
            self._vol.scatter_reduce_(0, idx, vals, reduce="amax", include_self=True)
        else:
            self._sum.index_add_(0, idx, vals)
            self._cnt.index_add_(0, idx, torch.ones_like(idx, dtype=torch.int32))
        return int(idx.numel())

    def add_view(self, depth: np.ndarray, scores: np.ndarray, kinv: np.ndarray, c2w: np.ndarray) -> int:
        """Lift (H, W) float32 ``depth`` and add (H, W) float32 ``scores``; returns the points that landed."""
        idx, pix = pixel_voxels(self._t(depth), self._t(kinv), self._t(c2w), self._origin, self._vs, self._shape)
        keep = idx >= 0
        return self._scatter(idx[keep], self._t(scores).reshape(-1)[pix[keep]])

    def add_points(self, points: np.ndarray, scores: np.ndarray) -> int:
        """Add (P,) float32 ``scores`` at (P, 3) float32 world ``points``; returns the points that landed."""
        p = self._t(points)
        idx = _flat_index(p[:, 0], p[:, 1], p[:, 2], self._origin, self._vs, self._shape)
        keep = idx >= 0
        return self._scatter(idx[keep], self._t(scores)[keep])

    def values(self) -> np.ndarray:
        """Flat float32 volume, NaN where unobserved."""
        if self.reduce == "max":
            out = self._vol.masked_fill(self._vol == -torch.inf, torch.nan)
        else:
            out = (self._sum / self._cnt.to(torch.float32)).masked_fill_(self._cnt == 0, torch.nan)
        return out.cpu().numpy()

    def observed(self) -> np.ndarray:
        """Flat bool mask of the voxels that received at least one score."""
        obs = self._vol > -torch.inf if self.reduce == "max" else self._cnt > 0
        return obs.cpu().numpy()
