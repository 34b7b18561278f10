"""``mv3dad study-views``: how many views, and source views per target, can be dropped before detection suffers.

For each number of views N (a random subset of the run's views per seed, or given lists) and each number K of
source views per target, the test split is predicted with :func:`mv3dad.pipeline.predict.run_predict` (one
:class:`~mv3dad.pipeline.predict.Predictor` per setting; the frozen features are kept in ``DIR/features`` and
computed once for the whole sweep) and evaluated with :func:`mv3dad.pipeline.evaluate.run_evaluate`. Recorded per
setting and seed: the mean time per sample (scoring, back-projection and writing the volume; feature extraction
excluded once the features are cached, see ``encode_seconds_per_view``), the peak resident memory of the
prediction, I-AUROC, V-AUPRO@1% and V-AUROC (mean over categories); over seeds: mean and standard deviation.

``K`` only changes cross-view methods (ModMap: the minimum over K random source views, the target itself always
among them; seed 004 Supp. Table 8). Other methods score each view on its own: their K sweep collapses to one
setting (``K = all``) and the table says so.

Outputs: ``DIR/study.csv`` (one row per setting, the seeds aggregated), ``DIR/study_runs.csv`` (one row per seed),
``DIR/study.md`` and ``DIR/study.png`` (quality against time per sample, one curve per K, the all-views all-pairs
point marked). A rerun reuses the settings already evaluated (``DIR/pred/<setting>/metrics.json``). Launched under
``torchrun`` every prediction is spread over the processes (:mod:`mv3dad.pipeline.distributed`) and rank 0 writes
the study.
"""

from __future__ import annotations

import csv
import json
import math
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mv3dad.io.atomic import atomic_write

METRICS = (("i_auroc", "I-AUROC"), ("v_aupro_1", "V-AUPRO@1%"), ("v_auroc", "V-AUROC"))


@dataclass
class StudyConfig:
    """What ``mv3dad study-views`` sweeps.

    Attributes:
        views: numbers of views N (each a random subset of the run's views, drawn per seed; N = all the run's
            views is one subset). None = about a quarter, half and all of them.
        view_sets: explicit subsets instead (lists of indices into the run's views); then ``seeds`` only draws
            the source views.
        sources: numbers of source views per target K (None in the list = all). None = all only.
        seeds: seeds per setting (subsets and source draws).
        categories: categories to score (None = the run's).
        keep_volumes: keep every setting's volumes (``DIR/pred/<setting>/<category>/*.npz``); False deletes them
            once evaluated (the figures and ``scores.json`` stay).
    """

    views: list[int] | None = None
    view_sets: list[list[int]] | None = None
    sources: list[int | None] | None = None
    seeds: int = 3
    categories: list[str] | None = None
    keep_volumes: bool = False


@dataclass
class Setting:
    """One point of the sweep: a view subset (indices into the run's views), K sources (None = all), a seed."""

    n: int
    k: int | None
    seed: int
    ids: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"N{self.n}_K{'all' if self.k is None else self.k}_s{self.seed}"


def parse_list(spec: str | None, what: str) -> list[int | None] | None:
    """``"3,6,12"`` -> [3, 6, 12]; ``"all"`` items -> None; None/empty -> None."""
    if spec is None or not str(spec).strip():
        return None
    out: list[int | None] = []
    for item in str(spec).split(","):
        item = item.strip()
        if item == "all":
            out.append(None)
            continue
        try:
            v = int(item)
        except ValueError:
            raise ValueError(f"--{what} {spec!r}: expected positive integers (or 'all') separated by commas") from None
        if v < 1:
            raise ValueError(f"--{what} {spec!r}: values must be >= 1")
        out.append(v)
    return out


def cross_view(method: str) -> bool:
    """Whether ``method`` pairs source and target views (so K changes its scores)."""
    from mv3dad.mapping.fit import PRESETS

    return method in PRESETS and PRESETS[method].get("pairs", "all") != "diagonal"


def settings(n_run: int, cfg: StudyConfig, method: str) -> list[Setting]:
    """Every (subset, K, seed) of the sweep, the all-views all-pairs point first (always measured)."""
    ks = cfg.sources or [None]
    if not cross_view(method):
        ks = [None]
    out: list[Setting] = []
    if cfg.view_sets:
        for ids in cfg.view_sets:
            bad = [i for i in ids if not 0 <= i < n_run]
            if bad or len(set(ids)) != len(ids):
                raise ValueError(f"view set {ids}: indices must be distinct and in 0..{n_run - 1}")
        subsets = [(len(ids), seed, sorted(ids)) for ids in cfg.view_sets for seed in range(cfg.seeds)]
    else:
        ns = cfg.views or sorted({max(1, n_run // 4), max(1, n_run // 2), n_run})
        bad = [n for n in ns if not 1 <= n <= n_run]
        if bad:
            raise ValueError(f"--views {ns}: numbers of views must be in 1..{n_run} (the run has {n_run})")
        subsets = []
        for n in ns:
            for seed in range(cfg.seeds):
                rng = np.random.default_rng([seed, n])
                subsets.append((n, seed, sorted(rng.choice(n_run, n, replace=False).tolist())))
    for n, seed, ids in subsets:
        for k in ks:
            kk = None if k is None or k >= n else k  # K >= N: every source view
            if n == n_run and kk is None and seed > 0:  # every view, every source: nothing random to redraw
                continue
            s = Setting(n, kk, seed, ids)
            if all(o.name != s.name for o in out):
                out.append(s)
    if not any(o.n == n_run and o.k is None for o in out):  # the reference: every view, every source
        out.append(Setting(n_run, None, 0, list(range(n_run))))
    out.sort(key=lambda s: (-(s.n == n_run and s.k is None), s.k or 10 ** 6, s.n, s.seed))
    return out


class _PeakMemory:
    """Peak resident memory (MiB) over a block: Linux resets the high-water mark (``/proc/self/clear_refs``);
    elsewhere the peak of Python/NumPy allocations (tracemalloc) over the block."""

    def __enter__(self):
        self.rss = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.rss = True
        except OSError:
            tracemalloc.start()
        return self

    def __exit__(self, *exc):
        if self.rss:
            with open("/proc/self/status") as f:
                hwm = next((line for line in f if line.startswith("VmHWM:")), "VmHWM: 0 kB")
            self.mib, self.kind = int(hwm.split()[1]) / 1024, "peak RSS"
        else:
            self.mib, self.kind = tracemalloc.get_traced_memory()[1] / 2 ** 20, "tracemalloc peak"
            tracemalloc.stop()
        return False


def run_study(run: str | Path, data: str | Path, out: str | Path, cfg: StudyConfig | None = None,
              progress: bool = True) -> dict:
    """Sweep, write ``study.csv``, ``study_runs.csv``, ``study.md`` and ``study.png`` under ``out``; returns a
    summary (``rows``: aggregated, ``runs``: per seed, ``paths``)."""
    import shutil

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mv3dad.pipeline.distributed import init_distributed, world_size
    from mv3dad.pipeline.evaluate import run_evaluate
    from mv3dad.pipeline.predict import PredictJob, run_predict
    from mv3dad.pipeline.run import read_run

    cfg = cfg or StudyConfig()
    out = Path(out)
    rank, created = 0, False
    if world_size() > 1:
        rank, _, created = init_distributed()
    record = read_run(run)
    n_run, method = len(record.views), record.method
    sweep = settings(n_run, cfg, method)
    cache = out / "features"
    runs: list[dict] = []
    encode_s = None
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, disable=not progress or rank != 0) as bar:
            task = bar.add_task("study-views", total=len(sweep))
            if record.encoders is not None:  # features of every view, once, before anything is timed
                bar.update(task, description="study-views: features of every view (cached)")
                warm = out / "pred" / "_features"
                t0 = time.perf_counter()
                run_predict(PredictJob(str(run), str(data), str(warm), categories=cfg.categories,
                                       feature_cache=str(cache)), progress=False)
                n_samples = sum(len(v) for v in json.loads((warm / "scores.json").read_text())["scores"].values())
                encode_s = (time.perf_counter() - t0) / max(n_samples, 1) / n_run
                if rank == 0:
                    shutil.rmtree(warm, ignore_errors=True)
            for s in sweep:
                bar.update(task, description=f"study-views: N={s.n} K={'all' if s.k is None else s.k} seed {s.seed}")
                pred = out / "pred" / s.name
                done = pred / "study.json"
                if not done.is_file():
                    job = PredictJob(str(run), str(data), str(pred), categories=cfg.categories,
                                     views=",".join(map(str, s.ids)), sources=s.k, seed=s.seed,
                                     feature_cache=str(cache))
                    with _PeakMemory() as mem:
                        run_predict(job, progress=False)
                    if rank == 0:
                        res, _ = run_evaluate(pred, data, pred / "metrics.json")
                        scores = json.loads((pred / "scores.json").read_text())
                        row = {"setting": s.name, "n_views": s.n, "sources": "all" if s.k is None else s.k,
                               "seed": s.seed, "views": " ".join(map(str, s.ids)),
                               "seconds_per_sample": scores["mean_seconds_per_sample"],
                               "peak_memory_mib": round(mem.mib, 1), "memory_kind": mem.kind,
                               **{k: res["mean"].get(k, float("nan")) for k, _ in METRICS}}
                        atomic_write(done, json.dumps(row, indent=2))
                        if not cfg.keep_volumes:
                            for cat in scores["scores"]:
                                shutil.rmtree(pred / cat, ignore_errors=True)
                if rank == 0:
                    runs.append(json.loads(done.read_text()))
                bar.advance(task)
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()
    if rank != 0:
        return {"rows": [], "runs": [], "paths": {}}
    rows = aggregate(runs)
    paths = write_outputs(out, rows, runs, run=str(run), data=str(data), method=method, n_run=n_run,
                          cross=cross_view(method), asked_k=cfg.sources, encode_s=encode_s)
    return {"rows": rows, "runs": runs, "paths": paths}


def aggregate(runs: list[dict]) -> list[dict]:
    """Per (N, K): mean and standard deviation over seeds of every figure."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["n_views"], str(r["sources"])), []).append(r)
    rows = []
    for (n, k), rs in groups.items():
        row = {"n_views": n, "sources": k, "seeds": len(rs)}
        for key in ("seconds_per_sample", "peak_memory_mib", *(m for m, _ in METRICS)):
            v = np.array([r[key] for r in rs], float)
            row[f"{key}_mean"] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
            row[f"{key}_std"] = float(np.nanstd(v)) if np.isfinite(v).any() else float("nan")
        rows.append(row)
    rows.sort(key=lambda r: (r["sources"] != "all", int(r["sources"]) if r["sources"] != "all" else 0, r["n_views"]))
    return rows


def _f(x: float, d: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"


def write_outputs(out: Path, rows: list[dict], runs: list[dict], *, run: str, data: str, method: str, n_run: int,
                  cross: bool, asked_k, encode_s: float | None) -> dict[str, str]:
    """Write study.csv, study_runs.csv, study.md and study.png; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "study.csv", "runs_csv": out / "study_runs.csv", "md": out / "study.md",
             "png": out / "study.png"}
    for path, table in ((paths["csv"], rows), (paths["runs_csv"], runs)):
        fields = list(table[0]) if table else []
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(table)
    head = ("| N views | K sources | seeds | s / sample | peak memory (MiB) | "
            + " | ".join(label for _, label in METRICS) + " |")
    lines = [f"# View-subsampling study: {method}", "",
             f"run `{run}` ({n_run} views), data `{data}`. Mean ± standard deviation over seeds (random view "
             f"subsets and source draws; all views with all sources involve no draw and are measured once). Quality: mean over "
             f"categories (`evaluate` mode `observed`).", "", head,
             "|---" * (5 + len(METRICS)) + "|"]
    for r in rows:
        star = " **(all views, all pairs)**" if r["n_views"] == n_run and r["sources"] == "all" else ""
        lines.append(f"| {r['n_views']}{star} | {r['sources']} | {r['seeds']} | "
                     f"{_f(r['seconds_per_sample_mean'], 2)} ± {_f(r['seconds_per_sample_std'], 2)} | "
                     f"{_f(r['peak_memory_mib_mean'], 0)} | "
                     + " | ".join(f"{_f(r[f'{m}_mean'])} ± {_f(r[f'{m}_std'])}" for m, _ in METRICS) + " |")
    lines += ["", "Time per sample: scoring, back-projection and writing the volume, with the frozen features "
              "cached (computed once for the sweep)."]
    if encode_s is not None:
        lines.append(f"Feature extraction measured once: {encode_s:.3f} s per view (add N × this for a cold "
                     f"start).")
    if not cross:
        lines.append(f"`{method}` scores each view on its own: the number of source views K does not change it"
                     + (f" (asked for K = {', '.join('all' if k is None else str(k) for k in asked_k)}; one "
                        f"setting, K = all, measured)." if asked_k else "."))
    kind = runs[0]["memory_kind"] if runs else "peak RSS"
    lines.append(f"Memory: {kind} of the prediction process during the setting.")
    atomic_write(paths["md"], "\n".join(lines) + "\n")
    plot(rows, paths["png"], n_run, f"{method} (run {Path(run).name})")
    return {k: str(v) for k, v in paths.items()}


def plot(rows: list[dict], png: Path, n_run: int, method: str) -> None:
    """Quality (I-AUROC, V-AUPRO@1%) against time per sample, one curve per K, error bars over seeds; ``method``
    names the study in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ks = list(dict.fromkeys(r["sources"] for r in rows))
    for ax, (key, label) in zip(axes, METRICS[:2]):
        for k in ks:
            rs = sorted((r for r in rows if r["sources"] == k), key=lambda r: r["n_views"])
            x = [r["seconds_per_sample_mean"] for r in rs]
            y = [r[f"{key}_mean"] for r in rs]
            ax.errorbar(x, y, xerr=[r["seconds_per_sample_std"] for r in rs], yerr=[r[f"{key}_std"] for r in rs],
                        marker="o", capsize=3, label=f"K = {k} sources")
            for r, xi, yi in zip(rs, x, y):
                ax.annotate(f"N={r['n_views']}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
        full = [r for r in rows if r["n_views"] == n_run and r["sources"] == "all"]
        if full:
            ax.plot(full[0]["seconds_per_sample_mean"], full[0][f"{key}_mean"], marker="*", markersize=18,
                    color="gold", markeredgecolor="black", linestyle="none", label=f"all {n_run} views, all pairs")
        ax.set_xlabel("time per sample (s)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{method}: detection quality against time per sample (mean ± sd over seeds)")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)

