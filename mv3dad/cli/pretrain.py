"""CLI commands: pretrain (imports of heavy libraries stay inside the commands so that --help is fast).

Failures are reported by the one handler of :mod:`mv3dad.cli.main` (``error: <message>``, exit 2 for bad input).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

_HELP = {
    "out": "Output folder: checkpoints, history, loss curve, and the exported encoder.safetensors + encoder.json.",
    "data": "Corpus folder or file (repeatable); any mix of the mv3dad, SiM3D, MVTec 3D-AD, Eyecandies and "
            "generic layouts. Test splits (a test/ folder beside train/) are skipped.",
    "synthetic": "Add the endless synthetic depth corpus (procedural objects, poses and rigs).",
    "steps": "Optimisation steps.",
    "image_size": "Global crop side in pixels (multiple of 14).",
    "batch_size": "Samples per step and process.",
    "resume": "Continue the run in --out from its latest checkpoint.",
    "config": "YAML config (PretrainConfig fields; see mv3dad/configs/pretrain_depth.yaml).",
    "seed": "Seed of everything.",
    "workers": "Data-loading worker processes.",
}


def _run(modality: str, out: Path, data: Optional[List[Path]], synthetic: bool, steps: Optional[int],
         image_size: Optional[int], batch_size: Optional[int], resume: bool, config: Optional[Path],
         seed: Optional[int], num_workers: Optional[int]) -> None:
    from rich.console import Console

    from mv3dad.config import load_config
    from mv3dad.pretrain.config import PretrainConfig
    from mv3dad.pretrain.trainer import pretrain

    cfg = load_config(PretrainConfig, config, modality=modality, steps=steps, image_size=image_size,
                      batch_size=batch_size, seed=seed, num_workers=num_workers)
    summary = pretrain(cfg, out, data or [], synthetic, resume)
    if summary["rank"] == 0:
        Console().print(f"[green]wrote[/] {out / 'encoder.safetensors'} and {out / 'encoder.json'} "
                        f"({summary['steps']} steps, final loss {summary['final_loss']:.4f})")


def _command(modality: str):
    """The typer command of one modality (both take the same options)."""

    def command(
        out: Path = typer.Option(..., "--out", help=_HELP["out"]),
        data: Optional[List[Path]] = typer.Option(None, "--data", help=_HELP["data"]),
        synthetic: bool = typer.Option(False, "--synthetic", help=_HELP["synthetic"]),
        steps: Optional[int] = typer.Option(None, "--steps", help=_HELP["steps"]),
        image_size: Optional[int] = typer.Option(None, "--image-size", help=_HELP["image_size"]),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help=_HELP["batch_size"]),
        resume: bool = typer.Option(False, "--resume", help=_HELP["resume"]),
        config: Optional[Path] = typer.Option(None, "--config", help=_HELP["config"]),
        seed: Optional[int] = typer.Option(None, "--seed", help=_HELP["seed"]),
        num_workers: Optional[int] = typer.Option(None, "--num-workers", help=_HELP["workers"]),
    ) -> None:
        _run(modality, out, data, synthetic, steps, image_size, batch_size, resume, config, seed, num_workers)

    if modality == "depth":
        return command

    def image_command(  # no --synthetic: the synthetic corpus renders depth maps only
        out: Path = typer.Option(..., "--out", help=_HELP["out"]),
        data: List[Path] = typer.Option(..., "--data", help=_HELP["data"]),
        steps: Optional[int] = typer.Option(None, "--steps", help=_HELP["steps"]),
        image_size: Optional[int] = typer.Option(None, "--image-size", help=_HELP["image_size"]),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help=_HELP["batch_size"]),
        resume: bool = typer.Option(False, "--resume", help=_HELP["resume"]),
        config: Optional[Path] = typer.Option(None, "--config", help=_HELP["config"]),
        seed: Optional[int] = typer.Option(None, "--seed", help=_HELP["seed"]),
        num_workers: Optional[int] = typer.Option(None, "--num-workers", help=_HELP["workers"]),
    ) -> None:
        _run(modality, out, data, False, steps, image_size, batch_size, resume, config, seed, num_workers)

    return image_command


def register(app: typer.Typer) -> None:
    """Add this module's commands to app."""
    app.command("pretrain-depth", help=(
        "Self-supervised DINOv2-style pretraining of DINO-Depth (a 1-channel ViT-S/14) on depth maps.\n\n"
        "Multi-GPU / multi-process: torchrun --nproc_per_node N -m mv3dad pretrain-depth ..."))(
        _command("depth"))
    app.command("pretrain-image", help=(
        "The same trainer for a 3-channel image encoder (for sites that cannot reach a model hub); images from --data "
        "only (the synthetic corpus renders depth)."))(
        _command("image"))
