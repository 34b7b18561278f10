"""``deviation``: comparison with the nominal part (shape, appearance, missing material), the way parts are inspected
against CAD.

Fit: the reference is the part's CAD mesh (``reference_mesh``; any pose and units close to mm: it is registered to
the training scan, globally if needed, then by similarity ICP) or, without one, the training instance's views
fused into one surface (1 mm voxels: mean point, mean normal and the local nominal noise ``sigma``, the RMS
point-to-plane spread of the views' points in the voxel). The training views' depth maps are kept for the
free-space test.

Signed distances are averaged over 3 x 3 pixels of each view (away from depth discontinuities) against the
scanner's noise, and each average is lowered by ``noise_penalty`` standard errors of it (the view's single-pixel
noise over the square root of the pixels averaged: a pixel at a discontinuity, averaged over one or two, does not
outscore the surface). With the CAD reference they are also averaged along lines of 5 pixels in 4 directions
(:func:`line_score`), and a pixel keeps the larger score: a scratch narrower than a pixel keeps its depth.

Score (per test sample): the scan's points (all views, foreground) are registered to the fused training scan by
a trimmed similarity ICP (:func:`mv3dad.geometry.registration.register`; ``rigid`` as an option), and each pixel
scores its point's distance to the reference surface in mm:

- CAD reference: the mesh is ray-cast into the test view (:func:`cad_cast`) and the distance is the one to the
  plane of the triangle each pixel's ray meets first, exact on any facet; where the ray meets nothing or that
  distance is over ``RAY_TRUST_MM``, the distance to the tangent plane of the nearest point sampled on the mesh
  (``cad_spacing`` apart) that faces the same way as the test point is taken when smaller (so a point on one
  face of a thin wall is compared with that face, and the far surface seen through a gap is nominal);
- scan reference (each of its points replaced at fit time by the local plane of its facing neighbours, which
  averages out the training scan's own noise): the distance to the nearest facing reference plane beyond the
  local noise band
  (``max(|d| - noise_k * sigma, 0)``). A surface the reference never observed is *unsupported* and scores 0,
  not anomalous: a point in front of the reference counts only if at least ``free_space_views`` training views
  saw through it (measured a surface behind it). A point behind a facing reference point nearby counts (missing
  material: a dent, a chunk), except next to a depth discontinuity of its view, where an occlusion boundary one
  pixel off mimics it: there, and for points with no facing reference point within ``lateral_gate_mm``, it
  counts only if the test view saw through the reference surface. A confirmed point with no facing reference
  point within ``lateral_gate_mm`` scores its distance to the nearest one, except next to a depth discontinuity
  (mixed pixels), where it scores 0.

Two more tests share the registration, and each pixel keeps the largest of the three scores:

- appearance (``appearance``): the pixel's local brightness against the nominal's at the same surface point, in
  the training view of the same rig camera (:func:`brightness`, ``_appearance``), for appearance-only defects;
- missing material (``missing``): the reference surface rendered into the test view where the view sees through
  it (:func:`missing_material`; surfaces seen at a grazing angle left out) and, with the CAD reference, pixel by
  pixel where the view sees through a facing CAD surface: nothing at all where the nominal is bright
  (:func:`void_through`: a hole through a thin wall), or the part's own surface well behind it
  (:func:`behind_cad`: a narrow hole or slot whose far side is measured); the removed material is not
  there to measure, so the score goes to the measured rim around it, the broken edge or the hole's border
  (:func:`on_rim`).

The volume is then cleaned of single-voxel spikes (each voxel clamped to the largest of its 26 neighbours), which
keeps defects two voxels wide. Registration scale, fitness and RMSE go to ``scores.json``; a sample whose
fitness is below ``min_fitness`` fails with an error naming it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from mv3dad.data.scene import DataError, Sample, View
from mv3dad.encoders.preprocess import image_to_gray
from mv3dad.geometry.camera import Camera
from mv3dad.geometry.projection import depth_to_point_image, nearest_pixel, point_image_normals
from mv3dad.geometry.raycast import MeshCaster, pixel_rays
from mv3dad.geometry.registration import (Registration, apply, global_align, invert, register, voxel_index,
                                          voxel_mean)
from mv3dad.io.atomic import atomic_file, atomic_write
from mv3dad.scoring.background import foreground_mask
from mv3dad.scoring.methods.base import Features, FitContext, Method, ScoreOptions, ViewScores, register_method
from mv3dad.scoring.morphology import dilate, erode, line_opening, neighbour_max, opening, window_reduce

REFERENCE_FILE = "reference.npz"
MESH_FILE = "reference_mesh.ply"
CONFIG_FILE = "deviation.json"
MISSING_SPACING = 2.0  # mm between the reference points rendered for the missing-material test
PIECE_SHARE = 0.01  # a piece of a view's foreground counts as the part from this share of the largest piece
HIGHLIGHT = 0.9  # intensity from which a pixel is a highlight (a flat facet flashes under a small pose change)
HIGHLIGHT_SHARE = 0.02  # local brightness unknown where highlights hold more than this share of its Gaussian
VOID_DROP = 1.0  # log intensity by which a pixel seeing nothing through the CAD is darker than the nominal part
RAY_TRUST_MM = 1.0  # CAD reference: a pixel's ray-cast distance is its distance when at most this (else checked)
MIN_FACING_COS = 0.3  # see-through tests: a reference surface counts when its normal is this close to the view ray
OWN_SURFACE_MM = 1.0  # behind_cad: a pixel scoring below this (shape, mm) sees a surface of the part itself


@dataclass
class DeviationConfig:
    """Options of the ``deviation`` method.

    Attributes:
        reference_mesh: the part's CAD mesh (STL/OBJ/PLY/GLB, mm, any pose); None = the fused training scan.
        registration: ``similarity`` (rotation, translation, isotropic scale; default) or ``rigid`` (for
            dimensional inspection, where a wrong scale is itself a defect).
        levels: voxel sizes (mm) of the coarse-to-fine ICP levels.
        iterations: ICP iterations per level.
        trim: share of the closest point pairs the ICP keeps (the rest: defects, unmatched surface).
        min_fitness: a test sample whose finest-level ICP fitness is below this fails with an error.
        reference_voxel: mm, voxel of the fused training scan.
        noise_k: scan reference: the score is the distance beyond ``noise_k`` local noise sigmas.
        noise_penalty: the test view's own noise: each pixel's averaged distance (``smooth``) is lowered by this
            many standard errors of that average (the view's single-pixel noise over the square root of the pixels
            averaged), so a pixel next to a depth discontinuity or a hole, averaged over one or two pixels, does
            not outscore the surface around it.
        free_space_views: training views that must have seen through a point in front of the reference.
        free_space_margin_mm: how far behind a point a view's surface must be to have seen through it (at most;
            half the point's deviation when that is smaller, so shallow scratches are confirmed too).
        lateral_gate_mm: a test point farther than this from every reference point is unsupported unless the
            free-space tests confirm it.
        cad_spacing: mm between the points sampled on the CAD mesh (the distance is taken to their tangent planes).
        smooth: the signed distances are averaged over this many pixels square in each view before scoring
            (1 = off; pixels next to a depth discontinuity are left out): it halves the scanner noise and keeps
            mm-wide scratches.
        lines: CAD reference: the signed distances are also averaged along lines of 5 pixels in 4 directions
            (:func:`line_score`), and each pixel keeps the larger of its square and line scores: a scratch narrower
            than a pixel keeps its depth along its length, which the square average spreads.
        stride: registration uses every ``stride``-th pixel of each view in both directions (speed).
        spike_clamp: clamp each pixel to the largest of its 8 neighbours and each voxel to the largest of its 26
            (removes single-pixel and single-voxel spikes, keeps anything two wide).
        appearance: also compare each pixel's local brightness with the nominal's at the same surface point, seen
            by the same camera (the rig's lights travel with it), to find appearance-only defects (stains); the
            pixel's score is the larger of its shape and appearance scores.
        appearance_sigma_mm: the brightness is the log-intensity averaged by a Gaussian of this sigma (mm on the
            part, at the view's median depth; unmeasured pixels and highlights, ``HIGHLIGHT``, left out).
        appearance_tol: log-intensity difference tolerated (after removing the view's median difference, i.e.
            an exposure change): texture phase, shading under the pose change, highlights.
        appearance_gain_mm: mm of score per unit of log-intensity difference beyond ``appearance_tol``.
        appearance_window: pixels square: the test brightness is compared with the range of the nominal's over
            this window around the matching point (a brightness edge a pixel or two off is not a difference).
        appearance_open: pixels square: the appearance score is opened by this window (:func:`open_blobs`): a
            stain is a blob and keeps its extent; specks, thin lines along edges and blobs just this wide go.
        missing: also score missing material where no surface is left to measure (a chunk off an edge, a hole
            through a thin wall): the reference surface, placed in the test scan by the registration, is rendered
            into each test view, and where the view measured a surface well behind it (it sees through), the
            score goes to the measured rim around that region (the broken edge, the hole's border).
        missing_margin_mm: how far behind the reference surface a view's measurement must be to count as seeing
            through it.
        missing_cap_mm: score of a pixel seeing through the reference: the gap in mm, at most this.
        missing_rim_mm: width in mm of the measured rim around a see-through region that takes its score.
    """

    reference_mesh: str | None = None
    registration: str = "similarity"
    levels: tuple[float, ...] = (10.0, 5.0, 2.5)
    iterations: int = 12
    trim: float = 0.9
    min_fitness: float = 0.7
    reference_voxel: float = 1.0
    noise_k: float = 2.0
    noise_penalty: float = 2.0
    free_space_views: int = 2
    free_space_margin_mm: float = 2.0
    lateral_gate_mm: float = 2.0
    cad_spacing: float = 0.75
    smooth: int = 3
    lines: bool = True
    stride: int = 3
    spike_clamp: bool = True
    appearance: bool = True
    appearance_sigma_mm: float = 2.0
    appearance_tol: float = 0.15
    appearance_gain_mm: float = 8.0
    appearance_window: int = 5
    appearance_open: int = 5
    missing: bool = True
    missing_margin_mm: float = 3.0
    missing_cap_mm: float = 5.0
    missing_rim_mm: float = 1.0

    def __post_init__(self) -> None:
        self.levels = tuple(float(x) for x in self.levels)
        if self.registration not in ("similarity", "rigid"):
            raise ValueError(f"registration must be 'similarity' or 'rigid', got {self.registration!r}")


def part_mask(depth: np.ndarray, camera: Camera) -> np.ndarray:
    """(H, W) the pixels of the part in a view: every measured piece of at least 1 % of the largest's size (a leg,
    or a tail beyond a missing chunk, can be apart from the main body in the image)."""
    return foreground_mask(depth, camera, min_share=PIECE_SHARE)


def view_points(view: View) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) world points of a view's foreground pixels (NaN elsewhere) and the (H, W) foreground mask."""
    fg = part_mask(view.depth, view.camera)
    P = depth_to_point_image(np.where(fg, view.depth, 0), view.camera)
    return P, fg


def fuse_scan(views: list[View], voxel: float) -> dict[str, np.ndarray]:
    """Fuse views into a reference surface: per occupied voxel the mean point, normal and noise sigma (mm)."""
    pts, nrm = [], []
    for v in views:
        P, fg = view_points(v)
        N = point_image_normals(P, v.camera.center)
        ok = fg & np.isfinite(N).all(axis=2)
        pts.append(P[ok])
        nrm.append(N[ok])
    p, n = np.concatenate(pts), np.concatenate(nrm)
    if len(p) < 100:
        raise DataError("deviation: the training views hold fewer than 100 measured foreground points")
    inv, counts = voxel_index(p, voxel)
    mean_p = voxel_mean(p, inv, counts)
    mean_n = voxel_mean(n, inv, counts)
    mean_n /= np.maximum(np.linalg.norm(mean_n, axis=1, keepdims=True), 1e-12)
    r = np.sum((p - mean_p[inv]) * mean_n[inv], axis=1)
    sigma = np.sqrt(np.bincount(inv, r * r, len(counts)) / counts)
    # each point replaced by the local plane of its facing neighbours: averages out the scan's own noise, once
    plane_p, plane_n, _, _, plane_s = _local_plane(cKDTree(mean_p), mean_p, mean_n, sigma, mean_p, mean_n)
    return {"points": plane_p, "normals": plane_n, "sigma": plane_s.astype(np.float32)}


def _load_mesh(path: str):
    import trimesh

    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as e:  # trimesh raises many types for bad files
        raise DataError(f"{path}: cannot read the reference mesh: {e}") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise DataError(f"{path}: no triangles in the reference mesh")
    return mesh


def _mesh_samples(mesh, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Points on the mesh about ``spacing`` mm apart, with their face normals."""
    import trimesh

    n = int(np.clip(mesh.area / spacing ** 2, 1000, 2_000_000))
    pts, face = trimesh.sample.sample_surface_even(mesh, n, seed=0)
    return np.asarray(pts), np.asarray(mesh.face_normals[face])


def register_mesh(mesh, scan: dict[str, np.ndarray], cfg: DeviationConfig) -> tuple[np.ndarray, dict]:
    """(4, 4) CAD -> scan frame transform of ``mesh`` registered to the fused training scan, and its report.

    The scan is registered to the mesh (the scan sees a subset of the CAD surface), first from the identity and,
    if that does not fit, from a global FPFH + RANSAC alignment; the better fit is kept.
    """
    target, normals = _mesh_samples(mesh, 1.5)
    tree = cKDTree(target)
    src = scan["points"]
    scale = cfg.registration == "similarity"
    best = register(src, target, normals, with_scale=scale, levels=cfg.levels, target_tree=tree)
    if best.fitness < 0.95:
        init = global_align(src, target, voxel=max(cfg.levels))
        alt = register(src, target, normals, init=init, with_scale=scale, levels=cfg.levels, target_tree=tree)
        best = alt if alt.fitness > best.fitness else best
    if best.fitness < cfg.min_fitness:
        raise DataError(f"{cfg.reference_mesh}: does not fit the training scan (fitness {best.fitness:.2f} < "
                        f"{cfg.min_fitness}); wrong part, or units other than mm")
    return invert(best.transform), best.to_dict()


@register_method("deviation")
class DeviationMethod(Method):
    """Distance of the registered test scan to the nominal shape (CAD mesh or fused training scan)."""

    needs_features = False

    def __init__(self, cfg: DeviationConfig | None = None, refs: dict | None = None):
        self.cfg = cfg or DeviationConfig()
        self.refs = refs or {}  # category -> dict(points, normals, sigma, tree, depth, near, cameras, cad_*)

    # ---- fit -------------------------------------------------------------------------------------------------
    def fit(self, ctx: FitContext) -> None:
        cfg = ctx.options.deviation
        self.cfg = cfg
        report = {}
        for cat, samples in ctx.samples.items():
            folder = ctx.out / "reference" / cat
            folder.mkdir(parents=True, exist_ok=True)
            views = samples[0].views
            scan = fuse_scan(views, cfg.reference_voxel)
            arrays = {**scan, "depth": np.stack([v.depth for v in views]).astype(np.float32),
                      "image": np.stack([image_to_gray(v.image) for v in views]).astype(np.float16)}
            if cfg.reference_mesh:
                mesh = _load_mesh(cfg.reference_mesh)
                T, rep = register_mesh(mesh, scan, cfg)
                mesh.apply_transform(T)
                with atomic_file(folder / MESH_FILE) as tmp:
                    mesh.export(str(tmp), file_type="ply")
                cad_p, cad_n = _mesh_samples(mesh, cfg.cad_spacing)
                arrays.update(cad_points=cad_p.astype(np.float32), cad_normals=cad_n.astype(np.float32))
                report[cat] = {"reference_mesh": str(cfg.reference_mesh), "registration": rep}
            else:
                report[cat] = {"reference_mesh": None, "reference_points": int(len(scan["points"]))}
            with atomic_file(folder / REFERENCE_FILE) as tmp, open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
        record = {"config": asdict(cfg), "categories": report}
        atomic_write(ctx.out / CONFIG_FILE, json.dumps(record, indent=2))

    @classmethod
    def load(cls, run_dir: Path, record: dict) -> "DeviationMethod":
        path = Path(run_dir) / CONFIG_FILE
        try:
            rec = json.loads(path.read_text())
            cfg = DeviationConfig(**rec["config"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: cannot read the deviation config: {e}") from None
        refs = {}
        for cat in record["categories"]:
            folder = Path(run_dir) / "reference" / cat
            try:
                with np.load(folder / REFERENCE_FILE, allow_pickle=False) as z:
                    ref = {k: z[k] for k in ("points", "normals", "sigma", "depth")}
                    if "cad_points" in z.files:
                        ref["cad_points"], ref["cad_normals"] = z["cad_points"], z["cad_normals"]
                    if "image" in z.files:  # runs fitted before the appearance test have no images
                        ref["image"] = z["image"].astype(np.float32)
            except (OSError, ValueError, KeyError) as e:
                raise ValueError(f"{folder / REFERENCE_FILE}: cannot read the reference: {e}") from None
            ref["tree"] = cKDTree(ref["points"])
            ref["near"] = np.stack([free_space_depth(d) for d in ref["depth"]])
            ref["cameras"] = [Camera.from_dict(c) for c in record["cameras"][cat]]
            if "cad_points" in ref:
                ref["cad_tree"] = cKDTree(ref["cad_points"])
                mesh = _load_mesh(str(folder / MESH_FILE))
                ref["cad_caster"] = MeshCaster(mesh.vertices, mesh.faces)
            if cfg.missing:  # the reference surface about 2 mm apart, for rendering it into the test views
                pts, nrm = (ref["cad_points"], ref["cad_normals"]) if "cad_points" in ref else \
                    (ref["points"], ref["normals"])
                inv, _ = voxel_index(pts, MISSING_SPACING)
                first = np.unique(inv, return_index=True)[1]
                ref["sparse_points"], ref["sparse_normals"] = pts[first].astype(np.float64), nrm[first]
            images = ref.pop("image", None)  # only the brightness ranges derived from them are kept
            if cfg.appearance and images is not None:
                b = [brightness(img, part_mask(d, cam), cam, d, cfg.appearance_sigma_mm)
                     for img, d, cam in zip(images, ref["depth"], ref["cameras"])]
                ref["bright_lo"], ref["bright_hi"] = map(np.stack, zip(*(window_range(x, cfg.appearance_window)
                                                                          for x in b)))
            refs[cat] = ref
        return cls(cfg, refs)

    # ---- score -----------------------------------------------------------------------------------------------
    def score_views(self, sample: Sample, feats: Features | None, opts: ScoreOptions) -> ViewScores:
        cfg, ref = self.cfg, self.refs[opts.category]
        where = f"{sample.category}/{sample.instance_id}"
        P, fg = zip(*(view_points(v) for v in sample.views))
        s = cfg.stride
        src = np.concatenate([p[::s, ::s][f[::s, ::s]] for p, f in zip(P, fg)])
        if len(src) < 100:
            raise DataError(f"{where}: fewer than 100 measured foreground points to register")
        reg = register(src, ref["points"], ref["normals"], with_scale=cfg.registration == "similarity",
                       levels=cfg.levels, iterations=cfg.iterations, trim=cfg.trim, target_tree=ref["tree"])
        if reg.fitness < cfg.min_fitness:
            raise DataError(f"{where}: registration to the reference failed (fitness {reg.fitness:.3f} < "
                            f"min_fitness {cfg.min_fitness}); a different part, or a badly damaged one")
        missing = cfg.missing and "sparse_points" in ref
        X = N = None
        if missing:  # the reference surface in the test scan's frame
            X, N = apply(invert(reg.transform), ref["sparse_points"]), ref["sparse_normals"] @ (
                reg.transform[:3, :3] / reg.scale)
        maps = [self._view_map(ref, reg, view, p, f, vid, X, N)
                for view, p, f, vid in zip(sample.views, P, fg, opts.view_ids)]
        return ViewScores(pixels=np.stack(maps), info={"registration": reg.to_dict()})

    def _view_map(self, ref: dict, reg: Registration, view: View, p: np.ndarray, f: np.ndarray, vid: int,
                  X: np.ndarray | None, N: np.ndarray | None) -> np.ndarray:
        """(H, W) float32 score map of one test view (NaN off the part) given the registration ``reg``: ``p``
        (H, W, 3) its points, ``f`` (H, W) its measured foreground, ``vid`` the training view of the same rig
        camera, ``X``, ``N``: the missing-material test's reference points and normals in the test frame (None:
        off)."""
        cfg = self.cfg
        rot = reg.transform[:3, :3] / reg.scale
        out = np.full(f.shape, np.nan, np.float32)
        near = free_space_depth(view.depth)
        cast = None
        if f.any():
            box = _bounding_box(f, pad=3)  # per-view work on the part's bounding box only (same result)
            p, f = p[box], f[box]
            q = apply(reg.transform, p[f])
            normals = point_image_normals(p, view.camera.center)
            edge = dilate(np.isnan(normals[..., 0]), 3)  # NaN: all three
            m = np.full(f.shape, np.nan, np.float32)
            cast = cad_cast(ref["cad_caster"], view, box, reg.transform) if "cad_caster" in ref else None
            along = None if cast is None else cast.along(view.depth[box])[f]
            m[f] = self._distances(q, normals[f] @ rot.T, edge[f], f, ref, view, near, invert(reg.transform),
                                   along)
            shape = None if cast is None else m.copy()  # behind_cad's shape scores, before appearance
            if cfg.appearance and "bright_lo" in ref:
                m[f] = np.maximum(m[f], self._appearance(view, box, f, q, ref, vid))
            out[box] = clamp_spikes(m) if cfg.spike_clamp else m
        if X is not None:
            gap, at = missing_material(view, X, N, cfg.missing_margin_mm, MISSING_SPACING, near)
            if cast is not None:  # CAD: a hole seen as nothing, or a narrow one seen through, pixel by pixel
                void = void_through(cast, view, box, ref, vid)
                seen = np.where(void, cfg.missing_cap_mm, behind_cad(cast, view.depth[box], shape,
                                                                      cfg.missing_margin_mm))
                gap[box] = np.where(seen > 0, np.fmax(seen, gap[box]), gap[box])
                at[box] = np.where(seen > 0, cast.t, at[box])
            rim = on_rim(np.minimum(gap, cfg.missing_cap_mm), at, view, cfg.missing_margin_mm, cfg.missing_rim_mm,
                         MISSING_SPACING)
            out = np.where(rim > 0, np.fmax(out, rim), out)
        return out

    def _distances(self, q: np.ndarray, nq: np.ndarray, edge: np.ndarray, fg: np.ndarray, ref: dict, view: View,
                   near: np.ndarray, T_inv: np.ndarray, along: np.ndarray | None = None) -> np.ndarray:
        """(P,) mm distance to the reference of the points ``q`` (reference frame, unit normals ``nq``, NaN where
        unknown) of the ``fg`` (H, W) pixels of ``view``; ``edge`` (P,) marks points next to a depth discontinuity
        or a hole; ``near``: the view's :func:`free_space_depth`; ``along``: CAD reference, the signed distances
        to the plane of the CAD triangle each pixel's ray hits first (NaN: none; :meth:`CadCast.along`)."""
        cfg = self.cfg
        if "cad_tree" in ref:  # the CAD surface is complete: its distance is the score
            return _cad_distance(q, nq, edge, fg, ref, along, cfg).astype(np.float32)
        idx, dist, facing = _nearest_facing(ref["tree"], ref["normals"], q, nq)
        r, n, sig = ref["points"][idx], ref["normals"][idx], ref["sigma"][idx]
        d, err, _ = _smooth_on(np.sum((q - r) * n, axis=1), fg, cfg.smooth, ~edge)
        lateral = np.sqrt(np.maximum(dist ** 2 - d ** 2, 0))
        score = np.maximum(np.abs(d) - cfg.noise_k * sig - cfg.noise_penalty * err, 0).astype(np.float32)
        # trusted without a free-space test: material missing under a reference surface that faces the same way,
        # close by, away from depth discontinuities (a dent, a chunk); everything else must be confirmed
        doubt = (score > 0) & ((d > 0) | edge | ~facing | (lateral > cfg.lateral_gate_mm))
        margin = np.clip(0.5 * np.abs(d), 0.05, cfg.free_space_margin_mm)
        front = doubt & (d > 0)
        behind = doubt & ~front
        ok = np.zeros(len(q), bool)
        if front.any():  # extra material: the training views must have seen through the point
            ok[front] = _seen_through(q[front], ref["near"], ref["cameras"], margin[front]) >= cfg.free_space_views
        if behind.any():  # missing material: the test view must have seen through the reference surface
            ok[behind] = _seen_through(apply(T_inv, r[behind]), near[None], [view.camera],
                                       margin[behind]) >= 1
        score[doubt & ~ok] = 0.0
        lone = doubt & ok & (lateral > cfg.lateral_gate_mm)  # a surface the reference lacks: its distance, unless
        score[lone] = np.where(edge[lone], 0.0, dist[lone])  # seen only at a depth discontinuity (mixed pixels)
        return score

    def _appearance(self, view: View, box: tuple[slice, slice], fg: np.ndarray, q: np.ndarray, ref: dict, vid: int
                    ) -> np.ndarray:
        """(P,) appearance score (mm-equivalent) of the ``fg`` pixels of the ``box`` of ``view`` whose registered
        points (reference frame) are ``q``: their local brightness against the nominal's where training view ``vid``
        sees the same point (0 where it does not, or where either brightness is unknown)."""
        cfg = self.cfg
        diff = np.full(len(q), np.nan, np.float32)
        full = np.zeros(view.depth.shape, bool)
        full[box] = fg
        test = brightness(view.image, full, view.camera, view.depth, cfg.appearance_sigma_mm)[box][fg]
        cam, depth = ref["cameras"][vid], ref["depth"][vid]
        v, u, z, inside = nearest_pixel(q, cam)
        seen = inside & (np.abs(depth[v, u] - z) < 3.0)  # the nominal view sees this very point
        lo, hi = ref["bright_lo"][vid][v[seen], u[seen]], ref["bright_hi"][vid][v[seen], u[seen]]
        t = test[seen]
        diff[seen] = np.where(t > hi, t - hi, np.where(t < lo, t - lo, 0.0))  # NaN where either is unknown
        ok = np.isfinite(diff)
        if ok.sum() < 100:
            return np.zeros(len(q), np.float32)
        diff -= np.median(diff[ok])  # an exposure change between the scans is not a defect
        score = np.zeros(fg.shape, np.float32)
        score[fg] = np.where(ok, cfg.appearance_gain_mm * np.maximum(np.abs(diff) - cfg.appearance_tol, 0), 0)
        if cfg.appearance_open > 1:  # a stain is a blob; thin lines and specks are edges shifted by the pose
            score = open_blobs(score, cfg.appearance_open)
        return score[fg]

    def finish_volume(self, values: np.ndarray) -> np.ndarray:
        if not self.cfg.spike_clamp:
            return values
        return clamp_spikes(values)


@dataclass
class CadCast:
    """The CAD reference ray-cast through the pixels of a box of a test view (:func:`cad_cast`).

    Attributes:
        t: (h, w) test depth (mm) of the first CAD hit on each pixel's ray, inf where none.
        rays: (h, w, 3) the pixels' ray directions carried into the reference frame (hit = origin + t * ray).
        normals: (h, w, 3) unit normal of the hit triangle (NaN where none).
        origin: (3,) the test camera's centre in the reference frame.
    """

    t: np.ndarray
    rays: np.ndarray
    normals: np.ndarray
    origin: np.ndarray

    def __post_init__(self) -> None:
        self._dot = np.abs(np.einsum("hwc,hwc->hw", self.rays, self.normals))  # |ray . n|, NaN where no hit

    def along(self, depth: np.ndarray) -> np.ndarray:
        """(h, w) signed distance (mm, reference frame; > 0 in front) of the points measured at ``depth`` (h, w) to
        the plane of the triangle their ray meets first, NaN where none: a hit at ``t`` against a measured depth
        ``z`` lies ``(t - z) |ray . n|`` from it (the carried ray keeps the test depth as its parameter)."""
        with np.errstate(invalid="ignore"):
            return (self.t - depth) * self._dot

    def cosine(self) -> np.ndarray:
        """(h, w) |cosine| between each ray and its hit triangle's normal (NaN where no hit)."""
        r = self.rays
        return self._dot / np.sqrt(r[..., 0] * r[..., 0] + r[..., 1] * r[..., 1] + r[..., 2] * r[..., 2])

    @cached_property
    def facing(self) -> np.ndarray:
        """(h, w) bool: pixels whose 3 x 3 neighbourhood the CAD covers with surface facing the view (cosine above
        ``MIN_FACING_COS``): not on its outline in the view (a registration a pixel off), not at a grazing angle."""
        with np.errstate(invalid="ignore"):
            facing = np.isfinite(self.t) & (self.cosine() > MIN_FACING_COS)
        return erode(facing, 3)


def cad_cast(caster: MeshCaster, view: View, box: tuple[slice, slice], T: np.ndarray) -> CadCast:
    """Ray-cast the CAD reference through the pixels of ``box`` of ``view``; ``T``: (4, 4) the registration (test
    -> reference frame), which carries the rays into the reference frame."""
    v, u = np.mgrid[box]
    d = pixel_rays(view.camera, v.ravel(), u.ravel()) @ T[:3, :3].T
    origin = apply(T, view.camera.center[None])[0]
    t, n = caster.cast(origin, d)
    return CadCast(t.reshape(v.shape), d.reshape(*v.shape, 3), n.reshape(*v.shape, 3), origin)


def void_through(cast: CadCast, view: View, box: tuple[slice, slice], ref: dict, vid: int) -> np.ndarray:
    """(h, w) bool: pixels of ``box`` where ``view`` sees nothing through a CAD surface that faces it (a hole
    through a thin wall with no surface behind it): no depth measured, and the image at least ``VOID_DROP`` darker
    (log intensity) than the nominal part's local brightness at that surface point, seen by training view ``vid``
    (the same rig camera); a depth dropout on the part keeps its brightness. Pixels on the CAD's outline in the
    view (a registration a pixel off) and hits at grazing angles (cosine below ``MIN_FACING_COS``) are left out;
    kept regions are opened by 2 x 2 (a hole is a blob)."""
    out = np.zeros(cast.t.shape, bool)
    if "bright_lo" not in ref:
        return out
    cand = cast.facing & (view.depth[box] <= 0)
    if not cand.any():
        return out
    v, u, z, inside = nearest_pixel(cast.origin + cast.t[cand][:, None] * cast.rays[cand], ref["cameras"][vid])
    nominal = np.where(inside, ref["bright_lo"][vid][v, u], np.nan)
    with np.errstate(invalid="ignore"):
        out[cand] = np.log(image_to_gray(view.image)[box][cand] + 0.02) < nominal - VOID_DROP
    return opening(out, 2)


def behind_cad(cast: CadCast, depth: np.ndarray, shape: np.ndarray, margin: float) -> np.ndarray:
    """(h, w) gap (mm of test depth) where the pixels of a box see a nominal surface more than ``margin`` behind a
    CAD surface that faces the view (:attr:`CadCast.facing`): a narrow hole or slot whose far side the scanner
    measures. ``depth``: (h, w) the box's test depth; ``shape``: (h, w) the pixels' shape scores (mm; NaN where
    none): only pixels scoring below ``OWN_SURFACE_MM`` count (the surface seen is the part's own, such as the far
    wall of a hollow part; a dent's floor scores its depth itself). Kept: blocks of 2 x 2 pixels (pixels, not the
    cells of :func:`missing_material`, so that a hole a few pixels wide counts), and runs of 3 pixels along a row, a
    column or a diagonal (:func:`line_opening`: a slot narrower than two pixels) away from the CAD's own depth steps
    (3 x 3 windows whose CAD depth spans more than ``margin``: along an occluding edge of the CAD, a registration a
    pixel off would make such a run)."""
    with np.errstate(invalid="ignore"):
        gap = np.where(depth > 0, depth - cast.t, 0.0)
        hit = cast.facing & (gap > margin) & (shape < OWN_SURFACE_MM)
    if not hit.any():
        return np.zeros(hit.shape, np.float32)
    t = np.where(np.isfinite(cast.t), cast.t, np.inf)
    with np.errstate(invalid="ignore"):  # inf - inf where the window misses the CAD (not facing anyway)
        step = window_reduce(t, 3, np.maximum, 1) - window_reduce(t, 3, np.minimum, 1) > margin
    hit = opening(hit, 2) | line_opening(hit & ~step, 3)
    return np.where(hit, gap, 0.0).astype(np.float32)


def _cad_distance(q: np.ndarray, nq: np.ndarray, edge: np.ndarray, fg: np.ndarray, ref: dict,
                  along: np.ndarray | None, cfg: DeviationConfig) -> np.ndarray:
    """(P,) mm distance of the points ``q`` (reference frame, normals ``nq``) of the ``fg`` pixels to the CAD.

    A pixel's distance to the triangle its ray meets first (``along``) is exact on any facet, however coarse the
    mesh; where that is over ``RAY_TRUST_MM`` or the ray meets nothing (a bump beyond the outline, the far surface
    seen where material is missing), the distance to the nearest facing CAD sample's tangent plane is taken when it
    is smaller (the far surface seen through a gap is nominal there: the gap goes to the missing-material test),
    or, for a point beyond ``2 * cad_spacing`` sideways of every sample, the distance to the nearest one. Signed
    distances are averaged over ``cfg.smooth`` pixels square (``edge`` pixels left out) before the absolute value.
    """
    s = np.full(len(q), np.nan) if along is None else along.astype(np.float64)
    check = ~(np.abs(s) <= RAY_TRUST_MM)
    lone = np.zeros(len(q), bool)
    dist = np.zeros(len(q))
    if check.any():
        idx, dist_c, _ = _nearest_facing(ref["cad_tree"], ref["cad_normals"], q[check], nq[check])
        d_c = np.sum((q[check] - ref["cad_points"][idx]) * ref["cad_normals"][idx], axis=1)
        far = np.sqrt(np.maximum(dist_c ** 2 - d_c ** 2, 0)) > 2 * cfg.cad_spacing
        take = ~(np.abs(s[check]) <= np.where(far, dist_c, np.abs(d_c)))  # NaN (no hit) -> take
        s[check] = np.where(take, d_c, s[check])
        lone[check], dist[check] = take & far, dist_c
    d, err, sigma = _smooth_on(s, fg, cfg.smooth, ~edge)
    score = np.maximum(np.abs(d) - cfg.noise_penalty * err, 0)
    if cfg.lines:  # scratches narrower than a pixel: averaged along lines too
        score = np.maximum(score, line_score(s, fg, ~edge & ~lone, sigma, cfg.noise_penalty))
    return np.where(lone, dist, score)


def missing_material(view: View, points: np.ndarray, normals: np.ndarray, margin: float, spacing: float,
                     near: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Where ``view`` sees through the reference surface: (H, W) gap in mm and (H, W) reference depth (0 elsewhere).

    ``points``, ``normals``: (P, 3) the reference surface in the view's world frame, about ``spacing`` mm apart.
    The points facing the camera (cosine above ``MIN_FACING_COS``: an edge-on fin thinner than a cell is no wall
    to see through) are z-buffered on cells of k x k pixels (k: the smallest whose footprint covers
    1.5 spacings, so the rendered surface has no gaps); a cell counts where the rendered surface covers it and its
    8 neighbours (not on the reference's outline, where a registration a pixel off would mimic it), all its
    pixels are measured and their nearest measured depth over 3 x 3 (:func:`free_space_depth`) lies more than
    ``margin`` behind the reference. Counted cells are opened by 2 x 2 cells (a missing piece is a blob).
    ``near``: the view's :func:`free_space_depth` when already computed.
    """
    cam, H, W = view.camera, *view.depth.shape
    gap, at = np.zeros((H, W), np.float32), np.zeros((H, W), np.float32)
    measured = view.depth > 0
    if not measured.any() or len(points) == 0:
        return gap, at
    k = _cell_px(view, spacing)
    h, w = -(-H // k), -(-W // k)
    from mv3dad.geometry.compiled import facing_zbuffer

    zbuf = np.full((h, w), np.inf)  # grazing surfaces left out: an edge-on fin thinner than a cell is not a wall
    facing_zbuffer(np.ascontiguousarray(points, np.float64), np.ascontiguousarray(normals, np.float64),
                   cam.center, cam.R, cam.t, cam.K, k, MIN_FACING_COS, zbuf)
    cover = erode(np.isfinite(zbuf), 3)

    def cells(x: np.ndarray, fill, reduce: np.ufunc) -> np.ndarray:  # per cell, k x k pixels reduced
        pad = np.pad(x, ((0, h * k - H), (0, w * k - W)), constant_values=fill)
        out = pad[::k, ::k].copy()
        for i in range(k):  # k * k strided slices: 7x faster than a reduction over the reshaped axes
            for j in range(k):
                reduce(out, pad[i::k, j::k], out=out)
        return out

    behind = free_space_depth(view.depth) if near is None else near
    nearest = cells(np.where(behind > 0, behind, np.inf), np.inf, np.minimum)
    full = cells(measured, False, np.logical_and)
    g = np.where(cover & full & np.isfinite(nearest), nearest - np.where(cover, zbuf, 0), 0)
    hit = opening(g > margin, 2)
    gap = np.repeat(np.repeat(np.where(hit, g, 0), k, 0), k, 1)[:H, :W].astype(np.float32)
    at = np.repeat(np.repeat(np.where(hit, zbuf, 0), k, 0), k, 1)[:H, :W].astype(np.float32)
    return gap, at


def on_rim(gap: np.ndarray, at: np.ndarray, view: View, tol: float, radius_mm: float, spacing: float
           ) -> np.ndarray:
    """(H, W) missing-material score moved onto the measured rim of the region a view sees through.

    ``gap``, ``at``: (H, W) from :func:`missing_material` (run with the same ``spacing``). The gap itself lies in
    free space (the removed material is not there to measure, and the ground truth is the surface left behind), so
    the score goes to the surface around it. The see-through cells stop up to two cells inside the true edge; the
    region is first grown, within that distance, over the pixels that are unmeasured or lie behind the nearest
    see-through pixel's reference depth by more than ``tol`` mm plus a slope of 2 over the distance between them.
    Each measured pixel outside the grown region and within ``radius_mm`` of it (the broken edge, the hole's border)
    takes the nearest see-through pixel's score, if it lies within the same depth tolerance of that pixel's
    reference depth (not a surface in front, such as another part of the object occluding the region); 0 elsewhere.
    """
    hit = at > 0
    out = np.zeros(gap.shape, np.float32)
    if not hit.any():
        return out
    dist, (iv, iu) = ndimage.distance_transform_edt(~hit, return_indices=True)
    near_at = at[iv, iu]
    px_mm = near_at / view.camera.K[0, 0]  # mm per pixel there (near_at > 0: the nearest see-through pixel's)
    measured = view.depth > 0
    behind = ~measured | (view.depth - near_at > tol + 2 * dist * px_mm)
    region = hit | (behind & (dist <= 2 * _cell_px(view, spacing) + 1))
    same = np.abs(view.depth - near_at) <= tol + 2 * dist * px_mm  # on the surface the material was cut from
    rim = ~region & measured & same & (ndimage.distance_transform_edt(~region) <= 1 + radius_mm / px_mm)
    out[rim] = gap[iv[rim], iu[rim]]
    return out


def _cell_px(view: View, spacing: float) -> int:
    """Side in pixels of the cells on which :func:`missing_material` renders points ``spacing`` mm apart: the
    smallest whose footprint at the view's median measured depth covers 1.5 spacings."""
    return max(1, int(np.ceil(1.5 * spacing * view.camera.K[0, 0] / float(np.median(view.depth[view.depth > 0])))))


def open_blobs(score: np.ndarray, size: int) -> np.ndarray:
    """(H, W) ``score`` opened by a ``size`` x ``size`` square whose eroded core must be more than one pixel: eroded,
    cleaned of single-pixel spikes (:func:`clamp_spikes`), dilated back. A blob at least ``size + 1`` pixels wide
    keeps its extent; lines, specks and blobs just ``size`` wide (texture edges at a grazing angle) go."""
    core = clamp_spikes(ndimage.grey_erosion(score, size=size, mode="constant", cval=0.0))
    return ndimage.grey_dilation(core, size=size, mode="constant", cval=0.0)


def clamp_spikes(values: np.ndarray) -> np.ndarray:
    """Each element clamped to the largest of its neighbours (8 in 2D, 26 in 3D; NaN = unobserved, kept; no
    observed neighbour -> 0): an isolated spike goes, anything two elements wide stays."""
    finite = np.isfinite(values)
    if not finite.any():
        return values
    box = tuple(slice(max(int(i[0]) - 1, 0), int(i[-1]) + 2)  # the observed part's bounding box
                for i in (np.flatnonzero(finite.any(axis=tuple(a for a in range(values.ndim) if a != d)))
                          for d in range(values.ndim)))
    v = np.where(finite[box], values[box], -np.inf)
    nb = neighbour_max(v)
    out = values.copy()
    out[box] = np.where(finite[box], np.minimum(values[box], np.where(np.isfinite(nb), nb, 0.0)), np.nan)
    return out


def _bounding_box(mask: np.ndarray, pad: int) -> tuple[slice, slice]:
    """Slices of the bounding box of a non-empty (H, W) ``mask``, grown by ``pad`` pixels (clipped to the image)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return (slice(max(rows[0] - pad, 0), min(rows[-1] + pad + 1, mask.shape[0])),
            slice(max(cols[0] - pad, 0), min(cols[-1] + pad + 1, mask.shape[1])))


def brightness(image: np.ndarray, fg: np.ndarray, camera: Camera, depth: np.ndarray, sigma_mm: float
               ) -> np.ndarray:
    """(H, W) float32 local brightness: ``log(intensity + 0.02)`` (the offset damps dark-pixel noise) of the ``fg``
    pixels below ``HIGHLIGHT`` intensity only, averaged by a Gaussian of ``sigma_mm`` on the part (converted to
    pixels at the view's median foreground depth); NaN where the Gaussian holds less than a quarter of its weight in
    such pixels, or more than ``HIGHLIGHT_SHARE`` of it in highlights at least 2 x 2 pixels wide (there the average
    lacks the bright side of a facet edge, and whether a facet flashes depends on the pose: the two scans' averages
    would differ; a lone bright pixel is noise).

    ``image``: (H, W) or (H, W, 3) in [0, 1]; ``fg``: (H, W) bool; ``depth``: (H, W) mm.
    """
    g = image_to_gray(image)
    if fg.shape != g.shape or depth.shape != g.shape:
        raise ValueError(f"image {g.shape}, mask {fg.shape} and depth {depth.shape} differ in shape")
    ok = fg & (g < HIGHLIGHT)
    out = np.full(g.shape, np.nan, np.float32)
    if not ok.any():
        return out
    sigma = max(sigma_mm * camera.K[0, 0] / float(np.median(depth[fg])), 0.5)
    box = _bounding_box(fg, pad=int(np.ceil(3 * sigma)) + 1)  # work on the part's bounding box only
    w = ok[box].astype(np.float32)
    num = ndimage.gaussian_filter(np.log(g[box] + 0.02) * w, sigma, mode="constant")
    den = ndimage.gaussian_filter(w, sigma, mode="constant")
    known = den > 0.25
    flashing = opening((fg & ~ok)[box], 2)  # a facet, not a lone bright pixel
    if flashing.any():
        known &= ndimage.gaussian_filter(flashing.astype(np.float32), sigma, mode="constant") <= HIGHLIGHT_SHARE
    out[box] = np.where(known, num / np.maximum(den, 1e-6), np.nan)
    return out


def window_range(values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) smallest and largest finite value of each pixel's ``size`` x ``size`` window (NaN where none)."""
    lo = ndimage.minimum_filter(np.where(np.isfinite(values), values, np.inf), size=size, mode="nearest")
    hi = ndimage.maximum_filter(np.where(np.isfinite(values), values, -np.inf), size=size, mode="nearest")
    return np.where(np.isfinite(lo), lo, np.nan), np.where(np.isfinite(hi), hi, np.nan)


def free_space_depth(depth: np.ndarray) -> np.ndarray:
    """(H, W) the nearest depth of each pixel's 3 x 3 window, or 0 when fewer than 7 of its 9 pixels are measured.

    A view saw through a point when this depth lies behind it: a window, not one pixel, so that an occlusion
    boundary one pixel off does not count as free space, and unknown (0) where the window is mostly unmeasured
    (a silhouette that lost its edge pixels shows only the far surface).
    """
    valid = depth > 0
    near = window_reduce(np.where(valid, depth, np.inf).astype(np.float32), 3, np.minimum, 1)  # edges repeated
    enough = window_reduce(valid.astype(np.int8), 3, np.add, 1) >= 7
    return np.where(enough & np.isfinite(near), near, 0).astype(np.float32)


def _seen_through(points: np.ndarray, near: np.ndarray, cameras: list[Camera], margin: np.ndarray) -> np.ndarray:
    """(P,) how many views measured a surface more than ``margin`` (P,) mm behind each point.

    ``near``: (V, H, W) the views' :func:`free_space_depth`.
    """
    count = np.zeros(len(points), np.int32)
    for depth, cam in zip(near, cameras):
        v, u, z, inside = nearest_pixel(points, cam)
        d = np.where(inside, depth[v, u], 0.0)
        count += ((d > 0) & (d > z + margin)).astype(np.int32)
    return count


def _local_plane(tree: cKDTree, points: np.ndarray, normals: np.ndarray, sigma: np.ndarray | None, q: np.ndarray,
                 nq: np.ndarray, k: int = 8) -> tuple[np.ndarray, ...]:
    """The reference surface near each point of ``q``, from its ``k`` nearest reference points that face the same
    way (normals less than 70 degrees apart): their mean point and mean normal (a local plane, averaging out the
    reference's own noise), so that a point on one face of a thin wall is compared with that face, not with the
    wall's other side. Where none faces the same way (or the point's normal is unknown), the plain nearest point.

    Returns:
        (P, 3) plane points, (P, 3) unit normals, (P,) distance to the nearest facing point, (P,) bool: a facing
        point was found, (P,) mean sigma of the points used (zeros when ``sigma`` is None).
    """
    dist, idx = tree.query(q, k=k, workers=-1)
    nrm = normals[idx]
    w = (np.einsum("pkc,pc->pk", nrm, np.nan_to_num(nq)) > 0.34).astype(np.float64)
    found = w.any(axis=1)
    w[~found, 0] = 1.0
    w /= w.sum(axis=1, keepdims=True)
    centre = np.einsum("pk,pkc->pc", w, points[idx])
    n = np.einsum("pk,pkc->pc", w, nrm)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    near = np.where(w > 0, dist, np.inf).min(axis=1)
    sig = np.einsum("pk,pk->p", w, sigma[idx]) if sigma is not None else np.zeros(len(q))
    return centre, n, near, found, sig


def _nearest_facing(tree: cKDTree, normals: np.ndarray, q: np.ndarray, nq: np.ndarray, k: int = 8
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per point of ``q`` the nearest of its ``k`` nearest reference points that faces the same way (normals less
    than 70 degrees apart), so that a point on one face of a thin wall is compared with that face; the plain
    nearest where none does (or the point's normal is unknown).

    Returns:
        (P,) reference indices, (P,) distances, (P,) bool: a facing point was found.
    """
    nq = np.nan_to_num(nq)
    dist, idx = tree.query(q, k=1, workers=-1)  # most points face their nearest: one cheap query first
    found = np.einsum("pc,pc->p", normals[idx], nq) > 0.34
    rest = np.flatnonzero(~found)
    if len(rest):
        d_k, i_k = tree.query(q[rest], k=k, workers=-1)
        facing = np.einsum("pkc,pc->pk", normals[i_k], nq[rest]) > 0.34
        hit = facing.any(axis=1)
        first = np.argmax(facing, axis=1)
        rows = np.flatnonzero(hit)  # where none of the k faces the same way, the plain nearest stays
        idx[rest[rows]] = i_k[rows, first[rows]]
        dist[rest[rows]] = d_k[rows, first[rows]]
        found[rest] = hit
    return idx, dist, found


def _smooth_on(values: np.ndarray, mask: np.ndarray, size: int, use: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, float]:
    """(P,) ``values`` of the ``mask`` (H, W) pixels averaged over the ``size`` x ``size`` window of each, over the
    pixels flagged ``use`` (P,) only (so values next to a depth discontinuity do not spread), and (P,) the standard
    error of each average: the view's single-pixel noise (robust spread of the used values about their window
    averages) over the square root of the pixels averaged. A pixel whose window holds none keeps its value (error:
    the single-pixel noise), and that single-pixel noise. size <= 1 returns the values unchanged, with zero errors."""
    if size <= 1:
        return values, np.zeros(len(values)), 0.0
    img = np.zeros(mask.shape)
    wgt = np.zeros(mask.shape)
    img[mask] = np.where(use, values, 0.0)
    wgt[mask] = use
    num = ndimage.uniform_filter(img, size, mode="constant")[mask]
    den = ndimage.uniform_filter(wgt, size, mode="constant")[mask]
    n = np.rint(den * size * size)
    mean = np.where(n > 0, num / np.maximum(den, 1e-12), values)
    inner = use & (n == size * size)  # the residual of a full window's centre has variance sigma^2 (1 - 1/n)
    resid = (values - mean)[inner]
    sigma = 1.4826 * np.median(np.abs(resid)) * size / np.sqrt(size * size - 1) if len(resid) >= 50 else 0.0
    return mean.astype(values.dtype), sigma / np.sqrt(np.maximum(n, 1)), float(sigma)


def line_score(values: np.ndarray, mask: np.ndarray, use: np.ndarray, sigma: float, penalty: float) -> np.ndarray:
    """(P,) scratch score of the ``mask`` (H, W) pixels: over lines of 5 pixels centred on the pixel along a row, a
    column and both diagonals, the largest ``|mean| - penalty * sigma / sqrt(n)`` (0 at least) of ``values`` (P,)
    averaged over the ``n`` pixels flagged ``use`` (P,) on the line (at least 3; else 0).

    A scratch narrower than a pixel shows its depth on a line of single pixels that a square average spreads
    into the surface around it; a line average along it keeps the depth and still averages out the noise
    (``sigma``: the single-pixel noise, from :func:`_smooth_on`). Compiled
    (:func:`mv3dad.geometry.compiled.best_line_score`).
    """
    from mv3dad.geometry.compiled import best_line_score

    img = np.zeros((mask.shape[0] + 4, mask.shape[1] + 4), np.float32)
    wgt = np.zeros(img.shape, np.int64)
    img[2:-2, 2:-2][mask] = np.where(use, values, 0.0)
    wgt[2:-2, 2:-2][mask] = use
    out = np.zeros(mask.shape, np.float32)
    n = np.maximum(np.arange(6), 1).astype(np.float32)  # per count of used pixels on a line
    best_line_score(img, wgt, mask, 1 / n, (penalty * sigma / np.sqrt(n)).astype(np.float32), out)
    return out[mask]
