"""Pictures: a sphere with a defect blob on its surface must show the blob, coloured, where it projects."""

import subprocess
import sys

import numpy as np
import pytest

from mv3dad.geometry.grid import VoxelGrid

PROBE = ("import pyvista as pv; pv.OFF_SCREEN = True; p = pv.Plotter(off_screen=True, window_size=(32, 32)); "
         "p.add_mesh(pv.Sphere()); img = p.screenshot(return_img=True); assert img.shape[:2] == (32, 32)")


def _cannot_render() -> str | None:
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    if r.returncode == 0:
        return None
    return "PyVista cannot render off-screen here (needs libegl1 + libgl1-mesa-dri or OSMesa): " + \
        (r.stderr.strip().splitlines() or ["?"])[-1]


_SKIP = _cannot_render()
needs_rendering = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")

R, CENTRE = 40.0, np.array([0.0, 0.0, 40.0])
TOWARDS_CAMERA = np.array([1.0, -1.0, 0.8]) / np.linalg.norm([1.0, -1.0, 0.8])  # the first view's direction


def _scene(tmp_path):
    """Sphere mesh standing on z = 0; observed shell of low scores; a high-score blob facing view 1."""
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=3, radius=R)
    mesh.apply_translation(CENTRE)
    mesh.export(tmp_path / "sphere.stl")
    grid = VoxelGrid.from_bounds(CENTRE - R, CENTRE + R, voxel_size=2.0, margin=4.0)
    pts = np.stack(np.meshgrid(*grid.axes(), indexing="ij"), axis=-1)
    shell = np.abs(np.linalg.norm(pts - CENTRE, axis=-1) - R) < 2.0
    rng = np.random.default_rng(0)
    scores = np.full(grid.shape, np.nan, dtype=np.float32)
    scores[shell] = rng.uniform(0.0, 0.3, shell.sum())
    to_blob = np.linalg.norm(pts - (CENTRE + R * TOWARDS_CAMERA), axis=-1)
    blob = shell & (to_blob < 10.0)
    scores[blob] = 1.0 - to_blob[blob] / 20.0
    return grid.to_dataarray(scores), tmp_path / "sphere.stl"


def _coloured(img):
    rgb = img[..., :3].astype(int)
    return (rgb.max(axis=-1) - rgb.min(axis=-1)) > 80  # grey object and white background are not


@needs_rendering
def test_blob_is_drawn_where_it_projects(tmp_path):
    from PIL import Image

    from mv3dad.viz.render import RenderConfig, render_volume

    da, mesh = _scene(tmp_path)
    out = render_volume(da, tmp_path / "r.png", obj=mesh, threshold=0.6,
                        config=RenderConfig(views=1, view_size=(240, 220)))
    img = np.asarray(Image.open(out))
    assert img.shape[:2] == (220, 240)
    picture = _coloured(img)[: int(0.78 * 220)]  # above the scalar bar
    ys, xs = np.nonzero(picture)
    assert len(ys) > 100, "no coloured voxels drawn"
    # the blob faces the camera: it is drawn around the image centre, and nowhere else
    assert abs(xs.mean() - 120) < 15 and abs(ys.mean() - 110) < 20
    assert xs.min() > 60 and xs.max() < 180
    # the scalar bar (legend) spans the colour map at the bottom
    assert _coloured(img)[int(0.8 * 220):].sum() > 200
    # a higher threshold draws fewer voxels
    render_volume(da, tmp_path / "r2.png", obj=mesh, threshold=0.9, config=RenderConfig(views=1, view_size=(240, 220)))
    assert _coloured(np.asarray(Image.open(tmp_path / "r2.png")))[:171].sum() < picture.sum()


@needs_rendering
def test_tiles_and_cli(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from mv3dad.cli.main import app
    from mv3dad.export import save_volume

    da, mesh = _scene(tmp_path)
    vol = save_volume(da, tmp_path / "vol.npz")
    cfg = tmp_path / "render.yaml"
    cfg.write_text("view_size: [120, 100]\n")
    r = CliRunner().invoke(app, ["render", str(vol), "--mesh", str(mesh), "--out", str(tmp_path / "r.png"),
                                 "--views", "4", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    img = np.asarray(Image.open(tmp_path / "r.png"))
    assert img.shape[:2] == (200, 240)  # 2 x 2 tiles of 120 x 100
    # the blob faces views 1 ("front-right, above"), 3 ("top") and 4 ("front"); view 2 sees it through the object
    assert all(_coloured(tile).sum() > 20 for tile in (img[:100, :120], img[100:, :120], img[100:, 120:]))
    # a threshold above every score draws the part clean (a good part must look clean), legend says so
    r = CliRunner().invoke(app, ["render", str(vol), "--mesh", str(mesh), "--out", str(tmp_path / "x.png"),
                                 "--threshold", "5", "--views", "1", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert _coloured(np.asarray(Image.open(tmp_path / "x.png"))).sum() == 0


@needs_rendering
def test_rows_share_one_threshold_from_nominal_scores_and_outline_the_gt(tmp_path):
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from mv3dad.cli.main import app
    from mv3dad.export import save_volume

    da, mesh = _scene(tmp_path)
    pred = tmp_path / "pred"
    (pred / "part").mkdir(parents=True)
    bad = save_volume(da.assign_attrs(category="part", instance_id="bad"), pred / "part" / "bad.npz")
    good = save_volume((da * 0.5).assign_attrs(category="part", instance_id="good"), pred / "part" / "good.npz")
    top = float(np.nanmax(da.values))
    (pred / "scores.json").write_text(json.dumps({"scores": {"part": {
        "bad": {"score": top, "label": "anomalous"}, "good": {"score": 0.5 * top, "label": "nominal"}}}}))
    cfg = tmp_path / "render.yaml"
    cfg.write_text("view_size: [120, 100]\n")
    gt = save_volume(da.where(da > 0.8 * top, 0.0), tmp_path / "gt.npz")
    r = CliRunner().invoke(app, ["render", str(bad), str(good), "--mesh", str(mesh), "--mesh", str(mesh),
                                 "--gt", str(gt), "--gt", "none", "--views", "2", "--config", str(cfg),
                                 "--out", str(tmp_path / "pair.png")])
    assert r.exit_code == 0, r.output
    assert "largest of 1 nominal parts" in r.output  # the threshold found next to the volumes
    img = np.asarray(Image.open(tmp_path / "pair.png"))
    assert img.shape[:2] == (200, 240)  # a row of 2 views per part
    assert _coloured(img[:100]).sum() > 20  # the bad part shows voxels over the nominal threshold
    assert _coloured(img[100:]).sum() == 0  # the good part is clean
    blue = (img[..., 2].astype(int) - img[..., 0].astype(int) > 60)
    assert blue[:100].sum() > 0 and blue[100:].sum() == 0  # the ground truth outlined on the bad part only
    r = CliRunner().invoke(app, ["render", str(bad), "--gt", str(gt), "--gt", str(gt), "--out",
                                 str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "one per volume" in r.output


def test_config_checks():
    from mv3dad.viz.render import RenderConfig, default_threshold

    with pytest.raises(ValueError, match="views"):
        RenderConfig(views=7)
    assert default_threshold(np.array([np.nan, 1.0, 2.0, 3.0]), 0.5) == 2.0
