import ctypes
import glob
import os
import tracemalloc

import numpy as np
import pytest
import torch

from mv3dad.data.scene import View
from mv3dad.geometry import Camera, VoxelGrid, depth_to_points
from mv3dad.volume import (GridTooLargeError, VolumeAccumulator, backproject, cuda_available, grid_for_views,
                           required_bytes, resize_bilinear)

CUDA = cuda_available()


def _views(n=4, h=40, w=56, seed=0):
    """Random cameras on a sphere looking at the origin; random depth around it, 20 % of pixels without depth."""
    rng = np.random.default_rng(seed)
    views = []
    for _ in range(n):
        eye = rng.normal(size=3)
        eye = eye / np.linalg.norm(eye) * rng.uniform(350, 450)
        cam = Camera.look_at(eye, rng.normal(scale=10, size=3), (0, 0, 1), 50.0, 55.0, w, h)
        depth = rng.uniform(300, 500, (h, w)).astype(np.float32)
        depth[rng.random((h, w)) < 0.2] = 0
        views.append(View(np.zeros((h, w), np.float32), depth, cam))
    return views


def _maps(views, dtype=np.float32, seed=1, scale=1):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(v.depth.shape[0] // scale, v.depth.shape[1] // scale)).astype(dtype) for v in views]


def _same(a, b):
    return np.array_equal(a.values, b.values, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_equals_torch_bit_for_bit(dtype):
    views = _views()
    maps = _maps(views, dtype)
    grid = grid_for_views(views, voxel_size=7.0)
    a = backproject(maps, views, grid=grid, backend="numba")
    b = backproject(maps, views, grid=grid, backend="torch")
    assert a.dtype == np.float32 and a.shape == grid.shape
    assert _same(a, b)
    n_obs = int(np.isfinite(a.values).sum())
    assert 0 < n_obs < a.size  # some observed, some NaN: the NaN positions are compared too
    assert a.attrs["n_points"] == sum(int((v.depth > 0).sum()) for v in views)  # the auto grid holds every pixel
    # float32 and float64 maps of the same values give the same volume
    c = backproject([m.astype(np.float32) for m in maps], views, grid=grid, backend="numba")
    assert _same(a, c)


def test_numba_and_torch_round_identically():
    """On a 2 um virtual grid (never allocated) a one-ulp difference in the lifting would move many pixels to a
    neighbouring voxel: the two backends must still agree on every pixel, while float64 lifting does not."""
    from mv3dad.volume.backends import numba_backend, torch_backend
    from mv3dad.volume.grid_for import view_lifting

    origin, vs, shape = np.full(3, -1000, np.float32), np.float32(0.002), np.full(3, 10**6, np.int64)
    moved = 0
    for view in _views(n=3, h=60, w=80):
        depth, kinv, c2w = view_lifting(view)
        a = numba_backend.pixel_voxels(depth, kinv, c2w, origin, vs, shape, np.empty(depth.size, np.int64))
        t, pix = torch_backend.pixel_voxels(*map(torch.from_numpy, (depth, kinv, c2w, origin)),
                                            torch.tensor(vs), tuple(shape.tolist()))
        b = np.full(depth.size, -1, np.int64)
        b[pix.numpy()] = t.numpy()
        assert np.array_equal(a, b)
        pts64 = depth_to_points(view.depth, view.camera)[0]
        ijk = np.floor((pts64 - origin) / vs + 0.5).astype(np.int64)
        moved += np.count_nonzero((ijk[:, 0] * 10**6 + ijk[:, 1]) * 10**6 + ijk[:, 2] != a[a >= 0])
    assert moved > 0  # the test is sensitive to rounding


@pytest.mark.parametrize("reduce", ["max", "mean"])
def test_sorted_slab_reduction_equals_sequential(monkeypatch, reduce):
    """The counting-sort, slab-parallel reduction (used with > 2 threads) gives the very same bits."""
    from mv3dad.volume.backends import numba_backend

    views = _views(n=3)
    maps = _maps(views)
    grid = grid_for_views(views, voxel_size=3.0)
    sequential = backproject(maps, views, grid=grid, backend="numba", reduce=reduce)
    monkeypatch.setattr(numba_backend, "_SEQUENTIAL_MAX_THREADS", 0)
    monkeypatch.setattr(numba_backend, "_SLABS_PER_THREAD", 64)  # many small slabs
    slabbed = backproject(maps, views, grid=grid, backend="numba", reduce=reduce)
    assert _same(sequential, slabbed)  # stable sort: even the float32 sums are added in the same order
    assert slabbed.attrs["n_points"] == sequential.attrs["n_points"]


def test_add_points_numba_equals_torch_and_drops_outside():
    rng = np.random.default_rng(3)
    grid = VoxelGrid((0, 0, 0), 1.5, (9, 7, 5))
    pts = rng.uniform(-3, 15, (5000, 3))
    s = rng.normal(size=5000)
    out = {}
    for backend in ("numba", "torch"):
        acc = VolumeAccumulator(grid, backend=backend)
        landed = acc.add_points(pts, s)
        out[backend] = acc.result()
    inside = grid.contains(grid.world_to_index(pts))
    assert landed == inside.sum() < len(pts)
    assert _same(out["numba"], out["torch"])


def test_pixels_land_in_the_voxel_that_contains_them():
    """Independent float64 check: each voxel's max comes from a pixel whose 3D point lies inside that voxel."""
    views = _views(n=2)
    grid = grid_for_views(views, voxel_size=5.0)
    acc = VolumeAccumulator(grid, backend="numba")
    for k, v in enumerate(views):
        ids = np.arange(v.depth.size, dtype=np.float64).reshape(v.depth.shape) + k * v.depth.size
        acc.add(ids, v)  # unique score per pixel = its id
    vol = acc.result().values
    pts = np.concatenate([depth_to_points(v.depth, v.camera)[0] for v in views])
    ids = np.concatenate([np.flatnonzero(v.depth > 0) + k * v.depth.size for k, v in enumerate(views)])
    lookup = dict(zip(ids.tolist(), range(len(ids))))
    obs = np.argwhere(np.isfinite(vol))
    assert len(obs) > 100
    winners = pts[[lookup[int(vol[tuple(i)])] for i in obs]]
    assert np.all(np.abs(winners - grid.index_to_world(obs)) <= grid.voxel_size / 2 + 1e-3)


def _top_view(depth, scores=None):
    """A 4x4 camera 1000 mm above the origin looking down: every pixel at depth 1000 hits z = 0 within 1.5 mm."""
    cam = Camera.look_at((0, 0, 1000), (0, 0, 0), (0, 1, 0), 1000.0, 1000.0, 4, 4)
    return View(np.zeros((4, 4), np.float32), np.asarray(depth, np.float32), cam)


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_max_and_mean_by_hand(backend):
    grid = VoxelGrid((-10, -10, 0), 10.0, (3, 3, 3))
    depth = np.full((4, 4), 1000.0)
    depth[0, 0] = 0  # no measurement: its (largest) score must be ignored
    depth[3, 3] = 980  # lands 20 mm higher, in voxel (1, 1, 2)
    s = -np.arange(16, dtype=np.float64).reshape(4, 4) - 1  # negative scores: max of negatives is exercised
    s[0, 0] = 99.0
    s[3, 3] = 0.25
    view = _top_view(depth)
    acc = VolumeAccumulator(grid, backend=backend)
    acc.add(s, view)
    vol = acc.result().values
    assert vol[1, 1, 0] == -2.0 and vol[1, 1, 2] == 0.25
    assert np.isnan(vol).sum() == 27 - 2
    acc.add(np.full((4, 4), -1.5), view)  # a second view: raises (1,1,0) to -1.5, leaves (1,1,2) at 0.25
    vol = acc.result().values
    assert vol[1, 1, 0] == -1.5 and vol[1, 1, 2] == 0.25
    mean = VolumeAccumulator(grid, reduce="mean", backend=backend)
    mean.add(s, view)
    mean.add(np.full((4, 4), 2.0), view)
    expected = (s[depth == 1000].sum() + 2.0 * 14) / 28
    m = mean.result()
    assert m.values[1, 1, 0] == pytest.approx(expected, rel=1e-6)
    assert m.values[1, 1, 2] == pytest.approx((0.25 + 2.0) / 2)
    assert m.attrs["reduce"] == "mean" and np.isnan(m.values).sum() == 25


def test_mean_numba_matches_torch():
    views = _views(n=3)
    maps = _maps(views)
    grid = grid_for_views(views, voxel_size=6.0)
    a = backproject(maps, views, grid=grid, reduce="mean", backend="numba")
    b = backproject(maps, views, grid=grid, reduce="mean", backend="torch")
    assert np.array_equal(np.isnan(a.values), np.isnan(b.values))
    np.testing.assert_allclose(a.values, b.values, rtol=1e-5, atol=1e-6)


def test_unobserved_is_nan_and_zero_scores_are_zero():
    grid = VoxelGrid((-10, -10, 0), 10.0, (3, 3, 3))
    acc = VolumeAccumulator(grid, backend="numba")
    acc.add(np.zeros((4, 4), np.float32), _top_view(np.full((4, 4), 1000.0)))
    vol = acc.result()
    assert vol.values[1, 1, 0] == 0.0  # observed with score 0
    assert np.isnan(vol.values).sum() == 26
    assert np.array_equal(acc.observed, np.isfinite(vol.values))
    assert vol.attrs["voxel_size_mm"] == 10.0 and vol.attrs["units"] == "mm" and vol.name == "anomaly"
    np.testing.assert_allclose(vol["z"].values, [0, 10, 20])


def test_negative_zero_is_plus_zero():
    grid = VoxelGrid((-10, -10, 0), 10.0, (3, 3, 3))
    view = _top_view(np.full((4, 4), 1000.0))
    for backend in ("numba", "torch"):
        acc = VolumeAccumulator(grid, backend=backend)
        acc.add(np.full((4, 4), -0.0), view)
        assert not np.signbit(acc.result().values[1, 1, 0])


def test_streaming_equals_one_shot_with_modalities():
    views = _views(n=3)
    img, dep = _maps(views, seed=1), _maps(views, seed=2)
    grid = grid_for_views(views, voxel_size=8.0)
    one_shot = backproject([np.stack([a, b]) for a, b in zip(img, dep)], views, grid=grid, backend="numba")
    acc = VolumeAccumulator(grid, backend="numba")
    for i in reversed(range(3)):  # another order: max does not depend on it
        acc.add(dep[i], views[i])
        acc.add(img[i], views[i])
    assert _same(acc.result(), one_shot)
    assert acc.n_maps == 6
    both = np.fmax(backproject(img, views, grid=grid).values, backproject(dep, views, grid=grid).values)
    assert np.array_equal(one_shot.values, both, equal_nan=True)


def test_low_resolution_map_is_resampled_bilinearly():
    views = _views(n=2, h=40, w=56)
    low = _maps(views, scale=4)  # 10 x 14
    assert low[0].shape == (10, 14)
    up = resize_bilinear(low[0], 40, 56)
    ref = torch.nn.functional.interpolate(torch.from_numpy(low[0])[None, None], size=(40, 56), mode="bilinear",
                                          align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(up, ref, atol=1e-6)
    grid = grid_for_views(views, voxel_size=8.0)
    a = backproject(low, views, grid=grid, backend="numba")
    b = backproject([resize_bilinear(m, 40, 56) for m in low], views, grid=grid, backend="numba")
    assert _same(a, b)
    const = backproject([np.full((5, 7), 0.3)] * 2, views, grid=grid)
    assert np.nanmin(const.values) == np.nanmax(const.values) == np.float32(0.3)


def test_gt_grid_is_used():
    views = _views(n=2)
    gt = VoxelGrid((-50, -40, -30), 4.0, (20, 15, 10)).to_dataarray(np.zeros((20, 15, 10), np.uint8))
    vol = backproject(_maps(views), views, grid=gt)
    for d in "xyz":
        np.testing.assert_array_equal(vol[d].values, gt[d].values)


def test_grid_too_large_is_refused_before_allocating():
    grid = VoxelGrid((0, 0, 0), 0.01, (100_000, 100_000, 10_000))
    need = required_bytes(grid)
    assert need == grid.size * 8
    tracemalloc.start()
    with pytest.raises(GridTooLargeError, match=f"needs {need} bytes"):
        VolumeAccumulator(grid, backend="numba")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000
    with pytest.raises(MemoryError):  # a small max_bytes refuses a small grid too
        backproject([np.zeros((4, 4))], [_top_view(np.full((4, 4), 1000.0))], voxel_size=1.0, max_bytes=10)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_name_the_view(bad):
    views = _views(n=3)
    maps = _maps(views)
    maps[1][5, 7] = bad
    with pytest.raises(ValueError, match=r"view 1: scores hold 1 NaN/inf values \(first at row 5, column 7\)"):
        backproject(maps, views, voxel_size=8.0, backend="numba")


def test_bad_inputs():
    views = _views(n=1, h=40, w=56)
    grid = grid_for_views(views, voxel_size=8.0)
    with pytest.raises(ValueError, match="aspect ratio"):
        backproject([np.zeros((56, 40))], views, grid=grid)  # transposed
    with pytest.raises(ValueError, match="aspect ratio"):
        backproject([np.zeros((40, 40))], views, grid=grid)  # cropped
    backproject([np.zeros((13, 18))], views, grid=grid)  # rounded feature-map size: accepted
    with pytest.raises(ValueError, match="unknown back-projection backend 'jax'"):
        VolumeAccumulator(grid, backend="jax")
    with pytest.raises(ValueError, match="reduce"):
        VolumeAccumulator(grid, reduce="median")
    with pytest.raises(ValueError, match="2 score maps for 1 views"):
        backproject([np.zeros((40, 56))] * 2, views, grid=grid)
    empty = [View(v.image, np.zeros_like(v.depth), v.camera) for v in views]
    with pytest.raises(ValueError, match="cannot choose a grid"):
        backproject([np.zeros((40, 56))], empty)


@pytest.mark.skipif(CUDA, reason="checks the error raised when no CUDA device is usable")
def test_cupy_without_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="backend 'cupy' needs"):
        VolumeAccumulator(VoxelGrid((0, 0, 0), 1.0, (2, 2, 2)), backend="cupy")


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs cupy and a CUDA GPU (cupy.cuda.is_available())")
@pytest.mark.parametrize("reduce", ["max", "mean"])
def test_cupy_equals_numba(reduce):
    views = _views()
    maps = _maps(views)
    grid = grid_for_views(views, voxel_size=7.0)
    a = backproject(maps, views, grid=grid, backend="numba", reduce=reduce)
    b = backproject(maps, views, grid=grid, backend="cupy", reduce=reduce)
    assert VolumeAccumulator(grid).backend == "cupy"  # auto picks the GPU
    if reduce == "max":
        assert _same(a, b)
    else:  # float atomicAdd sums in a nondeterministic order
        assert np.array_equal(np.isnan(a.values), np.isnan(b.values))
        np.testing.assert_allclose(a.values, b.values, rtol=1e-5, atol=1e-6)


def _nvrtc():
    """libnvrtc from the nvidia-cuda-nvrtc wheel (shipped with torch's CUDA build), or None."""
    import site

    for sp in site.getsitepackages():
        for lib in sorted(glob.glob(os.path.join(sp, "nvidia", "*", "lib", "libnvrtc.so.*"))) + sorted(
                glob.glob(os.path.join(sp, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so.*"))):
            for builtins in glob.glob(os.path.join(os.path.dirname(lib), "libnvrtc-builtins.so.*")):
                if ".alt." not in builtins:
                    ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)
            return ctypes.CDLL(lib)
    return None


NVRTC = _nvrtc()


@pytest.mark.skipif(NVRTC is None, reason="needs libnvrtc (pip package nvidia-cuda-nvrtc) to compile the kernel")
def test_cuda_kernels_compile_without_fma():
    """The CuPy kernels compile (no GPU needed) and contain no fused multiply-add that would round differently."""
    from mv3dad.volume.backends.cupy_backend import _SOURCE

    prog = ctypes.c_void_p()
    assert NVRTC.nvrtcCreateProgram(ctypes.byref(prog), _SOURCE.encode(), b"volume.cu", 0, None, None) == 0
    opts = (ctypes.c_char_p * 2)(b"--fmad=false", b"--gpu-architecture=compute_75")
    rc = NVRTC.nvrtcCompileProgram(prog, 2, opts)
    size = ctypes.c_size_t()
    NVRTC.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    NVRTC.nvrtcGetProgramLog(prog, log)
    assert rc == 0, log.value.decode()
    NVRTC.nvrtcGetPTXSize(prog, ctypes.byref(size))
    ptx = ctypes.create_string_buffer(size.value)
    NVRTC.nvrtcGetPTX(prog, ptx)
    ptx = ptx.value.decode()
    assert "atom.global.max.s32" in ptx and "atom.global.min.u32" in ptx
    assert "fma." not in ptx and "div.rn.f32" in ptx


def test_torch_backend_on_the_device_matches_numba(device):
    """The torch backend on ``--device`` (kornia-style option): on CPU bit-identical to Numba; on a GPU (fused
    multiply-adds may move a pixel that sits on a voxel face) at least 99.9 % of the voxels equal."""
    from mv3dad.volume.backends.torch_backend import TorchBackend

    views = _views()
    maps = _maps(views)
    grid = grid_for_views(views, voxel_size=7.0)
    ref = backproject(maps, views, grid=grid, backend="numba")
    acc = VolumeAccumulator(grid, backend="torch")
    acc._impl = TorchBackend(acc.grid, "max", device=device)
    for m, v in zip(maps, views):
        acc.add(m, v)
    out = acc.result()
    assert out.shape == ref.shape
    same = (out.values == ref.values) | (np.isnan(out.values) & np.isnan(ref.values))
    if torch.device(device).type == "cpu":
        assert same.all()
    else:
        assert same.mean() >= 0.999
