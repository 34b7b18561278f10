"""CLI command: ``mv3dad study-views`` (heavy imports stay inside the command so that --help is fast)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def study_views(
    run: Path = typer.Argument(..., help="Run directory from `mv3dad fit`."),
    data: Path = typer.Argument(..., help="Dataset root with the test split."),
    out: Path = typer.Option(..., "--out", "-o", help="Study folder: study.csv, study.md, study.png, the "
                                                      "predictions and the feature cache."),
    views: Optional[str] = typer.Option(None, help="Numbers of views N1,N2,... (random subsets of the run's "
                                                   "views, one per seed); default: a quarter, half and all."),
    view_sets: Optional[str] = typer.Option(None, help="Explicit subsets instead of --views: index lists "
                                                       "separated by ';', e.g. '0,4,8;0,2,4,6,8,10'."),
    sources: Optional[str] = typer.Option(None, help="Source views per target K1,K2,... ('all' allowed; "
                                                     "cross-view methods only); default: all."),
    seeds: int = typer.Option(3, min=1, help="Seeds per setting (view subsets and source draws)."),
    category: Optional[str] = typer.Option(None, "--category", "-c", help="Comma-separated categories "
                                                                           "(default: the run's)."),
    keep_volumes: bool = typer.Option(False, "--keep-volumes", help="Keep every setting's volumes."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Sweep the number of views N and of source views per target K: time per sample, peak memory, I-AUROC,
    V-AUPRO@1% and V-AUROC (mean and spread over seeds), with cached features; writes study.csv/.md/.png."""
    from mv3dad.pipeline.study import StudyConfig, parse_list, run_study

    sets = None
    if view_sets:
        sets = []
        for part in view_sets.split(";"):
            ids = parse_list(part, "view-sets")
            if ids is None or None in ids:
                raise ValueError(f"--view-sets {view_sets!r}: expected index lists like '0,4,8;0,2,4,6'")
            sets.append([i - 0 for i in ids])
    n_list = parse_list(views, "views")
    if n_list is not None and None in n_list:
        raise ValueError(f"--views {views!r}: give numbers of views (the run's view count for all of them)")
    cfg = StudyConfig(views=n_list, view_sets=sets, sources=parse_list(sources, "sources"), seeds=seeds,
                      categories=[c for c in category.split(",") if c] if category else None,
                      keep_volumes=keep_volumes)
    res = run_study(run, data, out, cfg, progress=progress)
    if res["paths"]:
        typer.echo(Path(res["paths"]["md"]).read_text())
        typer.echo("wrote " + ", ".join(res["paths"].values()))


def register(app: typer.Typer) -> None:
    """Add this module's command to app."""
    app.command("study-views")(study_views)
