"""PLY point clouds (read back with trimesh and open3d) and thresholded isosurface meshes."""

import numpy as np
import pytest

from mv3dad.export import isosurface, save_mesh, write_ply_points
from mv3dad.export.ply import score_colors
from mv3dad.geometry.grid import VoxelGrid


def test_ply_points_read_back(tmp_path, make_volume):
    import trimesh

    da = make_volume(shape=(9, 8, 7), origin=(-100.0, 20.0, 0.5), voxel_size=2.0)
    path = write_ply_points(da, tmp_path / "p.ply", cmap="viridis")
    observed = ~np.isnan(da.values)
    want_xyz = VoxelGrid.from_dataarray(da).index_to_world(np.argwhere(observed))

    cloud = trimesh.load(path, process=False)
    assert len(cloud.vertices) == observed.sum()
    np.testing.assert_allclose(cloud.vertices, want_xyz, rtol=0, atol=1e-4)
    raw = cloud.metadata["_ply_raw"]["vertex"]["data"]
    np.testing.assert_array_equal(raw["scalar_anomaly"], da.values[observed])
    rgb = np.stack([raw["red"], raw["green"], raw["blue"]], axis=1)
    scores = da.values[observed]
    np.testing.assert_array_equal(rgb, score_colors(scores, scores.min(), scores.max(), "viridis"))
    assert path.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")


def test_ply_read_by_open3d(tmp_path, make_volume):
    import open3d as o3d

    da = make_volume()
    write_ply_points(da, tmp_path / "p.ply", threshold=0.5)
    pcd = o3d.io.read_point_cloud(str(tmp_path / "p.ply"))
    keep = np.nan_to_num(da.values, nan=-1) >= 0.5
    assert len(pcd.points) == keep.sum() and pcd.has_colors()
    np.testing.assert_allclose(np.asarray(pcd.points),
                               VoxelGrid.from_dataarray(da).index_to_world(np.argwhere(keep)), atol=1e-4)
    with pytest.raises(ValueError, match="no observed voxel has a score >= 2"):
        write_ply_points(da, tmp_path / "none.ply", threshold=2.0)
    assert not (tmp_path / "none.ply").exists()


def test_colors_follow_the_colormap():
    import matplotlib

    rgb = score_colors(np.array([0.0, 5.0, 10.0, 20.0]), 0.0, 10.0, "turbo")
    want = np.round(matplotlib.colormaps["turbo"]([0.0, 0.5, 1.0, 1.0])[:, :3] * 255)
    np.testing.assert_array_equal(rgb, want)


def _ball(centre=(3.0, -2.0, 1.0), radius=6.0):
    grid = VoxelGrid((-15.0, -15.0, -15.0), 1.0, (31, 31, 31))
    x, y, z = np.meshgrid(*grid.axes(), indexing="ij")
    dist = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
    scores = np.clip(1 - dist / 12, 0, 1).astype(np.float32)  # 0.5 at radius 6
    scores[:, :, :2] = np.nan
    return grid.to_dataarray(scores)


def test_isosurface_in_world_mm():
    mesh = isosurface(_ball(), 0.5)
    assert mesh.is_watertight and mesh.volume > 0  # closed, normals outwards
    np.testing.assert_allclose(mesh.centroid, [3.0, -2.0, 1.0], atol=0.05)
    # encloses the voxels with score >= 0.5 (those within 6 mm), half a voxel around their centres
    assert 4 / 3 * np.pi * 5.5 ** 3 < mesh.volume < 4 / 3 * np.pi * 6.5 ** 3
    np.testing.assert_allclose(mesh.bounds, [[-3.5, -8.5, -5.5], [9.5, 4.5, 7.5]], atol=1e-9)


def test_isosurface_at_the_border_and_errors():
    da = _ball(centre=(15.0, 0.0, 0.0))  # region cut by the grid's +x face: still closed
    assert isosurface(da, 0.5).is_watertight
    with pytest.raises(ValueError, match="no voxel has a score >= threshold 2"):
        isosurface(da, 2.0)


@pytest.mark.parametrize("fmt", ["ply", "stl", "glb"])
def test_mesh_formats_read_back(tmp_path, fmt):
    import trimesh

    mesh = isosurface(_ball(), 0.5)
    path = save_mesh(mesh, tmp_path / f"iso.{fmt}")
    back = trimesh.load(path, force="mesh")
    assert len(back.faces) == len(mesh.faces)
    np.testing.assert_allclose(back.bounds, mesh.bounds, atol=1e-4)
    with pytest.raises(ValueError, match="mesh format"):
        save_mesh(mesh, tmp_path / "iso.obj")
