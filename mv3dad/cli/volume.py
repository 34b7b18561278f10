"""CLI commands: volume export and pictures (heavy imports stay inside the commands so that --help is fast).

Failures are reported by the one handler of :mod:`mv3dad.cli.main` (``error: <message>``, exit 2 for bad input).
"""

from pathlib import Path
from typing import Optional

import typer

VOLUME_HELP = "saved score volume: .npz (canonical), .npy (+ .npy.json sidecar), .zarr store or .vdb"


def export(
    volume: Path = typer.Argument(..., help=VOLUME_HELP),
    out: Path = typer.Argument(..., help="output file (a folder for zarr)"),
    to: Optional[str] = typer.Option(None, "--to", help="vdb | npy | npz | zarr | ply (default: OUT's suffix)"),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", help="also write the isosurface enclosing the voxels with score >= T, "
                                  "as OUT's name + '_iso.<mesh-format>'"),
    mesh_format: str = typer.Option("ply", "--mesh-format", help="isosurface format: ply | stl | glb"),
    cmap: str = typer.Option("turbo", "--cmap", help="matplotlib colour map of the ply point colours"),
) -> None:
    """Convert a saved score volume to OpenVDB, NumPy, Zarr or a coloured PLY point cloud (+ isosurface)."""
    from mv3dad.export import (MESH_FORMATS, isosurface, load_volume, save_mesh, save_volume, volume_format,
                               write_ply_points)

    fmt = volume_format(out, to)
    mesh_format = mesh_format.lower()
    if threshold is not None and mesh_format not in MESH_FORMATS:
        raise ValueError(f"--mesh-format must be one of {MESH_FORMATS}, got {mesh_format!r}")
    da = load_volume(volume)
    mesh = isosurface(da, threshold, where=str(volume)) if threshold is not None else None
    if fmt == "ply":
        write_ply_points(da, out, cmap=cmap)
    else:
        save_volume(da, out, fmt)
    typer.echo(f"wrote {out} ({fmt})")
    if mesh is not None:
        mesh_path = out.with_name(out.name.removesuffix(out.suffix) + f"_iso.{mesh_format}")
        save_mesh(mesh, mesh_path, mesh_format)
        typer.echo(f"wrote {mesh_path} (isosurface at {threshold:g}: {len(mesh.faces)} triangles)")


def render(
    volume: Path = typer.Argument(..., help=VOLUME_HELP),
    out: Path = typer.Option(..., "--out", help="output .png"),
    mesh: Optional[Path] = typer.Option(None, "--mesh", help="the object's mesh or point cloud (ply, stl, obj, "
                                                               "glb ...); default: the observed voxels"),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="draw voxels with score >= T "
                                                                          "(default: the --quantile)"),
    views: Optional[int] = typer.Option(None, "--views", min=1, max=6, help="viewpoints tiled into the picture"),
    quantile: Optional[float] = typer.Option(None, "--quantile", help="default threshold = this quantile of "
                                                                        "the observed scores (0.99)"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of RenderConfig fields"),
) -> None:
    """Draw a score volume (voxels over a threshold, colour map and legend) over the object, to a PNG."""
    from mv3dad.config import load_config
    from mv3dad.export import load_volume
    from mv3dad.viz.render import RenderConfig, render_volume

    cfg = load_config(RenderConfig, config, views=views, quantile=quantile)
    da = load_volume(volume)
    render_volume(da, out, obj=mesh, threshold=threshold, config=cfg, where=str(volume))
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to app."""
    app.command("export")(export)
    app.command("render")(render)
