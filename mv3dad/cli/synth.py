"""CLI commands: synth (imports of heavy libraries stay inside the commands so that --help is fast).

Failures are reported by the one handler of :mod:`mv3dad.cli.main` (``error: <message>``, exit 2 for bad input).
"""

from pathlib import Path
from typing import List, Optional

import typer


def synth(
    out: Path = typer.Argument(..., help="output folder of the benchmark (mv3dad layout)"),
    categories: Optional[str] = typer.Option(
        None, "--categories", help="comma-separated procedural categories: stool,bin,vase,cabinet,container "
                                   "(default: all; none when only --mesh is given)"),
    mesh: Optional[List[Path]] = typer.Option(
        None, "--mesh", help="a user CAD mesh (STL/OBJ/PLY/GLB) as an extra category named after the file; "
                             "repeatable"),
    views: Optional[int] = typer.Option(None, "--views", min=1, help="views of the hemisphere rig (12 or 36 "
                                                                      "are SiM3D's; default 12)"),
    rig: Optional[str] = typer.Option(None, "--rig", help="rig name (hemisphere12, hemisphere36) or rig YAML "
                                                          "file; overrides --views"),
    image_size: Optional[int] = typer.Option(None, "--image-size", min=16, help="square image side in pixels "
                                                                                  "(default 256)"),
    train_instances: Optional[int] = typer.Option(None, "--train-instances", min=1,
                                                  help="nominal training instances per category (default 1)"),
    test_instances: Optional[int] = typer.Option(None, "--test-instances", min=0,
                                                 help="test instances per category (default 6)"),
    anomalous_fraction: Optional[float] = typer.Option(None, "--anomalous-fraction", min=0.0, max=1.0,
                                                       help="fraction of anomalous test instances (default 0.5)"),
    setup: Optional[str] = typer.Option(None, "--setup", help="real2real (default) or synth2real: how the "
                                                              "training instance is rendered"),
    voxel_size: Optional[float] = typer.Option(None, "--voxel-size", help="ground-truth voxel size in mm "
                                                                          "(default 2)"),
    rgb: Optional[bool] = typer.Option(None, "--rgb/--gray", help="RGB images instead of grayscale"),
    support: Optional[bool] = typer.Option(None, "--support/--no-support",
                                           help="render a turntable under the object (default: off)"),
    preview: Optional[bool] = typer.Option(None, "--preview/--no-preview", help="write OUT/preview.png "
                                                                                "(default: on)"),
    save_meshes: Optional[bool] = typer.Option(None, "--save-meshes/--no-save-meshes",
                                               help="write each instance's mesh.ply (default: off)"),
    seed: Optional[int] = typer.Option(None, "--seed", help="random seed (default 0)"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML of SynthConfig fields (see "
                                                                 "mv3dad/configs/synth.yaml); options override it"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace instances already in OUT (by default "
                                                              "an interrupted run with the same settings resumes)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
) -> None:
    """Generate a SiM3D-style synthetic benchmark: procedural parts with defects, seen by a calibrated rig
    (image + pixel-aligned depth per view, view-dependent scanner artefacts, voxel ground truth)."""
    import time

    from mv3dad.config import load_config
    from mv3dad.synth.generate import SynthConfig, generate_benchmark

    cats = None if categories is None else tuple(c.strip() for c in categories.split(",") if c.strip())
    if cats is None and mesh:
        cats = ()
    start = time.perf_counter()
    cfg = load_config(SynthConfig, config, categories=cats, meshes=tuple(str(m) for m in mesh) if mesh else None,
                      views=views, rig=rig, image_size=image_size, train_instances=train_instances,
                      test_instances=test_instances, anomalous_fraction=anomalous_fraction, setup=setup,
                      voxel_size=voxel_size, rgb=rgb, support=support, preview=preview,
                      save_meshes=save_meshes, seed=seed)
    generate_benchmark(out, cfg, overwrite=overwrite, progress=progress)
    n = len(cfg.categories) + len(cfg.meshes)
    typer.echo(f"wrote {out}: {n} categories x ({cfg.train_instances} train + {cfg.test_instances} test) instances, "
               f"{cfg.setup}, {time.perf_counter() - start:.1f} s")
    if cfg.preview:
        typer.echo(f"preview: {out / 'preview.png'}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to app."""
    app.command("synth")(synth)
