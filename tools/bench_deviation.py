"""Time of ``--method deviation`` per sample: registration and per-view maps, median over samples.

Fits the method on a category of a benchmark (or reuses ``--run``), then for each test sample times, in one
process: the registration (similarity ICP) and the per-view distance maps (``DeviationMethod.score_views``, both
inside), and the full ``Predictor.predict_sample`` (plus foreground filter, back-projection, volume clean-up).
Prints and writes a JSON of the medians (and min/max); the figures go to docs/quality.md with command and commit.

    python tools/bench_deviation.py --data BENCH --category vase [--reference-mesh BENCH/vase/train/000/mesh.ply]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--category", required=True)
    ap.add_argument("--reference-mesh", default=None)
    ap.add_argument("--run", type=Path, default=None, help="a fitted deviation run (default: fit one in --work)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_deviation"))
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()

    import torch

    from mv3dad.data import open_dataset
    from mv3dad.pipeline.fit import FitJob, run_fit
    from mv3dad.pipeline.predict import PredictJob, Predictor
    from mv3dad.scoring.methods import ScoreOptions
    from mv3dad.scoring.methods.deviation import DeviationConfig

    torch.set_num_threads(1)
    run = a.run
    if run is None:
        run = a.work / ("cad" if a.reference_mesh else "scan") / a.category
        if not (run / "run.json").is_file():
            run_fit(FitJob(str(a.data), [a.category], str(run), method="deviation", overwrite=True,
                           deviation=DeviationConfig(reference_mesh=a.reference_mesh)), progress=False)
    pred = Predictor(run, PredictJob(str(run), str(a.data), str(a.work / "unused"), backend="numba"))
    tests = open_dataset(a.data)[a.category].test[: a.samples]
    pred.predict_sample(tests[0])  # warm-up: imports, numba compilation
    maps_s, total_s = [], []
    for s in tests:
        s = pred.prepare(s)
        t0 = time.perf_counter()
        pred.method.score_views(s, None, ScoreOptions(pred.model_ids, a.category))
        maps_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        pred.predict_sample(s)
        total_s.append(time.perf_counter() - t0)
    views = len(tests[0].views)
    size = tests[0].views[0].depth.shape
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,  # this tool's tree
                            capture_output=True, text=True).stdout.strip()
    res = {"category": a.category, "reference": "cad" if a.reference_mesh else "scan", "views": views,
           "image": list(size), "samples": len(tests), "commit": commit, "torch_threads": 1,
           "registration_and_maps_s": {"median": float(np.median(maps_s)), "min": min(maps_s), "max": max(maps_s)},
           "predict_sample_s": {"median": float(np.median(total_s)), "min": min(total_s), "max": max(total_s)}}
    print(json.dumps(res, indent=1))
    if a.json:
        from mv3dad.io import atomic_write

        atomic_write(a.json, json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
