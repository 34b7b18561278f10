"""Back-projection on an NVIDIA GPU with CuPy ``RawKernel``s: one thread per pixel, atomic float max.

CUDA has no ``atomicMax`` for floats. For non-negative floats the IEEE bit patterns order like signed ints, and
for negative floats like unsigned ints in reverse, so ``atomicMax`` on the int view (sign bit clear) and
``atomicMin`` on the unsigned view (sign bit set) give an exact float max; -0.0 is turned into +0.0 first,
NaN is refused by the caller, and the grid starts at -inf. The kernels are compiled with ``--fmad=false`` so that
the lifting rounds exactly like the Numba and torch backends (same operations, same order).

cupy is imported lazily; :func:`require_cupy` explains what is missing when it cannot be used.
"""

from __future__ import annotations

import numpy as np

from mv3dad.geometry.grid import VoxelGrid

_SOURCE = r"""
__device__ __forceinline__ long long voxel_of(float wx, float wy, float wz, const float* o, float vs,
                                              long long X, long long Y, long long Z) {
    float fx = (wx - o[0]) / vs + 0.5f;
    float fy = (wy - o[1]) / vs + 0.5f;
    float fz = (wz - o[2]) / vs + 0.5f;
    if (!(fx >= 0.0f && fx < (float)X && fy >= 0.0f && fy < (float)Y && fz >= 0.0f && fz < (float)Z)) return -1;
    return ((long long)floorf(fx) * Y + (long long)floorf(fy)) * Z + (long long)floorf(fz);
}

__device__ __forceinline__ void atomic_max_float(float* addr, float val) {
    if (!signbit(val)) atomicMax((int*)addr, __float_as_int(val));
    else atomicMin((unsigned int*)addr, __float_as_uint(val));
}

__device__ __forceinline__ void put(float* vol, int* cnt, long long i, float s, int mean) {
    s = s + 0.0f;  // -0.0 -> +0.0, so that every backend's max has the same bits
    if (mean) { atomicAdd(vol + i, s); atomicAdd(cnt + i, 1); }
    else atomic_max_float(vol + i, s);
}

__device__ __forceinline__ void count_hits(unsigned long long* landed, int hit) {
    unsigned int mask = __ballot_sync(0xffffffffu, hit);  // one atomic per warp, not per pixel
    if ((threadIdx.x & 31) == 0 && mask) atomicAdd(landed, (unsigned long long)__popc(mask));
}

extern "C" __global__ void add_view(const float* depth, const float* scores, int H, int W,
                                    const float* k, const float* m, const float* o, float vs,
                                    long long X, long long Y, long long Z, int mean,
                                    float* vol, int* cnt, unsigned long long* landed) {
    long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long i = -1;
    float z = p < (long long)H * W ? depth[p] : 0.0f;
    if (z > 0.0f) {
        float fu = (float)(p % W), fv = (float)(p / W);
        float xc = ((k[0] * fu + k[1] * fv) + k[2]) * z;
        float yc = ((k[3] * fu + k[4] * fv) + k[5]) * z;
        float zc = ((k[6] * fu + k[7] * fv) + k[8]) * z;
        float wx = ((m[0] * xc + m[1] * yc) + m[2] * zc) + m[3];
        float wy = ((m[4] * xc + m[5] * yc) + m[6] * zc) + m[7];
        float wz = ((m[8] * xc + m[9] * yc) + m[10] * zc) + m[11];
        i = voxel_of(wx, wy, wz, o, vs, X, Y, Z);
        if (i >= 0) put(vol, cnt, i, scores[p], mean);
    }
    count_hits(landed, i >= 0);
}

extern "C" __global__ void add_points(const float* pts, const float* scores, long long P,
                                      const float* o, float vs, long long X, long long Y, long long Z, int mean,
                                      float* vol, int* cnt, unsigned long long* landed) {
    long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long i = p < P ? voxel_of(pts[3 * p], pts[3 * p + 1], pts[3 * p + 2], o, vs, X, Y, Z) : -1;
    if (i >= 0) put(vol, cnt, i, scores[p], mean);
    count_hits(landed, i >= 0);
}
"""

_THREADS = 256


def require_cupy():
    """Import cupy and check that a CUDA device is usable; raise RuntimeError saying what is missing."""
    try:
        import cupy
    except ImportError as e:
        raise RuntimeError(f"backend 'cupy' needs the cupy package (pip install 'mv3dad[gpu]'): {e}") from None
    try:
        ok = cupy.cuda.is_available()
    except Exception:  # a broken driver install raises instead of answering False
        ok = False
    if not ok:
        raise RuntimeError("backend 'cupy' needs a CUDA GPU, and cupy.cuda.is_available() is False on this machine")
    return cupy


class CupyBackend:
    """Accumulates scores into a float32 grid on the current CUDA device.

    Args:
        grid: the voxel grid.
        reduce: ``"max"`` or ``"mean"`` (mean uses float atomicAdd, so its sums are not bit-reproducible).
    """

    name = "cupy"

    def __init__(self, grid: VoxelGrid, reduce: str) -> None:
        cp = self._cp = require_cupy()
        module = cp.RawModule(code=_SOURCE, options=("--fmad=false",))
        self._k_view = module.get_function("add_view")
        self._k_points = module.get_function("add_points")
        self.reduce = reduce
        self._shape = tuple(np.int64(s) for s in grid.shape)
        self._origin = cp.asarray(grid.origin.astype(np.float32))
        self._vs = np.float32(grid.voxel_size)
        n = grid.size
        self._vol = cp.full(n, -np.inf if reduce == "max" else 0.0, dtype=cp.float32)
        self._cnt = cp.zeros(n if reduce == "mean" else 1, dtype=cp.int32)
        self._landed = cp.zeros(1, dtype=cp.uint64)

    def _launch(self, kernel, n: int, args: tuple) -> int:
        self._landed.fill(0)
        grid = ((n + _THREADS - 1) // _THREADS,)
        kernel(grid, (_THREADS,), args + (self._origin, self._vs, *self._shape, np.int32(self.reduce == "mean"),
                                         self._vol, self._cnt, self._landed))
        return int(self._landed.get()[0])

    def add_view(self, depth: np.ndarray, scores: np.ndarray, kinv: np.ndarray, c2w: np.ndarray) -> int:
        """Lift (H, W) float32 ``depth`` and add (H, W) float32 ``scores``; returns the points that landed."""
        cp = self._cp
        H, W = depth.shape
        args = (cp.asarray(depth), cp.asarray(scores), np.int32(H), np.int32(W),
                cp.asarray(np.ascontiguousarray(kinv)), cp.asarray(np.ascontiguousarray(c2w)))
        return self._launch(self._k_view, H * W, args)

    def add_points(self, points: np.ndarray, scores: np.ndarray) -> int:
        """Add (P,) float32 ``scores`` at (P, 3) float32 world ``points``; returns the points that landed."""
        cp = self._cp
        return self._launch(self._k_points, len(scores), (cp.asarray(points), cp.asarray(scores),
                                                          np.int64(len(scores))))

    def values(self) -> np.ndarray:
        """Flat float32 volume, NaN where unobserved."""
        cp = self._cp
        if self.reduce == "max":
            out = cp.where(self._vol == -cp.inf, cp.float32(cp.nan), self._vol)
        else:
            out = cp.where(self._cnt > 0, self._vol / cp.maximum(self._cnt, 1).astype(cp.float32),
                           cp.float32(cp.nan))
        return cp.asnumpy(out.astype(cp.float32))

    def observed(self) -> np.ndarray:
        """Flat bool mask of the voxels that received at least one score."""
        obs = self._vol > -self._cp.inf if self.reduce == "max" else self._cnt > 0
        return self._cp.asnumpy(obs)
