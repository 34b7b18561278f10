"""CLI command: ``mv3dad demo`` (heavy imports stay inside the command so that --help is fast)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def demo(
    out: Path = typer.Argument(Path("out/demo"), help="Output folder (reused when rerun: finished stages are "
                                                       "skipped)."),
    categories: Optional[str] = typer.Option(None, help="Comma-separated procedural categories "
                                                        "(default vase,stool)."),
    image_size: Optional[int] = typer.Option(None, help="Benchmark image side in pixels (default 256; the "
                                                        "deviation method needs >= 160)."),
    views: Optional[int] = typer.Option(None, help="Views of the hemisphere rig (default 12)."),
    test_instances: Optional[int] = typer.Option(None, help="Test instances per category (default 6)."),
    pretrain_steps: Optional[int] = typer.Option(None, help="DINO-Depth pretraining steps (default 10)."),
    epochs: Optional[int] = typer.Option(None, help="ModMap training epochs (default 10)."),
    modmap_image_size: Optional[int] = typer.Option(None, help="ModMap input side, a multiple of 14 "
                                                               "(default 112)."),
    seed: Optional[int] = typer.Option(None, help="Seed of the benchmark (default 0)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """The main job in one command, on a small benchmark it generates: synth -> deviation from the CAD model and
    from the measured scan (the best setup without downloadable weights) -> DINO-Depth pretraining and ModMap,
    briefly -> predict -> evaluate -> export (.vdb, .npy, .ply) -> pictures of an anomalous and a nominal part."""
    from mv3dad.pipeline.demo import REAL_USE, DemoConfig, run_demo

    given = dict(image_size=image_size, views=views, test_instances=test_instances, pretrain_steps=pretrain_steps,
                 modmap_epochs=epochs, modmap_image_size=modmap_image_size, seed=seed)
    kw = {k: v for k, v in given.items() if v is not None}
    if categories is not None:
        cats = tuple(c.strip() for c in categories.split(",") if c.strip())
        kw.update(categories=cats, modmap_categories=cats[:1])
    res = run_demo(out, DemoConfig(**kw), progress=progress)
    echo = typer.echo
    echo(f"\nResults ({res.seconds:.0f} s" + (f"; {len(res.skipped)} of the stages reused from an earlier run"
                                             if res.skipped else "") + f"; also in {out / 'results.md'})\n")
    echo(res.table)
    echo("\ndeviation compares each part with the nominal one (CAD mesh, or the measured training scan): shape, "
         "appearance,\nmissing material. ModMap here runs a few epochs on weight-free and briefly pretrained "
         "encoders: it shows\nevery stage of the method, not its quality.\n\nOutputs")
    width = max(len(k) for k in res.outputs)
    for k, v in res.outputs.items():
        echo(f"  {k:<{width}}  {v}")
    echo("\n" + REAL_USE)

def register(app: typer.Typer) -> None:
    """Add this module's command to app."""
    app.command("demo")(demo)
