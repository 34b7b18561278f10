"""Pictures of a score volume over the object: PyVista off-screen, several viewpoints tiled into one PNG.

The object (its mesh, or a point cloud) is drawn light grey and semi-transparent; the voxels whose score is
above the threshold are drawn as cubes coloured by score (colour map from the threshold up, with a scalar bar),
the ground truth (when given) as a blue outline. Several volumes are drawn as rows with one threshold,
so a good part and a bad part compare at a glance. Off-screen rendering uses VTK's EGL window (or OSMesa), so no
display is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from mv3dad.errors import DataError
from mv3dad.export.checks import volume_parts
from mv3dad.io import atomic_file

# name, direction from the scene's centre to the camera, camera up vector
VIEWS = (
    ("front-right, above", (1.0, -1.0, 0.8), (0.0, 0.0, 1.0)),
    ("back-left, above", (-1.0, 1.0, 0.8), (0.0, 0.0, 1.0)),
    ("top", (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
    ("front", (0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
    ("right", (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    ("back-right, below", (1.0, 1.0, -0.8), (0.0, 0.0, 1.0)),
)
LAYOUTS = {1: (1, 1), 2: (1, 2), 3: (1, 3), 4: (2, 2), 5: (2, 3), 6: (2, 3)}


@dataclass
class RenderConfig:
    """How :func:`render_volume` draws.

    Attributes:
        views: number of viewpoints (1 to 6, taken in the order of ``VIEWS``), tiled into one picture.
        view_size: (width, height) in pixels of each viewpoint's tile.
        quantile: default threshold = this quantile of the observed scores (used when no threshold is given).
        cmap: matplotlib colour map for the voxels over the threshold.
        object_color: colour of the object's mesh or point cloud.
        object_opacity: opacity of the object's mesh (0 = invisible, 1 = opaque).
        background: background colour.
        point_size: size in pixels of the points when the object is a point cloud.
        point_opacity: opacity of those points.
    """

    views: int = 3
    view_size: tuple[int, int] = (640, 560)
    quantile: float = 0.99
    cmap: str = "autumn_r"
    object_color: str = "lightgrey"
    object_opacity: float = 0.3
    background: str = "white"
    point_size: float = 2.0
    point_opacity: float = 0.6

    def __post_init__(self) -> None:
        if self.views not in LAYOUTS:
            raise ValueError(f"views must be 1 to 6, got {self.views}")
        if not 0.0 <= self.quantile <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {self.quantile}")
        for name in ("object_opacity", "point_opacity"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if min(self.view_size) < 16:
            raise ValueError(f"view_size must be at least 16 x 16 pixels, got {self.view_size}")


def default_threshold(scores: np.ndarray, quantile: float = 0.99) -> float:
    """The ``quantile`` of the observed (non-NaN) scores."""
    observed = scores[~np.isnan(scores)]
    if observed.size == 0:
        raise DataError("every voxel is NaN (unobserved); nothing to draw")
    return float(np.quantile(observed, quantile))


def load_object(path: str | Path):
    """Read the object to draw under the volume: a mesh (PLY, STL, OBJ, OFF, GLB ...) or a point cloud.

    Returns:
        ``pyvista.PolyData`` (triangles, or vertices only for a point cloud).
    """
    import pyvista as pv
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such mesh file")
    try:
        geom = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:  # trimesh raises many types for unreadable files
        raise DataError(f"{path}: cannot read as a mesh or point cloud ({type(exc).__name__}: {exc})") from exc
    vertices = np.asarray(getattr(geom, "vertices", np.zeros((0, 3))), dtype=np.float64)
    if len(vertices) == 0:
        raise DataError(f"{path}: holds no vertices")
    faces = np.asarray(getattr(geom, "faces", np.zeros((0, 3))), dtype=np.int64)
    if len(faces):
        return pv.PolyData(vertices, np.hstack([np.full((len(faces), 1), 3), faces]).ravel())
    return pv.PolyData(vertices)


def nominal_threshold(scores_json: str | Path, category: str | None = None) -> tuple[float, str]:
    """One threshold for every part of a prediction run: the largest instance score of its nominal parts.

    Args:
        scores_json: a ``scores.json`` written by ``mv3dad predict`` (labels recorded per instance).
        category: restrict to one category (None = every category in the file).

    Returns:
        (threshold, a phrase saying where it comes from, for the legend).
    """
    from mv3dad.io import read_json

    rec = read_json(scores_json, "prediction scores")
    per_cat = rec.get("scores", {})
    cats = [category] if category else list(per_cat)
    nominal = [v["score"] for c in cats for v in per_cat.get(c, {}).values()
               if v.get("label") == "nominal" and np.isfinite(v.get("score", np.nan))]
    if not nominal:
        raise DataError(f"{scores_json}: no scored nominal instance{' of ' + category if category else ''} to "
                        f"take a threshold from; pass --threshold")
    return float(max(nominal)), f"largest of {len(nominal)} nominal parts"


def render_volume(da: xr.DataArray, out: str | Path, obj=None, threshold: float | None = None,
                  config: RenderConfig | None = None, where: str = "volume", gt: xr.DataArray | None = None,
                  title: str | None = None, threshold_note: str | None = None) -> Path:
    """Draw one volume (see :func:`render_volumes`)."""
    return render_volumes([da], out, objs=[obj], threshold=threshold, config=config, wheres=[where],
                          gts=[gt], titles=[title], threshold_note=threshold_note)


def render_volumes(das: list[xr.DataArray], out: str | Path, objs: list | None = None, threshold: float | None = None,
                   config: RenderConfig | None = None, wheres: list[str] | None = None,
                   gts: list[xr.DataArray | None] | None = None, titles: list[str | None] | None = None,
                   threshold_note: str | None = None) -> Path:
    """Draw the voxels of each volume scoring above ``threshold`` over its object, one row per volume, to a PNG.

    Every row uses the same threshold and colour scale, so a good part and a bad part compare at a glance; a
    part with no voxel above the threshold is drawn clean (the legend says so).

    Args:
        das: score volumes (dims x, y, z; mm coordinates; NaN = unobserved).
        out: output ``.png``.
        objs: per volume, the object: a path (see :func:`load_object`), a ``pyvista.PolyData``, or None to draw
            the observed voxel centres as a grey point cloud.
        threshold: voxels scoring > threshold are drawn; default ``config.quantile`` of the first volume's
            observed scores (a per-part threshold: prefer one from nominal parts, :func:`nominal_threshold`).
        config: drawing options.
        wheres: how to name each volume in error messages (e.g. its file name).
        gts: per volume, a ground-truth volume (> 0 = defect) drawn as a blue outline (the silhouette of its
            surface grown by one voxel), or None.
        titles: per volume, a title drawn over its row.
        threshold_note: where the threshold comes from (shown in the legend).

    Returns:
        ``out``.

    Raises:
        DataError: bad volume, unreadable mesh.
    """
    import pyvista as pv
    from PIL import Image

    n = len(das)
    cfg = config or RenderConfig()
    objs, wheres = objs or [None] * n, wheres or ["volume"] * n
    gts, titles = gts or [None] * n, titles or [None] * n
    parts = [volume_parts(da, where=w, need_observed=True) for da, w in zip(das, wheres)]
    if threshold is None:
        threshold = default_threshold(parts[0].scores, cfg.quantile)
        threshold_note = threshold_note or f"{cfg.quantile:g} quantile of this part"
    hots = [np.nan_to_num(p.scores, nan=-np.inf) > threshold for p in parts]
    top = max([float(p.scores[h].max()) for p, h in zip(parts, hots) if h.any()], default=threshold)
    clim = (float(threshold), float(max(top, threshold * 1.5 + 1e-6)))
    legend = f"score > {threshold:.3g}" + (f" ({threshold_note})" if threshold_note else "")

    pv.OFF_SCREEN = True
    rows, cols = LAYOUTS[cfg.views] if n == 1 else (n, cfg.views)  # one part: tiled; several: a row each
    w, h = cfg.view_size
    plotter = pv.Plotter(shape=(rows, cols), off_screen=True, window_size=(w * cols, h * rows), border=False)
    try:
        plotter.set_background(cfg.background)
        for r, (prt, hot, obj, gt, title) in enumerate(zip(parts, hots, objs, gts, titles)):
            vs = prt.grid.voxel_size
            cubes = None
            if hot.any():
                cubes = pv.PolyData(prt.grid.index_to_world(np.argwhere(hot)))
                cubes["score"] = prt.scores[hot]
                cubes = cubes.glyph(geom=pv.Cube(x_length=vs, y_length=vs, z_length=vs), scale=False, orient=False)
            outline = _gt_outline(gt) if gt is not None else None
            if obj is None:
                obj = pv.PolyData(prt.grid.index_to_world(np.argwhere(prt.observed)))
            elif not isinstance(obj, pv.PolyData):
                obj = load_object(obj)
            bounds = np.array(obj.bounds).reshape(3, 2)
            centre = bounds.mean(axis=1)
            for v, (label, direction, up) in enumerate(VIEWS[:cfg.views]):
                plotter.subplot(*((v // cols, v % cols) if n == 1 else (r, v)))
                if obj.faces.size:
                    plotter.add_mesh(obj, color=cfg.object_color, opacity=cfg.object_opacity, smooth_shading=True)
                else:
                    plotter.add_mesh(obj, color=cfg.object_color, point_size=cfg.point_size,
                                     opacity=cfg.point_opacity)
                if outline is not None:
                    plotter.add_silhouette(outline, color="blue", line_width=3.0)
                if cubes is not None:
                    plotter.add_mesh(cubes, scalars="score", cmap=cfg.cmap, clim=clim,
                                     show_scalar_bar=(r == 0 and v == 0),
                                     scalar_bar_args={"title": f"{prt.name} {legend}",
                                                      "vertical": False, "fmt": "%.3g", "color": "black",
                                                      "position_x": 0.15, "position_y": 0.03, "width": 0.7,
                                                      "n_labels": 4, "title_font_size": max(8, h // 36),
                                                      "label_font_size": max(7, h // 40)})
                text = label if v else "\n".join(x for x in (title, label) if x)
                if v == 0 and cubes is None:
                    text += f"\nclean: no voxel {legend}"
                if v == 0 and outline is not None:
                    text += "\nblue outline: ground truth"
                plotter.add_text(text, position="upper_left", font_size=10, color="black")
                plotter.camera_position = [tuple(centre + np.asarray(direction)), tuple(centre), up]
                plotter.reset_camera()
        image = plotter.screenshot(return_img=True)
    finally:
        plotter.close()
    out = Path(out)
    with atomic_file(out) as tmp:
        Image.fromarray(np.asarray(image)).save(tmp, format="PNG")
    return out


def _gt_outline(gt: xr.DataArray):
    """The boundary surface (``pyvista.PolyData``) of the ground truth's defect voxels grown by one voxel, or None
    when it has none: drawn as its silhouette from each viewpoint, a loop just outside the scored voxels that does
    not cover them (cube outlines of every voxel hid the scores of thin defects)."""
    import pyvista as pv
    from scipy import ndimage

    from mv3dad.geometry.grid import VoxelGrid

    mask = np.nan_to_num(np.asarray(gt.values, np.float32)) > 0
    if not mask.any():
        return None
    g = VoxelGrid.from_dataarray(gt)
    grown = np.pad(ndimage.binary_dilation(mask), 1)  # closed surfaces at the grid's border too
    img = pv.ImageData(dimensions=grown.shape, spacing=(g.voxel_size,) * 3,
                       origin=tuple(g.index_to_world(np.array([[-1, -1, -1]]))[0]))
    img["defect"] = grown.astype(np.float32).ravel(order="F")
    return img.contour([0.5], scalars="defect")
