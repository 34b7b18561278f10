"""The ``deviation`` method: registration, spike clamp, free-space test and the fit/predict path on synthetic parts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mv3dad.geometry.registration import apply, invert, register
from mv3dad.scoring.methods.deviation import _seen_through, clamp_spikes, free_space_depth


def _box_surface(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points and outward normals on an asymmetric box (no symmetry the ICP could slide along)."""
    rng = np.random.default_rng(seed)
    half = np.array([60.0, 35.0, 20.0])
    axis = rng.integers(0, 3, n)
    sign = rng.choice([-1.0, 1.0], n)
    p = rng.uniform(-1, 1, (n, 3)) * half
    p[np.arange(n), axis] = sign * half[axis]
    nrm = np.zeros((n, 3))
    nrm[np.arange(n), axis] = sign
    return p, nrm


@pytest.mark.parametrize("with_scale", [True, False])
def test_register_recovers_a_similarity(with_scale):
    target, normals = _box_surface()
    a = np.deg2rad(3.0)
    T = np.eye(4)
    s = 1.012 if with_scale else 1.0
    T[:3, :3] = s * np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    T[:3, 3] = [2.5, -1.5, 1.0]
    source = apply(invert(T), _box_surface(seed=1)[0])  # other samples of the same surface, moved away
    reg = register(source, target, normals, with_scale=with_scale, levels=(10.0, 5.0, 2.5))
    assert reg.fitness > 0.95
    assert abs(reg.scale - s) < 2e-3
    moved = apply(reg.transform, source)
    assert np.abs(moved - apply(T, source)).max() < 0.5


def test_rigid_registration_keeps_the_scale():
    target, normals = _box_surface()
    source = _box_surface(seed=1)[0] * 1.02
    assert register(source, target, normals, with_scale=False).scale == pytest.approx(1.0, abs=1e-9)
    assert register(source, target, normals, with_scale=True).scale == pytest.approx(1 / 1.02, abs=2e-3)


def test_clamp_spikes_removes_single_spikes_and_keeps_two_wide_defects():
    v = np.zeros((8, 8, 8), np.float32)
    v[2, 2, 2] = 9.0  # an isolated spike
    v[5, 5, 5] = v[5, 5, 6] = 4.0  # a two-voxel defect
    v[0, 0, 0] = np.nan
    out = clamp_spikes(v)
    assert out[2, 2, 2] == 0.0
    assert out[5, 5, 5] == out[5, 5, 6] == 4.0
    assert np.isnan(out[0, 0, 0])
    img = np.zeros((6, 6), np.float32)
    img[3, 3] = 5.0
    assert clamp_spikes(img).max() == 0.0


def test_seen_through_needs_the_whole_window_behind():
    from mv3dad.geometry.camera import Camera

    cam = Camera.look_at([0, 0, -500.0], [0, 0, 0], [0, -1, 0], 400, 400, 64, 64)
    depth = np.full((1, 64, 64), 520.0, np.float32)  # a wall 20 mm behind the origin
    p = np.array([[0.0, 0.0, 0.0]])  # 500 mm from the camera

    def seen() -> int:
        return int(_seen_through(p, free_space_depth(depth[0])[None], [cam], np.array([2.0]))[0])

    assert seen() == 1
    depth[0, 32, 33] = 499.0  # one pixel of the window sees a surface in front: not free space
    assert seen() == 0
    depth[0, 32, 33] = 520.0
    depth[0, 31:34, 31:33] = 0.0  # most of the window unmeasured (a silhouette's lost edge): unknown, not free
    assert seen() == 0


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    from typer.testing import CliRunner

    from mv3dad.cli.main import app

    root = tmp_path_factory.mktemp("dev") / "bench"
    r = CliRunner().invoke(app, ["synth", str(root), "--categories", "stool", "--image-size", "192",
                                 "--test-instances", "4", "--seed", "3", "--save-meshes", "--no-preview",
                                 "--no-progress"])
    assert r.exit_code == 0, r.output
    return root


@pytest.fixture(scope="module")
def cad_predictor(bench, tmp_path_factory):
    """A deviation run on the stool's CAD model, loaded, with a nominal test part and a pixel deep inside the
    part in its view 0."""
    from scipy import ndimage

    from mv3dad.data import open_dataset
    from mv3dad.pipeline.fit import FitJob, run_fit
    from mv3dad.pipeline.predict import PredictJob, Predictor
    from mv3dad.scoring.background import foreground_mask
    from mv3dad.scoring.methods.deviation import DeviationConfig

    run = tmp_path_factory.mktemp("cad") / "run"
    run_fit(FitJob(str(bench), ["stool"], str(run), method="deviation",
                   deviation=DeviationConfig(reference_mesh=str(bench / "stool" / "train" / "000" / "mesh.ply"))),
            progress=False)
    pred = Predictor(run, PredictJob(str(run), str(bench), str(run.parent / "pred")))
    nominal = next(s for s in open_dataset(bench)["stool"].test if s.label == "nominal")
    fg = foreground_mask(nominal.views[0].depth, nominal.views[0].camera)
    centre = np.unravel_index(np.argmax(ndimage.distance_transform_edt(fg)), fg.shape)
    return pred, nominal, fg, centre


def _disc(shape, centre, radius):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


@pytest.mark.parametrize("cad", [False, True])
def test_fit_and_predict_deviation(bench, tmp_path, cad):
    from typer.testing import CliRunner

    from mv3dad.cli.main import app

    run, pred = tmp_path / "run", tmp_path / "pred"
    args = ["fit", str(bench), "-c", "stool", "--out", str(run), "--method", "deviation"]
    if cad:
        args += ["--reference-mesh", str(bench / "stool" / "train" / "000" / "mesh.ply")]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert (run / "reference" / "stool" / "reference.npz").is_file()
    assert (run / "reference" / "stool" / "reference_mesh.ply").is_file() == cad
    r = CliRunner().invoke(app, ["predict", str(run), str(bench), "--out", str(pred), "--save-maps"])
    assert r.exit_code == 0, r.output
    scores = json.loads((pred / "scores.json").read_text())["scores"]["stool"]
    assert len(scores) == 4
    for s in scores.values():
        reg = s["registration"]
        assert reg["fitness"] > 0.9 and abs(reg["scale"] - 1) < 0.03
    nominal = [s["score"] for s in scores.values() if s["label"] == "nominal"]
    anomalous = [s["score"] for s in scores.values() if s["label"] == "anomalous"]
    assert max(nominal) < (0.6 if cad else 3.0)  # mm: a good part is clean (the scan at 192 px is coarse)
    if cad:  # this seed's anomalous stools hold dents and bumps, found against the CAD model
        assert min(anomalous) > max(nominal)
    maps = np.load(pred / "stool" / f"{next(iter(scores))}_maps.npz", allow_pickle=False)["maps"]
    assert maps.shape[0] == 12 and np.isfinite(maps).any()


def test_a_bad_reference_mesh_is_one_clear_error(bench, tmp_path):
    from typer.testing import CliRunner

    from mv3dad.cli.main import app

    bad = tmp_path / "part.stl"
    bad.write_text("not a mesh")
    r = CliRunner().invoke(app, ["fit", str(bench), "-c", "stool", "--out", str(tmp_path / "run"),
                                 "--method", "deviation", "--reference-mesh", str(bad)])
    assert r.exit_code == 2
    assert "part.stl" in r.output and "Traceback" not in r.output


def test_nearest_facing_is_the_nearest_point_facing_the_same_way():
    from scipy.spatial import cKDTree

    from mv3dad.scoring.methods.deviation import _nearest_facing

    rng = np.random.default_rng(0)
    ref = rng.uniform(-10, 10, (2000, 3))
    nrm = rng.normal(size=(2000, 3))
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    q = rng.uniform(-10, 10, (500, 3))
    nq = rng.normal(size=(500, 3))
    nq /= np.linalg.norm(nq, axis=1, keepdims=True)
    nq[:20] = np.nan  # unknown normals: the plain nearest
    idx, dist, found = _nearest_facing(cKDTree(ref), nrm, q, nq, k=8)
    d_all, i_all = cKDTree(ref).query(q, k=8)
    for p in range(len(q)):
        facing = [j for j in i_all[p] if np.isfinite(nq[p]).all() and nrm[j] @ nq[p] > 0.34]
        want = facing[0] if facing else i_all[p][0]
        assert idx[p] == want and found[p] == bool(facing)
        assert dist[p] == pytest.approx(np.linalg.norm(ref[want] - q[p]))


def test_window_range_is_the_min_and_max_of_each_window():
    from mv3dad.scoring.methods.deviation import window_range

    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 11)).astype(np.float32)
    x[2:4, 3:6] = np.nan
    lo, hi = window_range(x, 3)
    pad = np.pad(x, 1, mode="edge")
    for i in range(9):
        for j in range(11):
            w = pad[i:i + 3, j:j + 3]
            if np.isfinite(w).any():
                assert lo[i, j] == np.nanmin(w) and hi[i, j] == np.nanmax(w)
            else:
                assert np.isnan(lo[i, j]) and np.isnan(hi[i, j])


def test_brightness_leaves_out_background_and_saturated_pixels():
    from mv3dad.geometry.camera import Camera
    from mv3dad.scoring.methods.deviation import brightness

    cam = Camera(np.array([[100.0, 0, 31.5], [0, 100, 31.5], [0, 0, 1]]), np.eye(4), 64, 64)
    img = np.full((64, 64), 0.5, np.float32)
    fg = np.zeros((64, 64), bool)
    fg[16:48, 16:48] = True
    img[~fg] = 0.0  # a black background must not darken the part's edge
    img[30:33, 30:33] = 1.0  # a saturated highlight must not brighten its neighbours
    depth = np.where(fg, 500.0, 0.0).astype(np.float32)
    b = brightness(img, fg, cam, depth, sigma_mm=10.0)  # sigma: 2 pixels
    assert np.isnan(b[:8]).all()
    inner = fg.copy()
    inner[24:39, 24:39] = False  # beyond 3 sigma of the highlight
    assert np.allclose(b[inner], np.log(0.5 + 0.02), atol=1e-5)
    # next to the highlight the average lacks it, and whether a facet flashes depends on the pose: unknown there
    assert np.isnan(b[29:34, 29:34]).all()
    assert np.allclose(b[fg & np.isfinite(b)], np.log(0.5 + 0.02), atol=1e-5)
    img[30:33, 30:33] = 0.5
    img[31, 31] = 1.0  # a single flashing pixel holds too little of the Gaussian to blank its neighbours
    b = brightness(img, fg, cam, depth, sigma_mm=10.0)
    assert np.isfinite(b[30:33, 30:33]).all()
    with pytest.raises(ValueError, match="differ in shape"):
        brightness(img, fg[:10], cam, depth, 10.0)


def test_appearance_finds_a_stain_and_ignores_an_exposure_change(cad_predictor):
    import dataclasses

    from mv3dad.data.scene import View

    pred, nominal, fg, centre = cad_predictor

    def with_images(fn):
        views = [View(fn(t, v), v.depth, v.camera) for t, v in enumerate(nominal.views)]
        return dataclasses.replace(nominal, views=views)

    base = pred.predict_sample(nominal)
    brighter = pred.predict_sample(with_images(lambda t, v: np.clip(v.image * 1.15, 0, 1)))
    assert brighter.score < base.score + 0.2  # mm: a global exposure change is not a defect
    blob = _disc(fg.shape, centre, 8)

    def stain(t, v):
        if t != 0:
            return v.image
        return np.where(blob if v.image.ndim == 2 else blob[..., None], v.image * 0.4, v.image).astype(np.float32)

    stained = pred.predict_sample(with_images(stain))
    assert stained.score > base.score + 1.0
    hit = np.nan_to_num(stained.maps[0].astype(np.float32)) > base.score + 1.0
    assert hit.any() and blob[hit].mean() > 0.9  # the score sits on the stain
    cfg = pred.method.cfg
    pred.method.cfg = dataclasses.replace(cfg, appearance=False)  # shape only: the stain is invisible
    try:
        assert pred.predict_sample(with_images(stain)).score < base.score + 0.2
    finally:
        pred.method.cfg = cfg


def _plate_view(hole: bool):
    """A 200 mm plate at z = 0 seen from 1000 mm above, a floor 50 mm below it; optionally a 30 mm hole."""
    from mv3dad.data.scene import View
    from mv3dad.geometry.camera import Camera

    cam = Camera(np.array([[600.0, 0, 99.5], [0, 600, 99.5], [0, 0, 1]]),
                 np.array([[1.0, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 1000], [0, 0, 0, 1]]), 200, 200)
    v, u = np.mgrid[:200, :200]
    X, Y = (u - 99.5) / 600 * 1000, -(v - 99.5) / 600 * 1000  # on the plate's plane
    on_plate = (np.abs(X) <= 100) & (np.abs(Y) <= 100)
    if hole:
        on_plate &= ~((np.abs(X) <= 15) & (np.abs(Y) <= 15))
    depth = np.where(on_plate, 1000.0, 1050.0).astype(np.float32)
    g = np.arange(-100, 100.1, 2.0)
    pts = np.stack(np.meshgrid(g, g, [0.0], indexing="ij"), -1).reshape(-1, 3)
    return View(np.zeros((200, 200), np.float32), depth, cam), pts, np.tile([0.0, 0.0, 1.0], (len(pts), 1)), X, Y


def test_missing_material_is_where_the_view_sees_through_the_reference():
    from mv3dad.scoring.methods.deviation import missing_material

    view, pts, nrm, X, Y = _plate_view(hole=True)
    gap, at = missing_material(view, pts, nrm, margin=3.0, spacing=2.0)
    hit = at > 0
    in_hole = (np.abs(X) <= 15) & (np.abs(Y) <= 15)
    assert hit[in_hole].mean() > 0.5  # the hole's inside, less a border of a cell or two
    near_hole = (np.abs(X) <= 21) & (np.abs(Y) <= 21)
    assert not hit[~near_hole].any()  # nothing along the plate's outline, where the view also sees the floor
    assert np.allclose(at[hit], 1000.0, atol=1.0) and np.allclose(gap[hit], 50.0, atol=1.0)
    view, pts, nrm, *_ = _plate_view(hole=False)
    gap, at = missing_material(view, pts, nrm, margin=3.0, spacing=2.0)
    assert not (at > 0).any() and not (gap > 0).any()
    flipped, _, _, _, _ = _plate_view(hole=True)
    gap, at = missing_material(flipped, pts, -nrm, margin=3.0, spacing=2.0)  # a surface facing away:
    assert not (at > 0).any()  # not seen


def test_the_missing_material_score_goes_to_the_measured_rim():
    from mv3dad.scoring.methods.deviation import missing_material, on_rim

    view, pts, nrm, X, Y = _plate_view(hole=True)
    gap, at = missing_material(view, pts, nrm, margin=3.0, spacing=2.0)
    rim = on_rim(np.minimum(gap, 5.0), at, view, tol=3.0, radius_mm=2.0, spacing=2.0)
    in_hole = (np.abs(X) <= 15) & (np.abs(Y) <= 15)
    border = ~in_hole & (np.abs(X) <= 17) & (np.abs(Y) <= 17)  # the plate within 2 mm of the hole
    assert (rim[border] == 5.0).mean() > 0.9  # the hole's border takes the capped gap
    assert not rim[in_hole].any()  # not the floor seen through the hole, 50 mm behind
    assert not rim[~((np.abs(X) <= 20) & (np.abs(Y) <= 20))].any()  # nothing 5 mm beyond the hole
    assert not on_rim(gap, np.zeros_like(at), view, tol=3.0, radius_mm=2.0, spacing=2.0).any()
    band = ~in_hole & (np.abs(X) <= 17) & (Y > 15) & (Y <= 17)
    view.depth[band] = 900.0  # something 100 mm in front of the plate along one side: not the hole's border
    rim = on_rim(np.minimum(gap, 5.0), at, view, tol=3.0, radius_mm=2.0, spacing=2.0)
    assert not rim[band].any() and (rim[border & ~band] == 5.0).mean() > 0.9


def test_a_view_seeing_through_the_part_scores_on_the_rim(cad_predictor):
    import dataclasses

    from scipy import ndimage

    from mv3dad.data.scene import View
    from mv3dad.scoring.methods import ScoreOptions

    pred, nominal, fg, centre = cad_predictor
    v0 = nominal.views[0]
    hole = _disc(fg.shape, centre, 6) & fg
    seen_through = np.where(hole, v0.depth + 80.0, v0.depth).astype(np.float32)  # a surface 80 mm behind
    holed = dataclasses.replace(nominal, views=[View(v0.image, seen_through, v0.camera)] + nominal.views[1:])
    cap = pred.method.cfg.missing_cap_mm
    ring = ndimage.binary_dilation(hole) & ~hole & fg  # the hole's border on the same surface,
    ring &= np.abs(v0.depth - np.median(v0.depth[hole])) < 20.0  # not another part of the stool behind it
    far = fg & ~ndimage.binary_dilation(hole, iterations=12)
    for sample, found in ((nominal, False), (holed, True)):
        s, ids, _ = pred.prepare_views(sample)
        m = pred.method.score_views(s, None, ScoreOptions(ids, "stool")).pixels[0]
        ring_scores = np.nan_to_num(m[ring])
        if found:
            assert (ring_scores >= cap).mean() > 0.8
        else:
            assert ring_scores.max() < 1.0
        assert np.nanmax(m[far]) < 1.0
    m = pred.predict_sample(holed).volume  # the predictor back-projects the rim: the volume holds it
    assert np.nanmax(m.values) >= cap


@pytest.mark.parametrize("width_px", [2, 9])
def test_extra_material_the_scan_reference_lacks_needs_more_than_an_edge(width_px):
    """A raised flange beside a plate (a surface the fused reference has nowhere near, confirmed by two training
    views that saw the floor through it) scores its distance; a sliver only seen at a depth discontinuity does
    not."""
    from scipy import ndimage
    from scipy.spatial import cKDTree

    from mv3dad.data.scene import View
    from mv3dad.geometry.projection import depth_to_point_image, point_image_normals
    from mv3dad.scoring.methods.deviation import DeviationMethod, free_space_depth

    view, pts, nrm, X, Y = _plate_view(hole=False)
    method = DeviationMethod()
    ref = {"points": pts, "normals": nrm, "sigma": np.full(len(pts), 0.05), "tree": cKDTree(pts),
           "near": np.stack([free_space_depth(view.depth)] * 2), "cameras": [view.camera] * 2}  # 2 views saw
    flange = (X > 110) & (X <= 110 + width_px * 1000 / 600) & (np.abs(Y) <= 40)  # 10 mm beside the plate
    depth = np.where(flange, 990.0, view.depth).astype(np.float32)  # 10 mm in front of the plate's plane
    test = View(view.image, depth, view.camera)
    fg = (depth < 1010) & (X <= 110 + width_px * 1000 / 600)
    P = depth_to_point_image(np.where(fg, depth, 0), view.camera)
    normals = point_image_normals(P, view.camera.center)
    edge = ndimage.binary_dilation(~np.isfinite(normals).all(axis=2), np.ones((3, 3), bool))
    score = np.zeros(fg.shape, np.float32)
    score[fg] = method._distances(P[fg], normals[fg], edge[fg], fg, ref, test, free_space_depth(depth), np.eye(4))
    if width_px == 2:
        assert not score[flange].any()  # all of it next to a depth discontinuity: unsure
    else:
        assert score[flange & ~edge].min() > 5.0  # the flange's inside: its distance to the plate (> 10 mm)
    assert score[(np.abs(X) < 90) & (np.abs(Y) < 90)].max() < 0.1  # the plate itself is nominal


def test_open_blobs_keeps_a_blob_whole_and_drops_lines_and_specks():
    from mv3dad.scoring.methods.deviation import open_blobs

    score = np.zeros((60, 60), np.float32)
    score[5:17, 5:17] = 2.0  # a 12-pixel stain
    score[30, 5:50] = 3.0  # a line along an edge
    score[40:45, 40:45] = 3.0  # a blob just the window's size: its eroded core is one pixel
    out = open_blobs(score, 5)
    assert np.array_equal(out[5:17, 5:17], score[5:17, 5:17])  # the stain keeps its extent
    assert out[30].max() == 0 and out[38:47, 38:47].max() == 0
    assert (out <= score).all()


def test_cad_cast_gives_the_distance_to_the_hit_triangle_in_the_reference_frame():
    """The registration (a similarity, scale 1.02) carries the test rays into the reference frame; a pixel's
    ``(t - z) |ray . n|`` is its registered point's distance to the CAD plane, > 0 in front."""
    from mv3dad.geometry.raycast import MeshCaster
    from mv3dad.scoring.methods.deviation import cad_cast

    view, *_ = _plate_view(hole=False)
    caster = MeshCaster(np.array([[-150.0, -150, 0], [150, -150, 0], [150, 150, 0], [-150, 150, 0]]),
                        np.array([[0, 1, 2], [0, 2, 3]]))  # the CAD plate at z = 0 (reference frame)
    a = np.deg2rad(5.0)
    T = np.eye(4)
    T[:3, :3] = 1.02 * np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    T[:3, 3] = [3.0, -2.0, 1.5]
    box = (slice(60, 140), slice(60, 140))
    from mv3dad.geometry.projection import depth_to_point_image

    q = apply(T, depth_to_point_image(view.depth, view.camera)[box].reshape(-1, 3)).reshape(80, 80, 3)
    cast = cad_cast(caster, view, box, T)
    assert np.allclose(cast.along(view.depth[box]), q[..., 2], atol=1e-3)  # the point's height above the plate
    assert np.all(cast.cosine() > 0.9) and np.all(cast.cosine() <= 1 + 1e-9)
    T[:3, 3] += [1000.0, 0, 0]  # the plate far off every ray: no hit
    assert np.isnan(cad_cast(caster, view, box, T).along(view.depth[box])).all()


def test_a_hole_seen_as_nothing_scores_on_the_rim_a_dropout_does_not(cad_predictor):
    """A hole through a wall with nothing behind it: no depth and a dark image where the CAD says a surface faces
    the camera (the nominal part is bright there). A depth dropout keeps the part's brightness: not a hole."""
    import dataclasses

    from scipy import ndimage

    from mv3dad.data.scene import View
    from mv3dad.scoring.methods import ScoreOptions

    pred, nominal, fg, centre = cad_predictor
    v0 = nominal.views[0]
    hole = _disc(fg.shape, centre, 4) & fg
    no_depth = np.where(hole, 0.0, v0.depth).astype(np.float32)
    dark = np.where(hole if v0.image.ndim == 2 else hole[..., None], 0.0, v0.image).astype(np.float32)
    ring = ndimage.binary_dilation(hole) & ~hole & fg  # the hole's border
    cap = pred.method.cfg.missing_cap_mm
    for image, found in ((dark, True), (v0.image, False)):
        s = dataclasses.replace(nominal, views=[View(image, no_depth, v0.camera)] + nominal.views[1:])
        s, ids, _ = pred.prepare_views(s)
        m = pred.method.score_views(s, None, ScoreOptions(ids, "stool")).pixels[0]
        if found:
            assert (np.nan_to_num(m[ring]) >= cap).mean() > 0.8
        else:
            assert np.nanmax(m) < 1.0


def test_smooth_on_estimates_the_noise_and_the_error_of_each_average():
    from mv3dad.scoring.methods.deviation import _smooth_on

    rng = np.random.default_rng(0)
    mask = np.ones((60, 60), bool)
    values = rng.normal(0.0, 0.1, mask.sum())  # a flat surface with 0.1 mm of noise per pixel
    use = np.ones(mask.sum(), bool)
    use.reshape(60, 60)[20:40, 20:40] = False  # a depth discontinuity's band: not averaged in
    mean, err, _ = _smooth_on(values, mask, 3, use)
    err = err.reshape(60, 60)
    assert err[10, 10] == pytest.approx(0.1 / 3, rel=0.15)  # a full 3 x 3 window: sigma / 3
    assert err[30, 30] == pytest.approx(0.1, rel=0.15)  # no usable neighbour: the pixel's own noise
    assert err[20, 20] > err[10, 10]  # a corner of the band averages 5 pixels
    assert mean.reshape(60, 60)[30, 30] == values.reshape(60, 60)[30, 30]
    assert np.abs(mean.reshape(60, 60)[:15, :15]).max() < np.abs(values.reshape(60, 60)[:15, :15]).max()
    same, zero, _ = _smooth_on(values, mask, 1, use)
    assert np.array_equal(same, values) and not zero.any()


@pytest.mark.parametrize("diagonal", [False, True])
def test_a_scratch_narrower_than_a_pixel_keeps_its_depth_along_lines(diagonal):
    """A line of single pixels 0.5 mm deep in 0.15 mm of noise: the 3 x 3 average spreads it to a third, below
    its noise penalty; the line average along it keeps it, and on noise alone the line score stays small."""
    from mv3dad.scoring.methods.deviation import _smooth_on, line_score

    rng = np.random.default_rng(1)
    mask = np.ones((80, 80), bool)
    img = rng.normal(0.0, 0.15, mask.shape)
    line = np.zeros(mask.shape, bool)
    k = np.arange(20, 60)
    line[k, k if diagonal else 40] = True
    use = np.ones(mask.sum(), bool)
    noise_only = line_score(img[mask], mask, use, 0.15, 2.0).reshape(mask.shape)
    img[line] -= 0.5
    values = img[mask]
    mean, err, sigma = _smooth_on(values, mask, 3, use)
    square = np.maximum(np.abs(mean) - 2.0 * err, 0).reshape(mask.shape)
    lines = line_score(values, mask, use, sigma, 2.0).reshape(mask.shape)
    assert sigma == pytest.approx(0.15 * 1.1, rel=0.2)  # the scratch adds a little to the robust spread
    assert np.median(lines[line]) > 0.15 > np.median(square[line])
    assert np.percentile(noise_only, 99.9) < 0.15 and noise_only.max() < 0.3
    assert not line_score(values, mask, np.zeros_like(use), sigma, 2.0).any()  # no usable pixels: no score


@pytest.mark.parametrize("cos, seen", [(0.17, False), (0.5, True)])
def test_missing_material_leaves_out_reference_surface_seen_at_a_grazing_angle(cos, seen):
    """A reference surface seen nearly edge-on (a thin fin) is no wall to see through: thinner than a cell in the
    view, it would put the surface behind it "behind the part"."""
    from mv3dad.scoring.methods.deviation import missing_material

    view, pts, _, X, Y = _plate_view(hole=True)
    nrm = np.tile([np.sqrt(1 - cos ** 2), 0.0, cos], (len(pts), 1))  # tilted normals: the same points, grazing
    gap, at = missing_material(view, pts, nrm, margin=3.0, spacing=2.0)
    assert (at > 0)[(np.abs(X) <= 15) & (np.abs(Y) <= 15)].any() == seen


def test_behind_cad_finds_a_slot_a_few_pixels_wide_seen_through_the_cad():
    """A slot 4 pixels wide (narrower than the cells of missing_material's 2 x 2-cell opening) through which the
    view measures the floor 50 mm behind the CAD plate; a dent's floor (a high shape score) is not a see-through."""
    from mv3dad.geometry.raycast import MeshCaster
    from mv3dad.scoring.methods.deviation import behind_cad, cad_cast, missing_material

    view, pts, nrm, *_ = _plate_view(hole=False)
    slot = (slice(98, 102), slice(90, 110))
    view.depth[slot] = 1050.0
    caster = MeshCaster(np.array([[-100.0, -100, 0], [100, -100, 0], [100, 100, 0], [-100, 100, 0]]),
                        np.array([[0, 1, 2], [0, 2, 3]]))
    box = (slice(60, 140), slice(60, 140))
    cast = cad_cast(caster, view, box, np.eye(4))
    shape = np.zeros(cast.t.shape, np.float32)
    gap = behind_cad(cast, view.depth[box], shape, margin=3.0)
    inside = np.zeros(view.depth.shape, bool)
    inside[slot] = True
    assert np.allclose(gap[inside[box]], 50.0, atol=0.1) and not gap[~inside[box]].any()
    assert not (missing_material(view, pts, nrm, margin=3.0, spacing=2.0)[1] > 0).any()  # the cells miss it
    assert not behind_cad(cast, view.depth[box], shape + 3.0, margin=3.0).any()


def test_behind_cad_keeps_a_slot_one_pixel_wide_but_not_pairs_or_a_line_along_a_cad_step():
    """A diagonal slot a pixel wide is kept (a run of 3), a pair of see-through pixels is not; a run along the CAD's
    own depth step (a plate 20 mm above the other half) is not either: there a registration a pixel off makes one."""
    from mv3dad.geometry.raycast import MeshCaster
    from mv3dad.scoring.methods.deviation import behind_cad, cad_cast

    view, *_ = _plate_view(hole=False)
    k = np.arange(95, 105)
    view.depth[k, k] = 1050.0  # the slot
    view.depth[80, 80:82] = 1050.0  # a pair
    quad = np.array([[0, 1, 2], [0, 2, 3]])
    caster = MeshCaster(np.array([[-100.0, -100, 0], [100, -100, 0], [100, 100, 0], [-100, 100, 0]]), quad)
    box = (slice(60, 140), slice(60, 140))
    cast = cad_cast(caster, view, box, np.eye(4))
    shape = np.zeros(cast.t.shape, np.float32)
    gap = behind_cad(cast, view.depth[box], shape, margin=3.0)
    assert (gap[k - 60, k - 60] > 45).all() and gap[20, 20:22].sum() == 0 and (gap > 0).sum() == len(k)
    step = MeshCaster(np.array([[-100.0, -100, 0], [100, -100, 0], [100, 0, 0], [-100, 0, 0],
                                [-100, 0, -20], [100, 0, -20], [100, 100, -20], [-100, 100, -20]]),
                      np.concatenate([quad, quad + 4]))
    cast = cad_cast(step, view, box, np.eye(4))
    rows = np.flatnonzero(np.isfinite(cast.t).all(axis=1) & (np.abs(np.diff(cast.t, axis=0, append=np.nan)) > 10)
                          .any(axis=1))
    assert len(rows)  # the CAD's depth step lies along a row of the box
    depth = np.where(np.isfinite(cast.t), cast.t, 0)
    depth[rows[0], 10:40] += 30.0  # a run of see-through pixels along the step
    assert not behind_cad(cast, depth, shape, margin=3.0)[rows[0], 10:40].any()

