"""``mv3dad predict``: score every test sample of a dataset with a trained run and write its 3D anomaly volume.

A :class:`Predictor` loads a run once and scores samples with the run's method (:mod:`mv3dad.scoring.methods`).
Per sample: features once per view (both encoders; methods that need none skip this) -> the method's per-view
maps (e.g. ModMap: for each target view, the maps predicted from its source views, min over sources, streamed;
``deviation``: distances to the nominal shape at the pixels) -> token maps brought to the depth resolution through
valid tokens only (:func:`mv3dad.encoders.preprocess.to_original_valid`) -> background filter -> per-view modality
fusion (``max`` by default, which equals projecting both modalities and taking the max) -> back-projection into
the voxel grid with max -> the method's volume clean-up -> instance score = max of the volume.
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
from mv3dad.encoders import SquareFit
from mv3dad.encoders.preprocess import to_original, to_original_valid
from mv3dad.io.atomic import atomic_file, atomic_write
from mv3dad.geometry.camera import Camera
from mv3dad.geometry.grid import VoxelGrid
from mv3dad.pipeline.features import EncoderConfig, FeatureExtractor, encoder_identity, load_encoders
from mv3dad.pipeline.fit import parse_views, select_views
from mv3dad.pipeline.run import RunRecord, read_run
from mv3dad.scoring.background import foreground_mask
from mv3dad.scoring.fuse import FUSIONS, fuse
from mv3dad.scoring.methods import ScoreOptions, ViewScores, load_method
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
        valid_tokens: token maps reach the pixels through the valid tokens only (those that see enough measured
            depth; normalised convolution, :func:`mv3dad.encoders.preprocess.to_original_valid`); False = plain
            bilinear upsampling of every token, as before (ablation: half-background tokens then leak onto the
            outline).
        feature_cache: folder where frozen features are kept and reused (by later runs, other processes and
            view-subsampling studies); None = computed per call.
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
    valid_tokens: bool = True
    feature_cache: str | None = None


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


@dataclass
class Prediction:
    """One scored sample.

    Attributes:
        volume: the (X, Y, Z) score volume (``xarray.DataArray``, NaN = unobserved).
        maps: (N, H, W) float16 fused per-view maps at the depth resolution (NaN off the foreground).
        score: the instance score (the volume's max; NaN when nothing was observed).
        info: per-sample facts of the method (e.g. the registration) for ``scores.json``.
    """

    volume: object
    maps: np.ndarray
    score: float
    info: dict


class Predictor:
    """A fitted run, loaded once, that scores samples: ``predict_sample(sample) -> Prediction``.

    Args:
        run_dir: run directory written by ``mv3dad fit``.
        job: the scoring options (views, sources, fusion, grid, backend, ...); its ``run``/``data``/``out`` are
            not used here.
    """

    def __init__(self, run_dir: str | Path, job: PredictJob):
        if job.fuse not in FUSIONS:
            raise ValueError(f"--fuse {job.fuse!r}: choose one of {FUSIONS}")
        if job.grid not in ("gt", "category"):
            raise ValueError(f"--grid {job.grid!r}: choose 'gt' or 'category'")
        self.run_dir, self.job = Path(run_dir), job
        self.record: RunRecord = read_run(run_dir)
        self.method = load_method(self.record.method, self.run_dir, self.record)
        self.extractor = None
        self.enc_cfg = EncoderConfig(**self.record.encoders_config)
        if self.method.needs_features:
            img_enc, dep_enc = load_encoders(self.enc_cfg)
            now = {"image": encoder_identity(img_enc), "depth": encoder_identity(dep_enc)}
            if now != self.record.encoders:
                raise ValueError(f"{run_dir}: the encoders found now differ from those the run was trained with: "
                                 f"run {self.record.encoders}, now {now}")
            self.extractor = FeatureExtractor(img_enc, dep_enc, self.enc_cfg, cache_dir=job.feature_cache)
        run_views = self.record.views
        self.model_ids = parse_views(job.views or "all", len(run_views))  # indices into the model's views
        self.rig_ids = [run_views[i] for i in self.model_ids]

    @property
    def categories(self) -> list[str]:
        return list(self.record.categories)

    def prepare(self, sample: Sample) -> Sample:
        """The sample restricted to the selected rig views, its cameras checked against the run's."""
        cat = sample.category
        if cat not in self.record.categories:
            raise ValueError(f"category {cat!r} is not in the run (trained on {self.record.categories})")
        if len(sample.views) > max(self.rig_ids):
            sample = select_views(sample, self.rig_ids)
        check_rig(sample, [self.record.cameras[cat][i] for i in self.model_ids], self.job.rig_tolerance_mm)
        return sample

    def predict_sample(self, sample: Sample) -> Prediction:
        """Score one sample (restricted and checked with :meth:`prepare`)."""
        job, cat = self.job, sample.category
        sample = self.prepare(sample)
        feats = self.extractor(sample) if self.extractor is not None else None
        opts = ScoreOptions(view_ids=self.model_ids, category=cat, sources=job.sources, seed=job.seed)
        scores = self.method.score_views(sample, feats, opts)
        grid = (VoxelGrid.from_dataarray(sample.gt) if job.grid == "gt" and sample.gt is not None
                else _grid(self.record.grids[cat]))
        acc = VolumeAccumulator(grid, reduce="max", backend=job.backend)
        maps = []
        for t, view in enumerate(sample.views):
            m = self._pixel_map(scores, t, view, feats)
            fg = foreground_mask(view.depth, view.camera, remove_plane=job.remove_plane)
            masked = View(view.image, np.where(fg, view.depth, 0).astype(np.float32), view.camera)
            m = np.where(fg & np.isfinite(m), m, 0.0).astype(np.float32)
            factor = job.supersample or supersample_factor(masked, grid.voxel_size)
            acc.add(m, supersample_view(masked, factor), where=f"{sample.instance_id} view {t}")
            maps.append(np.where(fg, m, np.nan).astype(np.float16))
        vol = acc.result()
        vol.values[...] = self.method.finish_volume(vol.values)
        vol.attrs.update(category=cat, instance_id=sample.instance_id)
        score = float(np.nanmax(vol.values)) if np.isfinite(vol.values).any() else float("nan")
        return Prediction(vol, np.stack(maps), score, scores.info)

    def _pixel_map(self, scores: ViewScores, t: int, view: View, feats) -> np.ndarray:
        """(H, W) float32 map of view ``t`` at the depth resolution (NaN = unscored)."""
        if scores.pixels is not None:
            return np.asarray(scores.pixels[t], np.float32)
        h, w = view.depth.shape
        fit = SquareFit(h, w, self.enc_cfg.image_size)
        s_img, s_dep = scores.tokens
        if not self.job.valid_tokens:
            return fuse(to_original(s_img[t], fit), to_original(s_dep[t], fit), self.job.fuse).numpy().astype(np.float32)
        valid = feats.valid[t]
        m = fuse(to_original_valid(s_img[t], valid, fit), to_original_valid(s_dep[t], valid, fit), self.job.fuse)
        m = m.numpy().astype(np.float32)
        if np.isfinite(m).any():  # pixels no valid token reaches score as the view's least anomalous surface
            m = np.where(np.isfinite(m), m, np.nanmin(m))
        return m


def run_predict(job: PredictJob, progress: bool = True, shard: tuple[int, int] | None = None) -> Path:
    """Score the test split; returns the output directory.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) and without ``shard`` the samples are spread over the processes and
    rank 0 merges one ``scores.json`` (:func:`mv3dad.pipeline.distributed.predict_distributed`). ``shard=(rank,
    world)`` scores only the samples ``i`` (in dataset order over the categories) with ``i % world == rank`` and
    writes their record to ``scores.rank<rank>.json`` (:func:`~mv3dad.pipeline.distributed.shard_scores_name`).
    """
    from rich.progress import Progress

    from mv3dad.export import save_volume
    from mv3dad.pipeline import distributed

    if shard is None and distributed.world_size() > 1:
        return distributed.predict_distributed(job, progress)
    rank, world = shard or (0, 1)
    predictor = Predictor(job.run, job)
    ds = open_dataset(job.data)
    cats = job.categories or predictor.categories
    for cat in cats:
        if cat not in predictor.categories:
            raise ValueError(f"category {cat!r} is not in the run (trained on {predictor.categories})")
        if cat not in ds.categories:
            raise DataError(f"{job.data}: no category {cat!r} (has {ds.categories})")
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    timings = []
    n_seen = 0
    with Progress(disable=not progress) as bar:
        for cat in cats:
            tests = ds[cat].test
            task = bar.add_task(f"predict {cat}", total=len(tests))
            results[cat] = {}
            (out / cat).mkdir(exist_ok=True)
            for i in range(len(tests)):
                if (n_seen + i) % world != rank:  # another process's sample (not loaded)
                    bar.advance(task)
                    continue
                sample = tests[i]
                t0 = time.perf_counter()
                pred = predictor.predict_sample(sample)
                for fmt in dict.fromkeys(["npz", *job.formats]):
                    save_volume(pred.volume, out / cat / f"{sample.instance_id}.{fmt}", fmt)
                if job.save_maps or len(sample.views) == 1:  # single-view data is evaluated on its 2D map
                    _save_maps(out / cat / f"{sample.instance_id}_maps.npz", pred.maps)
                dt = time.perf_counter() - t0
                timings.append(dt)
                results[cat][sample.instance_id] = {"score": pred.score, "label": sample.label,
                                                    "seconds": round(dt, 3), **pred.info}
                bar.advance(task)
            n_seen += len(tests)
    record = {"run": str(job.run), "data": str(job.data), "job": dataclasses.asdict(job),
              "method": predictor.record.method, "n_views": len(predictor.rig_ids), "rig_views": predictor.rig_ids,
              "scores": results, "mean_seconds_per_sample": float(np.mean(timings)) if timings else None}
    if world > 1:
        record["seconds"] = timings
    name = SCORES_FILE if world == 1 else distributed.shard_scores_name(rank)
    atomic_write(out / name, json.dumps(record, indent=2), fsync=True)
    return out


def _save_maps(path: Path, maps: np.ndarray) -> None:
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, maps=maps)

