import numpy as np
import pytest

from mv3dad.data.scene import View
from mv3dad.geometry import Camera, depth_to_points
from mv3dad.volume.resample import supersample_depth, supersample_factor, supersample_view


def test_supersampled_plane_stays_on_the_plane_and_steps_invent_no_points():
    cam = Camera.look_at((0, 0, 500.0), (0, 0, 0), (0, 1, 0), fx=50, fy=50, width=16, height=12)
    depth = np.full((12, 16), 500.0, np.float32)
    depth[:, 8:] = 700.0  # a depth step
    depth[0, 0] = 0.0  # a hole
    view = View(np.zeros((12, 16), np.float32), depth, cam)
    big = supersample_view(view, 4)
    assert big.depth.shape == (48, 64) and big.camera.width == 64
    values = set(np.unique(big.depth).tolist())
    assert values <= {0.0, 500.0, 700.0}  # nothing interpolated across the step or into the hole
    pts, _ = depth_to_points(big.depth, big.camera)
    assert np.all(np.isclose(pts[:, 2], 0.0, atol=1e-6) | np.isclose(pts[:, 2], -200.0, atol=1e-6))
    assert big.depth[:4, :4].max() == 0.0  # the hole is kept


def test_smooth_ramp_is_interpolated():
    depth = np.tile(np.arange(10, dtype=np.float32) + 500, (6, 1))
    up = supersample_depth(depth, 2)
    assert len(np.unique(up)) > len(np.unique(depth))
    with pytest.raises(ValueError):
        supersample_depth(depth, 0)


def test_factor_brings_footprint_under_half_a_voxel():
    cam = Camera.look_at((0, 0, 900.0), (0, 0, 0), (0, 1, 0), fx=176, fy=176, width=128, height=128)
    view = View(np.zeros((128, 128), np.float32), np.full((128, 128), 900.0, np.float32), cam)
    f = supersample_factor(view, voxel_size=2.0)
    assert 900 / (176 * f) <= 1.0 < 900 / (176 * (f - 1))
