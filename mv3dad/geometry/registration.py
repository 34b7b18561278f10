"""Registration of a scan to a reference surface: similarity (or rigid) trimmed point-to-plane ICP, coarse to fine.

Instances of a part differ in pose and, a little, in scale (tolerances, thermal state, a scanner's calibration),
so a test scan is aligned to the reference with a 7-parameter similarity by default (rotation, translation,
isotropic scale); ``rigid`` keeps the scale at 1 for dimensional inspection, where a wrong size is itself a
defect. Each level downsamples both clouds on a voxel grid (10 -> 5 -> 2.5 mm by default), pairs every source
point with its nearest target point within ``gate x voxel``, drops the worst ``1 - trim`` of the pairs (defects
and unmatched surface), and solves the linearised point-to-plane problem

    min over (w, tau, sigma)  sum_i ((p_i - q_i) . n_i + sigma (p_i . n_i) + w . (p_i x n_i) + tau . n_i)^2

around the current estimate (points centred on the target's centroid for conditioning), which is exact to first
order in the rotation vector ``w``, the translation ``tau`` and the log-scale ``sigma``. A coarse global alignment
(FPFH features + RANSAC, open3d) is available for references in an arbitrary pose (a CAD file in its own frame).

All points in mm; transforms are 4 x 4 with ``T[:3, :3] = s R``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree


@dataclass
class Registration:
    """The result of :func:`register`.

    Attributes:
        transform: (4, 4) source -> target similarity (``[:3, :3] = scale * R``).
        scale: the isotropic scale (1 for rigid).
        fitness: share of the finest level's source points with a target point within its gate.
        rmse: mm, RMS point-to-plane residual of the kept (trimmed) pairs at the finest level.
    """

    transform: np.ndarray
    scale: float
    fitness: float
    rmse: float

    def to_dict(self) -> dict:
        return {"scale": round(self.scale, 6), "fitness": round(self.fitness, 4), "rmse_mm": round(self.rmse, 4),
                "transform": np.round(self.transform, 6).tolist()}


def apply(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(P, 3) points mapped by the 4 x 4 transform ``T``."""
    return np.asarray(points, np.float64) @ T[:3, :3].T + T[:3, 3]


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of a similarity transform (``T[:3, :3] = s R``)."""
    A = T[:3, :3]
    s2 = float(np.mean(np.sum(A * A, axis=0)))
    inv = np.eye(4)
    inv[:3, :3] = A.T / s2
    inv[:3, 3] = -inv[:3, :3] @ T[:3, 3]
    return inv


def voxel_downsample(points: np.ndarray, voxel: float) -> np.ndarray:
    """(V, 3) one point per occupied voxel: the mean of its points."""
    points = np.asarray(points, np.float64)
    if len(points) == 0:
        return points
    return voxel_mean(points, *voxel_index(points, voxel))


def voxel_index(points: np.ndarray, voxel: float) -> tuple[np.ndarray, np.ndarray]:
    """(P,) index of each point's occupied voxel (0..V-1) and (V,) the points per voxel."""
    key = np.floor(points / voxel).astype(np.int64)
    key -= key.min(axis=0)
    dims = key.max(axis=0) + 1
    flat = (key[:, 0] * dims[1] + key[:, 1]) * dims[2] + key[:, 2]
    _, inv, counts = np.unique(flat, return_inverse=True, return_counts=True)
    return inv.ravel(), counts


def voxel_mean(values: np.ndarray, inv: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(V, C) mean of the (P, C) ``values`` per voxel, for the voxel index of :func:`voxel_index`."""
    return np.stack([np.bincount(inv, values[:, k], len(counts)) for k in range(values.shape[1])], axis=1) \
        / counts[:, None]


def _solve_step(p: np.ndarray, q: np.ndarray, n: np.ndarray, with_scale: bool) -> np.ndarray:
    """The 4 x 4 update of one linearised point-to-plane step (points already centred)."""
    r = np.sum((p - q) * n, axis=1)
    cols = [np.cross(p, n), n] + ([np.sum(p * n, axis=1, keepdims=True)] if with_scale else [])
    A = np.hstack(cols)
    x, *_ = np.linalg.lstsq(A, -r, rcond=None)
    w, tau = x[:3], x[3:6]
    sigma = x[6] if with_scale else 0.0
    theta = float(np.linalg.norm(w))
    if theta > 1e-12:
        k = w / theta
        Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        R = np.eye(3) + np.sin(theta) * Kx + (1 - np.cos(theta)) * Kx @ Kx
    else:
        R = np.eye(3)
    U = np.eye(4)
    U[:3, :3] = np.exp(sigma) * R
    U[:3, 3] = tau
    return U


def register(source: np.ndarray, target: np.ndarray, target_normals: np.ndarray, *, init: np.ndarray | None = None,
             with_scale: bool = True, levels: tuple[float, ...] = (10.0, 5.0, 2.5), iterations: int = 12,
             gate: float = 2.0, trim: float = 0.9, target_tree: cKDTree | None = None) -> Registration:
    """Align ``source`` points to the ``target`` surface (trimmed point-to-plane ICP, coarse to fine).

    Args:
        source: (P, 3) scan points in mm.
        target: (Q, 3) reference points in mm, dense enough for the finest level (spacing <= its voxel).
        target_normals: (Q, 3) unit normals of ``target``.
        init: (4, 4) initial source -> target transform (None = identity: poses already close, within about a
            coarse voxel and a few degrees).
        with_scale: similarity (7 parameters) when True, rigid otherwise.
        levels: voxel sizes in mm of the coarse-to-fine levels (the source is downsampled to each).
        iterations: ICP iterations per level (stops early once an update is below ``1e-4 * voxel`` rad and relative
            scale and ``4e-3 * voxel`` mm, voxel in mm: 2.5e-4 rad and 0.01 mm at 2.5 mm).
        gate: pairs farther apart than ``gate x level voxel`` are not used.
        trim: share of the remaining pairs kept (the closest ones, point-to-plane).
        target_tree: a prebuilt ``cKDTree(target)`` (reused across samples).
    """
    source = np.asarray(source, np.float64)
    target = np.asarray(target, np.float64)
    if source.ndim != 2 or source.shape[1] != 3 or len(source) < 10:
        raise ValueError(f"register: need (P, 3) source points, P >= 10; got {source.shape}")
    if target.shape != np.asarray(target_normals).shape:
        raise ValueError(f"register: target {target.shape} and normals {np.shape(target_normals)} differ")
    tree = target_tree if target_tree is not None else cKDTree(target)
    c = target.mean(axis=0)
    T = np.eye(4) if init is None else np.asarray(init, np.float64).copy()
    fitness, rmse = 0.0, float("inf")
    for voxel in levels:
        src = voxel_downsample(source, voxel)
        for _ in range(iterations):
            p = apply(T, src)
            d, idx = tree.query(p, distance_upper_bound=gate * voxel, workers=-1)
            ok = np.isfinite(d)
            fitness = float(ok.mean())
            if ok.sum() < 10:
                break
            q, n, pp = target[idx[ok]], target_normals[idx[ok]], p[ok]
            res = np.abs(np.sum((pp - q) * n, axis=1))
            keep = res <= np.quantile(res, trim)
            rmse = float(np.sqrt(np.mean(res[keep] ** 2)))
            U = _solve_step(pp[keep] - c, q[keep] - c, n[keep], with_scale)
            C, Ci = np.eye(4), np.eye(4)
            C[:3, 3], Ci[:3, 3] = c, -c
            T = C @ U @ Ci @ T
            if np.abs(U[:3, :3] - np.eye(3)).max() < 1e-4 * voxel and np.abs(U[:3, 3]).max() < 4e-3 * voxel:
                break  # converged to a small fraction of this level's voxel (the finest level sets the precision)
    scale = float(np.cbrt(np.linalg.det(T[:3, :3])))
    return Registration(T, scale, fitness, rmse)


def global_align(source: np.ndarray, target: np.ndarray, voxel: float = 10.0, seed: int = 0) -> np.ndarray:
    """(4, 4) rigid source -> target transform from FPFH features + RANSAC (open3d), for arbitrary initial poses.

    The two clouds are first centred on each other and their scales matched (RMS radius), so a reference in its
    own frame and units close to the scan's is found; refine with :func:`register`.
    """
    import open3d as o3d

    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    cs, ct = source.mean(axis=0), target.mean(axis=0)
    s = np.sqrt(np.mean(np.sum((target - ct) ** 2, axis=1)) / max(np.mean(np.sum((source - cs) ** 2, axis=1)), 1e-12))
    pre = np.eye(4)
    pre[:3, :3] = s * np.eye(3)
    pre[:3, 3] = ct - s * cs

    def cloud(pts):
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts)).voxel_down_sample(voxel)
        pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=2 * voxel, max_nn=30))
        f = o3d.pipelines.registration.compute_fpfh_feature(
            pc, o3d.geometry.KDTreeSearchParamHybrid(radius=5 * voxel, max_nn=100))
        return pc, f

    o3d.utility.random.seed(seed)
    ps, fs = cloud(apply(pre, source))
    pt, ft = cloud(target)
    reg = o3d.pipelines.registration
    res = reg.registration_ransac_based_on_feature_matching(
        ps, pt, fs, ft, True, 1.5 * voxel, reg.TransformationEstimationPointToPoint(False), 3,
        [reg.CorrespondenceCheckerBasedOnEdgeLength(0.9), reg.CorrespondenceCheckerBasedOnDistance(1.5 * voxel)],
        reg.RANSACConvergenceCriteria(100_000, 0.999))
    return np.asarray(res.transformation) @ pre
