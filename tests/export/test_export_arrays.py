"""Round trips of the array formats (.npz, .npy + sidecar, Zarr) and the all-or-nothing writes."""

import json
import zipfile

import numpy as np
import pytest

from mv3dad.data.scene import DataError
from mv3dad.export import ExportError, load_volume, save_volume
from mv3dad.geometry.grid import VoxelGrid


def _same(a, b):
    ga, gb = VoxelGrid.from_dataarray(a), VoxelGrid.from_dataarray(b)
    assert b.dtype == np.float32
    np.testing.assert_array_equal(a.values, b.values)  # NaN positions included
    np.testing.assert_array_equal(ga.origin, gb.origin)
    assert ga.voxel_size == gb.voxel_size and ga.shape == gb.shape
    for d in "xyz":
        np.testing.assert_array_equal(a[d].values, b[d].values)
    assert a.name == b.name and b.attrs["units"] == "mm"


@pytest.mark.parametrize("fmt", ["npz", "npy", "zarr"])
def test_round_trip_exact(tmp_path, make_volume, fmt):
    da = make_volume(shape=(70, 6, 3), name="cfm_score")  # > one 64-voxel zarr chunk along x
    path = save_volume(da, tmp_path / f"vol.{fmt}")
    back = load_volume(path)
    _same(da, back)
    assert np.isnan(back.values).sum() == np.isnan(da.values).sum() > 0
    assert back.values.flat[1] == 0.0


def test_npz_layout_needs_no_pickle(tmp_path, make_volume):
    da = make_volume()
    save_volume(da, tmp_path / "v.npz")
    with np.load(tmp_path / "v.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["name", "origin", "scores", "units", "voxel_size"]
        assert z["scores"].dtype == np.float32 and z["scores"].shape == (13, 7, 5)
        np.testing.assert_array_equal(z["origin"], [-12.5, 3.25, 0.0])
        assert z["voxel_size"].shape == () and float(z["voxel_size"]) == 1.5
        assert str(z["units"]) == "mm" and str(z["name"]) == "anomaly"
        assert z["name"].dtype.kind == "U"


def test_npy_sidecar_and_missing_sidecar(tmp_path, make_volume):
    save_volume(make_volume(), tmp_path / "v.npy")
    meta = json.loads((tmp_path / "v.npy.json").read_text())
    assert meta["origin"] == [-12.5, 3.25, 0.0] and meta["voxel_size"] == 1.5 and meta["units"] == "mm"
    assert np.load(tmp_path / "v.npy").shape == (13, 7, 5)
    (tmp_path / "v.npy.json").unlink()
    with pytest.raises(DataError, match="sidecar"):
        load_volume(tmp_path / "v.npy")


def test_zarr_is_chunked_with_mm_coords(tmp_path, make_volume):
    import xarray as xr

    save_volume(make_volume(shape=(70, 6, 3)), tmp_path / "v.zarr")
    ds = xr.open_zarr(tmp_path / "v.zarr", consolidated=False)
    assert ds["anomaly"].encoding["chunks"] == (64, 6, 3)
    assert ds["x"].attrs["units"] == "mm" and ds["anomaly"].attrs["voxel_size_mm"] == 1.5
    # overwriting an existing store replaces it whole
    save_volume(make_volume(shape=(4, 4, 4), seed=3), tmp_path / "v.zarr")
    assert load_volume(tmp_path / "v.zarr").shape == (4, 4, 4)
    assert [p.name for p in tmp_path.iterdir()] == ["v.zarr"]


def test_bad_inputs_name_the_file(tmp_path, make_volume):
    with pytest.raises(DataError, match="no such file"):
        load_volume(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.npz"):
        load_volume(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(DataError, match="missing arrays"):
        load_volume(tmp_path / "other.npz")
    np.savez(tmp_path / "pickled.npz", scores=np.array([{"a": 1}], dtype=object), origin=np.zeros(3),
             voxel_size=1.0, units="mm", name="x")
    with pytest.raises(DataError, match="pickled.npz"):
        load_volume(tmp_path / "pickled.npz")
    (tmp_path / "v.txt").write_text("1 2 3")
    with pytest.raises(DataError, match="cannot read volumes of type 'txt'"):
        load_volume(tmp_path / "v.txt")
    da = make_volume()
    da[0, 0, 0] = np.inf
    with pytest.raises(DataError, match="inf"):
        save_volume(da, tmp_path / "inf.npz")
    with pytest.raises(ValueError, match="unknown volume format"):
        save_volume(make_volume(), tmp_path / "v.h5")
    assert not (tmp_path / "inf.npz").exists() and not (tmp_path / "v.h5").exists()


@pytest.mark.parametrize("fmt", ["npz", "npy", "zarr", "vdb", "ply"])
def test_unwritable_path_leaves_nothing(tmp_path, make_volume, fmt):
    with pytest.raises(ExportError, match="does not exist"):
        save_volume(make_volume(), tmp_path / "no" / "such" / f"v.{fmt}")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError):
        save_volume(make_volume(), tmp_path / "file" / f"v.{fmt}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_failure_while_writing_leaves_no_partial_file(tmp_path, make_volume, monkeypatch):
    import mv3dad.export.npy as npy

    save_volume(make_volume(seed=1), tmp_path / "v.npz")
    before = (tmp_path / "v.npz").read_bytes()

    def broken(f, **arrays):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(npy.np, "savez_compressed", broken)
    with pytest.raises(ExportError, match="No space left"):
        save_volume(make_volume(seed=2), tmp_path / "v.npz")
    assert (tmp_path / "v.npz").read_bytes() == before  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["v.npz"]
    assert zipfile.is_zipfile(tmp_path / "v.npz")


def test_all_nan_volume(tmp_path, make_volume):
    da = make_volume(nan_frac=1.0)
    da[:] = np.nan
    back = load_volume(save_volume(da, tmp_path / "v.npz"))  # an array format keeps it faithfully
    assert np.isnan(back.values).all()
    for fmt in ("vdb", "ply"):  # sparse formats refuse: nothing observed
        with pytest.raises(DataError, match="NaN"):
            save_volume(da, tmp_path / f"v.{fmt}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.npz"]
