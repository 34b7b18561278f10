import json
import os

import numpy as np
import pytest
import trimesh
import xarray as xr

from mv3dad.data import DataError, Sample, View, open_dataset, read_sample, write_benchmark_info, write_sample
from mv3dad.data.rig import hemisphere_rig
from mv3dad.geometry import VoxelGrid

H, W = 12, 16


def _sample(instance_id="a000", label="anomalous", rgb=False, with_gt=True, seed=0):
    """A tiny 2-view sample with random pixels, holes in depth, a 4x3x2 ground-truth volume."""
    rng = np.random.default_rng(seed)
    rig = hemisphere_rig(2, image_size=W)
    cams = [c.scaled(W, H) for c in rig.cameras]
    views = []
    for cam in cams:
        img = rng.random((H, W, 3) if rgb else (H, W)).astype(np.float32)
        depth = rng.uniform(700, 1100, (H, W)).astype(np.float32)
        depth[:3, :4] = 0  # no measurement
        views.append(View(img, depth, cam))
    gt = None
    if with_gt:
        values = np.zeros((4, 3, 2), np.uint8)
        values[1, 2, 0] = 1
        gt = VoxelGrid((-3.0, -2.0, 1.0), 2.0, (4, 3, 2)).to_dataarray(values, name="gt")
    meta = {"defects": [{"type": "dent", "size_mm": 6.5, "center_mm": [-1.0, 2.0, 1.0]}], "seed": np.int64(seed)}
    return Sample("vase", instance_id, views, label, gt, None, meta)


@pytest.mark.parametrize("rgb,bits", [(False, 8), (False, 16), (True, 8)])
def test_write_read_roundtrip(tmp_path, rgb, bits):
    s = _sample(rgb=rgb)
    d = write_sample(tmp_path, s, "test", image_bits=bits)
    assert d == tmp_path / "vase" / "test" / "a000"
    r = read_sample(d)
    assert (r.category, r.instance_id, r.label) == ("vase", "a000", "anomalous")
    assert r.meta["defects"] == s.meta["defects"] and r.meta["seed"] == 0 and r.meta["image_bits"] == bits
    tol = 0.5 / (255 if bits == 8 else 65535) + 1e-7
    for a, b in zip(s.views, r.views):
        assert b.image.dtype == np.float32 and b.image.shape == a.image.shape
        assert np.abs(a.image - b.image).max() <= tol
        np.testing.assert_array_equal(a.depth, b.depth)
        assert b.depth.dtype == np.float32
        np.testing.assert_array_equal(a.camera.K, b.camera.K)
        np.testing.assert_array_equal(a.camera.world_to_cam, b.camera.world_to_cam)
    assert isinstance(r.gt, xr.DataArray) and r.gt.dims == ("x", "y", "z") and r.gt.dtype == np.uint8
    xr.testing.assert_equal(r.gt, s.gt)
    assert float(r.gt.sel(x=-1.0, y=2.0, z=1.0)) == 1  # the defect centre's voxel, by mm coordinates
    assert r.mesh_path is None
    if bits == 16:  # really 16-bit: a value between two 8-bit levels survives
        assert np.abs(a.image - b.image).max() < 1 / 1000


def test_nominal_without_gt_and_mesh_copy(tmp_path):
    mesh_src = tmp_path / "box.stl"
    trimesh.creation.box((10, 20, 30)).export(mesh_src)
    s = _sample("n000", label="nominal", with_gt=False)
    s.mesh_path = str(mesh_src)
    d = write_sample(tmp_path / "bench", s, "train")
    r = read_sample(d)
    assert r.gt is None and r.label == "nominal" and not (d / "gt.npz").exists()
    assert r.mesh_path == str(d / "mesh.ply")
    np.testing.assert_allclose(trimesh.load(r.mesh_path).extents, (10, 20, 30))


def test_open_dataset_lazy_and_ordered(tmp_path):
    write_benchmark_info(tmp_path, ["vase"], seed=3, views=2)
    for i in (2, 0, 1):
        write_sample(tmp_path, _sample(f"t{i:03d}", seed=i), "test")
    write_sample(tmp_path, _sample("train000", "nominal", with_gt=False), "train")
    ds = open_dataset(tmp_path)
    assert ds.categories == ["vase"] and ds.info["seed"] == 3 and "vase" in ds
    assert len(ds["vase"].train) == 1 and len(ds["vase"].test) == 3
    assert ds["vase"].test.ids == ["t000", "t001", "t002"]
    assert [s.instance_id for s in ds["vase"].test] == ["t000", "t001", "t002"]
    assert ds["vase"].test[-1].instance_id == "t002"
    np.testing.assert_array_equal(ds["vase"].test[1].views[0].depth, _sample(seed=1).views[0].depth)
    with pytest.raises(KeyError, match="no category 'stool'"):
        ds["stool"]
    # without benchmark.json: category folders, or one category folder
    (tmp_path / "benchmark.json").unlink()
    assert open_dataset(tmp_path).categories == ["vase"]
    assert len(open_dataset(tmp_path / "vase")["vase"].test) == 3


def test_open_dataset_errors(tmp_path):
    with pytest.raises(DataError, match="dataset folder is missing"):
        open_dataset(tmp_path / "nope")
    with pytest.raises(DataError, match="not an mv3dad dataset"):
        open_dataset(tmp_path)
    (tmp_path / "benchmark.json").write_text(json.dumps({"format": "mv3dad", "version": 1, "categories": ["x"]}))
    with pytest.raises(DataError, match="category 'x' listed in .*benchmark.json has no folder"):
        open_dataset(tmp_path)
    (tmp_path / "benchmark.json").write_text(json.dumps({"format": "other", "version": 1, "categories": []}))
    with pytest.raises(DataError, match="benchmark.json: format must be 'mv3dad'"):
        open_dataset(tmp_path)


def test_killed_writer_leftover_is_ignored(tmp_path):
    d = write_sample(tmp_path, _sample("good"), "test")
    # a writer killed mid-way leaves its hidden temp folder: half an instance, no meta.json
    half = d.parent / f".tmp-half-{os.getpid() + 1}"
    (half / "views").mkdir(parents=True)
    np.save(half / "views" / "000_depth.npy", np.ones((H, W), np.float32))
    ds = open_dataset(tmp_path)
    assert ds["vase"].test.ids == ["good"]


def test_bad_sample_writes_nothing(tmp_path):
    s = _sample("bad")
    s.views[1].depth[0, 0] = np.nan
    with pytest.raises(DataError, match="view 1: depth holds NaN/inf"):
        write_sample(tmp_path, s, "test")
    s = _sample("bad")
    s.views[1] = View(s.views[1].image[:, :-1], s.views[1].depth, s.views[1].camera)
    with pytest.raises(DataError, match="view 1: image shape"):
        write_sample(tmp_path, s, "test")
    s = _sample("bad")
    s.views[0].image[0, 0] = 1.5
    with pytest.raises(DataError, match=r"view 0: image values must lie in \[0, 1\]"):
        write_sample(tmp_path, s, "test")
    with pytest.raises(DataError, match="16-bit PNG holds grayscale images only"):
        write_sample(tmp_path, _sample("bad", rgb=True), "test", image_bits=16)
    s = _sample("bad")
    s.gt = s.gt + 1  # values 1/2: not a 0/1 volume; fails after the views are written
    with pytest.raises(DataError, match="only 0 and 1"):
        write_sample(tmp_path, s, "test")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_overwrite(tmp_path):
    write_sample(tmp_path, _sample("x", seed=0), "test")
    with pytest.raises(FileExistsError, match="already exists"):
        write_sample(tmp_path, _sample("x", seed=1), "test")
    d = write_sample(tmp_path, _sample("x", seed=1), "test", overwrite=True)
    np.testing.assert_array_equal(read_sample(d).views[0].depth, _sample(seed=1).views[0].depth)
    assert sorted(p.name for p in d.parent.iterdir()) == ["x"]  # no hidden leftovers


@pytest.fixture
def written(tmp_path):
    return write_sample(tmp_path, _sample("a"), "test")


def test_missing_file_is_named(written):
    (written / "views" / "001_depth.npy").rename(written / "views" / "001_depth.bak")
    with pytest.raises(DataError, match=r"views: holds 1 depth maps .* but .*cameras.yaml has 2 cameras"):
        read_sample(written)
    (written / "views" / "001_depth.bak").rename(written / "views" / "005_depth.npy")
    with pytest.raises(DataError, match=r"001_depth\.npy: depth file is missing"):
        read_sample(written)


@pytest.mark.parametrize("name", ["meta.json", "cameras.yaml"])
def test_missing_meta_or_cameras(written, name):
    (written / name).unlink()
    with pytest.raises(DataError, match=f"{name}: .*(missing|not found)"):
        read_sample(written)


def test_shape_mismatch_is_named(written):
    np.save(written / "views" / "001_depth.npy", np.ones((H, W - 2), np.float32))
    with pytest.raises(DataError, match=r"001_image\.png / 001_depth\.npy .*image shape \(12, 16\) does not match"):
        read_sample(written)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_depth_is_an_error(written, bad):
    d = np.load(written / "views" / "000_depth.npy")
    d[5, 5] = bad
    np.save(written / "views" / "000_depth.npy", d)
    with pytest.raises(DataError, match=r"000_depth\.npy: depth holds 1 NaN/inf values"):
        read_sample(written)


def test_bad_calibration_in_instance(written):
    text = (written / "cameras.yaml").read_text().replace("width: 16", "width: -16", 1)
    (written / "cameras.yaml").write_text(text)
    with pytest.raises(DataError, match=r"cameras\.yaml: camera 0: width"):
        read_sample(written)


def test_pickled_npy_is_refused(written):
    np.save(written / "views" / "000_depth.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"000_depth\.npy: cannot read depth"):
        read_sample(written)
