"""CLI commands: fit, predict, evaluate (imports of heavy libraries stay inside the commands so --help is fast).

Failures are reported by the one handler of :mod:`mv3dad.cli.main` (``error: <message>``, exit 2 for bad input).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import dataclasses

import typer

from mv3dad.config import ClassRef, field_default, field_help

# The config dataclasses whose fields the options mirror, read from their source (importing them loads torch).
FIT_CONFIG = "mv3dad.mapping.fit:FitConfig"
ENCODER_CONFIG = "mv3dad.pipeline.features:EncoderConfig"
FIT_JOB = "mv3dad.pipeline.fit:FitJob"
DEVIATION_CONFIG = "mv3dad.scoring.methods.deviation:DeviationConfig"
METRICS_CONFIG = "mv3dad.metrics.evaluate:MetricsConfig"

_UNSET = object()


def _option(cls: ClassRef, name: str, *decls: str, default=_UNSET, prefix: str = ""):
    """A ``typer.Option`` mirroring field ``name`` of ``cls``: help = the field's docstring entry, default = the
    field's default (``default=None`` keeps the option an override: unset = the config file's or the dataclass's
    value, whose default is then shown)."""
    field_value = field_default(cls, name)
    value = field_value if default is _UNSET else default
    if value is dataclasses.MISSING:
        raise ValueError(f"{cls}.{name}: no literal default; pass default=")
    if field_value is None or field_value is dataclasses.MISSING or isinstance(field_value, bool):
        shown = False  # flags and "None = ..." fields say their default in the help text
    else:
        shown = True if default is _UNSET else str(field_value)
    return typer.Option(value, *decls, help=prefix + field_help(cls, name), show_default=shown)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""

    @app.command()
    def fit(
        data: Path = typer.Argument(..., help="Dataset root (mv3dad layout, e.g. from `mv3dad synth`)."),
        category: str = typer.Option(..., "--category", "-c",
                                     help="Category to train on; several comma-separated with --multi-class."),
        out: Path = typer.Option(..., "--out", "-o", help=field_help(FIT_JOB, "out")),
        views: str = _option(FIT_JOB, "views"),
        setup: str = _option(FIT_JOB, "setup"),
        method: str = _option(FIT_JOB, "method"),
        reference_mesh: Optional[Path] = _option(DEVIATION_CONFIG, "reference_mesh"),
        registration: str = _option(DEVIATION_CONFIG, "registration"),
        appearance: bool = typer.Option(True, "--appearance/--no-appearance",
                                        help=field_help(DEVIATION_CONFIG, "appearance")),
        mapper: Optional[str] = _option(FIT_CONFIG, "mapper", default=None),
        no_modulation: bool = _option(FIT_CONFIG, "modulation", "--no-modulation", default=False,
                                      prefix="Negates: "),
        multi_class: bool = _option(FIT_CONFIG, "multi_class", "--multi-class", default=False),
        epochs: Optional[int] = _option(FIT_CONFIG, "epochs", default=None),
        image_size: Optional[int] = _option(ENCODER_CONFIG, "image_size", default=None),
        image_encoder: Optional[str] = _option(ENCODER_CONFIG, "image_encoder", default=None),
        image_weights: Optional[Path] = _option(ENCODER_CONFIG, "image_weights", default=None),
        depth_encoder: Optional[Path] = _option(ENCODER_CONFIG, "depth_encoder", default=None),
        random_init: bool = _option(ENCODER_CONFIG, "random_init", "--random-init", default=False),
        preprocess: Optional[str] = _option(ENCODER_CONFIG, "preprocess", default=None),
        precision: Optional[str] = _option(ENCODER_CONFIG, "precision", default=None),
        pair_grids: Optional[str] = _option(ENCODER_CONFIG, "pair_grids", default=None),
        config: Optional[Path] = typer.Option(None, help="Training config YAML: overrides of the FitConfig defaults "
                                              "(default: the packaged mv3dad/configs/modmap.yaml)."),
        no_cache: bool = _option(FIT_JOB, "cache_features", "--no-cache", default=False, prefix="Negates: "),
        coreset: Optional[float] = _option(FIT_JOB, "coreset"),
        resume: bool = _option(FIT_JOB, "resume", "--resume"),
        overwrite: bool = _option(FIT_JOB, "overwrite", "--overwrite"),
        copy_encoders: bool = typer.Option(True, "--copy-encoders/--no-copy-encoders",
                                           help=field_help(FIT_JOB, "copy_encoders")),
        allow_incomplete: bool = _option(FIT_JOB, "allow_incomplete", "--allow-incomplete"),
        device: Optional[str] = _option(FIT_CONFIG, "device", default=None),
    ) -> None:
        """Train ModMap (or a baseline) on a category's nominal training instance, all N x N view pairs."""
        from mv3dad.config import default_config, load_config
        from mv3dad.mapping.fit import FitConfig
        import time

        from mv3dad.pipeline.features import EncoderConfig
        from mv3dad.pipeline.fit import FitJob, fit_summary, run_fit
        from mv3dad.scoring.methods import list_methods
        from mv3dad.scoring.methods.deviation import DeviationConfig

        if method not in list_methods():
            raise ValueError(f"--method {method!r}: choose one of {list_methods()}")
        if reference_mesh is not None and not reference_mesh.is_file():
            raise FileNotFoundError(f"{reference_mesh}: no such reference mesh")
        dev_cfg = DeviationConfig(reference_mesh=str(reference_mesh) if reference_mesh else None,
                                  registration=registration, appearance=appearance)
        fit_cfg = load_config(FitConfig, config or default_config("modmap.yaml"), epochs=epochs, mapper=mapper,
                              multi_class=multi_class or None, modulation=False if no_modulation else None,
                              device=device)
        enc = load_config(EncoderConfig, None, image_encoder=image_encoder,
                          image_weights=str(image_weights) if image_weights else None,
                          depth_encoder=str(depth_encoder) if depth_encoder else None,
                          random_init=random_init, image_size=image_size, device=device, preprocess=preprocess,
                          precision=precision, pair_grids=pair_grids)
        job = FitJob(str(data), [c for c in category.split(",") if c], str(out), views=views, setup=setup,
                     method=method, encoders=enc, fit=fit_cfg, cache_features=not no_cache, coreset=coreset,
                     deviation=dev_cfg, resume=resume, overwrite=overwrite, copy_encoders=copy_encoders,
                     allow_incomplete=allow_incomplete)
        t0 = time.perf_counter()
        run_fit(job)
        typer.echo(fit_summary(out, time.perf_counter() - t0))

    @app.command()
    def predict(
        run: Path = typer.Argument(..., help="Run directory from `mv3dad fit`."),
        data: Path = typer.Argument(..., help="Dataset root with the test split."),
        out: Path = typer.Option(..., "--out", "-o", help="Output directory for volumes and scores.json."),
        views: Optional[str] = typer.Option(None, help="Subset of the run's views: all | K | i,j,... Also the "
                                            "view map of samples that lack views: i,j,... names the run views "
                                            "they hold, in order."),
        sources: Optional[int] = typer.Option(None, help="K random source views per target (cost study)."),
        fuse: str = typer.Option("max", help="Per-view modality fusion: max | mean | min | prod."),
        token_maps: str = typer.Option("inner", "--token-maps", help="Feature methods: how token maps reach the "
                                       "pixels: inner (valid tokens off the outline) | valid | all (plain "
                                       "bilinear)."),
        format: list[str] = typer.Option(["npz"], "--format", "-f",
                                         help="Volume formats (repeatable): npz npy zarr vdb ply."),
        save_maps: bool = typer.Option(False, "--save-maps", help="Also write per-view anomaly maps."),
        grid: str = typer.Option("category", help="category: the run's grid (all samples alike); gt: the GT's."),
        remove_plane: bool = typer.Option(False, "--remove-plane", help="RANSAC support-plane removal."),
        backend: str = typer.Option("auto", help="Back-projection backend: auto | numba | cupy | torch."),
        seed: int = typer.Option(0, help="Seed of the random source selection."),
        supersample: Optional[int] = typer.Option(
            None, help="Back-project at this many times the depth resolution (default: auto, <= half a voxel)."),
        depth_encoder: Optional[Path] = typer.Option(
            None, "--depth-encoder", help="Where the run's depth encoder directory is, when it is neither inside "
            "the run (fit copies it there) nor at its recorded path; its weights' sha256 must match the run's."),
        image_encoder: Optional[Path] = typer.Option(
            None, "--image-encoder", help="Same for an image encoder directory."),
        image_weights: Optional[Path] = typer.Option(
            None, "--image-weights", help="Same for the image weights file given to fit (sha256 checked)."),
        resume: bool = typer.Option(True, "--resume/--no-resume", help="Keep samples already scored in --out by "
                                    "the same run with the same options (default); --no-resume recomputes all."),
        allow_incomplete: bool = typer.Option(False, "--allow-incomplete", help="Read a benchmark that `mv3dad "
                                              "synth` has not finished (with a warning)."),
    ) -> None:
        """Score every test sample: N x N view-pair maps, min over sources, back-projection with max.

        A sample that cannot be scored is recorded in scores.json with its reason and skipped; the command then
        exits with status 1 after writing the others. A sample lacking views is scored with the views it has."""
        import time

        from mv3dad.pipeline.predict import PredictJob, predict_summary, run_predict

        paths = {"depth": depth_encoder, "image": image_encoder, "image_weights": image_weights}
        t0 = time.perf_counter()
        run_predict(PredictJob(str(run), str(data), str(out), views=views, sources=sources, fuse=fuse,
                               formats=list(format), save_maps=save_maps, grid=grid, remove_plane=remove_plane,
                               backend=backend, seed=seed, supersample=supersample, token_maps=token_maps,
                               encoder_paths={k: str(v) for k, v in paths.items() if v is not None} or None,
                               resume=resume, allow_incomplete=allow_incomplete))
        text, n_failed = predict_summary(out, time.perf_counter() - t0)
        typer.echo(text, err=bool(n_failed))
        if n_failed:
            typer.secho(f"error: {n_failed} sample(s) could not be scored (listed above and in "
                        f"{out / 'scores.json'})", fg=typer.colors.RED, err=True)
            raise typer.Exit(1)

    @app.command()
    def evaluate(
        pred: Path = typer.Argument(..., help="Prediction directory from `mv3dad predict`."),
        data: Path = typer.Option(..., "--data", help="Dataset root with the ground truth."),
        json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON here."),
        markdown: Optional[Path] = typer.Option(None, "--markdown", help="Write the table as Markdown here."),
        elements: str = _option(METRICS_CONFIG, "evaluate", "--evaluate"),
        mode: str = _option(METRICS_CONFIG, "mode"),
        allow_incomplete: bool = typer.Option(False, "--allow-incomplete", help="Read a benchmark that `mv3dad "
                                              "synth` has not finished (with a warning)."),
    ) -> None:
        """I-AUROC and V-AUPRO@1% / @30% per category and their mean, as a Markdown table.

        The predictions must have been made on DATA: each test instance's label and content digest recorded by
        predict are checked, and a mismatch is an error naming both datasets."""
        from mv3dad.io import atomic_write, check_output_file
        from mv3dad.pipeline.evaluate import run_evaluate

        if markdown is not None:
            check_output_file(markdown, "--markdown")
        _, table = run_evaluate(pred, data, json_out, evaluate=elements, mode=mode,
                                allow_incomplete=allow_incomplete)
        if markdown is not None:
            markdown.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(markdown, table + "\n")
        typer.echo(table)
