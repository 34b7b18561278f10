"""Benchmark: back-projection throughput (points/s) of Numba, torch scatter_reduce (CPU) and naive np.maximum.at.

Synthetic scene: a 300 mm sphere standing on z = 0, seen by a 36-view hemisphere rig (3 rings x 12 azimuths, built
with ``Camera.look_at``) at 896 x 896 pixels; random full-resolution score maps; a 2 mm grid. The depth maps are
rendered before timing. The methods run one after the other in one process on the same views (Numba, torch,
NumPy, then Numba again to show how much the machine's load drifted); NumPy only does the first ``--numpy-views``
views (it is slow) and its rate is over those. Compile time is excluded: every method runs once on a tiny view
before timing (Numba loads its on-disk cache or compiles there). Peak memory: each method in a fresh process,
the growth of the peak RSS (VmHWM) over the RSS before the grid exists, while it accumulates ``--mem-views`` views.

    python tools/bench_backproject.py                      # 36 views, NumPy on 4
    python tools/bench_backproject.py --views 12 --numpy-views 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

from mv3dad.data.scene import View
from mv3dad.geometry import Camera, VoxelGrid, depth_to_points
from mv3dad.volume import VolumeAccumulator

RADIUS, CENTRE = 150.0, np.array([0.0, 0.0, 150.0])


def rig(n_views: int, size: int) -> list[Camera]:
    """Up to 36 cameras on a hemisphere (elevations 15, 40, 65 degrees; 12 azimuths) 600 mm from the sphere."""
    cams = []
    for elev in np.radians([15, 40, 65]):
        for az in np.radians(np.arange(12) * 30 + 15 * (elev > 0.5)):
            eye = CENTRE + 600 * np.array([np.cos(elev) * np.cos(az), np.cos(elev) * np.sin(az), np.sin(elev)])
            f = 0.9 * (size / 2) / np.tan(np.arcsin(RADIUS / 600))  # the sphere fills 90 % of the half-width
            cams.append(Camera.look_at(eye, CENTRE, (0, 0, 1), f, f, size, size))
    return cams[:n_views]


def sphere_depth(cam: Camera) -> np.ndarray:
    """(H, W) float32 depth of the sphere (ray-sphere intersection), 0 where a ray misses it."""
    v, u = np.mgrid[0:cam.height, 0:cam.width]
    rays = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3) @ np.linalg.inv(cam.K).T  # z component = 1
    d = rays @ cam.R  # world direction (not unit; unit z in camera frame)
    oc = cam.center - CENTRE
    a, b, c = (d * d).sum(1), 2 * d @ oc, oc @ oc - RADIUS**2
    disc = b * b - 4 * a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)  # t = depth, since the ray's camera z is 1
    return np.where(disc > 0, t, 0).reshape(cam.height, cam.width).astype(np.float32)


def numpy_maximum_at(vol: np.ndarray, grid: VoxelGrid, scores: np.ndarray, view: View) -> None:
    """The naive reference: float64 points, indices, then unbuffered np.maximum.at into the flat grid."""
    pts, mask = depth_to_points(view.depth, view.camera)
    ijk = grid.world_to_index(pts)
    inside = grid.contains(ijk)
    flat = np.ravel_multi_index(tuple(ijk[inside].T), grid.shape)
    np.maximum.at(vol, flat, scores[mask][inside])


def _status_bytes(key: str) -> int:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM = peak RSS), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def memory_child(method: str, n_views: int, size: int, voxel: float) -> None:
    """Print the peak-RSS growth while ``method`` accumulates ``n_views`` views (run in a fresh process)."""
    cams = rig(n_views, size)
    grid = VoxelGrid.from_bounds(CENTRE - RADIUS, CENTRE + RADIUS, voxel, margin=2 * voxel)
    views = [View(np.zeros((1, 1), np.float32), sphere_depth(c), c) for c in cams]  # made before the baseline
    scores = np.random.default_rng(0).random((size, size), dtype=np.float32)
    if method != "numpy":  # load the compiled code / thread pools before the baseline
        VolumeAccumulator(VoxelGrid((0, 0, 0), 1.0, (2, 2, 2)), backend=method).add(scores[:8, :8], _tiny_view())
    base = _status_bytes("VmRSS")
    if method == "numpy":
        vol = np.full(grid.size, -np.inf, np.float32)
        for view in views:
            numpy_maximum_at(vol, grid, scores, view)
    else:
        acc = VolumeAccumulator(grid, backend=method)
        for view in views:
            acc.add(scores, view)
        vol = acc.result()
    print(_status_bytes("VmHWM") - base)


def timed(method: str, grid: VoxelGrid, views: list[View], maps: list[np.ndarray]) -> tuple[float, float, np.ndarray]:
    """Wall and CPU (all threads) seconds ``method`` ("numba", "torch", "numpy") takes to add the views; the volume."""
    acc = None if method == "numpy" else VolumeAccumulator(grid, backend=method)
    vol = np.full(grid.size, -np.inf, np.float32)
    t, c = time.perf_counter(), time.process_time()
    for view, scores in zip(views, maps):
        if acc is None:
            numpy_maximum_at(vol, grid, scores, view)
        else:
            acc.add(scores, view)
    t, c = time.perf_counter() - t, time.process_time() - c
    if acc is None:
        return t, c, np.where(vol == -np.inf, np.nan, vol).reshape(grid.shape)
    return t, c, acc.result().values


def _tiny_view() -> View:
    cam = Camera.look_at((0, -300, 150), CENTRE, (0, 0, 1), 30, 30, 8, 8)
    return View(np.zeros((8, 8), np.float32), sphere_depth(cam), cam)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", type=int, default=36, help="views to time for Numba and torch (<= 36)")
    ap.add_argument("--numpy-views", type=int, default=4, help="views to time for np.maximum.at")
    ap.add_argument("--size", type=int, default=896, help="image width = height in pixels")
    ap.add_argument("--voxel", type=float, default=2.0, help="voxel size in mm")
    ap.add_argument("--mem-views", type=int, default=3, help="views per method in the peak-memory pass")
    ap.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child, args.mem_views, args.size, args.voxel)

    import numba
    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    cams = rig(args.views, args.size)
    grid = VoxelGrid.from_bounds(CENTRE - RADIUS, CENTRE + RADIUS, args.voxel, margin=2 * args.voxel)
    rng = np.random.default_rng(0)
    print(f"{len(cams)} views of {args.size}x{args.size}, grid {grid.shape} at {args.voxel} mm "
          f"({grid.size * 4 / 2**20:.1f} MiB float32); threads: numba {numba.get_num_threads()}, "
          f"torch {torch.get_num_threads()}")

    # warm-up (Numba compile/cache load, torch thread pool): one small view each, not timed
    small = VoxelGrid((-5, -5, 145), 2.0, (6, 6, 6))
    for b in ("numba", "torch"):
        VolumeAccumulator(small, backend=b).add(np.ones((8, 8), np.float32), _tiny_view())

    views = [View(np.zeros((1, 1), np.float32), sphere_depth(c), c) for c in cams]
    maps = [rng.random((args.size, args.size), dtype=np.float32) for _ in cams]
    n_pts = [int((v.depth > 0).sum()) for v in views]
    n_np = min(args.numpy_views, len(views))
    secs, cpu, pts, vols = {}, {}, {}, {}
    for k in ("numba", "torch", "numpy", "numba (again)"):
        n = n_np if k == "numpy" else len(views)
        secs[k], cpu[k], vols[k] = timed(k.split()[0], grid, views[:n], maps[:n])
        pts[k] = sum(n_pts[:n])
    for k in ("torch", "numba (again)"):
        assert np.array_equal(vols["numba"], vols[k], equal_nan=True), f"numba and {k} volumes differ"
    first = timed("numba", grid, views[:n_np], maps[:n_np])[2]
    same_np = np.mean(np.isfinite(vols["numpy"]) == np.isfinite(first))

    rate = {k: pts[k] / secs[k] for k in secs if pts[k]}
    crate = {k: pts[k] / cpu[k] for k in cpu if pts[k]}
    print(f"{'method':<22}{'views':>6}{'points':>11}{'wall s':>8}{'Mpoints/s':>11}{'ms/view':>9}"
          f"{'CPU s':>8}{'Mpoints/CPU-s':>15}")
    for k, label in (("numba", "numba (parallel)"), ("torch", "torch scatter_reduce"), ("numpy", "np.maximum.at"),
                     ("numba (again)", "numba (again)")):
        nv = len(cams) if k != "numpy" else n_np
        if nv:
            print(f"{label:<22}{nv:>6}{pts[k]:>11}{secs[k]:>8.2f}{rate[k] / 1e6:>11.2f}{1e3 * secs[k] / nv:>9.1f}"
                  f"{cpu[k]:>8.2f}{crate[k] / 1e6:>15.2f}")
    for what, r in (("wall-clock", rate), ("CPU-time", crate)):
        print(f"{what} throughput ratios: numba / torch {r['numba'] / r['torch']:.1f}x", end="")
        print(f", numba / np.maximum.at {r['numba'] / r['numpy']:.1f}x" if "numpy" in r else "")
    print(f"observed voxels: {int(np.isfinite(vols['numba']).sum())}; numba and torch volumes are bit-identical; "
          f"np.maximum.at (float64 lifting) observes the same voxels as numba on its {n_np} views: "
          f"{100 * same_np:.4f} % agree")

    print(f"load average (1 min) during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    # peak memory, each method in a fresh process: peak RSS growth over the RSS before the grid exists
    view_mib = args.size**2 * (4 + 4 + 8) / 2**20  # depth + scores + one int64 voxel index per pixel
    print(f"peak RSS growth while accumulating {args.mem_views} views (float32 grid {grid.size * 4 / 2**20:.1f} MiB; "
          f"one view's depth + scores + voxel index {view_mib:.1f} MiB):")
    for k, label in (("numba", "numba"), ("torch", "torch"), ("numpy", "np.maximum.at")):
        cmd = [sys.executable, __file__, "--memory-child", k, "--mem-views", str(args.mem_views),
               "--size", str(args.size), "--voxel", str(args.voxel)]
        # a fixed mmap threshold: big arrays are mapped and unmapped, so RSS tracks the live arrays exactly
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
        grow = int(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout.split()[-1])
        print(f"  {label:<14}{grow / 2**20:8.1f} MiB")


if __name__ == "__main__":
    main()
