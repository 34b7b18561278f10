"""Synthetic defects on a part's surface and the exact ground truth of the changed region.

Defect types (``DEFECT_TYPES``):

- ``dent`` / ``bump``: smooth elliptic depression / bulge (the whole wall moves, as in sheet material);
- ``hole``: a drilled cylinder (blind on solid parts, through on thin walls) - manifold3d boolean;
- ``cut``: a narrow sawn slot - manifold3d boolean;
- ``scratch``: a curved V-groove whose edges are stress-whitened (geometry and appearance);
- ``chunk``: an irregular missing piece, preferably bitten off an edge or rim - manifold3d boolean;
- ``stain``: appearance only, a discoloured blob with a ragged edge.

For meshes that are not closed 2-manifolds (some user CAD files) the boolean defects remove the faces inside the
cutter instead. Everything here works in the object's own frame (mm); the caller poses the result.

``DefectResult.changed`` samples the *changed surface*: the new or moved surface of the defective part and the
removed or moved surface of the nominal part (so the defect's centre, which lies on the nominal surface, is
among the points), plus the stained surface. The ground truth is the part of it that at least one rig camera
measures (:meth:`mv3dad.synth.render.RenderMesh.visible`, applied by the generator): what an annotator of the
scans could mark, so a hidden or removed surface is not in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import manifold3d as m3d
import numpy as np
import open3d as o3d
import trimesh
from scipy.spatial import cKDTree

from mv3dad.geometry.camera import Camera
from mv3dad.synth.shapes import to_trimesh
from mv3dad.synth.textures import stain_weights

DEFECT_TYPES = ("dent", "bump", "hole", "cut", "scratch", "chunk", "stain")
BOOLEAN = ("hole", "cut", "chunk")
WALL_WINDOW_MM = 12.0  # dents and bumps move every surface within this distance behind the defect (thin walls)


@dataclass
class Defect:
    """One defect, in the object frame.

    Attributes:
        type: one of :data:`DEFECT_TYPES`.
        center: (3,) mm, the point of the nominal surface the defect is centred on.
        normal: (3,) outward unit normal of the nominal surface there.
        size_mm: largest extent (diameter or length) in mm.
        params: type-specific parameters (depth, width, ...), JSON-friendly.
    """

    type: str
    center: np.ndarray
    normal: np.ndarray
    size_mm: float
    params: dict = field(default_factory=dict)


@dataclass
class Candidates:
    """Places on the visible surface where defects may go (object frame).

    Attributes:
        points, normals: (P, 3) surface points seen by at least ``min_views`` cameras, and their normals.
        edge_points, edge_normals: (E, 3) visible points on sharp edges and rims (mean normal of both faces).
    """

    points: np.ndarray
    normals: np.ndarray
    edge_points: np.ndarray
    edge_normals: np.ndarray


@dataclass
class DefectResult:
    """A defective part.

    Attributes:
        mesh: the defective mesh (object frame).
        defects: the defects applied.
        changed: (P, 3) points (object frame) sampling the changed surface; see the module docstring.
        stains: (S, 9) stains for the renderer (``cx, cy, cz, radius, strength, seed, r, g, b``).
    """

    mesh: trimesh.Trimesh
    defects: list[Defect]
    changed: np.ndarray
    stains: np.ndarray


# ---------------------------------------------------------------------------------------------- geometry helpers
def sample_faces(vertices: np.ndarray, faces: np.ndarray, spacing: float) -> np.ndarray:
    """Points on triangles on a barycentric lattice no coarser than ``spacing`` mm (deterministic).

    Args:
        vertices: (N, 3). faces: (M, 3).

    Returns:
        (P, 3) float64 points, including every triangle's corners.
    """
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(faces) == 0:
        return np.zeros((0, 3))
    tri = np.asarray(vertices, dtype=np.float64)[faces]
    longest = np.max(np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=2), axis=1)
    n = np.clip(np.ceil(longest / spacing), 1, 64).astype(np.int64)
    out = []
    for k in np.unique(n):
        i, j = np.meshgrid(np.arange(k + 1), np.arange(k + 1), indexing="ij")
        keep = i + j <= k
        b = np.stack([i[keep], j[keep]], 1) / k  # (B, 2)
        t = tri[n == k]
        out.append((t[:, None, 0] + b[None, :, :1] * (t[:, None, 1] - t[:, None, 0])
                    + b[None, :, 1:] * (t[:, None, 2] - t[:, None, 0])).reshape(-1, 3))
    return np.concatenate(out)


def _tangents(normal: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two random orthonormal tangents of ``normal``."""
    a = np.array([1.0, 0, 0]) if abs(normal[0]) < 0.9 else np.array([0, 1.0, 0])
    t1 = np.cross(normal, a)
    t1 /= np.linalg.norm(t1)
    t2 = np.cross(normal, t1)
    ang = rng.uniform(0, np.pi)
    return np.cos(ang) * t1 + np.sin(ang) * t2, -np.sin(ang) * t1 + np.cos(ang) * t2


def _refine_near(mesh: trimesh.Trimesh, center: np.ndarray, bound: float, dist_fn, reach: float, edge: float
                 ) -> trimesh.Trimesh:
    """Split the faces that come within ``reach`` (+ one edge) of the defect (``dist_fn``: (P, 3) points ->
    (P,) distances; only faces with a vertex within ``bound`` of ``center`` are considered) until their edges
    are shorter than ``edge``. This leaves T-junctions beyond ``reach``, where nothing moves."""
    v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    for _ in range(8):
        close = np.linalg.norm(v - center, axis=1) <= bound
        cand = np.flatnonzero(np.any(close[f], axis=1))
        tri = v[f[cand]]
        longest = np.max(np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=2), axis=1)
        near = np.min(dist_fn(tri.reshape(-1, 3)).reshape(-1, 3), axis=1) <= reach + longest
        sel = cand[near & (longest > edge)]
        if len(sel) == 0:
            break
        v, f = trimesh.remesh.subdivide(v, f, face_index=sel)
    return trimesh.Trimesh(v, f, process=False)


def _displace(mesh: trimesh.Trimesh, amount: np.ndarray, direction: np.ndarray, threshold: float
              ) -> tuple[trimesh.Trimesh, np.ndarray]:
    """Move vertices by ``amount * direction``; return the new mesh and points sampling the moved surface
    before and after."""
    v = np.asarray(mesh.vertices)
    moved = np.abs(amount) > threshold
    faces = mesh.faces[np.any(moved[mesh.faces], axis=1)]
    new_v = v + amount[:, None] * direction
    pts = np.concatenate([sample_faces(v, faces, 0.7), sample_faces(new_v, faces, 0.7)])
    return trimesh.Trimesh(new_v, mesh.faces, process=False), pts


def _face_original_ids(shape: m3d.Manifold) -> tuple[trimesh.Trimesh, np.ndarray]:
    mesh = shape.to_mesh64()
    run_index = np.asarray(mesh.run_index, dtype=np.int64) // 3
    run_ids = np.asarray(mesh.run_original_id, dtype=np.int64)
    ids = np.repeat(run_ids, np.diff(run_index))
    return to_trimesh(shape), ids


def _inside(cutter: m3d.Manifold, points: np.ndarray) -> np.ndarray:
    """(P,) bool, points inside the closed ``cutter``."""
    c = to_trimesh(cutter)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(c.vertices.astype(np.float32)), o3d.core.Tensor(c.faces.astype(np.uint32)))
    return scene.compute_occupancy(o3d.core.Tensor(np.asarray(points, np.float32))).numpy() > 0.5


def _near_faces(mesh: trimesh.Trimesh, cutter: m3d.Manifold) -> np.ndarray:
    """Faces of ``mesh`` with a vertex inside the cutter's bounding box grown by 2 mm."""
    b = np.asarray(cutter.bounding_box())
    v = np.asarray(mesh.vertices)
    inb = np.all((v >= b[:3] - 2.0) & (v <= b[3:] + 2.0), axis=1)
    return mesh.faces[np.any(inb[mesh.faces], axis=1)]


def _boolean_cut(shape: m3d.Manifold, mesh: trimesh.Trimesh, cutter: m3d.Manifold
                 ) -> tuple[m3d.Manifold, np.ndarray] | None:
    """``shape - cutter`` and points of the removed nominal surface and of the new surface; None if nothing
    was removed. ``mesh`` is ``shape`` as a trimesh."""
    nominal = sample_faces(mesh.vertices, _near_faces(mesh, cutter), 0.7)
    removed = nominal[_inside(cutter, nominal)] if len(nominal) else nominal
    if len(removed) == 0:
        return None
    c = cutter.as_original()
    cid = c.original_id()
    result = shape - c
    if result.status() != m3d.Error.NoError or result.is_empty():
        return None
    new_mesh, new_ids = _face_original_ids(result)
    pts = np.concatenate([removed, sample_faces(new_mesh.vertices, new_mesh.faces[new_ids == cid], 0.7)])
    return result, pts


def _remove_inside(mesh: trimesh.Trimesh, cutter: m3d.Manifold) -> tuple[trimesh.Trimesh, np.ndarray] | None:
    """Face-removal fallback of a boolean cut for open meshes: drop the faces whose centroid is in the cutter."""
    inside = _inside(cutter, mesh.triangles_center)
    if not inside.any():
        return None
    pts = sample_faces(mesh.vertices, mesh.faces[inside], 0.7)
    return trimesh.Trimesh(mesh.vertices, mesh.faces[~inside], process=False), pts


# ---------------------------------------------------------------------------------------------- candidates
def find_candidates(mesh: trimesh.Trimesh, cameras: list[Camera], seed: int = 0, n: int = 4000,
                    min_views: int = 2) -> Candidates:
    """Surface points seen (unoccluded, facing the camera at more than ~75 degrees) by ``min_views`` cameras."""
    points, fidx = trimesh.sample.sample_surface(mesh, n, seed=seed)
    normals = mesh.face_normals[fidx]
    adj_angle = mesh.face_adjacency_angles
    sharp = mesh.face_adjacency[adj_angle > np.deg2rad(50)]
    edges = mesh.face_adjacency_edges[adj_angle > np.deg2rad(50)]
    e_pts = mesh.vertices[edges].mean(axis=1)
    e_nrm = mesh.face_normals[sharp].sum(axis=1)
    e_nrm /= np.maximum(np.linalg.norm(e_nrm, axis=1, keepdims=True), 1e-12)
    if len(e_pts) > n:
        keep = np.random.default_rng(seed).choice(len(e_pts), n, replace=False)
        e_pts, e_nrm = e_pts[np.sort(keep)], e_nrm[np.sort(keep)]
    vis = visible_count(mesh, cameras, points, normals)
    e_vis = visible_count(mesh, cameras, e_pts, e_nrm)
    return Candidates(points[vis >= min_views], normals[vis >= min_views], e_pts[e_vis >= min_views],
                      e_nrm[e_vis >= min_views])


def visible_count(mesh: trimesh.Trimesh, cameras: list[Camera], points: np.ndarray, normals: np.ndarray
                  ) -> np.ndarray:
    """(P,) number of cameras that see each point (inside the image, facing it, not occluded)."""
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)),
                        o3d.core.Tensor(mesh.faces.astype(np.uint32)))
    count = np.zeros(len(points), dtype=np.int64)
    for cam in cameras:
        c = cam.center
        d = c - points
        dist = np.linalg.norm(d, axis=1)
        d /= dist[:, None]
        facing = np.einsum("ij,ij->i", d, normals) > 0.25
        pc = points @ cam.R.T + cam.t
        uv = pc[:, :2] / pc[:, 2:3] * np.diag(cam.K)[:2] + cam.K[:2, 2]
        inside = (pc[:, 2] > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)
        origin = points + d * 0.5  # start just off the surface, cast towards the camera
        rays = np.concatenate([origin, d], 1).astype(np.float32)
        t = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
        count += facing & inside & (t >= dist - 1.0)
    return count


# ---------------------------------------------------------------------------------------------- defects
def _pick(cand: Candidates, rng: np.random.Generator, taken: list[tuple[np.ndarray, float]], radius: float,
          edge: bool) -> tuple[np.ndarray, np.ndarray] | None:
    pts, nrm = (cand.edge_points, cand.edge_normals) if edge and len(cand.edge_points) else (cand.points, cand.normals)
    for k in rng.permutation(len(pts))[:200]:
        if all(np.linalg.norm(pts[k] - c) > radius + r + 10.0 for c, r in taken):
            return pts[k].copy(), nrm[k] / np.linalg.norm(nrm[k])
    return None


def _cutter(kind: str, p: np.ndarray, n: np.ndarray, rng: np.random.Generator) -> tuple[m3d.Manifold, float, dict]:
    t1, t2 = _tangents(n, rng)
    frame = np.stack([t1, t2, n], 1)  # columns: local x, y, z of the cutter
    if kind == "hole":
        r = rng.uniform(2.5, 10.0)
        depth = rng.uniform(6.0, 20.0)
        solid = m3d.Manifold.cylinder(depth + 4.0, r, r, 32).translate([0, 0, -depth])
        size, params = 2 * r, {"radius_mm": r, "depth_mm": depth}
    elif kind == "cut":
        length, width, depth = rng.uniform(15, 50), rng.uniform(1.5, 3.5), rng.uniform(4.0, 10.0)
        solid = m3d.Manifold.cube([length, width, depth + 4.0]).translate([-length / 2, -width / 2, -depth])
        size, params = length, {"length_mm": length, "width_mm": width, "depth_mm": depth}
    else:  # chunk: an irregular convex piece centred a little outside the surface
        r = rng.uniform(8.0, 25.0)
        d = rng.standard_normal((48, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        d *= r * rng.uniform(0.75, 1.0, (48, 1)) * rng.uniform(0.75, 1.0, 3)  # reaches >= 0.4 r below p
        solid = m3d.Manifold.hull_points(d + [0, 0, 0.15 * r])
        size, params = 2 * r, {"radius_mm": r}
    T = np.zeros((3, 4))
    T[:, :3] = frame
    T[:, 3] = p
    return solid.transform(T), size, params


def _dent_bump(mesh: trimesh.Trimesh, p: np.ndarray, n: np.ndarray, sign: float, rng: np.random.Generator
               ) -> tuple[trimesh.Trimesh, np.ndarray, float, dict]:
    r = rng.uniform(5.0, 25.0)
    height = float(np.clip(0.14 * r + rng.uniform(-0.5, 0.8), 0.8, 4.0))
    t1, t2 = _tangents(n, rng)
    a, b = r, r * rng.uniform(0.6, 1.0)

    def lateral(x):
        d = x - p
        return np.sqrt((d @ t1 / a) ** 2 + (d @ t2 / b) ** 2), d @ n

    mesh = _refine_near(mesh, p, r + WALL_WINDOW_MM + 10.0,
                        lambda x: np.maximum(np.linalg.norm(x - p, axis=1) - WALL_WINDOW_MM, 0), r, max(r / 6, 0.8))
    s, axial = lateral(np.asarray(mesh.vertices))
    w = np.clip(1 - s ** 2, 0, 1) ** 2 * ((axial > -WALL_WINDOW_MM) & (axial < height + 2))
    mesh, pts = _displace(mesh, sign * height * w, n, max(0.15 * height, 0.1))
    return mesh, pts, 2 * r, {"height_mm": height, "radius_mm": r}


def _scratch(mesh: trimesh.Trimesh, p: np.ndarray, n: np.ndarray, rng: np.random.Generator
             ) -> tuple[trimesh.Trimesh, np.ndarray, float, dict, np.ndarray]:
    length, width, depth = rng.uniform(20, 70), rng.uniform(1.2, 3.0), rng.uniform(0.4, 1.2)
    t1, t2 = _tangents(n, rng)
    s = np.linspace(-length / 2, length / 2, 40)
    bend = rng.uniform(-0.006, 0.006)
    path = p + s[:, None] * t1 + (bend * s ** 2)[:, None] * t2
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)),
                        o3d.core.Tensor(mesh.faces.astype(np.uint32)))
    path = scene.compute_closest_points(o3d.core.Tensor(path.astype(np.float32)))["points"].numpy().astype(float)
    half = width / 2
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    s_dense = np.linspace(0, seg.sum(), max(int(seg.sum() / 0.05), 2))
    arc = np.r_[0, np.cumsum(seg)]
    dense = np.stack([np.interp(s_dense, arc, path[:, k]) for k in range(3)], 1)
    tree = cKDTree(dense)

    def dist(x):  # distance to the path (to within 0.025 mm)
        return tree.query(x, distance_upper_bound=half + 20.0)[0]

    bound = float(np.max(np.linalg.norm(path - p, axis=1))) + half + 10.0
    mesh = _refine_near(mesh, p, bound, dist, half, max(half / 3, 0.35))
    v = np.asarray(mesh.vertices)
    w = np.zeros(len(v))
    near = np.flatnonzero((np.linalg.norm(v - p, axis=1) <= bound) & (np.abs((v - p) @ n) < 15.0))
    w[near] = np.clip(1 - dist(v[near]) / half, 0, 1)  # only the scratched side of a thin wall
    mesh, pts = _displace(mesh, -depth * w, n, 0.05)
    stains = np.array([[*q, 1.6 * half + 0.6, 0.7, 0.0, 1.45, 1.45, 1.4] for q in path[::2]])
    return mesh, pts, length, {"width_mm": width, "depth_mm": depth}, stains


def apply_defects(mesh: trimesh.Trimesh, shape: m3d.Manifold | None, types: list[str], cand: Candidates,
                  rng: np.random.Generator) -> DefectResult:
    """Apply defects of the given ``types`` (boolean ones first) at random visible places.

    Args:
        mesh: the nominal mesh (object frame); ``shape``: the same as a manifold, or None for open meshes.
        types: defect types, one defect each (repeats allowed).
        cand: where defects may go.

    Raises:
        ValueError: an unknown type, or no candidate place left.
    """
    for t in types:
        if t not in DEFECT_TYPES:
            raise ValueError(f"unknown defect type {t!r}; choose from {DEFECT_TYPES}")
    if len(cand.points) == 0:
        raise ValueError("no visible surface point to place a defect on")
    order = sorted(types, key=lambda t: (t not in BOOLEAN, DEFECT_TYPES.index(t)))
    defects: list[Defect] = []
    changed: list[np.ndarray] = []
    stains: list[np.ndarray] = []
    taken: list[tuple[np.ndarray, float]] = []
    for kind in order:
        for _attempt in range(20):
            pick = _pick(cand, rng, taken, 30.0, edge=(kind == "chunk" and rng.random() < 0.7))
            if pick is None:
                raise ValueError(f"no room left on the visible surface for a {kind} defect")
            p, n = pick
            if kind in BOOLEAN:
                cutter, size, params = _cutter(kind, p, n, rng)
                if shape is not None:
                    done = _boolean_cut(shape, mesh, cutter)
                    if done is None:
                        continue
                    shape, pts = done
                    mesh = to_trimesh(shape)
                else:
                    done = _remove_inside(mesh, cutter)
                    if done is None:
                        continue
                    mesh, pts = done
            elif kind in ("dent", "bump"):
                mesh, pts, size, params = _dent_bump(mesh, p, n, -1.0 if kind == "dent" else 1.0, rng)
                shape = None
            elif kind == "scratch":
                mesh, pts, size, params, st = _scratch(mesh, p, n, rng)
                stains.append(st)
                shape = None
            else:  # stain
                r = rng.uniform(6.0, 30.0)
                dark = rng.random() < 0.7
                rgb = rng.uniform(0.25, 0.45, 3) * [1.2, 1.0, 0.75] if dark else rng.uniform(1.3, 1.6, 3)
                stains.append(np.array([[*p, r, rng.uniform(0.6, 0.9), rng.uniform(0, 100), *rgb]]))
                pts, size, params = np.zeros((0, 3)), 2 * r, {"radius_mm": r, "darker": bool(dark)}
            changed.append(np.concatenate([pts, p[None]]))
            defects.append(Defect(kind, p, n, float(size), {k: float(v) for k, v in params.items()}))
            taken.append((p, size / 2))
            break
        else:
            raise ValueError(f"could not place a {kind} defect after 20 attempts")
    stain_arr = np.concatenate(stains) if stains else np.zeros((0, 9))
    if len(stain_arr):
        changed.append(_stained_points(mesh, stain_arr))
    return DefectResult(mesh, defects, np.concatenate(changed), stain_arr)


def _stained_points(mesh: trimesh.Trimesh, stains: np.ndarray) -> np.ndarray:
    """Points of ``mesh`` where a stain covers at least half of its strength."""
    c = mesh.triangles_center
    near = np.zeros(len(c), bool)
    for s in stains:
        near |= np.linalg.norm(c - s[:3], axis=1) < 1.7 * s[3] + 10.0
    pts = sample_faces(mesh.vertices, mesh.faces[near], 0.7)
    w = stain_weights(pts, stains)
    return pts[w >= 0.5 * stains[:, 4].min()]


def ground_truth(grid, points: np.ndarray) -> np.ndarray:
    """(X, Y, Z) uint8 volume of ``grid`` (a :class:`~mv3dad.geometry.VoxelGrid`), 1 at voxels holding a point.

    Args:
        points: (P, 3) world mm.
    """
    vol = np.zeros(grid.shape, dtype=np.uint8)
    idx = grid.world_to_index(points)
    idx = idx[grid.contains(idx)]
    vol[idx[:, 0], idx[:, 1], idx[:, 2]] = 1
    return vol
