"""Tests of the synthetic benchmark generator: geometry consistency, ground truth, determinism, setups, CLI."""

import hashlib
import itertools

import numpy as np
import open3d as o3d
import pytest
import trimesh
from typer.testing import CliRunner

from mv3dad.data import builtin_rig, open_dataset
from mv3dad.geometry import VoxelGrid, depth_to_points, project_points
from mv3dad.synth import shapes
from mv3dad.synth.artefacts import ArtefactConfig, scanner_view
from mv3dad.synth.defects import DEFECT_TYPES, apply_defects, find_candidates, sample_faces
from mv3dad.synth.generate import category_model, generate_benchmark, make_instance
from mv3dad.synth.materials import material_for
from mv3dad.synth.render import RenderMesh


def _bilinear(depth, uv, planar_mm=0.3):
    """Depth at sub-pixel uv, interpolating inverse depth (exact on planes) inside pixel quads that lie on one
    smooth surface (all four valid, bilinear cross term below ``planar_mm``); NaN elsewhere."""
    u0, v0 = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
    h, w = depth.shape
    ok = (u0 >= 0) & (v0 >= 0) & (u0 + 1 < w) & (v0 + 1 < h)
    out = np.full(len(uv), np.nan)
    u0, v0, uu, vv = u0[ok], v0[ok], uv[ok, 0] - u0[ok], uv[ok, 1] - v0[ok]
    q = np.stack([depth[v0, u0], depth[v0, u0 + 1], depth[v0 + 1, u0], depth[v0 + 1, u0 + 1]], 1).astype(float)
    valid = q.min(1) > 0
    inv = 1.0 / np.where(q > 0, q, 1.0)
    cross = np.abs(inv[:, 0] + inv[:, 3] - inv[:, 1] - inv[:, 2]) * q.mean(1) ** 2
    good = valid & (cross < planar_mm)
    val = inv[:, 0] * (1 - uu) * (1 - vv) + inv[:, 1] * uu * (1 - vv) + inv[:, 2] * (1 - uu) * vv + inv[:, 3] * uu * vv
    out[np.flatnonzero(ok)[good]] = 1.0 / val[good]
    return out


def _reprojection_errors(views, cams, pairs, planar_mm=0.3):
    """|depth_j(project_j(backproject_i)) - z_j| for points of view i that view j sees (not occluded: within
    2 mm, the tolerance of :func:`visible_in_depth`), and the fraction of comparable points that are seen."""
    errs, n_cmp = [], 0
    for i, j in pairs:
        pts, _ = depth_to_points(views[i], cams[i])
        uv, z = project_points(pts, cams[j])
        d = _bilinear(views[j], uv, planar_mm)
        cmp = np.isfinite(d)
        n_cmp += cmp.sum()
        err = np.abs(d - z)[cmp]
        errs.append(err[err < 2.0])
    e = np.concatenate(errs)
    return e, len(e) / max(n_cmp, 1)


@pytest.mark.parametrize("category", ["container", "vase"])
def test_depth_reprojects_across_views_without_noise(category):
    cams = builtin_rig("hemisphere12").scaled(128).cameras
    mesh = shapes.to_trimesh(shapes.refine(shapes.build_category(category), 8.0))
    rm = RenderMesh.build(mesh, material_for(category))
    depths = [rm.render(c).depth for c in cams]
    e, seen = _reprojection_errors(depths, cams, [(0, 1), (1, 6), (6, 7), (3, 9)])
    assert len(e) > 2000 and seen > 0.5, (len(e), seen)
    assert np.median(e) < 0.1 and np.percentile(e, 95) < 0.3 and np.percentile(e, 99) < 1.0, np.percentile(e, [50, 95, 99])


def test_depth_reprojects_across_views_at_default_settings(tiny_config):
    cfg = tiny_config(image_size=128)
    cams = builtin_rig("hemisphere12").scaled(128).cameras
    sample, _ = make_instance(category_model("container", cfg, cams), cams, cfg, "test", 0, False)
    depths = [v.depth for v in sample.views]
    e, seen = _reprojection_errors(depths, sample.cameras, [(0, 1), (1, 6), (6, 7), (3, 9)], planar_mm=1.0)
    assert len(e) > 1000 and seen > 0.5, (len(e), seen)
    assert np.median(e) < 0.5 and np.mean(e < 1.0) > 0.9, (np.median(e), np.mean(e < 1.0))


def _distance_to(mesh, points):
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)), o3d.core.Tensor(mesh.faces.astype(np.uint32)))
    return scene.compute_distance(o3d.core.Tensor(points.astype(np.float32))).numpy()


def test_visible_hides_occluded_back_facing_and_out_of_view_points():
    from mv3dad.geometry import Camera

    cam = Camera.look_at([0, 0, 500], [0, 0, 0], [0, 1, 0], 200.0, 200.0, 64, 64)  # ~80 mm wide at z = 0
    wall = trimesh.creation.box((40, 40, 4))  # a 4 mm thick plate facing the camera, centred at z = 0
    rm = RenderMesh.build(wall, material_for("bin"))
    pts = np.array([[0, 0, 2.0],      # front face: seen
                    [10, -5, 2.0],    # front face: seen
                    [0, 0, -2.0],     # back face, behind the plate: hidden
                    [0, 0, 1.0],      # inside the plate, 1 mm behind the front face: hidden (tol 0.5 mm)
                    [0, 0, 2.3],      # 0.3 mm in front of the face: seen
                    [0, 0, 12.0],     # 10 mm in front of the face, in free space: not measured
                    [300, 0, 2.0],    # outside the image
                    [0, 0, 600.0]])   # behind the camera
    assert rm.visible(pts, cam).tolist() == [True, True, False, False, True, False, False, False]
    assert rm.visible(pts, cam, tol=1.5)[3]


def test_ground_truth_marks_each_defect_near_its_centre_and_on_the_surface(tiny_config):
    cfg = tiny_config(categories=("bin",), image_size=24, max_defects=1)
    cams = builtin_rig("hemisphere12").scaled(24).cameras
    model = category_model("bin", cfg, cams)
    for k, kind in enumerate(DEFECT_TYPES):
        sample, world = make_instance(model, cams, cfg, "test", k, True, first_defect=kind)
        gt = sample.gt
        assert gt is not None and gt.dtype == np.uint8 and tuple(gt.dims) == ("x", "y", "z")
        assert gt.attrs["voxel_size_mm"] == 2.0
        assert [d["type"] for d in sample.meta["defects"]] == [kind]
        vol = gt.values
        idx = np.argwhere(vol > 0)
        assert 0 < len(idx) < 0.01 * vol.size, kind
        grid = VoxelGrid.from_dataarray(gt)
        centres = np.stack([gt.x.values[idx[:, 0]], gt.y.values[idx[:, 1]], gt.z.values[idx[:, 2]]], 1)
        for d in sample.meta["defects"]:  # seen ground truth within the defect's size of its centre
            near = np.linalg.norm(centres - np.asarray(d["center_mm"]), axis=1) <= max(d["size_mm"], 2 * 2.0)
            assert near.any(), (kind, d["center_mm"])
        pose = np.asarray(sample.meta["object_to_world"])
        nominal = trimesh.Trimesh(model.mesh.vertices @ pose[:3, :3].T + pose[:3, 3], model.mesh.faces)
        dist = np.minimum(_distance_to(world, centres), _distance_to(nominal, centres))
        assert dist.max() <= 2 * 2.0, (kind, dist.max())  # within 2 voxels of the nominal or defective surface


@pytest.mark.parametrize("kind", ["chunk", "bump"])
def test_anomalous_instance_equals_its_nominal_twin_away_from_the_defect(tiny_config, kind):
    """Same split and index: same pose, texture and scanner artefacts, so images and depth maps differ only near
    the defect (the artefacts are drawn per pixel, not per measured pixel)."""
    cfg = tiny_config(categories=("vase",), image_size=96, max_defects=1)
    cams = builtin_rig("hemisphere12").scaled(96).cameras[:4]
    model = category_model("vase", cfg, cams)
    anom, _ = make_instance(model, cams, cfg, "test", 1, True, first_defect=kind)
    twin, _ = make_instance(model, cams, cfg, "test", 1, False)
    centre = np.asarray(anom.meta["defects"][0]["center_mm"])
    reach = anom.meta["defects"][0]["size_mm"] + 20.0
    far_total = differ = near_differ = 0
    for a, n in zip(anom.views, twin.views):
        pts, valid = depth_to_points(n.depth, n.camera)
        far = np.zeros(n.depth.shape, bool)
        far[valid] = np.linalg.norm(pts - centre, axis=1) > reach
        changed = (np.abs(a.depth - n.depth) > 1e-3) | (np.abs(a.image.astype(float) - n.image) > 1e-3)
        far_total += far.sum()
        differ += (changed & far).sum()
        near_differ += (changed & ~far).sum()
    assert far_total > 1000 and near_differ > 0
    assert differ <= 1e-3 * far_total, (differ, far_total)


def test_defects_change_the_geometry_where_they_say():
    mesh_shape = shapes.refine(shapes.build_category("container"), 8.0)
    mesh = shapes.to_trimesh(mesh_shape)
    cams = builtin_rig("hemisphere12").scaled(32).cameras
    cand = find_candidates(mesh, cams, n=800)
    for kind in ("dent", "bump", "hole", "chunk"):
        res = apply_defects(mesh, mesh_shape, [kind], cand, np.random.default_rng(1))
        d = res.defects[0]
        near = np.linalg.norm(res.mesh.vertices - d.center, axis=1) < d.size_mm
        nominal_pts = sample_faces(mesh.vertices, mesh.faces[np.linalg.norm(mesh.triangles_center - d.center,
                                                                            axis=1) < d.size_mm], 0.5)
        moved = max(_distance_to(mesh, res.mesh.vertices[near]).max(), _distance_to(res.mesh, nominal_pts).max())
        assert moved > 0.5, kind  # the surface really changed near the defect (new or removed surface)
        far = np.linalg.norm(res.mesh.vertices - d.center, axis=1) > d.size_mm + 30
        assert _distance_to(mesh, res.mesh.vertices[far][::50]).max() < 1e-3, kind  # and nowhere else
    # open meshes: holes fall back to removing faces
    res = apply_defects(mesh, None, ["hole"], cand, np.random.default_rng(1))
    assert len(res.mesh.faces) < len(mesh.faces)


def _digest(root):
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_same_seed_gives_identical_files(tiny_benchmark, tiny_config, tmp_path):
    root, cfg = tiny_benchmark
    generate_benchmark(tmp_path / "again", cfg)
    a, b = _digest(root), _digest(tmp_path / "again")
    assert a == b and len(a) > 20
    other = tiny_config(seed=cfg.seed + 1, test_instances=1)
    generate_benchmark(tmp_path / "other", other)
    c = _digest(tmp_path / "other")
    assert c["container/train/000/views/000_depth.npy"] != a["container/train/000/views/000_depth.npy"]


def test_synth2real_training_instance_is_clean_and_real2real_is_not(tiny_config):
    cfg = tiny_config(categories=("bin",), setup="synth2real", image_size=64)
    cams = builtin_rig("hemisphere12").scaled(64).cameras
    model = category_model("bin", cfg, cams)
    train, _ = make_instance(model, cams, cfg, "train", 0, False)
    assert train.meta["clean"] and np.allclose(train.meta["object_to_world"], np.eye(4))
    ideal = RenderMesh.build(model.mesh, model.material, ideal=True)
    for v, cam in zip(train.views, cams):
        exact = ideal.render(cam).depth
        np.testing.assert_array_equal(v.depth, exact)  # no holes besides the silhouette, no noise
        assert v.image.max() < 1.0  # no saturated highlight
    test, _ = make_instance(model, cams, cfg, "test", 0, False)
    lost, sat = [], []
    for v, cam in zip(test.views, cams):
        hit = RenderMesh.build(model.mesh, model.material).render(cam).depth > 0
        lost.append(np.mean((v.depth == 0) & hit) / max(hit.mean(), 1e-9))
        sat.append(np.mean(v.image >= 1.0))
    assert min(lost) > 0.0 and len(set(np.round(lost, 6))) > 6  # missing depth in every view, never the same
    assert max(sat) > 0.0  # the brushed metal bin saturates somewhere


def test_artefacts_depend_on_the_view_and_switch_off():
    cams = builtin_rig("hemisphere12").scaled(64).cameras
    mesh = shapes.to_trimesh(shapes.refine(shapes.build_category("bin"), 8.0))
    rm = RenderMesh.build(mesh, material_for("bin"))
    out = rm.render(cams[0])
    img, dep = scanner_view(out, False, np.array([0.9]), ArtefactConfig.none(), np.random.default_rng(0))
    np.testing.assert_array_equal(dep, out.depth)
    img2, dep2 = scanner_view(out, False, np.array([0.9]), ArtefactConfig(), np.random.default_rng(0))
    assert np.sum((dep2 == 0) & (out.depth > 0)) > 0
    assert np.abs(dep2[dep2 > 0] - out.depth[dep2 > 0]).max() < 1.0  # noise is sub-millimetre


def test_categories_are_sized_and_standing():
    for name in shapes.CATEGORIES:
        mesh = shapes.to_trimesh(shapes.build_category(name))
        assert mesh.is_watertight, name
        assert abs(mesh.bounds[0, 2]) < 1e-6, name
        assert 100 <= mesh.extents.max() <= 500, name
        assert np.allclose(mesh.bounds[:, :2].sum(0), 0, atol=1e-6), name
    with pytest.raises(ValueError, match="unknown category"):
        shapes.build_category("teapot")


def test_user_mesh_category(tiny_config, tmp_path):
    part = trimesh.creation.box([2.0, 1.0, 0.5])  # any unit: rescaled to mesh_size_mm
    part.apply_translation([5, 5, 5])
    path = tmp_path / "My Part.stl"
    part.export(path)
    mesh = shapes.load_user_mesh(path, 200.0)
    assert np.isclose(mesh.extents.max(), 200.0) and abs(mesh.bounds[0, 2]) < 1e-9
    cfg = tiny_config(categories=(), meshes=(str(path),), image_size=32, test_instances=2)
    generate_benchmark(tmp_path / "b", cfg)
    ds = open_dataset(tmp_path / "b")
    assert ds.categories == ["my_part"]
    assert [s.label for s in ds["my_part"].test].count("anomalous") == 1
    with pytest.raises(ValueError, match="not found"):
        shapes.load_user_mesh(tmp_path / "missing.stl")


def test_cli_contract_command_and_reader(tmp_path):
    from mv3dad.cli.main import app

    out = tmp_path / "OUT"
    res = CliRunner().invoke(app, ["synth", str(out), "--categories", "vase,stool", "--views", "12",
                                   "--image-size", "128", "--test-instances", "4", "--seed", "0", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (out / "preview.png").stat().st_size > 10_000
    ds = open_dataset(out)
    assert ds.categories == ["vase", "stool"]
    for cat in ds.categories:
        assert len(ds[cat].train) == 1 and len(ds[cat].test) == 4
        labels = [s.label for s in ds[cat].test]
        assert labels.count("anomalous") == 2
        for s in itertools.chain(ds[cat].train, ds[cat].test):
            assert len(s.views) == 12
            v = s.views[0]
            assert v.image.shape == (128, 128) and v.depth.shape == (128, 128) and v.depth.dtype == np.float32
            assert v.camera.K.shape == (3, 3) and v.camera.world_to_cam.shape == (4, 4)
            assert (v.depth > 0).mean() > 0.05
            if s.label == "anomalous":
                assert tuple(s.gt.dims) == ("x", "y", "z") and s.gt.values.sum() > 0
                assert s.meta["defects"] and all(d["size_mm"] > 0 for d in s.meta["defects"])
            else:
                assert s.gt is None
    bad = CliRunner().invoke(app, ["synth", str(tmp_path / "x"), "--categories", "teapot"])
    assert bad.exit_code == 2 and "unknown category" in bad.output


def test_corpus_stream_is_deterministic_depth():
    from mv3dad.synth.corpus import random_depth_maps

    a = list(itertools.islice(random_depth_maps(7, 40), 3))
    b = list(itertools.islice(random_depth_maps(7, 40), 3))
    for x, y in zip(a, b):
        assert x.shape == (40, 40) and x.dtype == np.float32
        assert (x > 0).any() and np.all(x >= 0) and np.all(np.isfinite(x))
        np.testing.assert_array_equal(x, y)


def test_config_file_matches_the_defaults():
    import dataclasses

    from mv3dad.config import default_config, load_config
    from mv3dad.synth.generate import SynthConfig

    path = default_config("synth.yaml")
    assert dataclasses.asdict(load_config(SynthConfig, path)) == dataclasses.asdict(SynthConfig())
    with pytest.raises(ValueError, match="setup"):
        SynthConfig(setup="real2synth")
