"""Does input resolution make the defects visible? ModMap and baselines at several image sizes, one setup.

``docs/quality.md`` found every method at chance at 224 px (16 x 16 tokens, one token about 30 mm of the part),
with random and with non-learned (``patch14``) encoders; the paper works at 896 px. This tool measures the same
methods at several input sizes on otherwise identical data (same seed, categories, rig, poses and defects; the
synthetic image side = the network input side) and adds figures that need no instance score (computed by
:mod:`mv3dad.metrics.localisation`; this tool only runs the stages and writes the report):

- **V-AUROC** (``mv3dad evaluate``): are defect voxels scored higher than the rest of the observed part?
- **twin contrast**: the location is held fixed. For every (anomalous, nominal) test pair of a category, the
  mean score over the anomalous instance's ground-truth voxels that both volumes observe; the figure is the
  fraction of pairs where the anomalous instance scores higher there (0.5 = the defect changes nothing).
- **argmax on defect**: the fraction of anomalous instances whose volume maximum (the instance score) lies
  within ``--near-mm`` of a ground-truth voxel.
- **silhouette share** (``--silhouette METHOD``): that method's per-view maps are predicted again with
  ``save_maps``; the figure is the share of each view's top 1 % foreground pixels, and of the instance
  maxima (max over views), that lie within one token (14 network-input pixels) of the foreground's edge,
  next to the share of all foreground pixels that do.
- **ceiling**: V-AUPRO@1% and V-AUROC of an oracle that scores 1 on every observed ground-truth voxel and 0 on
  every other observed voxel (the predictions' own observed voxels: every method shares the back-projection).
  Ground-truth voxels that no back-projected point reaches count as missed for every method, so no method can
  score above the ceiling.

Every stage reuses ``tools/quality_report.py``'s functions (``mv3dad synth``, the shared feature caches, the
pipeline's fit / predict / evaluate) and skips what its output already holds, so an interrupted run resumes.

Usage::

    python tools/resolution_study.py --work /tmp/res --sizes 224,448 --image-encoder patch14 --depth-encoder patch14
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from _docs import QUALITY_TITLE, write_section
from quality_report import (BASELINES, METHOD_NAMES, REPO, Stopwatch, chance_std, encoder_config, fill_caches, fit,
                            fmt, log, machine, merge, predict_eval, synth)

METHODS = ("knn", "cfm_vc", "modmap")


def location_figures(pred: Path, root: Path, category: str, near_mm: float) -> dict:
    """Twin contrast, argmax-on-defect and ceiling of one category's predictions (:mod:`mv3dad.metrics.localisation`)."""
    from mv3dad.data import open_dataset
    from mv3dad.export import load_volume
    from mv3dad.geometry.grid import VoxelGrid
    from mv3dad.metrics.localisation import argmax_on_defect, oracle_ceiling, twin_contrast
    from mv3dad.pipeline.evaluate import gt_on_grid

    vols, gts, sizes, anomalous = {}, {}, {}, []
    for s in open_dataset(root)[category].test:
        vol = load_volume(pred / category / f"{s.instance_id}.npz")
        grid = VoxelGrid.from_dataarray(vol)
        vols[s.instance_id] = np.asarray(vol.values, np.float32)
        gts[s.instance_id] = gt_on_grid(s.gt, grid) > 0
        sizes[s.instance_id] = grid.voxel_size
        if s.label == "anomalous":
            anomalous.append(s.instance_id)
    nominal = [i for i in vols if i not in anomalous]
    twin = twin_contrast([vols[a] for a in anomalous], [gts[a] for a in anomalous], [vols[n] for n in nominal])
    on_defect = sum(argmax_on_defect(vols[a], gts[a], sizes[a], near_mm) for a in anomalous)
    ceiling = oracle_ceiling(list(vols.values()), list(gts.values()), (0.01,))
    return {"twin_wins": twin.wins, "twin_pairs": twin.pairs, "argmax_on_defect": on_defect,
            "n_anomalous": len(anomalous), "ceiling": ceiling}


def silhouette_figures(run: Path, root: Path, out: Path, category: str, test_cache: Path, size: int) -> dict:
    """Silhouette share of one category's per-view maps (:func:`mv3dad.metrics.localisation.outline_share`)."""
    from mv3dad.data import open_dataset
    from mv3dad.metrics.localisation import outline_share
    from mv3dad.pipeline.predict import PredictJob, run_predict

    if not (out / "scores.json").is_file():
        run_predict(PredictJob(str(run), str(root), str(out), save_maps=True, backend="numba",
                               feature_cache=str(test_cache)), progress=False)
    maps, fgs = [], []
    for s in open_dataset(root)[category].test:
        maps.append(np.load(out / category / f"{s.instance_id}_maps.npz", allow_pickle=False)["maps"])
        fgs.append(np.stack([view.depth > 0 for view in s.views]))
    token_px = 14 * fgs[0].shape[2] / size
    share = outline_share(maps, fgs, token_px)
    return {"foreground_near_edge": share.foreground_near_outline, "top1_near_edge": share.top1_near_outline,
            "peaks_near_edge": share.peaks_near_outline, "n_instances": share.n_instances}


def run_size(a, size: int, watch: Stopwatch) -> dict:
    """Data, features, fit, predict, evaluate and location figures of every method at one input size."""
    work = a.work / f"s{size}"
    root = work / "data" / a.setup
    sa = argparse.Namespace(**{**vars(a), "image_size": size})
    with watch(f"synth_{size}"):
        synth(root, a.setup, sa)
    enc_cfg = encoder_config(sa, a.depth_encoder)
    with watch(f"features_{size}"):
        caches = fill_caches(enc_cfg, {a.setup: root}, a.categories, work, "enc", a.seed, (a.setup,))
    out = {}
    for m in a.methods:
        loc = {}
        for cat in a.categories:
            run, pred = work / "runs" / m / cat, work / "pred" / m / cat
            with watch(f"fit_{m}_{size}"):
                fit(run, root, [cat], a.setup, m, enc_cfg, caches[a.setup],
                    a.diag_epochs if m in ("cfm", "cfm_vc") else a.epochs, sa)
            with watch(f"predict_eval_{m}_{size}"):
                predict_eval(run, root, pred, caches["test"])
            loc[cat] = location_figures(pred, root, cat, a.near_mm)
        res = merge(work / "pred" / m, a.categories)
        tot = {k: sum(x[k] for x in loc.values()) for k in ("twin_wins", "twin_pairs", "argmax_on_defect",
                                                              "n_anomalous")}
        res["location"] = {"per_category": loc, "twin_contrast": tot["twin_wins"] / max(tot["twin_pairs"], 1),
                           "twin_pairs": tot["twin_pairs"],
                           "argmax_on_defect": tot["argmax_on_defect"] / max(tot["n_anomalous"], 1),
                           "n_anomalous": tot["n_anomalous"],
                           "ceiling": {k: float(np.mean([x["ceiling"][k] for x in loc.values()]))
                                       for k in ("v_aupro_1", "v_auroc")}}
        if m == a.silhouette:
            with watch(f"silhouette_{m}_{size}"):
                sil = {cat: silhouette_figures(work / "runs" / m / cat, root, work / "maps" / m / cat, cat,
                                               caches["test"], size) for cat in a.categories}
            res["silhouette"] = {"per_category": sil, **{k: float(np.mean([x[k] for x in sil.values()])) for k in
                                                         ("foreground_near_edge", "top1_near_edge")},
                                 "peaks_near_edge": sum(x["peaks_near_edge"] for x in sil.values()),
                                 "n_instances": sum(x["n_instances"] for x in sil.values())}
        out[m] = res
        log(f"{size} px {m}: I-AUROC {res['mean']['i_auroc']:.3f}, V-AUROC {res['mean']['v_auroc']:.3f}, "
            f"twin contrast {res['location']['twin_contrast']:.3f}")
    return out


def markers(section: str) -> tuple[str, str]:
    return f"<!-- {section}:begin -->", f"<!-- {section}:end -->"


def markdown(rep: dict, section: str) -> str:
    s = rep["settings"]
    begin, end = markers(section)
    L = [begin, "", f"Generated by `tools/resolution_study.py` on {rep['date']}; wall time "
         f"{rep['wall_seconds'] / 60:.1f} min on {rep['machine']['summary']}; code "
         f"`{rep['machine'].get('code', 'unknown')}`.", "", "```bash", rep["command"], "```", "",
         "**Settings.** " + ", ".join(f"{k} = {v}" for k, v in s.items()) + ".", ""]
    sizes = list(rep["results"])
    first = rep["results"][sizes[0]][s["methods"].split(",")[0]]
    L += [f"**Noise level.** I-AUROC: 0.5 +- {chance_std(first):.3f} for scores unrelated to the labels (mean "
          f"over categories, Mann-Whitney null). Twin contrast: 0.5 +- "
          f"{0.5 / np.sqrt(first['location']['twin_pairs']):.3f} if the pairs were independent (they are not: "
          "each instance is in several pairs).", "",
          "| method | image size | tokens per view | I-AUROC | V-AUPRO@1% | V-AUPRO@30% | V-AUROC | twin contrast "
          f"| argmax within {s['near_mm']:g} mm of a defect | predict s/sample |", "|---" * 10 + "|"]
    for m in s["methods"].split(","):
        for size in sizes:
            x = rep["results"][size][m]
            mean, loc = x["mean"], x["location"]
            L.append(f"| {METHOD_NAMES[m]} | {size} | {(int(size) // 14) ** 2} | {fmt(mean['i_auroc'])} | "
                     f"{fmt(mean['v_aupro_1'])} | {fmt(mean['v_aupro_30'])} | {fmt(mean['v_auroc'])} | "
                     f"{fmt(loc['twin_contrast'])} ({loc['twin_pairs']} pairs) | "
                     f"{loc['argmax_on_defect'] * loc['n_anomalous']:.0f} / {loc['n_anomalous']} | "
                     f"{fmt(x['seconds_per_sample'])} |")
    ceil = {size: rep["results"][size][s["methods"].split(",")[0]]["location"]["ceiling"] for size in sizes}
    L += ["", "**Ceiling** (an oracle on the same observed voxels; mean over categories): "
          + "; ".join(f"{size} px: V-AUPRO@1% {fmt(c['v_aupro_1'])}, V-AUROC {fmt(c['v_auroc'])}"
                      for size, c in ceil.items()) + "."]
    if s.get("silhouette"):
        m = s["silhouette"]
        L += ["", f"**Silhouette share** ({METHOD_NAMES[m]}, per-view maps; within one token of the foreground's edge): "
              + "; ".join(f"{size} px: {fmt(x['foreground_near_edge'])} of the foreground pixels, "
                          f"{fmt(x['top1_near_edge'])} of each view's top 1 %, {x['peaks_near_edge']} of "
                          f"{x['n_instances']} instance maxima"
                          for size, x in ((size, rep["results"][size][m]["silhouette"]) for size in sizes)) + "."]
    cats = s["categories"].split(",")
    L += ["", "Per category (I-AUROC / V-AUROC):", "", "| method | size | " + " | ".join(cats) + " |",
          "|---" * (len(cats) + 2) + "|"]
    for m in s["methods"].split(","):
        for size in sizes:
            x = rep["results"][size][m]
            L.append(f"| {m} | {size} | " + " | ".join(f"{fmt(x[c]['i_auroc'])} / {fmt(x[c]['v_auroc'])}"
                                                     for c in cats) + " |")
    L += ["", "Stage wall times [s]: " + ", ".join(f"{k} {v}" for k, v in rep["stage_seconds"].items()) + ".", "",
          f"All figures: `{rep['json']}`.", "", end]
    return "\n".join(L)


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="working folder (one sub-folder per size)")
    ap.add_argument("--doc", type=Path, default=REPO / "docs" / "quality.md")
    ap.add_argument("--json", type=Path, default=REPO / "docs" / "quality_resolution.json")
    ap.add_argument("--section", default="resolution-study", help="name of the --doc section's HTML markers")
    ap.add_argument("--sizes", default="224,448", help="comma-separated image sides (= network input), multiples of 14")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {sorted(BASELINES)}")
    ap.add_argument("--setup", default="real2real", choices=("real2real", "synth2real"))
    ap.add_argument("--categories", default="stool,bin,vase,cabinet,container")
    ap.add_argument("--views", type=int, default=12)
    ap.add_argument("--test-instances", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=40, help="epochs of the N x N (all pairs) runs")
    ap.add_argument("--diag-epochs", type=int, default=200, help="epochs of the diagonal runs (cfm, cfm_vc)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-encoder", default="patch14", help="registry/timm name (random) or a DIR")
    ap.add_argument("--depth-encoder", default="patch14", help="registry name (random) or a `pretrain-depth` DIR")
    ap.add_argument("--near-mm", type=float, default=10.0, help="argmax-on-defect distance")
    ap.add_argument("--silhouette", default=None, help="a method whose per-view maps to check against the edges")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    a = ap.parse_args(argv)
    a.json, a.doc = a.json.resolve(), a.doc.resolve()
    a.sizes = [int(x) for x in a.sizes.split(",")]
    a.methods = a.methods.split(",")
    a.categories = a.categories.split(",")
    bad = [m for m in a.methods if m not in BASELINES] + [str(s) for s in a.sizes if s % 14]
    bad += [a.silhouette] if a.silhouette not in (None, *a.methods) else []
    if bad:
        ap.error(f"unknown method or size not a multiple of 14: {', '.join(bad)}")
    return a


def main(argv=None) -> None:
    import os

    import torch

    from mv3dad.io import atomic_write

    a = parse(argv)
    torch.set_num_threads(a.threads)
    cmdline = "python tools/resolution_study.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    watch = Stopwatch()
    info = machine()
    results = {str(size): run_size(a, size, watch) for size in a.sizes}
    rep = {"command": cmdline, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": info,
           "settings": {"setup": a.setup, "categories": ",".join(a.categories), "views": a.views,
                        "test instances per category": a.test_instances, "methods": ",".join(a.methods),
                        "image encoder": a.image_encoder, "depth encoder": a.depth_encoder,
                        "epochs (all pairs)": a.epochs, "epochs (diagonal)": a.diag_epochs, "seed": a.seed,
                        "near_mm": a.near_mm, "silhouette": a.silhouette},
           "results": results, "stage_seconds": watch.stages, "wall_seconds": watch.total(),
           "json": str(a.json.relative_to(REPO) if a.json.is_relative_to(REPO) else a.json)}
    rep["machine"]["load_avg_end"] = os.getloadavg()
    atomic_write(a.json, json.dumps(rep, indent=2, default=float))
    write_section(a.doc, markdown(rep, a.section), *markers(a.section), QUALITY_TITLE)
    log(f"done in {rep['wall_seconds'] / 60:.1f} min: {a.json}, {a.doc}")


if __name__ == "__main__":
    main()
