"""Pictures of a score volume over the object: PyVista off-screen, several viewpoints tiled into one PNG.

The object (its mesh, or a point cloud) is drawn light grey and semi-transparent; the voxels whose score is
>= the threshold are drawn as cubes coloured by score (colour map from the threshold to the highest score, with
a scalar bar). Off-screen rendering uses VTK's EGL window (or OSMesa), so no display is needed.
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
    cmap: str = "turbo"
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


def render_volume(da: xr.DataArray, out: str | Path, obj=None, threshold: float | None = None,
                  config: RenderConfig | None = None, where: str = "volume") -> Path:
    """Draw the voxels of ``da`` scoring >= ``threshold`` over the object, from several viewpoints, to a PNG.

    Args:
        da: score volume (dims x, y, z; mm coordinates; NaN = unobserved).
        out: output ``.png``.
        obj: the object: a path (see :func:`load_object`), a ``pyvista.PolyData``, or None to draw the observed
            voxel centres as a grey point cloud.
        threshold: score threshold; default ``config.quantile`` of the observed scores.
        config: drawing options.
        where: how to name the volume in error messages (e.g. its file name).

    Returns:
        ``out``.

    Raises:
        DataError: bad volume, unreadable mesh; ValueError: no voxel reaches the threshold.
    """
    import pyvista as pv
    from PIL import Image

    cfg = config or RenderConfig()
    parts = volume_parts(da, where=where, need_observed=True)
    if threshold is None:
        threshold = default_threshold(parts.scores, cfg.quantile)
    hot = np.nan_to_num(parts.scores, nan=-np.inf) >= threshold
    if not hot.any():
        raise ValueError(f"{where}: no voxel has a score >= threshold {threshold:.6g} "
                         f"(max {float(np.nanmax(parts.scores)):.6g})")
    scores = parts.scores[hot]
    vs = parts.grid.voxel_size
    cubes = pv.PolyData(parts.grid.index_to_world(np.argwhere(hot)))
    cubes["score"] = scores
    cubes = cubes.glyph(geom=pv.Cube(x_length=vs, y_length=vs, z_length=vs), scale=False, orient=False)
    if obj is None:
        obj = pv.PolyData(parts.grid.index_to_world(np.argwhere(parts.observed)))
    elif not isinstance(obj, pv.PolyData):
        obj = load_object(obj)
    clim = (float(threshold), float(max(scores.max(), threshold + 1e-6)))

    pv.OFF_SCREEN = True
    rows, cols = LAYOUTS[cfg.views]
    w, h = cfg.view_size
    plotter = pv.Plotter(shape=(rows, cols), off_screen=True, window_size=(w * cols, h * rows), border=False)
    try:
        plotter.set_background(cfg.background)
        bounds = np.array(obj.bounds).reshape(3, 2) if obj.n_points else np.array(cubes.bounds).reshape(3, 2)
        centre = bounds.mean(axis=1)
        for v, (label, direction, up) in enumerate(VIEWS[:cfg.views]):
            plotter.subplot(v // cols, v % cols)
            if obj.faces.size:
                plotter.add_mesh(obj, color=cfg.object_color, opacity=cfg.object_opacity, smooth_shading=True)
            else:
                plotter.add_mesh(obj, color=cfg.object_color, point_size=cfg.point_size,
                                 opacity=cfg.point_opacity)
            plotter.add_mesh(cubes, scalars="score", cmap=cfg.cmap, clim=clim, show_scalar_bar=v == 0,
                             scalar_bar_args={"title": f"{parts.name} score (>= {threshold:.3g})",
                                              "vertical": False, "fmt": "%.3g", "color": "black",
                                              "position_x": 0.15, "position_y": 0.03, "width": 0.7,
                                              "n_labels": 4, "title_font_size": max(8, h // 36),
                                              "label_font_size": max(7, h // 40)})
            plotter.add_text(label, position="upper_left", font_size=10, color="black")
            plotter.camera_position = [tuple(centre + np.asarray(direction)), tuple(centre), up]
            plotter.reset_camera()
        image = plotter.screenshot(return_img=True)
    finally:
        plotter.close()
    out = Path(out)
    with atomic_file(out) as tmp:
        Image.fromarray(np.asarray(image)).save(tmp, format="PNG")
    return out
