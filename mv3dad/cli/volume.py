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
    volumes: list[Path] = typer.Argument(..., help=VOLUME_HELP + "; several: one row each, one threshold"),
    out: Path = typer.Option(..., "--out", help="output .png"),
    mesh: Optional[list[Path]] = typer.Option(None, "--mesh", help="the object's mesh or point cloud (ply, stl, "
                                              "obj, glb ...), one per volume; default: the observed voxels"),
    gt: Optional[list[Path]] = typer.Option(None, "--gt", help="ground-truth volume to outline (e.g. the "
                                            "dataset's gt.npz), one per volume; 'none' for a part without one"),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="draw voxels with score > T"),
    scores: Optional[Path] = typer.Option(None, "--scores", help="scores.json of `mv3dad predict`: threshold = "
                                          "the largest score of its nominal parts (default when the volume "
                                          "lies in a prediction folder)"),
    views: Optional[int] = typer.Option(None, "--views", min=1, max=6, help="viewpoints per row"),
    quantile: Optional[float] = typer.Option(None, "--quantile", help="without --threshold or scores: this "
                                             "quantile of the first volume's scores (a per-part threshold)"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of RenderConfig fields"),
) -> None:
    """Draw score volumes (voxels over one threshold, colour map, legend, ground truth) over the object, to a PNG."""
    from mv3dad.config import load_config
    from mv3dad.errors import DataError
    from mv3dad.export import load_volume
    from mv3dad.viz.render import RenderConfig, nominal_threshold, render_volumes

    for name, extra in (("--mesh", mesh), ("--gt", gt)):
        if extra and len(extra) != len(volumes):
            raise DataError(f"{name}: give one per volume ({len(volumes)} volumes, {len(extra)} given)")
    cfg = load_config(RenderConfig, config, views=views, quantile=quantile)
    das = [load_volume(v) for v in volumes]
    note = None
    if threshold is None:
        guess = volumes[0].resolve().parent.parent / "scores.json"
        if scores is None and guess.is_file():
            scores = guess
        if scores is not None:
            cat = das[0].attrs.get("category")
            threshold, note = nominal_threshold(scores, cat)
    else:
        note = "given"
    gts = [None if str(g).lower() == "none" else _read_gt(g) for g in gt] if gt else None
    titles = [f"{d.attrs.get('category', '')} {d.attrs.get('instance_id', v.stem)}".strip() for d, v in
              zip(das, volumes)]
    render_volumes(das, out, objs=list(mesh) if mesh else None, threshold=threshold, config=cfg,
                   wheres=[str(v) for v in volumes], gts=gts, titles=titles, threshold_note=note)
    typer.echo(f"wrote {out}" + (f" (threshold {threshold:.3g}: {note})" if threshold is not None else ""))


def _read_gt(path: Path):
    """A ground-truth volume: the dataset's ``gt.npz`` or any saved volume (> 0 = defect)."""
    from mv3dad.data.layout import read_gt_npz
    from mv3dad.export import load_volume

    if path.suffix == ".npz" and path.is_file():
        import numpy as np

        with np.load(path, allow_pickle=False) as z:
            if "gt" in z.files:
                return read_gt_npz(path)
    return load_volume(path)


def render_maps(
    maps: Path = typer.Argument(..., help="<instance>_maps.npz written by `mv3dad predict --save-maps`"),
    out: Path = typer.Option(..., "--out", help="output .png: one tile per view, one colour scale"),
    vmax: Optional[float] = typer.Option(None, "--vmax", help="top of the colour scale (default: 99.5th "
                                         "percentile of the maps)"),
    cols: Optional[int] = typer.Option(None, "--cols", min=1, help="tiles per row"),
) -> None:
    """Draw the per-view anomaly maps of one predicted sample (NaN = not scored, grey) as one tiled PNG."""
    import json

    from mv3dad.viz.maps import render_maps as _render

    views = None
    scores = maps.resolve().parent.parent / "scores.json"
    if scores.is_file():
        try:
            views = json.loads(scores.read_text()).get("rig_views")
        except (OSError, ValueError):
            views = None
    _render(maps, out, vmax=vmax, cols=cols, views=views)
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to app."""
    app.command("export")(export)
    app.command("render")(render)
    app.command("render-maps")(render_maps)
