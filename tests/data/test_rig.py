import numpy as np
import pytest
import yaml

from mv3dad.data.rig import Rig, builtin_rig, hemisphere_rig, load_rig, save_rig
from mv3dad.geometry import project_points
from mv3dad.geometry.camera import CalibrationError


def test_hemisphere_rig_rings_and_aim():
    rig = hemisphere_rig(12, image_size=64)
    assert len(rig) == 12 and rig.name == "hemisphere12"
    target = np.array([[0.0, 0.0, 150.0]])
    heights = []
    for cam in rig.cameras:
        cam.validate()
        uv, z = project_points(target, cam)
        np.testing.assert_allclose(uv[0], [31.5, 31.5], atol=1e-9)  # the target is at the image centre
        assert z[0] == pytest.approx(900.0)
        heights.append(round(cam.center[2], 6))
    assert len(set(heights)) == 2 and heights[:6] == [heights[0]] * 6  # 2 rings x 6, lower ring first
    rig36 = hemisphere_rig(36, image_size=64)
    assert len({round(c.center[2], 6) for c in rig36.cameras}) == 3
    az = [np.degrees(np.arctan2(c.center[1], c.center[0])) % 360 for c in rig36.cameras]
    assert az[0] == pytest.approx(0) and az[12] == pytest.approx(10) and az[24] == pytest.approx(20)  # staggered


def test_rig_roundtrip_and_scaled(tmp_path):
    rig = hemisphere_rig(5, image_size=100, elevations_deg=(30, 60), name="five")
    path = save_rig(rig, tmp_path / "five.yaml")
    back = load_rig(path)
    assert back.name == "five" and len(back) == 5
    for a, b in zip(rig.cameras, back.cameras):
        np.testing.assert_array_equal(a.K, b.K)
        np.testing.assert_array_equal(a.world_to_cam, b.world_to_cam)
        assert (a.width, a.height) == (b.width, b.height)
    doc = yaml.safe_load(path.read_text())
    assert doc["units"] == "mm" and doc["convention"] == "opencv"
    small = back.scaled(50)
    assert small.cameras[0].width == 50 and small.cameras[0].K[0, 0] == pytest.approx(rig.cameras[0].K[0, 0] / 2)
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize("name", ["hemisphere12", "hemisphere36"])
def test_builtin_rigs_match_generator(name):
    rig = builtin_rig(name)
    ref = hemisphere_rig(int(name[len("hemisphere"):]), image_size=1024)
    assert len(rig) == len(ref) and rig.cameras[0].width == 1024
    for a, b in zip(rig.cameras, ref.cameras):
        np.testing.assert_allclose(a.world_to_cam, b.world_to_cam, atol=1e-12)
        np.testing.assert_allclose(a.K, b.K, atol=1e-12)


def _break(doc, field, value, cam=1):
    doc["cameras"][cam][field] = value
    return doc


ROT_NOT_ORTHO = [[1, 0, 0, 0], [0, 2, 0, 0], [0, 0, 1, 500], [0, 0, 0, 1]]
ROT_REFLECT = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, 500], [0, 0, 0, 1]]


@pytest.mark.parametrize("field,value,needle", [
    ("world_to_cam", ROT_NOT_ORTHO, "world_to_cam: rotation is not orthonormal"),
    ("world_to_cam", ROT_REFLECT, "world_to_cam: rotation determinant"),
    ("K", [[-100, 0, 31.5], [0, 100, 31.5], [0, 0, 1]], "K: focal lengths must be positive"),
    ("K", [[100, 0, 80], [0, 100, 31.5], [0, 0, 1]], "K: principal point"),
    ("K", [[100, 0, 31.5], [0, 100, 31.5]], "K: must be 3x3"),
    ("world_to_cam", [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "world_to_cam: must be 4x4"),
    ("width", 0, "width: must be a positive integer"),
    ("K", "abc", "K: must be a 3x3 matrix"),
    ("K", None, "K: must be 3x3, got shape ()"),
])
def test_bad_calibration_names_file_camera_and_field(tmp_path, field, value, needle):
    path = save_rig(hemisphere_rig(3, image_size=64), tmp_path / "rig.yaml")
    doc = _break(yaml.safe_load(path.read_text()), field, value)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(CalibrationError) as e:
        load_rig(bad)
    msg = str(e.value)
    assert str(bad) in msg and "camera 1" in msg and needle in msg


def test_bad_rig_file_level_errors(tmp_path):
    with pytest.raises(CalibrationError, match="rig file not found"):
        load_rig(tmp_path / "nope.yaml")
    (tmp_path / "a.yaml").write_text("name: x\nunits: m\ncameras: []\n")
    with pytest.raises(CalibrationError, match=r"a\.yaml: units"):
        load_rig(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("name: x\ncameras: []\n")
    with pytest.raises(CalibrationError, match=r"b\.yaml: cameras"):
        load_rig(tmp_path / "b.yaml")
    doc = yaml.safe_load(save_rig(hemisphere_rig(2, image_size=8), tmp_path / "c.yaml").read_text())
    del doc["cameras"][0]["world_to_cam"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(CalibrationError, match=r"c\.yaml: camera 0: missing field 'world_to_cam'"):
        load_rig(tmp_path / "c.yaml")


def test_save_rig_refuses_invalid_camera(tmp_path):
    rig = hemisphere_rig(2, image_size=8)
    bad = Rig("bad", [rig.cameras[0], type(rig.cameras[0])(-rig.cameras[1].K, rig.cameras[1].world_to_cam, 8, 8)])
    with pytest.raises(CalibrationError, match="camera 1"):
        save_rig(bad, tmp_path / "bad.yaml")
    assert not list(tmp_path.iterdir())
