"""Back-projection backends, chosen by name (``"numba"``, ``"cupy"``, ``"torch"``, or ``"auto"``).

Every backend implements the same float32 arithmetic, operation by operation (no fused multiply-add), so they
agree bit for bit on the voxel of every pixel and, for ``reduce="max"``, on the whole volume. With ``Kinv`` the
inverse intrinsics, ``M`` the top 3x4 of ``cam_to_world`` (both float32), pixel (u, v) with depth z > 0::

    c_r = ((Kinv[r,0]*u + Kinv[r,1]*v) + Kinv[r,2]) * z                 camera coords, r = 0, 1, 2
    w_r = ((M[r,0]*c_0 + M[r,1]*c_1) + M[r,2]*c_2) + M[r,3]             world coords (mm)
    f_r = (w_r - origin_r) / voxel_size + 0.5                             the voxel is floor(f_r) if 0 <= f_r < n_r

A backend class takes ``(grid, reduce)`` and offers ``add_view(depth, scores, kinv, c2w) -> int``,
``add_points(points, scores) -> int`` (both return the points that landed in the grid), ``values()`` (flat
float32, NaN where unobserved) and ``observed()`` (flat bool).
"""

from __future__ import annotations

BACKENDS = ("numba", "cupy", "torch")


def cuda_available() -> bool:
    """True when cupy imports and sees a CUDA device (never raises)."""
    try:
        from mv3dad.volume.backends.cupy_backend import require_cupy

        require_cupy()
    except RuntimeError:
        return False
    return True


def resolve_backend(name: str) -> str:
    """``"auto"`` -> ``"cupy"`` when CUDA is usable, else ``"numba"``; other names are checked and returned."""
    if name == "auto":
        return "cupy" if cuda_available() else "numba"
    if name not in BACKENDS:
        raise ValueError(f"unknown back-projection backend {name!r}; choose one of {('auto',) + BACKENDS}")
    return name


def create_backend(name: str, grid, reduce: str):
    """Instantiate backend ``name`` (``"auto"`` allowed) for ``grid`` and ``reduce``."""
    name = resolve_backend(name)
    if name == "numba":
        from mv3dad.volume.backends.numba_backend import NumbaBackend as cls
    elif name == "cupy":
        from mv3dad.volume.backends.cupy_backend import CupyBackend as cls
    else:
        from mv3dad.volume.backends.torch_backend import TorchBackend as cls
    return cls(grid, reduce)
