"""CLI commands: fit, predict, evaluate (imports of heavy libraries stay inside the commands so --help is fast).

Failures are reported by the one handler of :mod:`mv3dad.cli.main` (``error: <message>``, exit 2 for bad input).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""

    @app.command()
    def fit(
        data: Path = typer.Argument(..., help="Dataset root (mv3dad layout, e.g. from `mv3dad synth`)."),
        category: str = typer.Option(..., "--category", "-c",
                                     help="Category to train on; several comma-separated with --multi-class."),
        out: Path = typer.Option(..., "--out", "-o", help="Run directory to write."),
        views: str = typer.Option("all", help="Views: all | K (K spread evenly) | i,j,... (rig view indices)."),
        setup: str = typer.Option("real2real", help="real2real | synth2real: which training instance."),
        method: str = typer.Option("modmap", help="modmap | cfm | cfm_vc | cpir | modmap_lb3m | knn | deviation "
                                   "(distance to the nominal shape; needs no encoders)."),
        reference_mesh: Optional[Path] = typer.Option(
            None, help="deviation: the part's CAD mesh (STL/OBJ/PLY/GLB, mm, any pose); default: the fused "
                       "training scan."),
        registration: str = typer.Option("similarity", help="deviation: similarity (rotation, translation, "
                                         "scale) | rigid (a wrong scale is itself a defect)."),
        mapper: Optional[str] = typer.Option(None, help="cfm | lb3m (overrides the method's mapper)."),
        no_modulation: bool = typer.Option(False, "--no-modulation", help="Switch the FiLM view modulators off."),
        multi_class: bool = typer.Option(False, "--multi-class", help="One model for all given categories."),
        epochs: Optional[int] = typer.Option(None, help="Training epochs (config default 200)."),
        image_size: Optional[int] = typer.Option(None, help="Network input side, a multiple of 14."),
        image_encoder: Optional[str] = typer.Option(None, help="Image encoder: registry/timm NAME or a DIR."),
        image_weights: Optional[Path] = typer.Option(None, help="Local weights file for a named image encoder."),
        depth_encoder: Optional[Path] = typer.Option(
            None, help="DINO-Depth directory from `pretrain-depth`, or patch14 (the non-learned reference)."),
        random_init: bool = typer.Option(False, "--random-init",
                                         help="Allow untrained encoders (tests and ablations only)."),
        config: Optional[Path] = typer.Option(None, help="Training config YAML (default: the packaged mv3dad/configs/modmap.yaml)."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Do not keep extracted features on disk."),
        coreset: Optional[float] = typer.Option(None, help="knn: keep this fraction of tokens per view."),
        resume: bool = typer.Option(False, "--resume", help="Continue an interrupted training."),
        device: Optional[str] = typer.Option(None, help="auto | cpu | cuda."),
    ) -> None:
        """Train ModMap (or a baseline) on a category's nominal training instance, all N x N view pairs."""
        from mv3dad.config import default_config, load_config
        from mv3dad.mapping.fit import FitConfig
        from mv3dad.pipeline.features import EncoderConfig
        from mv3dad.pipeline.fit import FitJob, run_fit
        from mv3dad.scoring.methods import list_methods
        from mv3dad.scoring.methods.deviation import DeviationConfig

        if method not in list_methods():
            raise ValueError(f"--method {method!r}: choose one of {list_methods()}")
        if reference_mesh is not None and not reference_mesh.is_file():
            raise FileNotFoundError(f"{reference_mesh}: no such reference mesh")
        dev_cfg = DeviationConfig(reference_mesh=str(reference_mesh) if reference_mesh else None,
                                  registration=registration)
        fit_cfg = load_config(FitConfig, config or default_config("modmap.yaml"), epochs=epochs, mapper=mapper,
                              multi_class=multi_class or None, modulation=False if no_modulation else None,
                              device=device)
        enc = load_config(EncoderConfig, None, image_encoder=image_encoder,
                          image_weights=str(image_weights) if image_weights else None,
                          depth_encoder=str(depth_encoder) if depth_encoder else None,
                          random_init=random_init, image_size=image_size, device=device)
        job = FitJob(str(data), [c for c in category.split(",") if c], str(out), views=views, setup=setup,
                     method=method, encoders=enc, fit=fit_cfg, cache_features=not no_cache, coreset=coreset,
                     deviation=dev_cfg, resume=resume)
        run_fit(job)
        typer.echo(f"run written to {out}")

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
        format: list[str] = typer.Option(["npz"], "--format", "-f",
                                         help="Volume formats (repeatable): npz npy zarr vdb ply."),
        save_maps: bool = typer.Option(False, "--save-maps", help="Also write per-view anomaly maps."),
        grid: str = typer.Option("category", help="category: the run's grid (all samples alike); gt: the GT's."),
        remove_plane: bool = typer.Option(False, "--remove-plane", help="RANSAC support-plane removal."),
        backend: str = typer.Option("auto", help="Back-projection backend: auto | numba | cupy | torch."),
        seed: int = typer.Option(0, help="Seed of the random source selection."),
        supersample: Optional[int] = typer.Option(
            None, help="Back-project at this many times the depth resolution (default: auto, <= half a voxel)."),
    ) -> None:
        """Score every test sample: N x N view-pair maps, min over sources, back-projection with max."""
        from mv3dad.pipeline.predict import PredictJob, run_predict

        run_predict(PredictJob(str(run), str(data), str(out), views=views, sources=sources, fuse=fuse,
                               formats=list(format), save_maps=save_maps, grid=grid, remove_plane=remove_plane,
                               backend=backend, seed=seed, supersample=supersample))
        typer.echo(f"predictions written to {out}")

    @app.command()
    def evaluate(
        pred: Path = typer.Argument(..., help="Prediction directory from `mv3dad predict`."),
        data: Path = typer.Option(..., "--data", help="Dataset root with the ground truth."),
        json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON here."),
        markdown: Optional[Path] = typer.Option(None, "--markdown", help="Write the table as Markdown here."),
        elements: str = typer.Option("observed", "--evaluate",
                                     help="Evaluated voxels: observed (+ every GT voxel) | all | observed_only."),
        mode: str = typer.Option("exact", help="AUPRO: exact (every threshold) | mvtec (fixed thresholds, as CFM)."),
    ) -> None:
        """I-AUROC and V-AUPRO@1% / @30% per category and their mean, as a Markdown table."""
        from mv3dad.pipeline.evaluate import run_evaluate

        _, table = run_evaluate(pred, data, json_out, evaluate=elements, mode=mode)
        if markdown is not None:
            markdown.write_text(table + "\n")
        typer.echo(table)
