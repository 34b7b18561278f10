import numpy as np
import OpenEXR
import pytest
from PIL import Image

from mv3dad.data import DataError, open_sim3d
from mv3dad.data.rig import hemisphere_rig, save_rig

H, W = 6, 8
CLS = "bathroom_forniture"
VIEWS = ("C2", "C1", "C3")  # written out of order: the reader sorts by file name -> C1, C2, C3
DEPTH_OF = {"C1": 500.0, "C2": 600.0, "C3": 700.0}


def _png(path, value, bits=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype, top = (np.uint8, 255) if bits == 8 else (np.uint16, 65535)
    Image.fromarray(np.full((H, W), round(value * top), dtype)).save(path)


def _real_instance(folder, bits=8):
    for name in VIEWS:
        d = np.full((H, W), DEPTH_OF[name], np.float64)  # float64 on disk, as a scanner export may be
        d[0, :3] = np.inf  # no measurement
        d[1, 0] = -5.0
        (folder / "depth").mkdir(parents=True, exist_ok=True)
        np.save(folder / "depth" / f"{name}.npy", d)
        _png(folder / "rgb" / f"{name}_2.png", DEPTH_OF[name] / 1000, bits)


def _synth_instance(folder):
    (folder / "DEPTH").mkdir(parents=True, exist_ok=True)
    for name in VIEWS:
        d = np.full((H, W), DEPTH_OF[name], np.float32)
        d[:, -2:] = 1e10  # background: the maximum value
        d[2, 2] = -1.0  # negative: clipped to 0
        hdr = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
        with OpenEXR.File(hdr, {"R": d, "G": d, "B": d}) as f:
            f.write(str(folder / "DEPTH" / f"{name}_depth.exr"))
        _png(folder / "RGB" / f"{name}_2.png", 0.5)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "sim3d"
    c = root / CLS
    _real_instance(c / f"{CLS}_real")
    _synth_instance(c / f"{CLS}_synth")
    _real_instance(c / "good_01", bits=16)
    _real_instance(c / "bad_02")
    _real_instance(c / "bad_01")
    (root / "not_a_class").mkdir()
    gt = np.zeros((3, 3, 3), np.uint8)
    gt[1, 1, 1] = 1
    (c / "gt").mkdir()
    for inst in ("bad_01", "bad_02"):
        np.savez_compressed(c / "gt" / f"{inst}.npz", gt=gt, origin=np.array([0.0, 0.0, 100.0]),
                            voxel_size=np.float64(2.0))
    calib = tmp_path / "calib"
    rig = hemisphere_rig(3, image_size=W)
    save_rig(type(rig)("bf", [cam.scaled(W, H) for cam in rig.cameras]), calib / f"{CLS}.yaml")
    return root, calib


def test_reads_labels_order_and_depth(tree):
    root, calib = tree
    ds = open_sim3d(root, calib_dir=calib)
    assert ds.categories == [CLS] and ds.info["format"] == "sim3d"
    cat = ds[CLS]
    assert cat.train.ids == [f"{CLS}_real"]
    assert cat.test.ids == ["bad_01", "bad_02", "good_01"]  # gt/ and the training folders are not tests
    labels = [s.label for s in cat.test]
    assert labels == ["anomalous", "anomalous", "nominal"]
    train = cat.train[0]
    assert train.label == "nominal" and train.gt is None and len(train.views) == 3
    for view, name in zip(train.views, sorted(VIEWS)):
        d = view.depth
        assert d.dtype == np.float32 and d.shape == (H, W)
        assert np.all(d[0, :3] == 0) and d[1, 0] == 0  # inf and negative -> no measurement
        assert d[3, 3] == DEPTH_OF[name]  # sorted file order
        assert view.image.dtype == np.float32 and view.image[0, 0] == pytest.approx(DEPTH_OF[name] / 1000, abs=1 / 255)
    good = cat.test[2]
    assert good.gt is None and good.views[0].image[0, 0] == pytest.approx(0.5, abs=1e-4)  # 16-bit png
    bad = cat.test[0]
    assert bad.gt is not None and bad.gt.dims == ("x", "y", "z")
    assert float(bad.gt.sel(x=2.0, y=2.0, z=102.0)) == 1 and int(bad.gt.sum()) == 1


def test_synth2real_exr_depth(tree):
    root, calib = tree
    ds = open_sim3d(root, calib_dir=calib, setup="synth2real")
    train = ds[CLS].train[0]
    assert train.instance_id == f"{CLS}_synth" and train.meta["kind"] == "synth"
    for view, name in zip(train.views, sorted(VIEWS)):
        d = view.depth
        assert np.all(d[:, -2:] == 0)  # maximum = background -> 0
        assert d[2, 2] == 0  # negative -> 0
        assert d[4, 4] == DEPTH_OF[name]
        assert np.count_nonzero(d) == H * (W - 2) - 1


def test_synth_calibration_override(tree):
    root, calib = tree
    rig = hemisphere_rig(3, image_size=W, distance_mm=500.0)
    save_rig(type(rig)("bf_synth", [c.scaled(W, H) for c in rig.cameras]), calib / f"{CLS}_synth.yaml")
    ds = open_sim3d(root, calib_dir=calib, setup="synth2real")
    assert ds[CLS].train[0].meta["rig"] == "bf_synth" and ds[CLS].test[0].meta["rig"] == "bf"


def test_missing_calibration_message(tree, tmp_path):
    root, _ = tree
    empty = tmp_path / "no_calib"
    with pytest.raises(DataError) as e:
        open_sim3d(root, calib_dir=empty)
    msg = str(e.value)
    assert str(empty / f"{CLS}.yaml") in msg and "{calib_dir}/{cls}.yaml" in msg and "calib/README.md" in msg


def test_missing_ground_truth_message(tree):
    root, calib = tree
    (root / CLS / "gt" / "bad_02.npz").unlink()
    with pytest.raises(DataError) as e:
        open_sim3d(root, calib_dir=calib)
    msg = str(e.value)
    assert str(root / CLS / "gt" / "bad_02.npz") in msg and "{root}/{cls}/gt/{instance}.npz" in msg
    assert "bad_01" not in msg
    ds = open_sim3d(root, calib_dir=calib, gt_pattern=None)  # no ground truth wanted
    assert ds[CLS].test[1].gt is None and ds[CLS].test[1].label == "anomalous"


def test_missing_image_and_view_count(tree):
    root, calib = tree
    (root / CLS / "good_01" / "rgb" / "C2_2.png").unlink()
    with pytest.raises(DataError, match=r"good_01/rgb/C2_2\.png: image of depth map C2\.npy is missing"):
        open_sim3d(root, calib_dir=calib)
    _png(root / CLS / "good_01" / "rgb" / "C2_2.png", 0.1)
    np.save(root / CLS / "good_01" / "depth" / "C4.npy", np.ones((H, W)))
    _png(root / CLS / "good_01" / "rgb" / "C4_2.png", 0.1)
    with pytest.raises(DataError, match=r"good_01: 4 views but calibration rig 'bf' has 3 cameras"):
        open_sim3d(root, calib_dir=calib)


def test_shape_mismatch_on_load(tree):
    root, calib = tree
    np.save(root / CLS / "bad_01" / "depth" / "C3.npy", np.ones((H, W + 1)))
    ds = open_sim3d(root, calib_dir=calib)
    with pytest.raises(DataError, match=r"bad_01/rgb/C3_2\.png / C3\.npy .*does not match"):
        ds[CLS].test[0]


def test_no_class_folder(tmp_path):
    with pytest.raises(DataError, match="no SiM3D class folder found.*bathroom_forniture"):
        open_sim3d(tmp_path)
