import numpy as np
import pytest

from mv3dad.geometry import Camera, VoxelGrid, depth_to_points, project_points, visible_in_depth
from mv3dad.geometry.camera import CalibrationError


def _cam(w=64, h=48, eye=(0.0, -500.0, 200.0)):
    return Camera.look_at(eye, (0, 0, 0), (0, 0, 1), fx=80.0, fy=80.0, width=w, height=h)


def test_look_at_is_valid_and_opencv():
    cam = _cam().validate()
    uv, z = project_points(np.zeros((1, 3)), cam)
    np.testing.assert_allclose(uv[0], [(64 - 1) / 2, (48 - 1) / 2], atol=1e-9)
    assert z[0] == pytest.approx(np.hypot(500, 200))
    # world up (+z) appears towards smaller v (image y points down)
    uv_up, _ = project_points(np.array([[0, 0, 50.0]]), cam)
    assert uv_up[0, 1] < uv[0, 1]
    np.testing.assert_allclose(cam.cam_to_world @ cam.world_to_cam, np.eye(4), atol=1e-12)


def test_depth_roundtrip_through_projection():
    cam = _cam()
    rng = np.random.default_rng(0)
    depth = rng.uniform(300, 700, size=(48, 64)).astype(np.float32)
    depth[5:9, 10:20] = 0  # no measurement
    pts, mask = depth_to_points(depth, cam)
    assert pts.shape == (mask.sum(), 3) and not mask[6, 12]
    uv, z = project_points(pts, cam)
    v, u = np.nonzero(mask)
    np.testing.assert_allclose(uv[:, 0], u, atol=1e-6)
    np.testing.assert_allclose(uv[:, 1], v, atol=1e-6)
    np.testing.assert_allclose(z, depth[mask], rtol=1e-6)
    assert visible_in_depth(pts, cam, depth).all()
    ray = pts - cam.center
    behind = pts + 50 * ray / np.linalg.norm(ray, axis=1, keepdims=True)  # same pixel, 50+ mm deeper
    assert not visible_in_depth(behind, cam, depth).any()


def test_scaled_camera_keeps_rays():
    cam = _cam(64, 48)
    big = cam.scaled(128, 96)
    p = np.array([[10.0, 20.0, 30.0]])
    uv, _ = project_points(p, cam)
    uv2, _ = project_points(p, big)
    np.testing.assert_allclose((uv2 + 0.5) / 2 - 0.5, uv, atol=1e-9)


@pytest.mark.parametrize("field,mutate", [
    ("focal", lambda K, T: K.__setitem__((0, 0), -5.0)),
    ("principal point", lambda K, T: K.__setitem__((0, 2), 500.0)),
    ("not orthonormal", lambda K, T: T.__setitem__((0, 0), 2.0)),
    ("determinant", lambda K, T: T.__setitem__(slice(0, 3), -T[:3])),
])
def test_invalid_calibration_names_field(field, mutate):
    cam = _cam()
    K, T = cam.K.copy(), cam.world_to_cam.copy()
    mutate(K, T)
    with pytest.raises(CalibrationError, match=f"rig.yaml.*{field.split()[0]}"):
        Camera(K, T, 64, 48).validate("rig.yaml")


def test_voxel_grid_dataarray_roundtrip():
    g = VoxelGrid.from_bounds([-10, -5, 0], [10, 5, 7], voxel_size=2.0, margin=1.0)
    assert g.shape == (12, 6, 5)  # faces on multiples of 2 mm: x -12..12, y -6..6, z -2..8
    np.testing.assert_allclose(g.origin, [-11.0, -5.0, -1.0])
    other = VoxelGrid.from_bounds([3.3, 0, 0], [9, 9, 9], voxel_size=2.0)
    assert np.allclose((other.origin - g.origin) / 2.0, np.rint((other.origin - g.origin) / 2.0))  # same lattice
    vals = np.arange(g.size, dtype=np.float32).reshape(g.shape)
    da = g.to_dataarray(vals)
    assert da.attrs["units"] == "mm" and float(da.x[0]) == pytest.approx(-11.0)
    assert VoxelGrid.from_dataarray(da) == g
    idx = g.world_to_index(g.index_to_world(np.array([[3, 2, 1]])))
    np.testing.assert_array_equal(idx, [[3, 2, 1]])
    assert g.contains(np.array([[11, 0, 0]]))[0] and not g.contains(np.array([[12, 0, 0]]))[0]


def test_mesh_caster_hits_a_plate_at_the_depth():
    from mv3dad.geometry.raycast import MeshCaster, pixel_rays

    cam = Camera.look_at([10.0, -5.0, 1000.0], [0, 0, 0], [0, 1, 0], 600, 600, 64, 48)
    plate = MeshCaster(np.array([[-100.0, -100, 0], [100, -100, 0], [100, 100, 0], [-100, 100, 0]]),
                       np.array([[0, 1, 2], [0, 2, 3]]))
    v, u = np.mgrid[0:48, 0:64]
    d = pixel_rays(cam, v.ravel(), u.ravel())
    assert np.allclose((d @ cam.R.T)[:, 2], 1.0)  # camera-frame z component 1: t is the depth
    t, n = plate.cast(cam.center, d)
    hit = cam.center + t[:, None] * d
    assert np.allclose(hit[:, 2], 0.0, atol=1e-3)
    assert np.allclose(np.abs(n[:, 2]), 1.0)
    _, z = project_points(hit, cam)
    assert np.allclose(z, t, rtol=1e-5)
    t, n = plate.cast(cam.center, -d)  # away from the plate: no hit
    assert np.isinf(t).all() and np.isnan(n).all()


def test_nearest_pixel_rounds_and_flags_points_outside():
    from mv3dad.geometry.projection import nearest_pixel

    cam = Camera.look_at([0, 0, -500.0], [0, 0, 0], [0, -1, 0], 400, 400, 64, 48)
    pts = np.array([[0.0, 0, 0], [1000.0, 0, 0], [0, 0, -600.0]])  # centre; beyond the image; behind the camera
    v, u, z, inside = nearest_pixel(pts, cam)
    assert inside.tolist() == [True, False, False]
    uv, _ = project_points(pts[:1], cam)
    assert (u[0], v[0]) == (round(uv[0, 0]), round(uv[0, 1])) and z[0] == pytest.approx(500.0)
    assert u[1] == v[1] == u[2] == v[2] == 0  # safe indices where not inside


def _numpy_normals(P, center, max_jump=5.0):
    """The reference formula: cross product of central differences, turned to the camera, NaN at jumps."""
    du, dv = np.full_like(P, np.nan), np.full_like(P, np.nan)
    du[:, 1:-1] = P[:, 2:] - P[:, :-2]
    dv[1:-1] = P[2:] - P[:-2]
    jump = (np.linalg.norm(du, axis=2) > 2 * max_jump) | (np.linalg.norm(dv, axis=2) > 2 * max_jump)
    with np.errstate(invalid="ignore"):
        n = np.cross(du, dv)
        n /= np.linalg.norm(n, axis=2, keepdims=True)
        n[np.sum(n * (center - P), axis=2) < 0] *= -1
    n[jump] = np.nan
    return n


def test_compiled_point_image_normals_match_the_numpy_formula():
    from mv3dad.geometry.projection import depth_to_point_image, point_image_normals

    cam = _cam()
    rng = np.random.default_rng(3)
    depth = 100 + rng.normal(0, 0.2, (48, 64)) + np.linspace(0, 10, 64)[None]  # 1.25 mm pixels
    depth[10:20, 30:40] += 30  # a step: NaN along its edges
    depth[30:33, 5:9] = 0  # a hole
    depth[:, 50] = 0
    P = depth_to_point_image(depth, cam)
    n = point_image_normals(P, cam.center)
    ref = _numpy_normals(P, cam.center)
    assert np.array_equal(n, ref, equal_nan=True)
    ok = np.isfinite(n).all(axis=2)
    assert ok.sum() > 1000 and np.isnan(n[10, 30:40]).all() and np.isnan(n[0]).all()
    np.testing.assert_allclose(np.linalg.norm(n[ok], axis=1), 1.0, atol=1e-12)
    assert (np.sum(n[ok] * (cam.center - P[ok]), axis=1) > 0).all()  # facing the camera


def test_facing_zbuffer_keeps_the_nearest_facing_point_per_cell():
    from mv3dad.geometry.compiled import facing_zbuffer

    cam = _cam()
    to_cam = cam.center / np.linalg.norm(cam.center)
    pts = np.array([[0, 0, 0], [0, 0, 0], [30.0, 0, 0], [0, 0, 20.0]]) + to_cam * np.array([[0], [40], [0], [0]])
    nrm = np.array([to_cam, to_cam, to_cam, -to_cam])  # the last one faces away: left out
    zbuf = np.full((12, 16), np.inf)
    facing_zbuffer(pts, nrm, cam.center, cam.R, cam.t, cam.K, 4, 0.3, zbuf)
    uv, z = project_points(pts, cam)
    cells = np.floor((uv + 0.5) / 4).astype(int)
    assert zbuf[cells[1, 1], cells[1, 0]] == pytest.approx(z[1])  # the nearer of the two on one cell
    assert zbuf[cells[2, 1], cells[2, 0]] == pytest.approx(z[2])
    assert np.isfinite(zbuf).sum() == 2
