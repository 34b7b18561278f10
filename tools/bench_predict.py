"""Speed and memory of the full ``mv3dad predict`` vs the number of views (issue 5, item 7; a benchmark, not a test).

One run, side by side: a ``mv3dad synth --views 36`` benchmark (one category, a few test samples), one ModMap
fitted on all 36 views, then ``predict --views N`` for N = 5, 9, 12, 18, 36 (views spread evenly over the rig),
each with all N x N pairs and with ``--sources K`` (K random sources per target, the target included: N K pairs).
Each configuration runs in a fresh child process that first warms up (imports, encoders, numba JIT: a 2-view
predict) and reports:

- seconds per sample of the full predict (features of both encoders, pair scoring with min over sources,
  upsampling, background filter, back-projection, writing the volume), from its ``scores.json``;
- peak memory of one sample's predict work (``FeatureExtractor.compute`` + ``Predictor.predict_sample``) with the encoders and
  model already loaded: peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs`` after ``malloc_trim``) above
  the RSS just before, and the tracemalloc peak (NumPy / Python allocations only; torch's CPU tensors are not
  traced);
- the pair-scoring step alone (``score_views`` on that sample's features, best of 3), the N^2 / N K part.

A least-squares fit ``t = a N + b P`` (P = scored pairs) over all runs separates the per-view cost (features,
back-projection) from the per-pair cost; the table's model columns divide each time by its smallest-N value
scaled by N^2 (all pairs) or N K (sources), 1.00 = exact. The figures and the command go into ``docs/quality.md``
between ``<!-- bench-predict:begin -->`` and ``<!-- bench-predict:end -->``.

Usage::

    python tools/bench_predict.py --work /tmp/bench_predict            # the default run (~10 min on 2 cores)
    python tools/bench_predict.py --work /tmp/bp --views 5,9 --image-size 56 --test-instances 1   # quick check

Encoders: the paper's architectures, randomly initialised (DINOv2 ViT-B/14 for images, ViT-S/14 for depth):
their weights do not change the cost, and no pretrained DINOv2 weights are available offline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _docs import QUALITY_TITLE, write_section

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- bench-predict:begin -->", "<!-- bench-predict:end -->"


def _status(key: str) -> float:
    """A ``/proc/self/status`` memory field in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def _trim() -> None:
    """Return freed heap memory to the OS, so that the next peak is measured from a clean baseline."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def child(a) -> None:
    """One measured configuration (runs in its own process); prints a JSON line."""
    import tracemalloc

    import torch

    from mv3dad.data import open_dataset
    from mv3dad.pipeline.predict import PredictJob, Predictor, run_predict
    from mv3dad.scoring.pairs import random_sources, score_views

    torch.set_num_threads(a.threads)
    out = Path(a.pred)
    job = PredictJob(a.run, a.data, str(out / "measured"), views=str(a.n), sources=a.sources, seed=0,
                     backend="numba")
    # 1. time: the full `mv3dad predict` (after a 2-view warm-up: imports, numba JIT), seconds per sample
    run_predict(PredictJob(a.run, a.data, str(out / "warmup"), views="2", backend="numba"), progress=False)
    run_predict(job, progress=False)
    rec = json.loads((out / "measured" / "scores.json").read_text())
    secs = [s["seconds"] for c in rec["scores"].values() for s in c.values()]
    # 2. memory: one sample's predict work (features of both encoders, scoring, volume) with the encoders and
    #    the model already loaded; peak RSS above the state just before, and the tracemalloc peak
    predictor = Predictor(a.run, job)
    model, sel = predictor.method.model, predictor.model_ids
    sample = predictor.prepare(open_dataset(a.data)[predictor.categories[0]].test[0])
    _trim()
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    base = _status("VmRSS")
    tracemalloc.start()
    feats = predictor.extractor.compute(sample)
    predictor.predict_sample(sample)
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    peak = _status("VmHWM") - base
    # 3. the pair-scoring step alone (best of 3)
    sources = random_sources(len(sel), a.sources, seed=0) if a.sources else None
    t_score = []
    for _ in range(3):
        t0 = time.perf_counter()
        score_views(model, feats.img, feats.dep, sources=sources, view_ids=sel, device="cpu")
        t_score.append(time.perf_counter() - t0)
    pairs = sum(len(s) for s in sources) if sources else len(sel) ** 2
    tokens = feats.img.shape[2] * feats.img.shape[3]
    print(json.dumps({"n": len(sel), "sources": a.sources, "pairs": pairs, "tokens_per_view": tokens,
                      "c_img": feats.img.shape[1], "c_dep": feats.dep.shape[1],
                      "seconds_per_sample": float(np.mean(secs)), "samples": len(secs),
                      "score_seconds": min(t_score), "peak_rss_mib": peak, "tracemalloc_peak_mib": traced,
                      "baseline_rss_mib": base}))


def run_cli(args: list[str]) -> None:
    print("$ mv3dad " + " ".join(shlex.quote(x) for x in args), flush=True)
    subprocess.run([sys.executable, "-m", "mv3dad.cli", *args], check=True)


def fit_linear(rows: list[dict], key: str, cols) -> tuple[np.ndarray, float]:
    """Least squares ``y = c0 + X c``; returns (c0, c...) and R^2."""
    x = np.array([[1.0, *(f(r) for f in cols)] for r in rows], float)
    y = np.array([r[key] for r in rows], float)
    c, *_ = np.linalg.lstsq(x, y, rcond=None)
    r2 = 1 - ((y - x @ c) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    return c, float(r2)


def markdown(rep: dict) -> str:
    rows, s = rep["rows"], rep["settings"]
    by = {(r["n"], r["sources"]): r for r in rows}
    ns = sorted({r["n"] for r in rows})
    k = s["sources"]
    n0 = ns[0]
    L = [BEGIN, "", "### Speed and memory of `mv3dad predict` vs views (`tools/bench_predict.py`)", "",
         f"Measured {rep['date']} on {rep['machine']}; wall time of the whole benchmark "
         f"{rep['wall_seconds'] / 60:.1f} min; code `{rep.get('code', 'unknown')}`.", "",
         "```bash", rep["command"], "```", "",
         f"Settings: {s['views']}-view rig (`mv3dad synth --views {s['views']}`, category {s['category']}, "
         f"{s['image_size']} px images = network input, {rows[0]['tokens_per_view']} tokens per view), "
         f"{s['test_instances']} test samples per configuration (mean per sample), "
         f"image encoder `{s['image_encoder']}` "
         f"(C_I = {rows[0]['c_img']}) and depth encoder `{s['depth_encoder']}` (C_D = {rows[0]['c_dep']}), both "
         f"randomly initialised (no pretrained weights offline; weights do not change the cost), one ModMap fitted "
         f"on all {s['views']} views ({s['epochs']} epoch(s)), subsets by `predict --views N`, "
         f"{s['threads']} torch thread(s), CPU only.", "",
         f"| N | pairs all | predict all [s/sample] | / N^2 model | scoring all [s] | peak RSS all [MiB] "
         f"| pairs K={k} | predict K={k} [s/sample] | / N K model | scoring K={k} [s] | peak RSS K={k} [MiB] "
         f"| N x N maps if materialised [MiB] |", "|---" * 12 + "|"]
    a0, s0 = by[(n0, None)], by[(n0, k)]
    for n in ns:
        ra, rs = by[(n, None)], by[(n, k)]
        nn = rs["pairs"] / s0["pairs"]
        mat = n * n * ra["tokens_per_view"] * (ra["c_img"] + ra["c_dep"]) * 4 / 2**20
        L.append(f"| {n} | {ra['pairs']} | {ra['seconds_per_sample']:.2f} | "
                 f"{ra['score_seconds'] / (a0['score_seconds'] * (n / n0) ** 2):.2f} | {ra['score_seconds']:.2f} | "
                 f"{ra['peak_rss_mib']:.0f} | {rs['pairs']} | {rs['seconds_per_sample']:.2f} | "
                 f"{rs['score_seconds'] / (s0['score_seconds'] * nn):.2f} | {rs['score_seconds']:.2f} | "
                 f"{rs['peak_rss_mib']:.0f} | {mat:.0f} |")
    f = rep["fits"]
    L += ["", "(`/ model`: the scoring time over the smallest N's scoring time scaled by N^2 (all pairs) or by the "
          "number of pairs N K (sources); 1.00 = exact. Peak RSS: peak resident memory of one sample's predict work "
          "(features of both encoders, scoring, volume) above the process with encoders and model loaded (VmHWM "
          "reset through /proc/self/clear_refs). Last column: all N x N predicted feature "
          "maps held at once, which the streamed scoring never does.)", "",
          f"- Full predict time per sample, least squares over all {len(rows)} runs: "
          f"t = {f['time']['constant'] * 1e3:.0f} ms + {f['time']['per_view'] * 1e3:.0f} ms x N + "
          f"{f['time']['per_pair'] * 1e3:.1f} ms x pairs "
          f"(R^2 = {f['time']['r2']:.3f}): the per-view part (both encoders, upsampling, background filter, "
          f"back-projection, writing) and the per-pair part (modulate, map, score, min).",
          f"- Scoring alone (best of 3): {f['score']['per_pair'] * 1e3:.2f} ms per pair + "
          f"{f['score']['per_view'] * 1e3:.1f} ms per view + {f['score']['constant'] * 1e3:.0f} ms "
          f"(R^2 = {f['score']['r2']:.3f}).",
          f"- Peak memory of one sample's predict work (features, scoring, volume): "
          f"{f['memory']['constant']:.0f} MiB + {f['memory']['per_view']:.1f} MiB per view + "
          f"{f['memory']['per_pair']:.3f} MiB per pair (R^2 = {f['memory']['r2']:.3f}); "
          f"all pairs vs K = {k} at N = {ns[-1]}: "
          f"{by[(ns[-1], None)]['peak_rss_mib']:.0f} vs {by[(ns[-1], k)]['peak_rss_mib']:.0f} MiB.",
          f"- tracemalloc peak (NumPy / Python allocations: per-view maps, foreground masks, the voxel volume): "
          f"{min(r['tracemalloc_peak_mib'] for r in rows):.0f} to {max(r['tracemalloc_peak_mib'] for r in rows):.0f}"
          f" MiB over all configurations.",
          f"- N = {ns[-1]}: all {by[(ns[-1], None)]['pairs']} pairs {by[(ns[-1], None)]['seconds_per_sample']:.2f} "
          f"s/sample vs K = {k} ({by[(ns[-1], k)]['pairs']} pairs) {by[(ns[-1], k)]['seconds_per_sample']:.2f} "
          f"s/sample: {by[(ns[-1], None)]['seconds_per_sample'] / by[(ns[-1], k)]['seconds_per_sample']:.1f}x "
          f"faster for {by[(ns[-1], None)]['pairs'] / by[(ns[-1], k)]['pairs']:.1f}x fewer pairs.",
          "", f"All figures: `{rep['json']}`.", "", END]
    return "\n".join(L)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--doc", type=Path, default=REPO / "docs" / "quality.md")
    ap.add_argument("--json", type=Path, default=REPO / "docs" / "bench_predict.json")
    ap.add_argument("--views", default="5,9,12,18,36", help="N values (subsets of the 36-view rig)")
    ap.add_argument("--rig-views", type=int, default=36)
    ap.add_argument("--sources", type=int, default=5, help="K of the --sources runs")
    ap.add_argument("--category", default="cabinet")
    ap.add_argument("--image-size", type=int, default=112)
    ap.add_argument("--test-instances", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--image-encoder", default="dinov2_vitb14_reg")
    ap.add_argument("--depth-encoder", type=Path, default=None, help="`pretrain-depth` DIR (default: random ViT-S/14)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--run", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--pred", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--render-only", action="store_true",
                    help="only rewrite the docs section from an existing --json (no computation)")
    a = ap.parse_args(argv)
    if a.render_only:
        return write_section(a.doc, markdown(json.loads(a.json.read_text())), BEGIN, END, QUALITY_TITLE)
    if a.child:
        a.sources = a.sources or None
        return child(a)

    t_start = time.perf_counter()
    command = "python tools/bench_predict.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    data, run = a.work / "data", a.work / "run"
    run_cli(["synth", str(data), "--categories", a.category, "--views", str(a.rig_views), "--image-size",
             str(a.image_size), "--test-instances", str(a.test_instances), "--anomalous-fraction", "0.5",
             "--seed", "0", "--no-preview", "--no-progress"])
    if not (run / "run.json").is_file():
        enc = ["--depth-encoder", str(a.depth_encoder)] if a.depth_encoder else []
        run_cli(["fit", str(data), "--category", a.category, "--out", str(run), "--epochs", str(a.epochs),
                 "--image-size", str(a.image_size), "--image-encoder", a.image_encoder, "--random-init",
                 "--device", "cpu", *enc])
    rows = []
    for n in [int(x) for x in a.views.split(",")]:
        for k in (None, a.sources):
            tag = f"n{n}_" + (f"k{k}" if k else "all")
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--work", str(a.work), "--run", str(run),
                   "--data", str(data), "--pred", str(a.work / "pred" / tag), "--n", str(n),
                   "--sources", str(k or 0), "--threads", str(a.threads)]
            env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
            res = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
            row = json.loads(res.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"N={n:3d} {'all' if k is None else f'K={k}':>5}: {row['pairs']:5d} pairs, "
                  f"{row['seconds_per_sample']:.2f} s/sample, scoring {row['score_seconds']:.2f} s, "
                  f"peak RSS +{row['peak_rss_mib']:.0f} MiB", flush=True)
    cols = (lambda r: r["n"], lambda r: r["pairs"])
    fits = {}
    for name, key in (("time", "seconds_per_sample"), ("score", "score_seconds"), ("memory", "peak_rss_mib")):
        c, r2 = fit_linear(rows, key, cols)
        fits[name] = {"constant": float(c[0]), "per_view": float(c[1]), "per_pair": float(c[2]), "r2": r2}
    import torch

    from mv3dad.io import atomic_write

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "mv3dad"], capture_output=True,
                           text=True).stdout.strip()
    code = (head.stdout.strip() or "unknown") + (" + uncommitted changes in mv3dad/" if dirty else "")
    rep = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "code": code,
           "machine": f"{cpu}, {os.cpu_count()} cores shared with other jobs (load average "
                      f"{os.getloadavg()[0]:.1f} at the end), no GPU, torch {torch.__version__}",
           "settings": {"views": a.rig_views, "category": a.category, "image_size": a.image_size,
                        "test_instances": a.test_instances, "image_encoder": a.image_encoder,
                        "depth_encoder": str(a.depth_encoder) if a.depth_encoder else "dino_depth_vits14",
                        "epochs": a.epochs, "sources": a.sources, "threads": a.threads},
           "rows": rows, "fits": fits, "wall_seconds": time.perf_counter() - t_start,
           "json": str(a.json.relative_to(REPO)) if a.json.is_relative_to(REPO) else str(a.json)}
    atomic_write(a.json, json.dumps(rep, indent=2))
    write_section(a.doc, markdown(rep), BEGIN, END, QUALITY_TITLE)
    print(f"done in {rep['wall_seconds'] / 60:.1f} min: {a.json}, {a.doc}")


if __name__ == "__main__":
    main()
