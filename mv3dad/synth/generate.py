"""Orchestration of the synthetic SiM3D-style benchmark: categories -> instances -> views -> mv3dad layout.

Per category: one nominal training instance and a test split of nominal and anomalous instances, all seen by
the same calibrated rig. ``real2real``: the training instance is rendered like the test instances (pose jitter,
texture phase, artefacts, noise). ``synth2real``: it is the clean CAD model (nominal pose, idealised texture, no
artefacts, no noise). Every instance has its own random stream derived from (seed, category, split, index), so
the output is deterministic and an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh

from mv3dad.data.scene import Sample, View
from mv3dad.geometry.camera import Camera
from mv3dad.geometry.grid import VoxelGrid
from mv3dad.synth.artefacts import ArtefactConfig, clean_view, scanner_view
from mv3dad.synth.defects import DEFECT_TYPES, Candidates, apply_defects, find_candidates, ground_truth
from mv3dad.synth.materials import MATERIALS, Material, material_for
from mv3dad.synth.render import RenderMesh
from mv3dad.synth.shapes import CATEGORIES, build_category, load_user_mesh, mesh_manifold, refine, to_trimesh

SETUPS = ("real2real", "synth2real")


@dataclass
class SynthConfig:
    """Settings of ``mv3dad synth`` (YAML: ``configs/synth.yaml``).

    Attributes:
        categories: procedural categories to generate (subset of stool, bin, vase, cabinet, container).
        meshes: user CAD mesh files (STL/OBJ/PLY/GLB); each becomes a category named after its file stem.
        mesh_size_mm: largest extent a user mesh is rescaled to (mm).
        views: number of views of the built-in hemisphere rig (12 and 36 are SiM3D's; others are generated).
        rig: a rig name (``hemisphere12``, ``hemisphere36``) or rig YAML file; overrides ``views`` when set.
        image_size: side of the square images in pixels (the rig is rescaled to it).
        train_instances: nominal training instances per category (SiM3D: 1).
        test_instances: test instances per category.
        anomalous_fraction: fraction of the test instances that are anomalous (rounded).
        setup: ``real2real`` or ``synth2real`` (how the training instances are rendered).
        voxel_size: ground-truth voxel edge in mm (SiM3D: 2 mm).
        rgb: write RGB images instead of SiM3D-like grayscale.
        support: render a dark turntable disc under the object (it appears in images and depth).
        seed: random seed; the same seed gives byte-identical files.
        defect_types: defect types to draw from (see :data:`mv3dad.synth.defects.DEFECT_TYPES`).
        max_defects: at most this many defects per anomalous instance (at least one).
        mesh_edge_mm: edge length the nominal meshes are refined to (defects refine further locally).
        scale_jitter: relative scale jitter between instances (uniform +-).
        rotation_jitter_deg: rotation jitter about the vertical axis in degrees (uniform +-).
        translation_jitter_mm: horizontal translation jitter in mm (uniform +- per axis).
        image_bits: PNG bit depth, 8 or 16 (16 only for grayscale).
        save_meshes: also write each instance's mesh as ``mesh.ply`` (large).
        preview: write ``preview.png``, a contact sheet of views with the defects outlined.
        preview_views: number of views per category in the preview.
        artefacts: acquisition artefacts (:class:`~mv3dad.synth.artefacts.ArtefactConfig`; a mapping in YAML).
    """

    categories: tuple[str, ...] = ("stool", "bin", "vase", "cabinet", "container")
    meshes: tuple[str, ...] = ()
    mesh_size_mm: float = 300.0
    views: int = 12
    rig: str | None = None
    image_size: int = 256
    train_instances: int = 1
    test_instances: int = 6
    anomalous_fraction: float = 0.5
    setup: str = "real2real"
    voxel_size: float = 2.0
    rgb: bool = False
    support: bool = False
    seed: int = 0
    defect_types: tuple[str, ...] = DEFECT_TYPES
    max_defects: int = 3
    mesh_edge_mm: float = 8.0
    scale_jitter: float = 0.015
    rotation_jitter_deg: float = 4.0
    translation_jitter_mm: float = 4.0
    image_bits: int = 8
    save_meshes: bool = False
    preview: bool = True
    preview_views: int = 4
    artefacts: ArtefactConfig = field(default_factory=ArtefactConfig)

    def __post_init__(self) -> None:
        if isinstance(self.artefacts, dict):
            names = {f.name for f in dataclasses.fields(ArtefactConfig)}
            unknown = set(self.artefacts) - names
            if unknown:
                raise ValueError(f"unknown artefacts keys {sorted(unknown)}; known: {sorted(names)}")
            self.artefacts = ArtefactConfig(**self.artefacts)
        if isinstance(self.categories, str):
            self.categories = tuple(c.strip() for c in self.categories.split(",") if c.strip())
        self.categories, self.meshes = tuple(self.categories), tuple(str(m) for m in self.meshes)
        self.defect_types = tuple(self.defect_types)
        for c in self.categories:
            if c not in CATEGORIES:
                raise ValueError(f"unknown category {c!r}; choose from {sorted(CATEGORIES)}")
        for t in self.defect_types:
            if t not in DEFECT_TYPES:
                raise ValueError(f"unknown defect type {t!r}; choose from {list(DEFECT_TYPES)}")
        if not self.categories and not self.meshes:
            raise ValueError("nothing to generate: no categories and no meshes")
        if self.setup not in SETUPS:
            raise ValueError(f"setup must be one of {SETUPS}, got {self.setup!r}")
        if self.image_size < 16 or self.views < 1 or self.test_instances < 0 or self.train_instances < 1:
            raise ValueError("image_size >= 16, views >= 1, train_instances >= 1 and test_instances >= 0 required")
        if not 0 <= self.anomalous_fraction <= 1 or self.voxel_size <= 0 or self.max_defects < 1:
            raise ValueError("anomalous_fraction in [0, 1], voxel_size > 0 and max_defects >= 1 required")
        if self.image_bits not in (8, 16) or (self.rgb and self.image_bits == 16):
            raise ValueError("image_bits must be 8 or 16, and 8 for RGB images")

    def fingerprint(self) -> str:
        """A hash of every setting that changes the generated instances."""
        d = dataclasses.asdict(self)
        for k in ("preview", "preview_views"):
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class CategoryModel:
    """What every instance of a category shares.

    Attributes:
        name: category name.
        material: its appearance.
        mesh: the nominal (CAD) mesh, refined, object frame (mm, standing on z = 0).
        shape: the same as a manifold3d solid, or None for an open user mesh (boolean defects then remove faces).
        candidates: visible places for defects.
        grid: the ground-truth voxel grid (covers every jittered instance).
    """

    name: str
    material: Material
    mesh: trimesh.Trimesh
    shape: object
    candidates: Candidates
    grid: VoxelGrid


def mesh_category_name(path: str | Path) -> str:
    """A category name from a mesh file name (lower case letters, digits, ``_`` and ``-``)."""
    name = re.sub(r"[^a-z0-9_-]+", "_", Path(path).stem.lower()).strip("_")
    return name or "mesh"


def category_model(name: str, cfg: SynthConfig, cameras: list[Camera], mesh_file: str | None = None
                   ) -> CategoryModel:
    """Build the nominal part of a category (or of a user mesh), its defect places and its GT grid."""
    if mesh_file is None:
        shape = refine(build_category(name), cfg.mesh_edge_mm)
        mesh = to_trimesh(shape)
    else:
        mesh, shape = mesh_manifold(load_user_mesh(mesh_file, cfg.mesh_size_mm), cfg.mesh_edge_mm)
    cand = find_candidates(mesh, cameras, seed=zlib.crc32(name.encode()), min_views=min(2, len(cameras)))
    v = np.asarray(mesh.vertices)
    radius = float(np.max(np.linalg.norm(v[:, :2], axis=1)))
    top = float(v[:, 2].max())
    margin = cfg.translation_jitter_mm + cfg.scale_jitter * max(radius, top) + 6.0
    grid = VoxelGrid.from_bounds([-radius, -radius, 0.0], [radius, radius, top], cfg.voxel_size,
                                 margin=margin + 2 * cfg.voxel_size)
    return CategoryModel(name, material_for(name), mesh, shape, cand, grid)


def _rng(cfg: SynthConfig, category: str, split: str, index: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, zlib.crc32(category.encode()), SPLIT_CODES[split], index, *extra])


SPLIT_CODES = {"train": 1, "test": 2}


def instance_pose(cfg: SynthConfig, rng: np.random.Generator, nominal: bool) -> np.ndarray:
    """(4, 4) object -> world: scale, rotation about z, horizontal translation (identity when ``nominal``)."""
    if nominal:
        return np.eye(4)
    s = 1.0 + rng.uniform(-cfg.scale_jitter, cfg.scale_jitter)
    a = np.deg2rad(rng.uniform(-cfg.rotation_jitter_deg, cfg.rotation_jitter_deg))
    tx, ty = rng.uniform(-cfg.translation_jitter_mm, cfg.translation_jitter_mm, 2)
    M = np.eye(4)
    M[:3, :3] = s * np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    M[:3, 3] = [tx, ty, 0.0]
    return M


def _apply(M: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points) @ M[:3, :3].T + M[:3, 3]


def make_instance(model: CategoryModel, cameras: list[Camera], cfg: SynthConfig, split: str, index: int,
                  anomalous: bool, first_defect: str | None = None) -> tuple[Sample, trimesh.Trimesh]:
    """Generate and render one instance.

    Args:
        split: ``train`` or ``test``; with ``setup == "synth2real"`` training instances are rendered clean.
        index: the instance's index in its split (part of its random stream).
        anomalous: whether to add defects.
        first_defect: type of the first defect (None: random).

    Returns:
        The sample (views in rig order, label, GT volume for anomalous instances, metadata) and its world mesh.
    """
    rng = _rng(cfg, model.name, split, index)
    clean = split == "train" and cfg.setup == "synth2real"
    pose = instance_pose(cfg, rng, nominal=clean)
    phase = np.zeros(3) if clean else rng.uniform(0, 1000.0, 3)
    mesh, stains, defects, changed, gt = model.mesh, None, [], None, None
    if anomalous:
        n_def = 1 + int(rng.choice(cfg.max_defects, p=_count_probs(cfg.max_defects)))
        types = [first_defect or str(rng.choice(cfg.defect_types))]
        types += [str(t) for t in rng.choice(cfg.defect_types, n_def - 1)]
        result = apply_defects(model.mesh, model.shape, types, model.candidates, rng)
        mesh, stains, defects, changed = result.mesh, result.stains, result.defects, _apply(pose, result.changed)
    world = trimesh.Trimesh(_apply(pose, mesh.vertices), mesh.faces, process=False)
    radius = float(np.max(np.linalg.norm(world.vertices[:, :2], axis=1)))
    rm = RenderMesh.build(world, model.material, world_to_local=np.linalg.inv(pose), phase=phase, stains=stains,
                          ideal=clean, support=MATERIALS["support"] if cfg.support else None,
                          support_radius=1.25 * radius + 20.0)
    if changed is not None:  # the changed surface as the rig sees it (what an annotator of the scans can mark)
        seen = np.zeros(len(changed), bool)
        for cam in cameras:
            seen |= rm.visible(changed, cam)
        gt = model.grid.to_dataarray(ground_truth(model.grid, changed[seen]), name="gt")
    spec_dropout = np.array([m.spec_dropout for m in rm.materials])
    views = []
    for i, cam in enumerate(cameras):
        out = rm.render(cam)
        if clean:
            image, depth = clean_view(out, cfg.rgb, cfg.artefacts)
        else:
            image, depth = scanner_view(out, cfg.rgb, spec_dropout, cfg.artefacts, _rng(cfg, model.name, split,
                                                                                      index, 1000 + i))
        views.append(View(image, depth, cam))
    meta = {
        "generator": "mv3dad synth", "setup": cfg.setup, "clean": clean, "seed": cfg.seed,
        "config_hash": cfg.fingerprint(), "object_to_world": pose.tolist(),
        "defects": [{"type": d.type, "size_mm": round(d.size_mm, 3),
                     "center_mm": [round(float(x), 4) for x in _apply(pose, d.center[None])[0]],
                     "normal": [round(float(x), 6) for x in pose[:3, :3] @ d.normal / np.linalg.norm(
                         pose[:3, :3] @ d.normal)],
                     **{k: round(v, 4) for k, v in d.params.items()}} for d in defects],
    }
    sample = Sample(model.name, f"{index:03d}", views, "anomalous" if anomalous else "nominal", gt, None, meta)
    return sample, world


def _count_probs(k: int) -> np.ndarray:
    p = 0.6 ** np.arange(k)
    return p / p.sum()


def anomalous_flags(cfg: SynthConfig, category: str) -> list[bool]:
    """Which test instances of ``category`` are anomalous (shuffled by the seed)."""
    n_anom = int(round(cfg.test_instances * cfg.anomalous_fraction))
    labels = np.array([True] * n_anom + [False] * (cfg.test_instances - n_anom))
    return [bool(x) for x in _rng(cfg, category, "test", 999_999).permutation(labels)]


def load_cameras(cfg: SynthConfig) -> tuple[str, list[Camera]]:
    """The rig of ``cfg`` rescaled to ``cfg.image_size``: (rig name, cameras)."""
    from mv3dad.data.rig import builtin_rig, hemisphere_rig

    if cfg.rig:
        rig = builtin_rig(cfg.rig)
    elif cfg.views in (12, 36):
        rig = builtin_rig(f"hemisphere{cfg.views}")
    else:
        rig = hemisphere_rig(cfg.views)
    rig = rig.scaled(cfg.image_size)
    return rig.name, rig.cameras


def generate_benchmark(out: str | Path, cfg: SynthConfig, *, overwrite: bool = False, progress: bool = False
                       ) -> Path:
    """Write the benchmark of ``cfg`` to ``out`` (mv3dad layout) and, if asked, ``out/preview.png``.

    Instances already on disk from an interrupted run with the same settings are kept (resume); instances made
    with other settings are an error unless ``overwrite``.

    Returns:
        ``out``.
    """
    from mv3dad.data.layout import (clean_temporary, mark_complete, mark_incomplete, read_sample,
                                    write_benchmark_info, write_sample)
    from mv3dad.io import check_output_dir

    out = check_output_dir(out, "OUT")
    rig_name, cameras = load_cameras(cfg)
    jobs = [(c, None) for c in cfg.categories] + [(mesh_category_name(m), m) for m in cfg.meshes]
    names = [c for c, _ in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"category names collide: {names} (rename the mesh files)")
    plan = []
    for ci, (cat, _) in enumerate(jobs):
        plan += [(cat, "train", i, False, None) for i in range(cfg.train_instances)]
        k = 0
        for i, anom in enumerate(anomalous_flags(cfg, cat)):
            first = cfg.defect_types[(k + 2 * ci) % len(cfg.defect_types)] if anom else None
            k += anom
            plan.append((cat, "test", i, anom, first))
    fingerprint = cfg.fingerprint()
    models: dict[str, CategoryModel] = {}
    for cat in dict.fromkeys(c for c, split, i, _, _ in plan
                             if overwrite or not (out / c / split / f"{i:03d}").exists()):
        models[cat] = category_model(cat, cfg, cameras, dict(jobs)[cat])
        check_memory(models[cat], cfg, len(cameras))  # before anything is written
    mark_incomplete(out, config_hash=fingerprint)
    clean_temporary(out)
    previews: dict[str, list[Sample]] = {c: [] for c in names}
    with _progress(progress) as bar:
        task = bar.add_task("synth", total=len(plan)) if bar else None
        for cat, split, i, anom, first in plan:
            if bar:
                bar.update(task, description=f"{cat} {split} {i:03d}")
            folder = out / cat / split / f"{i:03d}"
            sample = None
            if folder.exists() and not overwrite:
                sample = read_sample(folder)
                if sample.meta.get("config_hash") != fingerprint:
                    raise FileExistsError(f"{folder}: made with other settings (config_hash "
                                          f"{sample.meta.get('config_hash')} != {fingerprint}); pass overwrite")
            else:
                if cat not in models:
                    models[cat] = category_model(cat, cfg, cameras, dict(jobs)[cat])
                sample, world = make_instance(models[cat], cameras, cfg, split, i, anom, first)
                sample.meta["rig"] = rig_name
                with tempfile.TemporaryDirectory() as tmp:
                    if cfg.save_meshes:
                        sample.mesh_path = str(Path(tmp) / "mesh.ply")
                        world.export(sample.mesh_path)
                    write_sample(out, sample, split, image_bits=cfg.image_bits, overwrite=overwrite)
                    sample.mesh_path = None
            if (split == "train" and i == 0) or (anom and len(previews[cat]) < 2):
                previews[cat].append(sample)
            if bar:
                bar.advance(task)
    settings = {"generator": "mv3dad synth", "config": dataclasses.asdict(cfg), "rig": rig_name,
                "n_views": len(cameras), "image_size": cfg.image_size, "config_hash": fingerprint}
    write_benchmark_info(out, names, **settings, complete=True)
    if cfg.preview:
        from mv3dad.synth.preview import contact_sheet

        contact_sheet([(c, previews[c][0], previews[c][1] if len(previews[c]) > 1 else None) for c in names],
                      out / "preview.png", n_views=cfg.preview_views)
    mark_complete(out)
    return out


DEFAULT_MAX_BYTES = 4 * 2**30
"""Largest ground-truth grid allowed, in bytes (as :data:`mv3dad.volume.DEFAULT_MAX_BYTES` for score volumes)."""
BYTES_PER_VOXEL = 16
"""Peak bytes per ground-truth voxel while an instance is made (the uint8 grid and its index/float temporaries)."""
BYTES_PER_PIXEL = 64
"""Peak bytes per rendered pixel and view (image, depth, normals, artefact maps, float64 temporaries)."""


def _available_memory() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(model: CategoryModel, cfg: SynthConfig, n_views: int, limit: int | None = None) -> int:
    """Refuse, before anything is allocated, settings whose ground-truth grid and images need more memory than
    ``limit`` (default: the available memory, at most 4 GiB for the grid alone); returns the estimate in bytes.

    Raises:
        GridTooLargeError: naming the category, the grid's shape, the voxel size and what to change.
    """
    from mv3dad.errors import GridTooLargeError

    X, Y, Z = model.grid.shape
    grid_bytes = int(X) * int(Y) * int(Z) * BYTES_PER_VOXEL
    need = grid_bytes + cfg.image_size ** 2 * n_views * BYTES_PER_PIXEL
    avail = _available_memory()
    limit = limit if limit is not None else avail
    if grid_bytes > DEFAULT_MAX_BYTES or (limit is not None and need > limit):
        allowed = DEFAULT_MAX_BYTES if grid_bytes > DEFAULT_MAX_BYTES else limit
        raise GridTooLargeError(
            f"{model.name}: a {X}x{Y}x{Z} ground-truth grid at --voxel-size {cfg.voxel_size:g} mm and {n_views} "
            f"views of {cfg.image_size} px need about {need / 2**30:.1f} GiB, more than the "
            f"{allowed / 2**30:.1f} GiB allowed; "
            f"use a larger --voxel-size (2 mm is SiM3D's) or a smaller --image-size")
    return need


class _NoBar:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _progress(show: bool):
    if not show:
        return _NoBar()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description:<24}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn())
