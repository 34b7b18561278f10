"""Quality and speed of ``--method deviation`` on a synthetic benchmark (measured scan and CAD references).

Generates the benchmark (``mv3dad synth --save-meshes``; reused when present), then for every category and each
reference (the fused training scan; the training instance's CAD mesh, ``mesh.ply``) runs ``fit`` + ``predict`` +
``evaluate`` and records I-AUROC, V-AUPRO@1% and @30%, V-AUROC, the share of each defect type found (an anomalous
instance counts as found when its score exceeds every nominal score of its category; per defect type over the
instances holding it) and the mean time per sample. Writes a JSON file and a section of docs/quality.md.

    python tools/deviation_report.py --root /tmp/devrep --seed 11 --image-size 448 --test-instances 20

The null spread printed with the figures is the standard deviation of I-AUROC under random scores for the
category's numbers of nominal and anomalous instances (Hanley-McNeil), and of the mean over categories.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from _docs import QUALITY_TITLE, write_section

BEGIN, END = "<!-- deviation-report:begin -->", "<!-- deviation-report:end -->"


def null_spread(n_nominal: int, n_anomalous: int) -> float:
    """Standard deviation of AUROC for random scores."""
    return math.sqrt((n_nominal + n_anomalous + 1) / (12 * n_nominal * n_anomalous))


def run_one(root: Path, work: Path, cat: str, reference: str) -> dict:
    from mv3dad.data import open_dataset
    from mv3dad.pipeline.evaluate import run_evaluate
    from mv3dad.pipeline.fit import FitJob, run_fit
    from mv3dad.pipeline.predict import PredictJob, run_predict
    from mv3dad.scoring.methods.deviation import DeviationConfig

    run, pred = work / reference / "runs" / cat, work / reference / "preds" / cat
    mesh = str(root / cat / "train" / "000" / "mesh.ply") if reference == "cad" else None
    if not (run / "run.json").is_file():
        run_fit(FitJob(str(root), [cat], str(run), method="deviation",
                       deviation=DeviationConfig(reference_mesh=mesh)), progress=False)
    if not (pred / "scores.json").is_file():
        run_predict(PredictJob(str(run), str(root), str(pred)), progress=False)
    res, _ = run_evaluate(pred, root)
    rec = json.loads((pred / "scores.json").read_text())
    scores = rec["scores"][cat]
    tests = {s.instance_id: s for s in open_dataset(root)[cat].test}
    top_nominal = max(s["score"] for s in scores.values() if s["label"] == "nominal")
    found: dict[str, list[int]] = {}
    for iid, s in scores.items():
        if s["label"] != "anomalous":
            continue
        for t in {d["type"] for d in tests[iid].meta.get("defects", [])}:
            found.setdefault(t, [0, 0])
            found[t][0] += int(s["score"] > top_nominal)
            found[t][1] += 1
    fitness = [s["registration"]["fitness"] for s in scores.values()]
    return {**res[cat], "found": found, "seconds_per_sample": rec["mean_seconds_per_sample"],
            "min_fitness": min(fitness), "max_nominal_mm": top_nominal}


def section(results: dict, args, commit: str) -> str:
    lines = [BEGIN, "## Comparison with the nominal shape (`--method deviation`), weight-free", "",
             f"Benchmark: `mv3dad synth --image-size {args.image_size} --test-instances {args.test_instances} "
             f"--seed {args.seed} --save-meshes --setup {args.setup}` (5 categories, 12 views; seed "
             f"{args.seed} was never used while developing the method, which was tuned on seed 7). Command: "
             f"`python tools/deviation_report.py --root ROOT --seed {args.seed} --image-size {args.image_size} "
             f"--test-instances {args.test_instances} --setup {args.setup}`, code {commit}, this 2-core CPU.", ""]
    for ref, title in (("scan", "reference = the measured training scan"), ("cad", "reference = the CAD mesh")):
        if ref not in results:
            continue
        r = results[ref]
        lines += [f"**{title}**", "",
                  "| category | I-AUROC | null ± | V-AUPRO@1% | V-AUPRO@30% | V-AUROC | largest nominal (mm) | s / sample |",
                  "|---|---|---|---|---|---|---|---|"]
        for cat, x in r.items():
            lines.append(f"| {cat} | {x['i_auroc']:.3f} | {null_spread(x['n_test'] - x['n_anomalous'], x['n_anomalous']):.2f}"
                         f" | {x['v_aupro_1']:.3f} | {x['v_aupro_30']:.3f} | {x['v_auroc']:.3f} | "
                         f"{x['max_nominal_mm']:.2f} | {x['seconds_per_sample']:.2f} |")
        mean = {k: float(np.nanmean([x[k] for x in r.values()])) for k in ("i_auroc", "v_aupro_1", "v_aupro_30",
                                                                            "v_auroc", "seconds_per_sample")}
        spread = float(np.sqrt(np.mean([null_spread(x["n_test"] - x["n_anomalous"], x["n_anomalous"]) ** 2
                                        for x in r.values()]) / len(r)))
        lines.append(f"| **mean** | **{mean['i_auroc']:.3f}** | {spread:.2f} | **{mean['v_aupro_1']:.3f}** | "
                     f"{mean['v_aupro_30']:.3f} | {mean['v_auroc']:.3f} | | {mean['seconds_per_sample']:.2f} |")
        types: dict[str, list[int]] = {}
        for x in r.values():
            for t, (k, n) in x["found"].items():
                types.setdefault(t, [0, 0])
                types[t][0] += k
                types[t][1] += n
        lines += ["", "Defects found above every nominal maximum of their category: " + ", ".join(
            f"{t} {k}/{n}" for t, (k, n) in sorted(types.items())) + ".", ""]
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True, help="work folder (benchmark, runs, predictions)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--image-size", type=int, default=448)
    ap.add_argument("--test-instances", type=int, default=20)
    ap.add_argument("--setup", default="real2real")
    ap.add_argument("--references", default="scan,cad")
    ap.add_argument("--json", type=Path, default=Path("docs/quality_deviation.json"))
    ap.add_argument("--doc", type=Path, default=Path("docs/quality.md"))
    args = ap.parse_args()
    bench = args.root / "bench"
    if not (bench / "benchmark.json").is_file():
        subprocess.run([sys.executable, "-m", "mv3dad", "synth", str(bench), "--image-size", str(args.image_size),
                        "--test-instances", str(args.test_instances), "--seed", str(args.seed), "--setup",
                        args.setup, "--save-meshes", "--no-preview", "--no-progress"], check=True)
    from mv3dad.data import open_dataset

    cats = open_dataset(bench).categories
    results: dict = {}
    for ref in args.references.split(","):
        results[ref] = {}
        for cat in cats:
            results[ref][cat] = run_one(bench, args.root, cat, ref)
            x = results[ref][cat]
            print(f"{ref} {cat}: I-AUROC {x['i_auroc']:.3f} V-AUPRO@1% {x['v_aupro_1']:.3f} "
                  f"V-AUROC {x['v_auroc']:.3f} {x['seconds_per_sample']:.2f} s", flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    from mv3dad.io import atomic_write

    atomic_write(args.json, json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "commit": commit,
                                        "results": results}, indent=2))
    write_section(args.doc, section(results, args, commit), BEGIN, END, QUALITY_TITLE)
    print(section(results, args, commit))


if __name__ == "__main__":
    main()
