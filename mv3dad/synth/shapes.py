"""Procedural object categories (SiM3D-like parts) and user CAD meshes, as watertight manifolds in mm.

Every shape stands on the plane z = 0 and is centred on the z axis (world z up). Builders take an optional
``rng``: ``None`` gives the category's canonical design (the "CAD model" of the benchmark); a generator gives
randomised proportions (used by the pretraining corpus).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import manifold3d as m3d
import numpy as np
import trimesh

SEGMENTS = 96  # circular segments of round parts before refinement


# ------------------------------------------------------------------------------------------------ helpers
def _u(rng: np.random.Generator | None, lo: float, hi: float, nominal: float) -> float:
    """``nominal`` for the canonical design, else uniform in [lo, hi]."""
    return nominal if rng is None else float(rng.uniform(lo, hi))


def _align_z(direction: np.ndarray) -> np.ndarray:
    """(3, 3) rotation taking +z onto unit ``direction`` (Rodrigues)."""
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    z = np.array([0.0, 0.0, 1.0])
    v, c = np.cross(z, d), float(z @ d)
    if np.linalg.norm(v) < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def _place(part: m3d.Manifold, rotation: np.ndarray, translation) -> m3d.Manifold:
    T = np.zeros((3, 4))
    T[:, :3] = rotation
    T[:, 3] = translation
    return part.transform(T)


def _rod(a, b, r0: float, r1: float | None = None) -> m3d.Manifold:
    """A (tapered) cylinder from point ``a`` to point ``b`` (mm)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    length = float(np.linalg.norm(b - a))
    cyl = m3d.Manifold.cylinder(length, r0, r0 if r1 is None else r1, SEGMENTS // 2)
    return _place(cyl, _align_z(b - a), a)


def _box(lo, hi) -> m3d.Manifold:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return m3d.Manifold.cube(list(hi - lo)).translate(list(lo))


def _revolve(profile: np.ndarray) -> m3d.Manifold:
    """Revolve a closed (r, z) polygon around the z axis."""
    return m3d.Manifold.revolve(m3d.CrossSection([np.asarray(profile, dtype=np.float64)]), SEGMENTS * 2)


def _union(parts: list[m3d.Manifold]) -> m3d.Manifold:
    return m3d.Manifold.batch_boolean(parts, m3d.OpType.Add)


def _on_floor(shape: m3d.Manifold) -> m3d.Manifold:
    """Cut at z = 0 and centre the bounding box on the z axis."""
    shape = shape.trim_by_plane([0.0, 0.0, 1.0], 0.0)
    lo, hi = np.asarray(shape.bounding_box()[:3]), np.asarray(shape.bounding_box()[3:])
    return shape.translate([-(lo[0] + hi[0]) / 2, -(lo[1] + hi[1]) / 2, -lo[2]])


# ------------------------------------------------------------------------------------------------ categories
def stool(rng: np.random.Generator | None = None) -> m3d.Manifold:
    """A round-seated stool: seat with rounded rim, four splayed tapered legs, a ring of stretchers."""
    height = _u(rng, 380, 480, 440)
    seat_r = _u(rng, 130, 190, 165)
    seat_t = _u(rng, 22, 36, 28)
    leg_r = _u(rng, 10, 17, 14)
    splay = _u(rng, 15, 45, 30)
    n_legs = 4 if rng is None else int(rng.integers(3, 5))
    seat = m3d.Manifold.cylinder(seat_t - 8, seat_r, seat_r, SEGMENTS * 2).translate([0, 0, height - seat_t])
    rim = m3d.Manifold.cylinder(8, seat_r, seat_r - 6, SEGMENTS * 2).translate([0, 0, height - 8])
    parts = [seat, rim]
    top_r = seat_r - 35
    stretcher_z = 0.35 * height
    feet = []
    for k in range(n_legs):
        a = 2 * np.pi * (k + 0.5) / n_legs
        d = np.array([np.cos(a), np.sin(a), 0.0])
        foot = d * (top_r + splay)
        top = d * top_r + [0, 0, height - seat_t + 1]
        parts.append(_rod(foot - [0, 0, 5], top, leg_r, leg_r * 0.8))
        feet.append(foot + (top - foot) * stretcher_z / height)
    for k in range(n_legs):
        parts.append(_rod(feet[k], feet[(k + 1) % n_legs], leg_r * 0.55))
    return _on_floor(_union(parts))


def bin(rng: np.random.Generator | None = None) -> m3d.Manifold:  # noqa: A001 - category name
    """An open-top tapered rubbish bin: thin wall, flat bottom, rolled rim and two pressed bands."""
    h = _u(rng, 260, 380, 330)
    r0 = _u(rng, 95, 130, 118)
    r1 = r0 + _u(rng, 15, 45, 30)
    wall = _u(rng, 3, 5, 4)
    outer = m3d.Manifold.cylinder(h, r0, r1, SEGMENTS * 2)
    inner = m3d.Manifold.cylinder(h, r0 - wall, r1 - wall, SEGMENTS * 2).translate([0, 0, wall])
    rim = _revolve(np.array([[r1 - wall, h - 10], [r1 + 5, h - 8], [r1 + 6, h - 3], [r1 + 3, h], [r1 - wall, h]]))
    parts = [outer - inner, rim]
    for zf in (0.3, 0.62):
        z = zf * h
        r = r0 + (r1 - r0) * zf
        parts.append(_revolve(np.array([[r - wall, z - 6], [r + 2.5, z - 4], [r + 2.5, z + 4], [r - wall, z + 6]])))
    return _on_floor(_union(parts))


def vase(rng: np.random.Generator | None = None) -> m3d.Manifold:
    """A vase as a surface of revolution: foot, belly, neck and flared lip, open top, 5 mm wall."""
    h = _u(rng, 280, 420, 360)
    belly = _u(rng, 90, 140, 115)
    neck = _u(rng, 40, 70, 50)
    foot = _u(rng, 50, 80, 65)
    lip = neck + _u(rng, 5, 25, 14)
    wall = 5.0
    z = np.linspace(0, h, 64)
    s = z / h
    # smooth radius profile through foot, belly (at ~35 %), neck (at ~80 %) and lip
    knots_s = np.array([0.0, 0.08, 0.35, 0.62, 0.82, 0.93, 1.0])
    knots_r = np.array([foot, foot + 0.25 * (belly - foot), belly, 0.5 * (belly + neck), neck, neck + 0.4 * (lip - neck),
                        lip])
    from scipy.interpolate import PchipInterpolator

    r = PchipInterpolator(knots_s, knots_r)(s)
    outer = np.stack([r, z], 1)
    inner = np.stack([r[::-1] - wall, z[::-1]], 1)
    inner = inner[inner[:, 1] >= wall * 2]
    profile = np.concatenate([[[0.0, 0.0]], outer, inner, [[0.0, wall * 2]]])
    return _on_floor(_revolve(profile))


def cabinet(rng: np.random.Generator | None = None) -> m3d.Manifold:
    """A bathroom sink cabinet: carcass on a recessed plinth, counter top with a basin, a door (grooved frame)
    and a bar handle on stand-offs."""
    w = _u(rng, 300, 420, 380)
    d = _u(rng, 220, 320, 280)
    h = _u(rng, 380, 480, 440)
    plinth = 40.0
    top_t = 20.0
    body = _box([-w / 2, -d / 2, plinth], [w / 2, d / 2, h - top_t])
    base = _box([-w / 2 + 25, -d / 2 + 25, 0], [w / 2 - 25, d / 2 - 25, plinth + 1])
    top = _box([-w / 2 - 10, -d / 2 - 12, h - top_t - 0.5], [w / 2 + 10, d / 2 + 10, h])
    basin = m3d.Manifold.cylinder(100, min(w, d) * 0.32, min(w, d) * 0.36, SEGMENTS * 2)
    basin = basin.scale([1.3, 1.0, 1.0]).translate([0, 5, h - 60])
    # the door: a 3 mm groove around a panel on the front face (y = -d/2), a bar handle near its right edge
    m = 18.0
    dz0, dz1 = plinth + m, h - top_t - m
    dx0, dx1 = -w / 2 + m, w / 2 - m
    outer = _box([dx0, -d / 2 - 1, dz0], [dx1, -d / 2 + 4, dz1])
    inner = _box([dx0 + 3, -d / 2 - 2, dz0 + 3], [dx1 - 3, -d / 2 + 5, dz1 - 3])
    groove = outer - inner
    hx = dx1 - 35
    hz0, hz1 = dz1 - 40 - 0.4 * (dz1 - dz0), dz1 - 40
    handle = _rod([hx, -d / 2 - 28, hz0 - 8], [hx, -d / 2 - 28, hz1 + 8], 7)
    posts = [_rod([hx, -d / 2 + 2, z], [hx, -d / 2 - 28, z], 5) for z in (hz0, hz1)]
    shape = _union([body, base, top] + [handle] + posts) - groove - basin
    return _on_floor(shape)


def container(rng: np.random.Generator | None = None) -> m3d.Manifold:
    """A ribbed storage container: open-top tapered tub with 4 mm wall, a flanged rim and vertical ribs."""
    w = _u(rng, 320, 460, 420)
    d = _u(rng, 220, 340, 300)
    h = _u(rng, 160, 280, 220)
    wall = 4.0
    taper = 0.92
    sq = m3d.CrossSection.square([w * taper, d * taper], center=True)
    outer = m3d.Manifold.extrude(sq, h, scale_top=(1 / taper, 1 / taper))
    sq_in = m3d.CrossSection.square([w * taper - 2 * wall, d * taper - 2 * wall], center=True)
    inner = m3d.Manifold.extrude(sq_in, h, scale_top=((w - 2 * wall) / (w * taper - 2 * wall),
                                                      (d - 2 * wall) / (d * taper - 2 * wall))).translate([0, 0, wall])
    flange = _box([-w / 2 - 8, -d / 2 - 8, h - 8], [w / 2 + 8, d / 2 + 8, h]) - _box(
        [-w / 2 + wall, -d / 2 + wall, h - 9], [w / 2 - wall, d / 2 - wall, h + 1])
    ribs = []
    pitch = _u(rng, 30, 60, 45)
    for axis, half, other in ((0, w, d), (1, d, w)):
        n = int(half * 0.8 // pitch)
        for k in range(n):
            c = (k - (n - 1) / 2) * pitch
            for side in (-1, 1):
                # a rib following the tapered wall: a thin slab from the bottom to the flange
                lo_off, hi_off = other * taper / 2, other / 2
                a = np.zeros(3)
                b = np.zeros(3)
                a[axis], b[axis] = c, c
                a[1 - axis], b[1 - axis] = side * (lo_off + 1.0), side * (hi_off + 1.0)
                a[2], b[2] = 12, h - 8
                ribs.append(_rod(a, b, 3.5))
    return _on_floor(_union([outer - inner, flange] + ribs))


CATEGORIES: dict[str, Callable[[np.random.Generator | None], m3d.Manifold]] = {
    "stool": stool, "bin": bin, "vase": vase, "cabinet": cabinet, "container": container,
}


def build_category(name: str, rng: np.random.Generator | None = None) -> m3d.Manifold:
    """The manifold of category ``name`` (canonical design when ``rng`` is None)."""
    if name not in CATEGORIES:
        raise ValueError(f"unknown category {name!r}; choose from {sorted(CATEGORIES)}")
    shape = CATEGORIES[name](rng)
    if shape.status() != m3d.Error.NoError or shape.is_empty():
        raise RuntimeError(f"category {name!r}: building the shape failed ({shape.status()})")
    return shape


# ------------------------------------------------------------------------------------------------ conversions
def refine(shape: m3d.Manifold, edge_mm: float) -> m3d.Manifold:
    """Split edges longer than ``edge_mm`` so that dents and bumps deform smoothly (stays manifold)."""
    return shape.refine_to_length(float(edge_mm))


def to_trimesh(shape: m3d.Manifold) -> trimesh.Trimesh:
    """A manifold as a trimesh (float64 vertices, no processing)."""
    mesh = shape.to_mesh64()
    v = np.asarray(mesh.vert_properties, dtype=np.float64)[:, :3]
    f = np.asarray(mesh.tri_verts, dtype=np.int64)
    return trimesh.Trimesh(v, f, process=False)


def to_manifold(mesh: trimesh.Trimesh) -> m3d.Manifold | None:
    """A trimesh as a manifold, or None when it is not a closed oriented 2-manifold."""
    v = np.ascontiguousarray(mesh.vertices, dtype=np.float64)
    f = np.ascontiguousarray(mesh.faces, dtype=np.uint64)
    shape = m3d.Manifold(m3d.Mesh64(v, f))
    if shape.status() != m3d.Error.NoError or shape.is_empty():
        return None
    return shape


def load_user_mesh(path: str | Path, size_mm: float = 300.0) -> trimesh.Trimesh:
    """Load a CAD mesh (STL/OBJ/PLY/GLB/...), rescale its largest extent to ``size_mm``, stand it on z = 0
    centred on the z axis. Scenes are flattened into one mesh.

    Raises:
        ValueError: naming the file when it cannot be read or holds no triangles.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: mesh file not found")
    try:
        loaded = trimesh.load(path, force="mesh", process=True)
    except Exception as e:  # trimesh raises many kinds of errors for malformed files
        raise ValueError(f"{path}: cannot read mesh: {e}") from None
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise ValueError(f"{path}: the file holds no triangles")
    mesh = trimesh.Trimesh(np.asarray(loaded.vertices, dtype=np.float64), np.asarray(loaded.faces), process=True)
    mesh.remove_unreferenced_vertices()
    extent = float(np.max(mesh.extents))
    if not extent > 0:
        raise ValueError(f"{path}: the mesh is degenerate (zero extent)")
    v = mesh.vertices * (size_mm / extent)
    lo, hi = v.min(0), v.max(0)
    v = v - [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]]
    return trimesh.Trimesh(v, mesh.faces, process=False)


def mesh_manifold(mesh: trimesh.Trimesh, edge_mm: float) -> tuple[trimesh.Trimesh, m3d.Manifold | None]:
    """Refine a user mesh: through manifold3d when it is watertight, else by splitting long edges."""
    shape = to_manifold(mesh)
    if shape is not None:
        shape = refine(shape, edge_mm)
        return to_trimesh(shape), shape
    v, f = trimesh.remesh.subdivide_to_size(mesh.vertices, mesh.faces, max_edge=edge_mm, max_iter=12)
    out = trimesh.Trimesh(v, f, process=False)
    out.merge_vertices()
    return out, None
