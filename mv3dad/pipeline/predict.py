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
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from mv3dad.data import open_dataset
from mv3dad.data.scene import DataError, Sample, View
from mv3dad.encoders import SquareFit
from mv3dad.errors import Mv3dadError
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
TOKEN_MAPS = ("inner", "valid", "all")


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
        token_maps: how token maps reach the pixels: ``"inner"`` (default): through the valid tokens (enough
            measured depth) that are not on the outline (all 8 neighbours valid too), by normalised convolution
            (:func:`mv3dad.encoders.preprocess.to_original_valid`); ``"valid"``: through every valid token, outline
            tokens included; ``"all"``: plain bilinear upsampling of every token (before validity-aware maps;
            half-background tokens then leak onto the outline). Pixels no used token reaches score as the view's
            least anomalous surface.
        feature_cache: folder where frozen features are kept and reused (by later runs, other processes and
            view-subsampling studies); None = computed per call.
        encoder_paths: where to find the run's file-backed encoders when they are neither inside the run nor at
            their recorded path: ``{"image" | "depth" | "image_weights": path}``; the weights' sha256 must match
            the run's (:func:`mv3dad.pipeline.encoder_files.resolve_encoder_config`).
        resume: keep the samples already scored in ``out`` by the same run with the same options (their volume and
            per-sample record ``<out>/<category>/<instance>.json`` exist); False recomputes every sample.
        allow_incomplete: read a benchmark that ``mv3dad synth`` has not finished (with a warning).
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
    token_maps: str = "inner"
    feature_cache: str | None = None
    encoder_paths: dict | None = None
    resume: bool = True
    allow_incomplete: bool = False


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
        check_options(job)
        self.run_dir, self.job = Path(run_dir), job
        self.record: RunRecord = read_run(run_dir)
        self.method = load_method(self.record.method, self.run_dir, self.record)
        self.extractor = None
        self.enc_cfg = EncoderConfig.from_record(self.record.encoders_config)
        if self.method.needs_features:
            from mv3dad.pipeline.encoder_files import resolve_encoder_config

            self.enc_cfg = resolve_encoder_config(self.enc_cfg, self.run_dir, self.record.encoder_files,
                                                  job.encoder_paths)
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
        return self.prepare_views(sample)[0]

    def prepare_views(self, sample: Sample) -> tuple[Sample, list[int], str | None]:
        """The sample restricted to the selected rig views and checked against the run's cameras, with the model
        view index of each of its views and, for a scan that lacks views, a message saying which are scored.

        A sample with fewer views than the run (and no ``--views`` given) gets its view map from its file names
        (``meta["view_indices"]``, see :func:`mv3dad.data.layout.read_sample`) when they agree with the run's
        cameras, else from its cameras (each matched to the run camera within ``rig_tolerance_mm``).
        """
        cat = sample.category
        if cat not in self.record.categories:
            raise ValueError(f"category {cat!r} is not in the run (trained on {self.record.categories})")
        cams = self.record.cameras[cat]
        n_views, rig_views = len(sample.views), self.record.views
        if self.job.views is None and n_views < len(self.model_ids):
            ids = self._infer_view_map(sample, cams)
            check_rig(sample, [cams[i] for i in ids], self.job.rig_tolerance_mm)
            missing = [rig_views[i] for i in self.model_ids if i not in ids]
            note = (f"{cat}/{sample.instance_id}: scored with the {len(ids)} views it has (rig views "
                    f"{[rig_views[i] for i in ids]}); missing rig views {missing}")
            return sample, ids, note
        if n_views > max(self.rig_ids):
            sample = select_views(sample, self.rig_ids)
        check_rig(sample, [cams[i] for i in self.model_ids], self.job.rig_tolerance_mm)
        return sample, list(self.model_ids), None

    def _infer_view_map(self, sample: Sample, cams: list[dict]) -> list[int]:
        """Model view indices of a sample's views (see :meth:`prepare_views`)."""
        run_views = self.record.views
        files = sample.meta.get("view_indices")
        if isinstance(files, list) and len(files) == len(sample.views) and all(f in run_views for f in files):
            ids = [run_views.index(f) for f in files]
            if all(np.linalg.norm(Camera.from_dict(cams[i]).center - v.camera.center) <= self.job.rig_tolerance_mm
                   for i, v in zip(ids, sample.views)):
                return ids
        centers = np.stack([Camera.from_dict(c, where=f"run camera {i}").center for i, c in enumerate(cams)])
        ids = []
        for t, v in enumerate(sample.views):
            d = np.linalg.norm(centers - v.camera.center, axis=1)
            i = int(np.argmin(d))
            if d[i] > self.job.rig_tolerance_mm or i in ids or i not in self.model_ids:
                raise DataError(f"{sample.category}/{sample.instance_id}: {len(sample.views)} views, the run has "
                                f"{len(self.model_ids)}; view {t}'s camera matches no run camera within "
                                f"{self.job.rig_tolerance_mm} mm: name the run views it holds with --views i,j,...")
            ids.append(i)
        return ids

    def predict_sample(self, sample: Sample) -> Prediction:
        """Score one sample (restricted and checked with :meth:`prepare_views`)."""
        job, cat = self.job, sample.category
        sample, model_ids, note = self.prepare_views(sample)
        feats = self.extractor(sample) if self.extractor is not None else None
        opts = ScoreOptions(view_ids=model_ids, category=cat, sources=job.sources, seed=job.seed)
        scores = self.method.score_views(sample, feats, opts)
        grid = (VoxelGrid.from_dataarray(sample.gt) if job.grid == "gt" and sample.gt is not None
                else _grid(self.record.grids[cat]))
        acc = VolumeAccumulator(grid, reduce="max", backend=job.backend)
        maps = []
        for t, view in enumerate(sample.views):
            m = self._pixel_map(scores, t, view, feats)
            fg = foreground_mask(view.depth, view.camera, remove_plane=job.remove_plane)
            if scores.pixels is not None:  # a pixel-map method also says which pixels are the part (NaN: not)
                fg |= np.isfinite(m) & (view.depth > 0)
            masked = View(view.image, np.where(fg, view.depth, 0).astype(np.float32), view.camera)
            m = np.where(fg & np.isfinite(m), m, 0.0).astype(np.float32)
            factor = job.supersample or supersample_factor(masked, grid.voxel_size)
            acc.add(m, supersample_view(masked, factor), where=f"{sample.instance_id} view {t}")
            maps.append(np.where(fg, m, np.nan).astype(np.float16))
        vol = acc.result()
        vol.values[...] = self.method.finish_volume(vol.values)
        vol.attrs.update(category=cat, instance_id=sample.instance_id)
        score = float(np.nanmax(vol.values)) if np.isfinite(vol.values).any() else float("nan")
        info = dict(scores.info)
        if note is not None:
            info.update(views_scored=[self.record.views[i] for i in model_ids], note=note)
        return Prediction(vol, np.stack(maps), score, info)

    def _pixel_map(self, scores: ViewScores, t: int, view: View, feats) -> np.ndarray:
        """(H, W) float32 map of view ``t`` at the depth resolution (NaN = unscored)."""
        if scores.pixels is not None:
            return np.asarray(scores.pixels[t], np.float32)
        h, w = view.depth.shape
        fit = SquareFit(h, w, self.enc_cfg.image_size)
        s_img, s_dep = scores.tokens
        if self.job.token_maps == "all":
            return fuse(to_original(s_img[t], fit), to_original(s_dep[t], fit), self.job.fuse).numpy().astype(np.float32)
        valid = feats.valid[t]
        if self.job.token_maps == "inner":
            valid = torch.as_tensor(ndimage.binary_erosion(valid.numpy(), np.ones((3, 3), bool), border_value=0))
        m = fuse(to_original_valid(s_img[t], valid, fit), to_original_valid(s_dep[t], valid, fit), self.job.fuse)
        m = m.numpy().astype(np.float32)
        if np.isfinite(m).any():  # pixels no valid token reaches score as the view's least anomalous surface
            m = np.where(np.isfinite(m), m, np.nanmin(m))
        return m


def run_predict(job: PredictJob, progress: bool = True, shard: tuple[int, int] | None = None) -> Path:
    """Score the test split; returns the output directory.

    The run, the dataset, the categories and the output folder are checked before any encoder is loaded and
    before anything is written. Every sample that can be scored is: a sample that fails (unreadable files, NaN
    depth, a rig mismatch, ...) is recorded in ``scores.json`` with ``"error"`` and its reason, and the others
    are written (:func:`predict_failures` lists them; the command exits non-zero). With ``job.resume`` (the
    default) a sample whose volume and per-sample record (``<out>/<category>/<instance>.json``) exist for the
    same run, options and sample content is not recomputed. Each entry records the sample's label and content
    digest (:func:`sample_digest`), which ``evaluate`` checks against the dataset it is given.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) and without ``shard`` the samples are spread over the processes and
    rank 0 merges one ``scores.json`` (:func:`mv3dad.pipeline.distributed.predict_distributed`). ``shard=(rank,
    world)`` scores only the samples ``i`` (in dataset order over the categories) with ``i % world == rank`` and
    writes their record to ``scores.rank<rank>.json`` (:func:`~mv3dad.pipeline.distributed.shard_scores_name`).
    """
    from rich.progress import Progress

    from mv3dad.pipeline import distributed

    if shard is None and distributed.world_size() > 1:
        return distributed.predict_distributed(job, progress)
    rank, world = shard or (0, 1)
    ds, cats, out = check_predict_inputs(job)
    predictor = Predictor(job.run, job)
    out.mkdir(parents=True, exist_ok=True)
    key = options_key(job)
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
                iid, entry = _predict_one(predictor, tests, i, out / cat, key)
                if "seconds" in entry and not entry.get("reused"):
                    timings.append(entry["seconds"])
                if entry.get("note") and not entry.get("reused"):
                    bar.console.print(f"note: {entry['note']}")
                results[cat][iid] = entry
                bar.advance(task)
            n_seen += len(tests)
    record = {"run": str(job.run), "data": str(job.data), "job": dataclasses.asdict(job),
              "method": predictor.record.method, "n_views": len(predictor.rig_ids), "rig_views": predictor.rig_ids,
              "dataset": {"path": str(Path(job.data).resolve()), "name": Path(job.data).resolve().name},
              "scores": results, "mean_seconds_per_sample": float(np.mean(timings)) if timings else None}
    if world > 1:
        record["seconds"] = timings
    name = SCORES_FILE if world == 1 else distributed.shard_scores_name(rank)
    atomic_write(out / name, json.dumps(record, indent=2), fsync=True)
    return out


def check_options(job: PredictJob) -> None:
    """Clear errors for scoring options out of range."""
    if job.fuse not in FUSIONS:
        raise ValueError(f"--fuse {job.fuse!r}: choose one of {FUSIONS}")
    if job.grid not in ("gt", "category"):
        raise ValueError(f"--grid {job.grid!r}: choose 'gt' or 'category'")
    if job.token_maps not in TOKEN_MAPS:
        raise ValueError(f"token_maps {job.token_maps!r}: choose one of {TOKEN_MAPS}")


def check_predict_inputs(job: PredictJob):
    """``(dataset, categories, out)`` after checking the run record, the dataset, the categories, the options and
    the output folder; nothing is loaded beyond ``run.json`` and nothing is created."""
    from mv3dad.export import FORMATS
    from mv3dad.io import check_output_dir

    check_options(job)
    bad = [f for f in job.formats if f not in FORMATS]
    if bad:
        raise ValueError(f"--format {bad[0]!r}: choose among {list(FORMATS)}")
    rec = read_run(job.run)
    parse_views(job.views or "all", len(rec.views))
    ds = open_dataset(job.data, allow_incomplete=job.allow_incomplete)
    cats = job.categories or list(rec.categories)
    for cat in cats:
        if cat not in rec.categories:
            raise ValueError(f"category {cat!r} is not in the run (trained on {rec.categories})")
        if cat not in ds.categories:
            raise DataError(f"{job.data}: no category {cat!r} (has {ds.categories})")
    return ds, cats, check_output_dir(job.out, "--out")


_NOT_OPTIONS = ("run", "data", "out", "categories", "backend", "feature_cache", "encoder_paths", "resume",
                "allow_incomplete")


def options_key(job: PredictJob) -> str:
    """What a kept sample must share with this job: the run's record and every option that changes a volume."""
    opts = {k: v for k, v in dataclasses.asdict(job).items() if k not in _NOT_OPTIONS}
    run_json = (Path(job.run) / "run.json").read_bytes()
    h = hashlib.sha256(run_json)
    h.update(json.dumps(opts, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def sample_digest(sample: Sample) -> str:
    """A content digest of a sample: its metadata, cameras, view shapes and a strided subsample of every depth map
    and image (cheap on 12 Mpx scans, and different for any other scan or instance)."""
    h = hashlib.sha256(json.dumps(sample.meta, sort_keys=True, default=str).encode())
    for v in sample.views:
        h.update(json.dumps(v.camera.to_dict(), sort_keys=True, default=str).encode())
        for a in (v.depth, v.image):
            a = np.ascontiguousarray(a)
            h.update(f"{a.shape}{a.dtype}".encode())
            h.update(np.ascontiguousarray(a.reshape(-1)[::97]).tobytes())
    return h.hexdigest()[:16]


PREDICT_ERRORS = (Mv3dadError, ValueError, OSError, RuntimeError, MemoryError)
"""Failures of one sample that ``predict`` records and skips (anything else stops the command)."""


def _predict_one(predictor: "Predictor", tests, i: int, folder: Path, key: str) -> tuple[str, dict]:
    """Score test sample ``i`` into ``folder`` (or keep its earlier result); returns ``(instance id, entry)``."""
    from mv3dad.export import save_volume

    job = predictor.job
    iid = tests.ids[i] if hasattr(tests, "ids") else str(i)
    t0 = time.perf_counter()
    try:
        sample = tests[i]
    except PREDICT_ERRORS as e:
        return iid, {"score": None, "label": None, "error": str(e)}
    iid = sample.instance_id
    digest = sample_digest(sample)
    fmts = list(dict.fromkeys(["npz", *job.formats]))
    files = [folder / f"{iid}.{fmt}" for fmt in fmts]
    if job.save_maps or len(sample.views) == 1:
        files.append(folder / f"{iid}_maps.npz")
    kept = _kept_entry(folder / f"{iid}.json", key, digest, files) if job.resume else None
    if kept is not None:
        return iid, {**kept, "reused": True}
    try:
        pred = predictor.predict_sample(sample)
        for fmt in fmts:
            save_volume(pred.volume, folder / f"{iid}.{fmt}", fmt)
        if job.save_maps or len(sample.views) == 1:  # single-view data is evaluated on its 2D map
            _save_maps(folder / f"{iid}_maps.npz", pred.maps)
    except PREDICT_ERRORS as e:
        return iid, {"score": None, "label": sample.label, "digest": digest, "error": str(e)}
    entry = {"score": pred.score, "label": sample.label, "digest": digest,
             "seconds": round(time.perf_counter() - t0, 3), **pred.info}
    atomic_write(folder / f"{iid}.json", json.dumps({"key": key, "digest": digest, "entry": entry}, indent=2))
    return iid, entry


def _kept_entry(path: Path, key: str, digest: str, files: list[Path]) -> dict | None:
    """The entry of a sample scored before with the same options and content, whose files all exist."""
    if not path.is_file() or not all(f.is_file() for f in files):
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("key") != key or doc.get("digest") != digest:
        return None
    return doc.get("entry")


def predict_failures(scores: dict) -> list[tuple[str, str, str]]:
    """``(category, instance, reason)`` of every sample a ``scores.json`` record marks as failed."""
    return [(cat, iid, e["error"]) for cat, inst in scores.get("scores", {}).items() for iid, e in inst.items()
            if e.get("error")]


def predict_summary(out: str | Path, seconds: float | None = None) -> tuple[str, int]:
    """``(text, number of failed samples)`` of the ``scores.json`` in ``out`` (printed at the end of predict)."""
    from mv3dad.io.read import read_json

    rec = read_json(Path(out) / SCORES_FILE, "prediction scores")
    lines = [f"predictions written to {out}" + (f" in {seconds:.1f} s" if seconds is not None else "")]
    failed = predict_failures(rec)
    for cat, inst in rec["scores"].items():
        ok = {i: e for i, e in inst.items() if not e.get("error")}
        reused = sum(bool(e.get("reused")) for e in ok.values())
        finite = [e["score"] for e in ok.values() if e.get("score") is not None and np.isfinite(e["score"])]
        rng = f", instance scores {min(finite):.4g} .. {max(finite):.4g}" if finite else ""
        lines.append(f"  {cat}: {len(ok)}/{len(inst)} samples scored ({reused} kept from an earlier run with the "
                     f"same run and options){rng}" if reused else f"  {cat}: {len(ok)}/{len(inst)} samples "
                     f"scored{rng}")
        notes = [e["note"] for e in ok.values() if e.get("note")]
        lines += [f"  note: {n}" for n in notes]
    if any(e.get("reused") for inst in rec["scores"].values() for e in inst.values()):
        lines.append("  note: samples already scored were kept (pass --no-resume to recompute them)")
    for cat, iid, reason in failed:
        lines.append(f"  FAILED {cat}/{iid}: {reason}")
    if failed:
        lines.append(f"  {len(failed)} sample(s) failed and were skipped; fix them and rerun the same command (the "
                     f"others are kept)")
    else:
        lines.append(f"  next: mv3dad evaluate {out} --data {rec.get('data')}")
    return "\n".join(lines), len(failed)


def _save_maps(path: Path, maps: np.ndarray) -> None:
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, maps=maps)

