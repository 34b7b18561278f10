"""Ray casting (open3d) and Blinn-Phong shading of a textured mesh seen by a calibrated camera.

Image and depth are pixel-aligned by construction: pixel (u, v) casts the ray ``K^-1 [u, v, 1]`` from the camera
centre, scaled so that its camera-frame z component is 1; the ray parameter of the hit is then the depth
(z in the camera frame, mm). Lights are fixed to the camera (a key light up-right of it and a fill light to its
left), so highlights move from view to view as on a scanner whose projector and lamps travel with the camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np
import open3d as o3d
import trimesh

from mv3dad.geometry.camera import Camera
from mv3dad.geometry.projection import project_points
from mv3dad.synth.materials import Material, pack
from mv3dad.synth.textures import stain_weight, texture

AMBIENT = 0.14
# lights in the camera frame, as fractions of the camera's distance to the world origin, and intensities
LIGHTS = ((0.35, -0.40, 0.0, 0.85), (-0.45, -0.05, 0.05, 0.30))


def corner_normals(vertices: np.ndarray, faces: np.ndarray, sharp_deg: float = 40.0) -> np.ndarray:
    """Smooth shading normals per triangle corner, kept sharp across creases.

    The normal at corner (f, k) averages (area-weighted) the normals of the faces around vertex ``faces[f, k]``
    that differ from face f's normal by less than ``sharp_deg``.

    Args:
        vertices: (N, 3) positions. faces: (M, 3) vertex indices.

    Returns:
        (M, 3, 3) float32 unit normals, ``[f, k]`` for corner k of face f.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.ascontiguousarray(faces, dtype=np.int64)
    cross = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    area = np.linalg.norm(cross, axis=1)
    fn = cross / np.maximum(area, 1e-30)[:, None]
    return _corner_normals(f, fn, area, np.cos(np.deg2rad(sharp_deg)), len(v))


@nb.njit(cache=True, error_model="numpy")
def _corner_normals(faces, fn, area, cos_t, n_vertices):  # pragma: no cover - compiled
    m = faces.shape[0]
    start = np.zeros(n_vertices + 1, np.int64)
    for f in range(m):
        for k in range(3):
            start[faces[f, k] + 1] += 1
    for i in range(n_vertices):
        start[i + 1] += start[i]
    fill = start[:-1].copy()
    adj = np.empty(3 * m, np.int64)
    for f in range(m):
        for k in range(3):
            v = faces[f, k]
            adj[fill[v]] = f
            fill[v] += 1
    out = np.zeros((m, 3, 3), np.float32)
    for f in range(m):
        for k in range(3):
            v = faces[f, k]
            sx, sy, sz = 0.0, 0.0, 0.0
            for j in range(start[v], start[v + 1]):
                g = adj[j]
                if fn[f, 0] * fn[g, 0] + fn[f, 1] * fn[g, 1] + fn[f, 2] * fn[g, 2] > cos_t:
                    sx += area[g] * fn[g, 0]
                    sy += area[g] * fn[g, 1]
                    sz += area[g] * fn[g, 2]
            n = np.sqrt(sx * sx + sy * sy + sz * sz)
            if n > 0:
                out[f, k, 0], out[f, k, 1], out[f, k, 2] = sx / n, sy / n, sz / n
            else:
                out[f, k, 0], out[f, k, 1], out[f, k, 2] = fn[f, 0], fn[f, 1], fn[f, 2]
    return out


def support_disc(radius: float, thickness: float = 20.0) -> trimesh.Trimesh:
    """A turntable: a disc whose top is the plane z = 0 (slightly below, so the object's base stays visible)."""
    disc = trimesh.creation.cylinder(radius=radius, height=thickness, sections=128)
    disc.apply_translation([0.0, 0.0, -thickness / 2 - 0.05])
    return disc


@dataclass
class RenderMesh:
    """A mesh ready to be rendered.

    Attributes:
        vertices: (N, 3) float64 world positions (mm).
        faces: (M, 3) int64 vertex indices.
        normals: (M, 3, 3) float32 shading normals per corner.
        face_material: (M,) int64 index into ``materials`` per face.
        materials: the materials.
        world_to_local: (3, 4) world mm -> object-frame mm where textures and stains are evaluated.
        phase: (3,) texture phase (mm) of this instance.
        stains: (S, 9) stains in the object frame: ``cx, cy, cz, radius, strength, seed, r, g, b`` (colour
            multiplier where the stain is full).
        ideal: render idealised (noise-free) textures.
    """

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    face_material: np.ndarray
    materials: list[Material]
    world_to_local: np.ndarray
    phase: np.ndarray
    stains: np.ndarray
    ideal: bool = False

    def __post_init__(self) -> None:
        self._scene = o3d.t.geometry.RaycastingScene()
        self._scene.add_triangles(o3d.core.Tensor(self.vertices.astype(np.float32)),
                                  o3d.core.Tensor(self.faces.astype(np.uint32)))
        self._params, self._tex = pack(self.materials)
        self._params[:, 2] = np.round(np.log2(np.maximum(self._params[:, 2], 1.0)))  # exponent -> squarings

    @staticmethod
    def build(mesh: trimesh.Trimesh, material: Material, *, world_to_local: np.ndarray | None = None,
              phase=(0.0, 0.0, 0.0), stains: np.ndarray | None = None, ideal: bool = False,
              support: Material | None = None, support_radius: float = 0.0) -> "RenderMesh":
        """Prepare ``mesh`` (world mm) with one material, plus an optional turntable under it."""
        parts = [(np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64))]
        if support is not None:
            disc = support_disc(support_radius)
            parts.append((np.asarray(disc.vertices, np.float64), np.asarray(disc.faces, np.int64)))
        vs, fs, mats, off = [], [], [], 0
        for k, (v, f) in enumerate(parts):
            vs.append(v)
            fs.append(f + off)
            mats.append(np.full(len(f), k, dtype=np.int64))
            off += len(v)
        v, f = np.concatenate(vs), np.concatenate(fs)
        normals = np.concatenate([corner_normals(pv, pf) for pv, pf in parts])
        w2l = np.eye(4)[:3] if world_to_local is None else np.asarray(world_to_local, np.float64)[:3]
        st = np.zeros((0, 9)) if stains is None else np.asarray(stains, np.float64).reshape(-1, 9)
        materials = [material] + ([support] if support is not None else [])
        return RenderMesh(v, f, normals, np.concatenate(mats), materials, w2l, np.asarray(phase, np.float64), st,
                          ideal)

    def cast(self, camera: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Cast one ray per pixel.

        Returns:
            rays: (H*W, 6) float32 world origin and direction (camera-z component 1) per pixel, row-major.
            t: (H*W,) float32 depth (mm), inf where no hit.
            prim: (H*W,) uint32 hit triangle (meaningless where no hit).
            uv: (H*W, 2) float32 barycentric coordinates of the hit.
        """
        rays = camera_rays(camera)
        ans = self._scene.cast_rays(o3d.core.Tensor.from_numpy(rays))
        t = ans["t_hit"].numpy()
        return rays, t, ans["primitive_ids"].numpy(), ans["primitive_uvs"].numpy()

    def visible(self, points: np.ndarray, camera: Camera, tol: float = 0.5) -> np.ndarray:
        """Which world points a camera measures: in front of it, inside its image, and on the first surface that
        the ray from the camera centre towards them meets (within ``tol`` mm), as a range scanner would.

        A point behind that first surface is hidden (a thin wall's far face, the inside of a deep hole); a point
        in front of it lies in free space (the removed surface above a dent) and is not measured either.

        Args:
            points: (P, 3) world points in mm, on or near the mesh.
            tol: mm; how far from the first hit along the ray a point still counts as measured.

        Returns:
            (P,) bool.
        """
        points = np.asarray(points, np.float64).reshape(-1, 3)
        uv, z = project_points(points, camera)
        with np.errstate(invalid="ignore"):
            out = (z > 0) & (uv[:, 0] >= -0.5) & (uv[:, 0] < camera.width - 0.5) & (uv[:, 1] >= -0.5) & (
                uv[:, 1] < camera.height - 0.5)
        idx = np.flatnonzero(out)
        if idx.size:
            ray = points[idx] - camera.center
            dist = np.linalg.norm(ray, axis=1)
            rays = np.concatenate([np.broadcast_to(camera.center, ray.shape), ray / dist[:, None]], 1)
            t = self._scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))["t_hit"].numpy()
            out[idx] = np.abs(t - dist) <= tol
        return out

    def render(self, camera: Camera) -> "RenderOut":
        """Ray cast and shade one view (no artefacts, no noise: see :mod:`mv3dad.synth.artefacts`)."""
        rays, t, prim, uv = self.cast(camera)
        hw = camera.height * camera.width
        color = np.zeros((hw, 3), np.float32)
        spec = np.zeros(hw, np.float32)
        cosv = np.zeros(hw, np.float32)
        alb = np.zeros(hw, np.float32)
        depth = np.zeros(hw, np.float32)
        mat = np.full(hw, -1, np.int8)
        hit = np.flatnonzero(np.isfinite(t))
        lights = light_positions(camera)
        # serial on purpose: numba's OpenMP threads spin after a parallel loop and slow open3d's ray casting down
        _shade(hit, t, prim, uv, rays, self.normals, self.face_material, self._params, self._tex, self.world_to_local,
               self.phase, self.ideal, lights, self.stains, AMBIENT, color, spec, cosv, alb, mat, depth)
        shape = (camera.height, camera.width)
        return RenderOut(color.reshape(*shape, 3), depth.reshape(shape), spec.reshape(shape), cosv.reshape(shape),
                         alb.reshape(shape), mat.reshape(shape))


@dataclass
class RenderOut:
    """One rendered view before acquisition artefacts.

    Attributes:
        color: (H, W, 3) float32 linear radiance (may exceed 1 in highlights).
        depth: (H, W) float32 z in the camera frame (mm), 0 where no surface.
        specular: (H, W) float32 specular part of the radiance.
        cos_view: (H, W) float32 cosine between shading normal and direction to the camera.
        albedo: (H, W) float32 gray albedo (texture x stains).
        material: (H, W) int8 material index (0 = object, 1 = support), -1 = background.
    """

    color: np.ndarray
    depth: np.ndarray
    specular: np.ndarray
    cos_view: np.ndarray
    albedo: np.ndarray
    material: np.ndarray

    @property
    def object_mask(self) -> np.ndarray:
        """(H, W) bool, pixels on the object (not the support)."""
        return self.material == 0


def camera_rays(camera: Camera) -> np.ndarray:
    """(H*W, 6) float32 world rays of the pixels, row-major: origin (the camera centre) and direction
    ``R^T K^-1 [u, v, 1]`` (camera-frame z component 1, so that the hit distance is the depth)."""
    out = np.empty((camera.height * camera.width, 6), np.float32)
    _rays(np.linalg.inv(camera.K), camera.R.T.copy(), camera.center, camera.height, camera.width, out)
    return out


@nb.njit(cache=True, error_model="numpy")
def _rays(Kinv, Rt, center, height, width, out):  # pragma: no cover - compiled
    for v in range(height):
        for u in range(width):
            i = v * width + u
            for r in range(3):
                out[i, r] = center[r]
            x = Kinv[0, 0] * u + Kinv[0, 1] * v + Kinv[0, 2]
            y = Kinv[1, 0] * u + Kinv[1, 1] * v + Kinv[1, 2]
            z = Kinv[2, 0] * u + Kinv[2, 1] * v + Kinv[2, 2]
            for r in range(3):
                out[i, 3 + r] = Rt[r, 0] * x + Rt[r, 1] * y + Rt[r, 2] * z


def light_positions(camera: Camera) -> np.ndarray:
    """(L, 4) world positions (mm) and intensities of the lights carried with ``camera``."""
    dist = float(np.linalg.norm(camera.center))
    c2w = camera.cam_to_world
    out = np.empty((len(LIGHTS), 4))
    for k, (x, y, z, i) in enumerate(LIGHTS):
        out[k, :3] = c2w[:3, :3] @ (np.array([x, y, z]) * dist) + c2w[:3, 3]
        out[k, 3] = i
    return out


@nb.njit(cache=True, error_model="numpy", fastmath=True)
def _shade(hit, t, prim, uv, rays, normals, face_mat, params, tex_ids, w2l, phase, ideal, lights, stains,
           ambient, color, spec, cosv, alb, mat, depth):  # pragma: no cover - compiled
    for k in range(hit.shape[0]):
        i = hit[k]
        f = prim[i]
        a, b = uv[i, 0], uv[i, 1]
        c = 1.0 - a - b
        nx = c * normals[f, 0, 0] + a * normals[f, 1, 0] + b * normals[f, 2, 0]
        ny = c * normals[f, 0, 1] + a * normals[f, 1, 1] + b * normals[f, 2, 1]
        nz = c * normals[f, 0, 2] + a * normals[f, 1, 2] + b * normals[f, 2, 2]
        nn = np.sqrt(nx * nx + ny * ny + nz * nz) + 1e-30
        nx, ny, nz = nx / nn, ny / nn, nz / nn
        dx, dy, dz = rays[i, 3], rays[i, 4], rays[i, 5]
        px, py, pz = rays[i, 0] + t[i] * dx, rays[i, 1] + t[i] * dy, rays[i, 2] + t[i] * dz
        dn = np.sqrt(dx * dx + dy * dy + dz * dz)
        vx, vy, vz = -dx / dn, -dy / dn, -dz / dn
        cv = nx * vx + ny * vy + nz * vz
        if cv < 0.0:  # back face seen (open or non-oriented meshes): shade its front
            nx, ny, nz, cv = -nx, -ny, -nz, -cv
        m = face_mat[f]
        qx = w2l[0, 0] * px + w2l[0, 1] * py + w2l[0, 2] * pz + w2l[0, 3]
        qy = w2l[1, 0] * px + w2l[1, 1] * py + w2l[1, 2] * pz + w2l[1, 3]
        qz = w2l[2, 0] * px + w2l[2, 1] * py + w2l[2, 2] * pz + w2l[2, 3]
        tv = texture(tex_ids[m], qx, qy, qz, phase, params[m, 3], ideal)
        cr = params[m, 4] + tv * (params[m, 7] - params[m, 4])
        cg = params[m, 5] + tv * (params[m, 8] - params[m, 5])
        cb = params[m, 6] + tv * (params[m, 9] - params[m, 6])
        if m == 0 and stains.shape[0] > 0:
            w = stain_weight(qx, qy, qz, stains)
            if w > 0.0:
                j = 0
                best = -1.0
                for s in range(stains.shape[0]):  # the colour of the nearest stain
                    d2 = (qx - stains[s, 0]) ** 2 + (qy - stains[s, 1]) ** 2 + (qz - stains[s, 2]) ** 2
                    sc = -d2 / stains[s, 3] ** 2
                    if sc > best or s == 0:
                        best, j = sc, s
                cr *= 1.0 - w + w * stains[j, 6]
                cg *= 1.0 - w + w * stains[j, 7]
                cb *= 1.0 - w + w * stains[j, 8]
        diff = ambient
        sp = 0.0
        nsq = int(params[m, 2])
        for L in range(lights.shape[0]):
            lx, ly, lz = lights[L, 0] - px, lights[L, 1] - py, lights[L, 2] - pz
            ln = np.sqrt(lx * lx + ly * ly + lz * lz)
            lx, ly, lz = lx / ln, ly / ln, lz / ln
            ndl = nx * lx + ny * ly + nz * lz
            if ndl <= 0.0:
                continue
            diff += lights[L, 3] * params[m, 0] * ndl
            hx, hy, hz = lx + vx, ly + vy, lz + vz
            hn = np.sqrt(hx * hx + hy * hy + hz * hz) + 1e-30
            ndh = (nx * hx + ny * hy + nz * hz) / hn
            if ndh > 0.0:
                for _ in range(nsq):  # ndh ** (2 ** nsq), by repeated squaring
                    ndh *= ndh
                sp += lights[L, 3] * params[m, 1] * ndh
        color[i, 0] = cr * diff + sp
        color[i, 1] = cg * diff + sp
        color[i, 2] = cb * diff + sp
        spec[i] = sp
        cosv[i] = cv
        alb[i] = 0.299 * cr + 0.587 * cg + 0.114 * cb
        mat[i] = m
        depth[i] = t[i]
