"""Quality and speed of every weight-free configuration on a synthetic benchmark: what works offline.

Generates the benchmark (``mv3dad synth --save-meshes``, reused when present), then for every category runs
``fit`` + ``predict`` + ``evaluate`` (the pipeline's Python API, the same code as the CLI) of:

- ``deviation_scan``: ``--method deviation`` against the fused measured training scan;
- ``deviation_cad``: ``--method deviation --reference-mesh`` the training instance's CAD mesh (``mesh.ply``);
- ``knn``, ``cfm``, ``cfm_vc``, ``modmap``: the feature methods on the weight-free encoders
  (``--image-encoder texture --depth-encoder geometric``), features cached once per sample;
- ``modmap_shading``: ModMap from ``geometric`` to ``shading`` (the low-frequency brightness, a crossmodal target
  that geometry can predict under lights that travel with the camera);
- ``modmap_vit``: ModMap with randomly initialised ViTs (``--random-init``; the paper's architecture without
  its weights), on ``--vit-categories`` only (ViT-B/14 at 448 px costs ~20 s per 12-view sample here);
- for the feature methods, the same predictions with ``token_maps="all"`` (plain bilinear token maps, as before)
  and ``"valid"`` (valid tokens, outline tokens included) beside the default ``"inner"``, to measure
  validity-aware maps before/after: share of instance maxima and of each view's top 1 % within one
  token of the outline (:func:`mv3dad.metrics.localisation.outline_share`).

Per method: I-AUROC, V-AUPRO@1% and @30%, V-AUROC (mean over categories), the null spread of I-AUROC (random
scores, Hanley-McNeil, for the category's counts; of the mean over categories), defects found above every
nominal maximum of their category per defect type, and seconds per sample. Writes ``--json`` and the section of
``--doc`` between ``<!-- offline-report:begin -->`` and ``<!-- offline-report:end -->``.

    python tools/offline_report.py --work /tmp/offline --seed 23 --image-size 448 --test-instances 20
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _docs import QUALITY_TITLE, write_section

NAMES = {"deviation_cad": "deviation, CAD reference", "deviation_scan": "deviation, measured-scan reference",
         "knn": "kNN (texture + geometric)", "knn_all": "kNN over all views' tokens (texture + geometric)",
         "cfm": "CFM (texture + geometric)",
         "cfm_vc": "CFM + view cond. (texture + geometric)", "modmap": "ModMap (texture + geometric)",
         "modmap_vit": "ModMap, random ViT-B/14 + ViT-S/14",
         "modmap_shading": "ModMap, geometric -> shading (geometry predicts the low-frequency brightness)"}


BEFORE_AFTER = "knn,modmap"  # methods also predicted with token_maps "all" and "valid" (before/after)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def null_spread(n_nominal: int, n_anomalous: int) -> float:
    """Standard deviation of AUROC for random scores (Hanley-McNeil)."""
    return math.sqrt((n_nominal + n_anomalous + 1) / (12 * n_nominal * n_anomalous))


def fit_job(method: str, root: Path, run: Path, cat: str, a):
    from mv3dad.mapping.fit import FitConfig
    from mv3dad.pipeline.features import EncoderConfig
    from mv3dad.pipeline.fit import FitJob
    from mv3dad.scoring.methods.deviation import DeviationConfig

    if method.startswith("deviation"):
        mesh = str(root / cat / "train" / "000" / "mesh.ply") if method == "deviation_cad" else None
        return FitJob(str(root), [cat], str(run), method="deviation", setup=a.setup,
                      deviation=DeviationConfig(reference_mesh=mesh))
    if method == "modmap_vit":
        enc = EncoderConfig(image_encoder="dinov2_vitb14_reg", random_init=True, image_size=a.image_size)
        base = "modmap"
    elif method == "modmap_shading":  # crossmodal target that geometry can predict: low-frequency shading
        enc = EncoderConfig(image_encoder="shading", depth_encoder="geometric", image_size=a.image_size)
        base = "modmap"
    else:
        enc = EncoderConfig(image_encoder="texture", depth_encoder="geometric", image_size=a.image_size)
        base = method
    epochs = a.epochs if base == "modmap" else a.diag_epochs
    return FitJob(str(root), [cat], str(run), method=base, setup=a.setup, encoders=enc,
                  fit=FitConfig(epochs=epochs, lr=a.lr, device="cpu", seed=a.seed))


def run_method(method: str, root: Path, work: Path, cat: str, a) -> dict:
    """fit + predict + evaluate one method on one category (each step skipped when its output exists)."""
    import torch

    from mv3dad.data import open_dataset
    from mv3dad.pipeline.evaluate import run_evaluate
    from mv3dad.pipeline.fit import run_fit
    from mv3dad.pipeline.predict import PredictJob, run_predict

    torch.manual_seed(a.seed)  # random ViTs are built under this seed at fit and predict alike
    run = work / "runs" / method / cat
    if not (run / "run.json").is_file():
        log(f"fit {method} {cat}")
        run_fit(fit_job(method, root, run, cat, a), progress=False)
    variants = {"": "inner"} if method not in a.before_after.split(",") else \
        {"": "inner", "_valid": "valid", "_plain": "all"}
    out = {}
    for suffix, valid in variants.items():
        pred = work / "preds" / (method + suffix) / cat
        if not (pred / "scores.json").is_file():
            log(f"predict {method}{suffix} {cat}")
            torch.manual_seed(a.seed)
            run_predict(PredictJob(str(run), str(root), str(pred), backend="numba", save_maps=True,
                                   token_maps=valid, feature_cache=str(work / "features")), progress=False)
        res, _ = run_evaluate(pred, root, ceiling=True)
        rec = json.loads((pred / "scores.json").read_text())
        token_px = 14.0 * _px_per_input(root, a.image_size)
        out[suffix] = {**res[cat], **found_and_outline(rec["scores"][cat], open_dataset(root)[cat].test, pred / cat,
                                                       token_px),
                       "seconds_per_sample": rec["mean_seconds_per_sample"],
                       "ceiling_v_aupro_1": res[cat]["ceiling"]["v_aupro_1"],
                       "ceiling_v_auroc": res[cat]["ceiling"]["v_auroc"]}
    r = out[""]
    if "_plain" in out:
        r["before_valid_tokens"] = out["_plain"]
        r["valid_with_outline"] = out["_valid"]
    return r


def _px_per_input(root: Path, size: int) -> float:
    """View pixels per network-input pixel (the benchmark's views are square ``image_size`` renders)."""
    info = json.loads((root / "benchmark.json").read_text())
    return info.get("image_size", size) / size


def found_and_outline(scores: dict, tests, pred_dir: Path, token_px: float) -> dict:
    from mv3dad.metrics.localisation import outline_share

    tests = {s.instance_id: s for s in tests}
    top_nominal = max(s["score"] for s in scores.values() if s["label"] == "nominal")
    found: dict[str, list[int]] = {}
    for iid, s in scores.items():
        if s["label"] == "anomalous":
            for t in {d["type"] for d in tests[iid].meta.get("defects", [])}:
                found.setdefault(t, [0, 0])
                found[t][0] += int(s["score"] > top_nominal)
                found[t][1] += 1
    maps, masks = [], []
    for iid, s in tests.items():
        maps.append(np.load(pred_dir / f"{iid}_maps.npz", allow_pickle=False)["maps"].astype(np.float32))
        masks.append(np.stack([v.depth > 0 for v in s.views]))
    o = outline_share(maps, masks, token_px)
    from mv3dad.metrics.roc import auroc

    geometric = [iid for iid, s in scores.items() if s["label"] == "nominal" or
                 any(d["type"] != "stain" for d in tests[iid].meta.get("defects", []))]
    i_geo = auroc(np.array([scores[i]["score"] for i in geometric]),
                  np.array([scores[i]["label"] == "anomalous" for i in geometric]).astype(int))
    return {"found": found, "max_nominal": top_nominal, "i_auroc_geometric": i_geo, "outline_peaks": o.peaks_near_outline / max(o.n_instances, 1),
            "outline_top1": o.top1_near_outline, "outline_base": o.foreground_near_outline}


def summarise(results: dict) -> dict:
    keys = ("i_auroc", "v_aupro_1", "v_aupro_30", "v_auroc", "seconds_per_sample", "outline_peaks", "outline_top1",
            "i_auroc_geometric", "ceiling_v_aupro_1", "ceiling_v_auroc")
    s = {k: float(np.nanmean([r.get(k, np.nan) for r in results.values()])) for k in keys}
    s["null_spread"] = float(np.sqrt(np.mean([null_spread(r["n_test"] - r["n_anomalous"], r["n_anomalous"]) ** 2
                                              for r in results.values()]) / len(results)))
    types: dict[str, list[int]] = {}
    for r in results.values():
        for t, (k, n) in r["found"].items():
            types.setdefault(t, [0, 0])
            types[t][0] += k
            types[t][1] += n
    s["found"] = types
    before = [r["before_valid_tokens"] for r in results.values() if "before_valid_tokens" in r]
    if before:
        s["before"] = {k: float(np.nanmean([b[k] for b in before])) for k in keys}
        s["valid"] = {k: float(np.nanmean([r["valid_with_outline"][k] for r in results.values()])) for k in keys}
    return s


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def section(all_results: dict, a, commit: str) -> str:
    BEGIN, END = markers(a.section)
    parts = ("third-party CAD meshes " + ", ".join(Path(m).name for m in a.meshes.split(",")) if a.meshes
             else "5 procedural categories")
    cmd = (f"python tools/offline_report.py --work WORK --seed {a.seed} --image-size {a.image_size} "
           f"--test-instances {a.test_instances} --setup {a.setup} --epochs {a.epochs} --diag-epochs {a.diag_epochs} "
           f"--methods {a.methods} --section {a.section}" + (f" --meshes {a.meshes}" if a.meshes else "")
           + (f" --before-after {a.before_after}" if a.before_after != BEFORE_AFTER else ""))
    mesh_args = "".join(f" --mesh {Path(m).name}" for m in a.meshes.split(",")) if a.meshes else ""
    title = f"on {parts}" if a.meshes else f"at {a.image_size} px ({a.setup})"
    lines = [BEGIN, f"## What works offline: weight-free methods {title}", "",
             f"Benchmark `mv3dad synth --image-size {a.image_size} --test-instances {a.test_instances} --seed {a.seed} "
             f"--setup {a.setup} --save-meshes{mesh_args}` ({parts}, 12 views, {a.test_instances // 2} nominal + "
             f"{a.test_instances - a.test_instances // 2} anomalous test instances each). What was looked at on seed {a.seed} "
             f"while developing: see \"Which method to use offline\" above. Command: `{cmd}`; code {commit}; this 2-core CPU, one process (other "
             f"jobs shared the machine, so times are upper bounds).", "",
             "| method | I-AUROC | I-AUROC, stain-only parts left out | V-AUPRO@1% (ceiling) | V-AUPRO@30% | "
             "V-AUROC (ceiling) | maxima on outline | top 1 % on outline | s / sample |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m, res in all_results.items():
        s = summarise(res)
        cats = "" if len(res) == 5 else f" ({', '.join(res)})"
        lines.append(f"| {NAMES.get(m, m)}{cats} | {s['i_auroc']:.3f} ± {s['null_spread']:.2f} | "
                     f"{s['i_auroc_geometric']:.3f} | {s['v_aupro_1']:.3f} ({s['ceiling_v_aupro_1']:.2f}) | "
                     f"{s['v_aupro_30']:.3f} | {s['v_auroc']:.3f} ({s['ceiling_v_auroc']:.2f}) | "
                     f"{s['outline_peaks']:.2f} | {s['outline_top1']:.2f} | "
                     f"{s['seconds_per_sample']:.2f} |")
    lines += ["", "± = null spread of the mean I-AUROC (random scores). (ceiling) = the oracle ceiling: the figure of "
              "an oracle scoring 1 on every ground-truth voxel and 0 on every other voxel that the same predictions "
              "observe (a voxel no back-projected pixel reaches counts as missed), the best the method's "
              "back-projection allows. \"stain-only parts left out\": I-AUROC over the "
              "nominal parts and the anomalous parts with at least one geometric defect (a stain changes the "
              "appearance only). \"maxima on outline\": share of instances whose "
              "map maximum lies within one token of the outline; \"top 1 % on outline\": share of each view's top 1 % "
              "pixels there.", "", "**Validity-aware token maps, before → valid tokens → valid tokens off the outline (default)** (same "
              "runs, `predict --token-maps all | valid | inner`):", "",
              "| method | I-AUROC | V-AUPRO@1% | maxima on outline | top 1 % on outline |", "|---|---|---|---|---|"]
    if not any("before" in summarise(r) for r in all_results.values()):
        lines = lines[:-5]  # no feature method here: no before/after table
    for m, res in all_results.items():
        s = summarise(res)
        if "before" in s:
            b, v = s["before"], s["valid"]
            lines.append(f"| {NAMES.get(m, m)} | " + " | ".join(
                f"{b[k]:.{d}f} → {v[k]:.{d}f} → {s[k]:.{d}f}" for k, d in (("i_auroc", 3), ("v_aupro_1", 3),
                                                                         ("outline_peaks", 2), ("outline_top1", 2)))
                + " |")
    lines += ["", "**Defects found** (instance score above every nominal score of its category), per defect type:", "",
              "| method | " + " | ".join(sorted({t for r in all_results.values() for t in summarise(r)['found']})) + " |"]
    types = sorted({t for r in all_results.values() for t in summarise(r)["found"]})
    lines.append("|---" * (len(types) + 1) + "|")
    for m, res in all_results.items():
        f = summarise(res)["found"]
        lines.append(f"| {NAMES.get(m, m)} | " + " | ".join(f"{f[t][0]}/{f[t][1]}" if t in f else "—" for t in types)
                     + " |")
    lines += ["", f"Per category: `{a.json}`.", END]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="work folder (benchmark, features, runs, predictions)")
    ap.add_argument("--seed", type=int, default=23)
    ap.add_argument("--image-size", type=int, default=448)
    ap.add_argument("--test-instances", type=int, default=20)
    ap.add_argument("--setup", default="real2real")
    ap.add_argument("--methods", default="deviation_cad,deviation_scan,knn,cfm,cfm_vc,modmap,modmap_vit")
    ap.add_argument("--vit-categories", default="vase,cabinet", help="categories of modmap_vit (slow)")
    ap.add_argument("--epochs", type=int, default=20, help="ModMap (all N x N pairs) epochs")
    ap.add_argument("--diag-epochs", type=int, default=60, help="CFM / CFM + view cond. (diagonal pairs) epochs")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--before-after", default=BEFORE_AFTER,
                    help="feature methods also predicted with token maps 'all' and 'valid' (before/after)")
    ap.add_argument("--meshes", default="", help="comma-separated CAD mesh files: the benchmark is built from them "
                    "(synth --mesh) instead of the procedural categories")
    ap.add_argument("--section", default="offline-report", help="name of the docs section markers")
    ap.add_argument("--json", type=Path, default=Path("docs/quality_offline.json"))
    ap.add_argument("--doc", type=Path, default=Path("docs/quality.md"))
    a = ap.parse_args()
    root = a.work / "bench"
    if not (root / "benchmark.json").is_file():
        log("synth")
        extra = ["--categories", ""] + [x for m in a.meshes.split(",") for x in ("--mesh", m)] if a.meshes else []
        subprocess.run([sys.executable, "-m", "mv3dad", "synth", str(root), "--image-size", str(a.image_size),
                        "--test-instances", str(a.test_instances), "--seed", str(a.seed), "--setup", a.setup,
                        "--save-meshes", "--no-preview", "--no-progress", *extra], check=True)
    from mv3dad.data import open_dataset
    from mv3dad.io import atomic_write

    cats = open_dataset(root).categories
    results: dict = {}
    for m in a.methods.split(","):
        results[m] = {}
        for cat in (a.vit_categories.split(",") if m == "modmap_vit" else cats):
            results[m][cat] = run_method(m, root, a.work, cat, a)
            x = results[m][cat]
            log(f"{m} {cat}: I-AUROC {x['i_auroc']:.3f} V-AUPRO@1% {x['v_aupro_1']:.3f} V-AUROC {x['v_auroc']:.3f} "
                f"{x['seconds_per_sample']:.2f} s/sample")
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        atomic_write(a.json, json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "commit": commit,
                                         "results": results}, indent=2))
        write_section(a.doc, section(results, a, commit), *markers(a.section), QUALITY_TITLE)
    print(section(results, a, commit))


if __name__ == "__main__":
    main()
