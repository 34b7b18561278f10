"""``mv3dad fit``: train a ModMap / CFM / CPIR model (or build a memory bank) on a category's nominal training data.

A run directory holds ``run.json`` (the job: data, category, setup, views, encoders and their weight hashes,
preprocessing, the category's voxel grid) and the model checkpoint (:mod:`mv3dad.mapping.checkpoint`) or, for the
``knn`` method, the memory bank (``memory.safetensors``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mv3dad.data import open_dataset
from mv3dad.data.scene import DataError, Sample
from mv3dad.mapping.fit import FeatureSet, FitConfig
from mv3dad.pipeline.features import EncoderConfig, FeatureExtractor, encoder_identity, load_encoders
from mv3dad.pipeline.run import RUN_FILE, RUN_FORMAT, RunRecord, read_run  # noqa: F401 (re-exported)
from mv3dad.scoring.methods import FitContext, create_method
from mv3dad.scoring.methods.deviation import DeviationConfig
from mv3dad.volume import grid_for_views


@dataclass
class FitJob:
    """What ``mv3dad fit`` trains.

    Attributes:
        data: dataset root (mv3dad layout, e.g. written by ``mv3dad synth``).
        categories: the categories to train on; several with ``fit.multi_class`` give one multi-class model,
            otherwise exactly one.
        out: the run directory.
        views: ``"all"``, ``"K"`` (K views spread evenly over the rig) or ``"i,j,..."`` (rig view indices).
        setup: ``real2real`` (train on the real-like nominal instance) or ``synth2real`` (on the clean CAD
            rendering); chosen by the training instances' ``meta["setup"]`` where the data records it.
        method: a registered method (:func:`mv3dad.scoring.list_methods`): ``modmap``, ``cfm``, ``cfm_vc``,
            ``cpir``, ``modmap_lb3m`` (crossmodal mapping), ``knn`` (PatchCore-style per-view memory bank on the
            same features) or ``deviation`` (distance to the nominal shape; needs no encoders).
        encoders: the frozen encoders and the input size.
        fit: the mapping's training config (the preset's fields are applied over it).
        cache_features: keep the extracted features on disk under ``<out>/features`` (reused by ``--resume``).
        feature_cache: a folder of frozen features shared with other runs and with ``predict`` (its cache keys name
            the encoders and each sample's content); None = ``<out>/features`` when ``cache_features``.
        voxel_size: voxel edge in mm of the category grid (the grid of every predicted volume).
        grid_margin: mm added around the training views' bounding box for the category grid, to hold test
            instances that sit a little differently (pose and scale variation).
        coreset: ``knn`` only: keep this fraction (float) or number (int) of tokens per view; None = all.
        deviation: options of the ``deviation`` method (reference mesh, registration, ...).
        resume: continue an interrupted training from the run directory's checkpoint.
        overwrite: replace a finished run (one with ``run.json``) in ``out``; without it (or ``resume``) that is
            an error.
        copy_encoders: copy encoder directories (``--depth-encoder DIR``, ``--image-encoder DIR``) into
            ``<out>/encoders/`` so that the run is self-contained (see :mod:`mv3dad.pipeline.encoder_files`).
        allow_incomplete: read a benchmark that ``mv3dad synth`` has not finished (with a warning).
    """

    data: str
    categories: list[str]
    out: str
    views: str = "all"
    setup: str = "real2real"
    method: str = "modmap"
    encoders: EncoderConfig = field(default_factory=EncoderConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    cache_features: bool = True
    feature_cache: str | None = None
    voxel_size: float = 2.0
    grid_margin: float = 20.0
    coreset: float | int | None = None
    deviation: DeviationConfig = field(default_factory=DeviationConfig)
    resume: bool = False
    overwrite: bool = False
    copy_encoders: bool = True
    allow_incomplete: bool = False


def parse_views(spec: str, n_views: int) -> list[int]:
    """``"all"`` -> 0..N-1; ``"K"`` -> K indices spread evenly; ``"i,j,..."`` -> those indices (checked)."""
    spec = str(spec).strip()
    if spec == "all":
        return list(range(n_views))
    try:
        if "," not in spec:
            k = int(spec)
            if not 1 <= k <= n_views:
                raise ValueError
            return sorted({int(round(x)) for x in np.linspace(0, n_views, k, endpoint=False)})
        ids = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--views {spec!r}: expected 'all', a count in 1..{n_views}, or indices like 0,3,5") from None
    bad = [i for i in ids if not 0 <= i < n_views]
    if bad or len(set(ids)) != len(ids) or not ids:
        raise ValueError(f"--views {spec!r}: indices must be distinct and in 0..{n_views - 1}")
    return ids


def select_views(sample: Sample, ids: list[int]) -> Sample:
    """The sample restricted to the rig views ``ids`` (clear error when it has fewer views)."""
    if max(ids) >= len(sample.views):
        raise DataError(f"{sample.category}/{sample.instance_id}: has {len(sample.views)} views, "
                        f"the run uses rig views {ids}")
    return dataclasses.replace(sample, views=[sample.views[i] for i in ids])


def training_samples(ds, category: str, setup: str) -> list[Sample]:
    """The nominal training instances of ``category`` for ``setup``."""
    if category not in ds.categories:
        raise DataError(f"{ds.root}: no category {category!r} (has {ds.categories})")
    train = [s for s in ds[category].train if s.label == "nominal"]
    tagged = [s for s in train if s.meta.get("setup")]
    if tagged:
        train = [s for s in tagged if s.meta["setup"] == setup]
    if not train:
        raise DataError(f"{ds.root}/{category}/train: no nominal training instance for setup {setup!r}")
    return train


def check_fit_target(job: FitJob) -> Path:
    """Refuse to write into a finished run (``run.json`` present) unless ``resume`` or ``overwrite``; check that
    ``out`` can be written. Creates nothing."""
    from mv3dad.io import check_output_dir

    out = check_output_dir(job.out, "--out")
    if (out / RUN_FILE).is_file() and not (job.resume or job.overwrite):
        raise FileExistsError(f"{out}: holds a finished run ({RUN_FILE}); pass --overwrite to replace it, --resume "
                              f"to continue its training, or choose another --out")
    return out


def run_fit(job: FitJob, progress: bool = True) -> Path:
    """Train and write the run directory; returns it.

    Everything a user can get wrong is checked before the encoders are loaded and before ``out`` is created: the
    method, the categories, the dataset and its training instances, the views, the output folder.
    """
    method = create_method(job.method)
    if len(job.categories) != 1 and not job.fit.multi_class:
        raise ValueError(f"{len(job.categories)} categories given: pass exactly one, or --multi-class")
    ds = open_dataset(job.data, allow_incomplete=job.allow_incomplete)
    samples, grids, view_ids, cameras = {}, {}, None, {}
    for cat in job.categories:
        train = training_samples(ds, cat, job.setup)
        ids = parse_views(job.views, len(train[0].views))
        if view_ids is None or not job.fit.multi_class:
            view_ids = ids
        samples[cat] = [select_views(s, ids) for s in train]
        grid = grid_for_views(train[0].views, voxel_size=job.voxel_size, margin=job.grid_margin)
        grids[cat] = {"origin": grid.origin.tolist(), "voxel_size": grid.voxel_size, "shape": list(grid.shape)}
        cameras[cat] = [v.camera.to_dict() for v in samples[cat][0].views]
    out = check_fit_target(job)
    if job.overwrite and (out / RUN_FILE).is_file():
        (out / RUN_FILE).unlink()  # the run is unfinished until the new run.json is written
    out.mkdir(parents=True, exist_ok=True)
    features: dict[str, list[FeatureSet]] = {}
    encoders = None
    encoder_files = None
    if method.needs_features:
        from mv3dad.pipeline.encoder_files import record_encoder_files

        img_enc, dep_enc = load_encoders(job.encoders)
        encoder_files = record_encoder_files(job.encoders, out, copy=job.copy_encoders)
        extractor = FeatureExtractor(img_enc, dep_enc, job.encoders,
                                     cache_dir=job.feature_cache or (out / "features" if job.cache_features else None))
        for cat, ss in samples.items():
            features[cat] = [extractor(s, split="train") for s in ss]
        encoders = {"image": encoder_identity(img_enc), "depth": encoder_identity(dep_enc)}
    meta = {"encoders": encoders, "image_size": job.encoders.image_size, "views": view_ids,
            "categories": job.categories, "setup": job.setup}
    method.fit(FitContext(out, samples, features, job, meta, resume=job.resume, progress=progress))
    RunRecord(format=RUN_FORMAT, method=job.method, data=str(job.data), categories=job.categories,
              setup=job.setup, views=view_ids, encoders_config=dataclasses.asdict(job.encoders),
              encoders=encoders, grids=grids, cameras=cameras,
              fit=dataclasses.asdict(job.fit), coreset=job.coreset, encoder_files=encoder_files).write(out)
    return out


def fit_summary(out: str | Path, seconds: float | None = None) -> str:
    """A few lines saying what the run in ``out`` holds (printed at the end of ``mv3dad fit``)."""
    rec = read_run(out)
    enc = rec.encoders_config
    lines = [f"run written to {out}" + (f" in {seconds:.1f} s" if seconds is not None else ""),
             f"  method {rec.method}, categories {', '.join(rec.categories)}, {len(rec.views)} views "
             f"{rec.views}, setup {rec.setup}"]
    if rec.encoders:
        lines.append(f"  encoders: image {enc['image_encoder']}, depth {enc['depth_encoder']}, "
                     f"input {enc['image_size']} px")
        for role in ("image", "depth"):
            if str((rec.encoders.get(role) or {}).get("weights", "")).startswith("random"):
                lines.append(f"  note: the {role} encoder is UNTRAINED (--random-init, no weights): the scores "
                             f"only serve tests and ablations")
        for key, e in (rec.encoder_files or {}).items():
            where = f"copied to {e['stored']}" if e.get("stored") else f"at {e['path']}"
            lines.append(f"  {key} encoder {e['name']} sha256 {e['sha256'][:12]}... ({where})")
    lines.append(f"  next: mv3dad predict {out} DATA --out PRED")
    return "\n".join(lines)
