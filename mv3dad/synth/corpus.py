"""An endless stream of synthetic depth maps for pretraining a depth encoder (``pretrain-depth --synthetic``).

Each procedural part gets random proportions, sometimes defects, a random pose (turned about z, sometimes tipped
or lying on its side), sometimes a turntable, and is seen by several random pinhole cameras (random distance,
elevation, azimuth, field of view and aim); every depth map carries the scanner artefacts of
:mod:`mv3dad.synth.artefacts` with randomly scaled strengths.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import trimesh

from mv3dad.geometry.camera import Camera
from mv3dad.synth.artefacts import ArtefactConfig, scanner_view
from mv3dad.synth.defects import DEFECT_TYPES, apply_defects, find_candidates
from mv3dad.synth.materials import MATERIALS
from mv3dad.synth.render import RenderMesh
from mv3dad.synth.shapes import CATEGORIES, build_category, refine, to_trimesh

VIEWS_PER_PART = 8


def random_camera(rng: np.random.Generator, target: np.ndarray, size_mm: float, image_size: int) -> Camera:
    """A camera on a random point of the upper hemisphere around ``target``, framing an object of ``size_mm``."""
    fov = np.deg2rad(rng.uniform(25.0, 50.0))
    fill = rng.uniform(0.45, 1.1)  # fraction of the image the object spans
    dist = size_mm / fill / (2 * np.tan(fov / 2)) + 0.5 * size_mm
    el, az = np.deg2rad(rng.uniform(8.0, 80.0)), rng.uniform(0, 2 * np.pi)
    eye = target + dist * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    aim = target + rng.normal(0, 0.08 * size_mm, 3)
    f = image_size / 2 / np.tan(fov / 2)
    return Camera.look_at(eye, aim, (0.0, 0.0, 1.0), f, f, image_size, image_size)


def random_pose(rng: np.random.Generator, mesh: trimesh.Trimesh) -> np.ndarray:
    """(4, 4) random rigid pose: turned about z, tipped a little or (1 in 5) lying on a side, resting on z = 0."""
    a = rng.uniform(0, 2 * np.pi)
    R = trimesh.transformations.rotation_matrix(a, [0, 0, 1])
    tilt = np.pi / 2 if rng.random() < 0.2 else np.deg2rad(rng.uniform(0, 12))
    R = R @ trimesh.transformations.rotation_matrix(tilt, [np.cos(a + 1), np.sin(a + 1), 0])
    v = mesh.vertices @ R[:3, :3].T
    R[:3, 3] = [rng.normal(0, 20), rng.normal(0, 20), -v[:, 2].min()]
    return R


def random_artefacts(rng: np.random.Generator) -> ArtefactConfig:
    """Artefact strengths scaled by random factors in [0.3, 2] (each field independently)."""
    base = ArtefactConfig()
    return ArtefactConfig(**{f.name: getattr(base, f.name) * (1.0 if f.name == "exposure" else rng.uniform(0.3, 2.0))
                             for f in dataclasses.fields(ArtefactConfig)})


def random_depth_maps(seed: int, image_size: int) -> Iterator[np.ndarray]:
    """Endless stream of (image_size, image_size) float32 depth maps in mm (0 = no measurement) of random
    procedural parts in random poses seen by random cameras, with scanner artefacts. Deterministic by ``seed``.
    """
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    rng = np.random.default_rng(seed)
    names = sorted(CATEGORIES)
    materials = [m for k, m in MATERIALS.items() if k != "support"]
    while True:
        name = names[int(rng.integers(len(names)))]
        shape = refine(build_category(name, rng), 10.0)
        mesh = to_trimesh(shape)
        if rng.random() < 0.5:
            lookers = [random_camera(rng, np.array([0, 0, mesh.bounds[1, 2] / 2]), 400.0, 64) for _ in range(4)]
            cand = find_candidates(mesh, lookers, seed=int(rng.integers(1 << 31)), n=600, min_views=1)
            if len(cand.points):
                kinds = [str(k) for k in rng.choice(DEFECT_TYPES, int(rng.integers(1, 4)))]
                try:
                    mesh = apply_defects(mesh, shape, kinds, cand, rng).mesh
                except ValueError:  # no room for that many defects on a small part: keep it nominal
                    pass
        pose = random_pose(rng, mesh)
        world = trimesh.Trimesh(mesh.vertices @ pose[:3, :3].T + pose[:3, 3], mesh.faces, process=False)
        size = float(np.max(world.extents))
        radius = float(np.max(np.linalg.norm(world.vertices[:, :2], axis=1)))
        material = materials[int(rng.integers(len(materials)))]
        support = MATERIALS["support"] if rng.random() < 0.4 else None
        rm = RenderMesh.build(world, material, world_to_local=np.linalg.inv(pose), phase=rng.uniform(0, 1000, 3),
                              support=support, support_radius=radius * rng.uniform(1.1, 2.0) + 20)
        spec_dropout = np.array([m.spec_dropout for m in rm.materials])
        target = world.bounds.mean(axis=0)
        for _ in range(VIEWS_PER_PART):
            cam = random_camera(rng, target, size, image_size)
            out = rm.render(cam)
            if not (out.depth > 0).any():
                continue
            _, depth = scanner_view(out, False, spec_dropout, random_artefacts(rng), rng)
            yield depth
