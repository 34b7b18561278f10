"""``mv3dad predict``: score every test sample of a dataset with a trained run and write its 3D anomaly volume.

Per sample: features once per view (both encoders) -> for each target view, the maps predicted from its source
views, min over sources (streamed; :func:`mv3dad.scoring.pairs.score_views`) -> per-view maps upsampled to the
depth resolution -> background filter -> per-view modality fusion (``max`` by default, which equals projecting
both modalities and taking the max) -> back-projection into the voxel grid with max -> instance score = max of the
volume.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mv3dad.data import open_dataset
from mv3dad.data.scene import DataError, Sample, View
from mv3dad.encoders import SquareFit, to_original
from mv3dad.export.atomic import atomic_file, atomic_write
from mv3dad.geometry.camera import Camera
from mv3dad.geometry.grid import VoxelGrid
from mv3dad.pipeline.features import EncoderConfig, FeatureExtractor, encoder_identity, load_encoders
from mv3dad.pipeline.fit import load_for_scoring, parse_views, select_views
from mv3dad.scoring.background import foreground_mask
from mv3dad.scoring.fuse import FUSIONS, fuse
from mv3dad.volume import VolumeAccumulator
from mv3dad.volume.resample import supersample_factor, supersample_view

SCORES_FILE = "scores.json"


@dataclass
class PredictJob:
    """What ``mv3dad predict`` scores.

    Attributes:
        run: run directory written by ``mv3dad fit``.
        data: dataset root holding the test samples.
        out: output directory: ``<out>/<category>/<instance>.<fmt>`` volumes and ``<out>/scores.json``.
        categories: categories to score (None = the run's).
        views: subset of the run's views to use: ``"all"``, ``"K"`` or ``"i,j,..."`` (indices into the run's
            view list); None = all of them. It is also the view map for samples that lack views: a sample with
            exactly as many views as selected is taken to hold those views, in that order (its cameras are
            checked against them).
        sources: K source views per target, chosen at random with ``seed`` (the target itself always among
            them; seed 004 Supp. Table 8); None = every view.
        fuse: per-view fusion of the image and depth maps before projection: max | mean | min | prod.
        formats: volume formats to write (``npz`` always among them; also npy, zarr, vdb, ply).
        save_maps: also write each sample's per-view fused maps (``<instance>_maps.npz``, float16, NaN off the
            foreground); always on for single-view data, which ``evaluate`` scores in 2D.
        grid: ``"category"``: the run's category grid (the training views' bounding box plus a margin for pose
            variation), the same for every sample, so instance scores (the volume's max) compare like with like;
            ``"gt"``: the ground truth's grid when the sample has one (for inspection; instance scores of samples
            with and without ground truth then come from different regions).
        remove_plane: remove a support plane (RANSAC) in the background filter, for scenes on a table.
        backend: back-projection backend: auto | numba | cupy | torch.
        rig_tolerance_mm: largest allowed difference between the run's and a sample's camera centres.
        supersample: back-project each view at this many times its depth resolution (bilinear depth on smooth
            surfaces, :func:`mv3dad.volume.resample.supersample_view`), so that low-resolution scans cover every
            surface voxel; None = the smallest factor giving a pixel footprint of at most half a voxel (1 for
            scans already that dense, e.g. SiM3D's 12 Mpx views).
        seed: seed of the random source selection.
    """

    run: str
    data: str
    out: str
    categories: list[str] | None = None
    views: str | None = None
    sources: int | None = None
    fuse: str = "max"
    formats: list[str] = field(default_factory=lambda: ["npz"])
    save_maps: bool = False
    grid: str = "category"
    remove_plane: bool = False
    backend: str = "auto"
    rig_tolerance_mm: float = 1.0
    supersample: int | None = None
    seed: int = 0


def check_rig(sample: Sample, cameras: list[dict], tol_mm: float) -> None:
    """Clear error when the sample's cameras are not the run's rig (view count or camera centres)."""
    if len(sample.views) != len(cameras):
        raise DataError(f"{sample.category}/{sample.instance_id}: {len(sample.views)} views, but {len(cameras)} "
                        f"selected from the run; if the sample lacks views, name the run views it holds, in order, "
                        f"with --views i,j,...")
    for i, (v, c) in enumerate(zip(sample.views, cameras)):
        ref = Camera.from_dict(c, where=f"run camera {i}")
        d = float(np.linalg.norm(ref.center - v.camera.center))
        if d > tol_mm:
            raise DataError(f"{sample.category}/{sample.instance_id}: view {i}'s camera is {d:.1f} mm from the run's "
                            f"rig camera {i} (tolerance {tol_mm} mm): a different rig or view order")


def _grid(rec: dict) -> VoxelGrid:
    return VoxelGrid(np.array(rec["origin"]), rec["voxel_size"], tuple(rec["shape"]))


def score_sample(run: dict, scorer, feats, sample: Sample, job: PredictJob, model_ids: list[int], image_size: int,
                 grid: VoxelGrid, category: str) -> tuple[object, np.ndarray]:
    """(volume DataArray, (N, H, W) fused per-view maps) of one sample whose features are ``feats``."""
    from mv3dad.scoring.knn import knn_score_views
    from mv3dad.scoring.pairs import random_sources, score_views

    n = len(sample.views)
    if run["method"] == "knn":
        s_img, s_dep = knn_score_views(scorer, feats.img, feats.dep, view_ids=model_ids)
    else:
        sources = random_sources(n, job.sources, seed=job.seed) if job.sources else None
        multi = scorer.categories is not None
        s_img, s_dep = score_views(scorer, feats.img, feats.dep, sources=sources,
                                   category=category if multi else None, view_ids=model_ids)
    acc = VolumeAccumulator(grid, reduce="max", backend=job.backend)
    maps = []
    for t, view in enumerate(sample.views):
        h, w = view.depth.shape
        fit = SquareFit(h, w, image_size)
        m = fuse(to_original(s_img[t], fit), to_original(s_dep[t], fit), job.fuse).numpy().astype(np.float32)
        fg = foreground_mask(view.depth, view.camera, remove_plane=job.remove_plane)
        masked = View(view.image, np.where(fg, view.depth, 0).astype(np.float32), view.camera)
        factor = job.supersample or supersample_factor(masked, grid.voxel_size)
        acc.add(m, supersample_view(masked, factor), where=f"{sample.instance_id} view {t}")
        maps.append(np.where(fg, m, np.nan).astype(np.float16))
    return acc.result(), np.stack(maps)


def run_predict(job: PredictJob, progress: bool = True) -> Path:
    """Score the test split; returns the output directory."""
    from rich.progress import Progress

    from mv3dad.export import save_volume

    if job.fuse not in FUSIONS:
        raise ValueError(f"--fuse {job.fuse!r}: choose one of {FUSIONS}")
    if job.grid not in ("gt", "category"):
        raise ValueError(f"--grid {job.grid!r}: choose 'gt' or 'category'")
    run, scorer = load_for_scoring(job.run)
    enc_cfg = EncoderConfig(**run["encoders_config"])
    img_enc, dep_enc = load_encoders(enc_cfg)
    now = {"image": encoder_identity(img_enc), "depth": encoder_identity(dep_enc)}
    if now != run["encoders"]:
        raise ValueError(f"{job.run}: the encoders found now differ from those the run was trained with: "
                         f"run {run['encoders']}, now {now}")
    extractor = FeatureExtractor(img_enc, dep_enc, enc_cfg)
    run_views = run["views"]
    sel = parse_views(job.views or "all", len(run_views))
    model_ids = sel  # indices into the model's views
    rig_ids = [run_views[i] for i in sel]
    ds = open_dataset(job.data)
    cats = job.categories or run["categories"]
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    timings = []
    with Progress(disable=not progress) as bar:
        for cat in cats:
            if cat not in run["categories"]:
                raise ValueError(f"category {cat!r} is not in the run (trained on {run['categories']})")
            if cat not in ds.categories:
                raise DataError(f"{job.data}: no category {cat!r} (has {ds.categories})")
            tests = ds[cat].test
            task = bar.add_task(f"predict {cat}", total=len(tests))
            results[cat] = {}
            (out / cat).mkdir(exist_ok=True)
            for sample in tests:
                t0 = time.perf_counter()
                sample = select_views(sample, rig_ids) if len(sample.views) > max(rig_ids) else sample
                check_rig(sample, [run["cameras"][cat][i] for i in sel], job.rig_tolerance_mm)
                feats = extractor(sample)
                grid = (VoxelGrid.from_dataarray(sample.gt) if job.grid == "gt" and sample.gt is not None
                        else _grid(run["grids"][cat]))
                vol, maps = score_sample(run, scorer, feats, sample, job, model_ids, enc_cfg.image_size, grid, cat)
                vol.attrs.update(category=cat, instance_id=sample.instance_id)
                for fmt in dict.fromkeys(["npz", *job.formats]):
                    save_volume(vol, out / cat / f"{sample.instance_id}.{fmt}", fmt)
                if job.save_maps or len(sample.views) == 1:  # single-view data is evaluated on its 2D map
                    _save_maps(out / cat / f"{sample.instance_id}_maps.npz", maps)
                score = float(np.nanmax(vol.values)) if np.isfinite(vol.values).any() else float("nan")
                dt = time.perf_counter() - t0
                timings.append(dt)
                results[cat][sample.instance_id] = {"score": score, "label": sample.label, "seconds": round(dt, 3)}
                bar.advance(task)
    record = {"run": str(job.run), "data": str(job.data), "job": dataclasses.asdict(job), "method": run["method"],
              "n_views": len(rig_ids), "rig_views": rig_ids,
              "scores": results, "mean_seconds_per_sample": float(np.mean(timings)) if timings else None}
    atomic_write(out / SCORES_FILE, json.dumps(record, indent=2), fsync=True)
    return out


def _save_maps(path: Path, maps: np.ndarray) -> None:
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, maps=maps)

