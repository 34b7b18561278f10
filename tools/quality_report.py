"""Measured quality report (issue 5, item 6): ModMap vs its baselines and the paper's ablations, on our data.

One command runs everything (each stage skips what its output already holds, so an interrupted run resumes):

1. ``mv3dad synth`` twice with the same seed: ``--setup real2real`` and ``--setup synth2real`` (all procedural
   categories); the test instances must be byte-identical in both (checked: every file but ``meta.json``).
2. Frozen features of every (sample, encoder pair) extracted once into one cache per split
   (``WORK/features/test`` shared by both setups, ``WORK/features/train_<setup>`` per setup, because both setups
   name their training instance ``000``) and reused by every method: ``fit`` reads the training cache
   (``FitJob.feature_cache``) and ``predict`` the test cache (``PredictJob.feature_cache``).
3. ``fit`` + ``predict`` + ``evaluate`` (the pipeline's Python API, the same code as the CLI) of ModMap
   (``modmap``) and the three baselines on the same features and the same back-projection: ``cfm`` (no view
   conditioning, diagonal pairs), ``cfm_vc`` (view conditioning, diagonal pairs), ``knn`` (per-view memory bank).
4. The paper's ablations on our data: view conditioning (Table 3: cfm vs cfm_vc), cross-view min-ensembling
   (Table 6: cfm_vc vs modmap), per-view fusion max / mean / prod / min (Table 10: ``predict --fuse``),
   class-specific vs multi-class (Table 7: ``fit --multi-class``), and the depth encoder (Table 4's analogue:
   DINO-Depth vs a randomly initialised depth ViT-S/14).
5. A JSON of every figure (``--json``) and the Markdown section of ``docs/quality.md`` between the markers
   ``<!-- quality-report:begin -->`` / ``<!-- quality-report:end -->`` (the rest of the page is kept).

Encoders: no pretrained DINOv2 weights can be obtained offline, so the image encoder is a *randomly initialised*
ViT (``--random-init``) unless ``--image-encoder`` names a directory written by ``mv3dad pretrain-image``. The
depth encoder is ``--depth-encoder DIR`` (a ``mv3dad pretrain-depth`` output) or, when none is given, one is
pretrained here with ``mv3dad pretrain-depth --synthetic`` (``--pretrain-steps``).

Usage::

    python tools/quality_report.py --work /tmp/quality --depth-encoder runs/dino_depth          # the report
    python tools/quality_report.py --work /tmp/qsmoke --smoke --depth-encoder runs/dino_depth   # 1 category, 2 epochs

Random encoders are built under ``torch.manual_seed(--seed)``; all features come from the caches, which are
filled once by one pair of encoders, so fit and predict always see the same features.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
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
SETUPS = ("real2real", "synth2real")
BASELINES = ("modmap", "cfm", "cfm_vc", "knn")
FUSIONS = ("mean", "prod", "min")  # max is the modmap row itself
METHOD_NAMES = {"modmap": "ModMap", "cfm": "CFM (no view cond., diagonal)", "cfm_vc": "CFM + view cond. (diagonal)",
                "knn": "memory bank kNN", "modmap_multiclass": "ModMap multi-class",
                "modmap_random_depth": "ModMap, random depth ViT-S/14"}
BEGIN, END = "<!-- quality-report:begin -->", "<!-- quality-report:end -->"
PAPER = {  # seed 004, real2real unless noted: (I-AUROC, V-AUPRO@1%)
    "table3": {"cfm": (0.448, 0.538), "cfm_vc": (0.548, 0.663)},
    "table4": {"dino_v2_depth": (0.575, 0.684), "dino_depth": (0.804, 0.735)},
    "table6": {"cfm_vc": (0.804, 0.735), "modmap": (0.844, 0.804)},
    "table7": {"real2real": {"class_specific": (0.844, 0.804), "multi_class": (0.850, 0.801)},
               "synth2real": {"class_specific": (0.623, 0.755), "multi_class": (0.618, 0.758)}},
    "table10": {"max": (0.844, 0.804), "min": (0.721, 0.451), "prod": (0.745, 0.641), "mean": (0.782, 0.756)},
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Stopwatch:
    """Wall time per stage, accumulated."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.stages: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = round(self.stages.get(name, 0.0) + time.perf_counter() - t, 1)

    def total(self) -> float:
        return round(time.perf_counter() - self.t0, 1)


# ----------------------------------------------------------------------------------------------------- data
def synth(root: Path, setup: str, a) -> None:
    """``mv3dad synth`` through the CLI (resumes an interrupted generation with the same settings)."""
    cmd = [sys.executable, "-m", "mv3dad.cli", "synth", str(root), "--setup", setup, "--seed", str(a.seed),
           "--views", str(a.views), "--image-size", str(a.image_size), "--test-instances", str(a.test_instances),
           "--categories", ",".join(a.categories), "--no-preview", "--no-progress"]
    log(" ".join(shlex.quote(c) for c in cmd[2:]))
    subprocess.run(cmd, check=True)


def test_fingerprints(root: Path, categories: list[str]) -> dict[str, str]:
    """sha256 of every test instance's files except ``meta.json`` (which names the setup), per instance."""
    out = {}
    for cat in categories:
        for inst in sorted((root / cat / "test").iterdir()):
            h = hashlib.sha256()
            for f in sorted(p for p in inst.rglob("*") if p.is_file() and p.name != "meta.json"):
                h.update(str(f.relative_to(inst)).encode())
                h.update(f.read_bytes())
            out[f"{cat}/{inst.name}"] = h.hexdigest()
    return out


# ------------------------------------------------------------------------------------------------- encoders
#: The small DINO-Depth of the pretraining proof (docs/pretrain.md): fits the CPU budget (~2-5 min for 120 steps).
SMALL_PRETRAIN = {"vit_depth": 4, "embed_dim": 192, "num_heads": 3, "local_size": 56, "n_local_crops": 2,
                  "base_lr": 0.064, "n_prototypes": 1024, "head_hidden_dim": 512, "head_bottleneck_dim": 128,
                  "checkpoint_every": 25}


def provide_depth_encoder(a, watch: Stopwatch) -> Path:
    """The DINO-Depth directory to use: ``--depth-encoder``, else one pretrained here with ``pretrain-depth``.

    Without ``--pretrain-config`` the pretraining uses :data:`SMALL_PRETRAIN` (a 4-block, width-192 ViT/14, the
    settings of the pretraining proof); the full ViT-S/14 recipe costs ~25 s per step on this CPU.
    """
    if a.depth_encoder is not None:
        return Path(a.depth_encoder)
    out = a.work / "dino_depth"
    if not (out / "encoder.json").is_file():
        config = a.pretrain_config
        if config is None:
            import yaml

            config = a.work / "pretrain_depth_small.yaml"
            config.write_text(yaml.safe_dump(SMALL_PRETRAIN))
        cmd = [sys.executable, "-m", "mv3dad.cli", "pretrain-depth", "--synthetic", "--out", str(out),
               "--steps", str(a.pretrain_steps), "--image-size", str(a.pretrain_size),
               "--batch-size", str(a.pretrain_batch), "--config", str(config), "--seed", str(a.seed)]
        if (out / "checkpoints").is_dir():
            cmd.append("--resume")
        log(" ".join(shlex.quote(c) for c in cmd[2:]))
        with watch("pretrain_depth"):
            subprocess.run(cmd, check=True)
    return out


def depth_encoder_record(path: Path) -> dict:
    """What the report says about a DINO-Depth directory: shape, pretraining length, cost and corpus."""
    from mv3dad.encoders import load_encoder
    from mv3dad.encoders.patches import PATCH_ARCH

    if str(path) == PATCH_ARCH:  # the non-learned reference encoder: nothing was trained
        return {"dir": PATCH_ARCH, "arch": PATCH_ARCH, "blocks": 0, "embed_dim": 196, "steps": None}
    enc = load_encoder(path)  # also checks the weights' hash
    meta = json.loads((path / "encoder.json").read_text())
    tr, cfg = meta.get("training", {}), meta.get("training", {}).get("config", {})
    return {"dir": str(path), "arch": meta.get("arch"), "blocks": meta.get("n_blocks"), "embed_dim": enc.embed_dim,
            "img_size": meta.get("img_size"), "weights_sha256": meta.get("weights_sha256"),
            "steps": tr.get("steps"), "global_batch": tr.get("global_batch"), "device": tr.get("device"),
            "seconds": tr.get("seconds_this_session"), "final_loss": tr.get("final_loss"),
            "corpus_files": (tr.get("corpus") or {}).get("files"), "synthetic_stream": tr.get("synthetic"),
            "n_prototypes": cfg.get("n_prototypes")}


def encoder_config(a, depth_dir: Path | None):
    """The pipeline's EncoderConfig: image encoder (random unless a DIR), depth encoder DIR or random ViT-S/14."""
    from mv3dad.pipeline.features import EncoderConfig

    return EncoderConfig(image_encoder=a.image_encoder, depth_encoder=str(depth_dir) if depth_dir else None,
                         random_init=True, image_size=a.image_size, device="cpu")


def seeded_encoders(cfg, seed: int):
    """Both encoders, random ones drawn from ``torch.manual_seed(seed)`` (reproducible across runs)."""
    import torch

    from mv3dad.pipeline.features import load_encoders

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return load_encoders(cfg)


def fill_caches(cfg, roots: dict[str, Path], categories: list[str], work: Path, tag: str, seed: int,
                setups: tuple[str, ...]) -> dict[str, Path]:
    """Extract every sample's features once: test (shared by the setups) and each setup's training instance."""
    from rich.progress import Progress

    from mv3dad.data import open_dataset
    from mv3dad.pipeline.features import FeatureExtractor
    from mv3dad.pipeline.fit import training_samples

    img, dep = seeded_encoders(cfg, seed)
    caches = {"test": work / "features" / tag / "test"}
    caches.update({s: work / "features" / tag / f"train_{s}" for s in setups})
    jobs = []
    for setup in setups:
        ds = open_dataset(roots[setup])
        for cat in categories:
            jobs += [(caches[setup], s, "train") for s in training_samples(ds, cat, setup)]
            if setup == setups[0]:
                jobs += [(caches["test"], s, "test") for s in ds[cat].test]
    with Progress() as bar:
        task = bar.add_task(f"features {tag}", total=len(jobs))
        for cache, sample, split in jobs:
            FeatureExtractor(img, dep, cfg, cache_dir=cache)(sample, split=split)
            bar.advance(task)
    return caches


# ---------------------------------------------------------------------------------------------- fit/predict
def fit(run: Path, root: Path, cats: list[str], setup: str, method: str, enc_cfg, train_cache: Path, epochs: int,
        a, multi_class: bool = False) -> None:
    """``mv3dad fit`` on the cached training features (skipped when the run is complete)."""
    import torch

    from mv3dad.mapping.fit import FitConfig
    from mv3dad.pipeline.fit import FitJob, run_fit

    if (run / "run.json").is_file():
        return
    fit_cfg = FitConfig(epochs=epochs, multi_class=multi_class, device="cpu", seed=a.seed)
    log(f"fit {setup} {method}{' multi-class' if multi_class else ''} {','.join(cats)} ({epochs} epochs)")
    torch.manual_seed(a.seed)  # the random encoders run_fit builds are only used for identity checks
    run_fit(FitJob(str(root), cats, str(run), views="all", setup=setup, method=method, encoders=enc_cfg,
                   fit=fit_cfg, feature_cache=str(train_cache), resume=True), progress=False)


def predict_eval(run: Path, root: Path, pred: Path, test_cache: Path, fuse: str = "max") -> dict:
    """``mv3dad predict`` + ``mv3dad evaluate``; returns the evaluation (cached in ``pred/eval.json``).

    Delete ``eval.json`` to evaluate existing predictions again (for example against regenerated ground truth).
    """
    import torch

    from mv3dad.io import atomic_write
    from mv3dad.pipeline.evaluate import run_evaluate
    from mv3dad.pipeline.predict import PredictJob, run_predict

    res_path = pred / "eval.json"
    if res_path.is_file():
        return json.loads(res_path.read_text())
    if not (pred / "scores.json").is_file():  # written last: the predictions are complete (else re-evaluate only)
        log(f"predict + evaluate {pred.relative_to(pred.parents[2])} (fuse {fuse})")
        torch.manual_seed(0)
        run_predict(PredictJob(str(run), str(root), str(pred), fuse=fuse, backend="numba",
                               feature_cache=str(test_cache)), progress=False)
    res, _ = run_evaluate(pred, root)
    scores = json.loads((pred / "scores.json").read_text())
    res["seconds_per_sample"] = scores["mean_seconds_per_sample"]
    atomic_write(res_path, json.dumps(res, indent=2))
    return res


# -------------------------------------------------------------------------------------------------- report
def fmt(x) -> str:
    return "—" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"


def mean_row(res: dict) -> tuple[float, float]:
    return res["mean"]["i_auroc"], res["mean"]["v_aupro_1"]


def ranking(values: dict[str, float]) -> str:
    """``a > b = c``: best first, ties (equal to 3 decimals, as printed) joined by ``=``."""
    keys = sorted(values, key=lambda r: -values[r])
    out = keys[:1]
    for prev, cur in zip(keys, keys[1:]):
        out += ["=" if round(values[prev], 3) == round(values[cur], 3) else ">", cur]
    return " ".join(out)


def order_check(ours: dict[str, tuple[float, float]], paper: dict[str, tuple[float, float]]) -> list[str]:
    """One line per metric: do our rows rank like the paper's (best first)?"""
    out = []
    for k, name in ((0, "I-AUROC"), (1, "V-AUPRO@1%")):
        keys = [r for r in paper if r in ours]
        p, o = ranking({r: paper[r][k] for r in keys}), ranking({r: ours[r][k] for r in keys})
        verdict = "agrees" if p == o else "DISAGREES"
        out.append(f"{name}: paper {p}; ours {o} ({verdict})")
    return out


def chance_std(res: dict) -> float:
    """Std of the mean I-AUROC over categories for scores unrelated to the labels (Mann-Whitney null)."""
    var = [(r["n_test"] + 1) / (12 * r["n_anomalous"] * (r["n_test"] - r["n_anomalous"]))
           for c, r in res.items() if c not in ("mean", "seconds_per_sample")
           and 0 < r.get("n_anomalous", 0) < r.get("n_test", 0)]
    return float(np.sqrt(np.sum(var)) / len(var)) if var else float("nan")


def markdown(rep: dict) -> str:
    s, r = rep["settings"], rep["results"]
    L = [BEGIN, "", f"Generated by `tools/quality_report.py` on {rep['date']}; wall time "
         f"{rep['wall_seconds'] / 60:.1f} min on {rep['machine']['summary']}; code "
         f"`{rep['machine'].get('code', 'unknown')}`.", "",
         "```bash", rep["command"], "```", "",
         "**Encoders (read this first).** " + rep["encoders"]["summary"], "",
         "**Settings.** " + ", ".join(f"{k} = {v}" for k, v in s.items()) + ".", "",
         f"**Data.** `mv3dad synth` with seed {s['seed']}, both setups; the {rep['n_test']} test instances "
         f"are byte-identical in both ({'checked' if rep['test_identical'] else 'NOT identical'}); "
         f"{rep['n_anomalous']} of them anomalous.", ""]
    sd = chance_std(r["real2real"]["modmap"])
    L += [f"**Noise level.** With {rep['n_test'] // len(s['categories'].split(','))} test instances per category, "
          f"scores unrelated to the labels give a mean I-AUROC of 0.5 +- {sd:.3f} (one standard deviation of the "
          f"Mann-Whitney null, averaged over the categories): differences between rows smaller than about "
          f"{2 * sd:.2f} in mean I-AUROC are not evidence of an ordering.", ""]
    L += ["### Methods (mean over categories)", "",
          "| method | real2real I-AUROC | real2real V-AUPRO@1% | synth2real I-AUROC | synth2real V-AUPRO@1% "
          "| V-AUPRO@30% (r2r) | V-AUROC (r2r) | predict s/sample |", "|---|---|---|---|---|---|---|---|"]
    for m in [*BASELINES, "modmap_multiclass", "modmap_random_depth"]:
        cells = []
        for setup in SETUPS:
            x = r.get(setup, {}).get(m)
            cells += [fmt(x["mean"]["i_auroc"]), fmt(x["mean"]["v_aupro_1"])] if x else ["—", "—"]
        x = r["real2real"].get(m)
        if x is None and all(r.get(st, {}).get(m) is None for st in SETUPS):
            continue
        cells += [fmt(x["mean"]["v_aupro_30"]) if x else "—", fmt(x["mean"].get("v_auroc")) if x else "—",
                  fmt(x.get("seconds_per_sample")) if x else "—"]
        L.append(f"| {METHOD_NAMES[m]} | " + " | ".join(cells) + " |")
    for setup in SETUPS:
        cats = [c for c in r[setup]["modmap"] if c not in ("mean", "seconds_per_sample")]
        L += ["", f"### Per category, {setup} (I-AUROC / V-AUPRO@1%)", "",
              "| method | " + " | ".join(cats) + " | mean |", "|---" * (len(cats) + 2) + "|"]
        for m, x in r[setup].items():
            row = [f"{fmt(x[c]['i_auroc'])} / {fmt(x[c]['v_aupro_1'])}" for c in [*cats, "mean"]]
            L.append(f"| {m} | " + " | ".join(row) + " |")
    L += ["", "### The paper's ablations on our data (real2real unless noted)", ""]
    for key, ab in rep["ablations"].items():
        L += [f"**{ab['title']}**", "", "| row | ours I-AUROC | ours V-AUPRO@1% | paper I-AUROC | paper V-AUPRO@1% |",
              "|---|---|---|---|---|"]
        for row, (o, p) in ab["rows"].items():
            paper = f"{fmt(p[0])} | {fmt(p[1])}" if p else "— | —"
            L.append(f"| {row} | {fmt(o[0])} | {fmt(o[1])} | {paper} |")
        L += ["", *[f"- {c}" for c in ab["checks"]], ""]
    L += ["### Stage wall times [s]", "", "| stage | seconds |", "|---|---|"]
    L += [f"| {k} | {v} |" for k, v in rep["stage_seconds"].items()]
    L += ["", f"All figures: `{rep['json']}`.", "", END]
    return "\n".join(L)


def machine() -> dict:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "gpu": gpu,
            "torch": torch.__version__, "python": platform.python_version(), "load_avg_start": os.getloadavg()}
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "mv3dad"],
                               capture_output=True, text=True, check=True).stdout.strip()
        info["code"] = head + (" + uncommitted changes in mv3dad/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        info["code"] = "unknown"
    info["summary"] = (f"{cpu}, {info['cores']} cores shared with other jobs (load average "
                       f"{info['load_avg_start'][0]:.1f} at the start), {gpu or 'no GPU'}, torch {torch.__version__}, "
                       f"{info['torch_threads']} torch thread(s)")
    return info


# ---------------------------------------------------------------------------------------------------- main
def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="working folder (data, features, runs, predictions)")
    ap.add_argument("--doc", type=Path, default=REPO / "docs" / "quality.md")
    ap.add_argument("--json", type=Path, default=REPO / "docs" / "quality.json")
    ap.add_argument("--categories", default="stool,bin,vase,cabinet,container")
    ap.add_argument("--views", type=int, default=12)
    ap.add_argument("--image-size", type=int, default=224, help="synthetic image side = network input side")
    ap.add_argument("--test-instances", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=40, help="epochs of the N x N (all pairs) runs")
    ap.add_argument("--diag-epochs", type=int, default=200,
                    help="epochs of the diagonal runs (cfm, cfm_vc): the paper's 200; an epoch has N pairs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-encoder", default="dinov2_vits14_reg",
                    help="registry/timm name (randomly initialised) or a `pretrain-image` DIR")
    ap.add_argument("--depth-encoder", type=Path, default=None, help="`pretrain-depth` DIR (else pretrained here)")
    ap.add_argument("--pretrain-steps", type=int, default=120, help="without --depth-encoder: pretraining steps")
    ap.add_argument("--pretrain-batch", type=int, default=12, help="without --depth-encoder: batch size")
    ap.add_argument("--pretrain-size", type=int, default=112, help="without --depth-encoder: global crop side")
    ap.add_argument("--pretrain-config", type=Path, default=None,
                    help="without --depth-encoder: PretrainConfig YAML (default: the small proof model)")
    ap.add_argument("--no-multiclass", action="store_true", help="skip Table 7")
    ap.add_argument("--no-random-depth", action="store_true", help="skip Table 4's analogue")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (on a loaded 2-core machine 1 is often much faster than 2)")
    ap.add_argument("--smoke", action="store_true", help="1 category, 4 test instances, 2 epochs (error check)")
    ap.add_argument("--render-only", action="store_true",
                    help="only rewrite the docs section from an existing --json (no computation)")
    a = ap.parse_args(argv)
    if a.smoke:
        a.categories, a.test_instances, a.epochs, a.diag_epochs = "vase", 4, 2, 2
    a.categories = [c for c in a.categories.split(",") if c]
    return a


def main(argv=None) -> None:
    import torch

    from mv3dad.io import atomic_write

    a = parse(argv)
    if a.render_only:
        rep = json.loads(a.json.read_text())
        rep["ablations"] = ablations(rep["results"])
        write_section(a.doc, markdown(rep), BEGIN, END, QUALITY_TITLE)
        return
    torch.set_num_threads(a.threads)
    cmdline = "python tools/quality_report.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    watch = Stopwatch()
    a.work.mkdir(parents=True, exist_ok=True)
    info = machine()
    roots = {s: a.work / "data" / s for s in SETUPS}
    with watch("synth"):
        for setup in SETUPS:
            synth(roots[setup], setup, a)
    fps = [test_fingerprints(roots[s], a.categories) for s in SETUPS]
    identical = fps[0] == fps[1]
    if not identical:
        raise SystemExit(f"the test instances differ between {roots['real2real']} and {roots['synth2real']}")

    depth_dir = provide_depth_encoder(a, watch)
    dd = depth_encoder_record(depth_dir)
    enc_cfg = encoder_config(a, depth_dir)
    with watch("features"):
        caches = fill_caches(enc_cfg, roots, a.categories, a.work, "dino_depth", a.seed, SETUPS)

    runs, preds = a.work / "runs", a.work / "pred"
    results: dict = {s: {} for s in SETUPS}
    for setup in SETUPS:
        for m in BASELINES:
            for cat in a.categories:
                run = runs / setup / m / cat
                with watch(f"fit_{m}"):
                    fit(run, roots[setup], [cat], setup, m, enc_cfg, caches[setup],
                        a.diag_epochs if m in ("cfm", "cfm_vc") else a.epochs, a)
                with watch(f"predict_eval_{m}"):
                    predict_eval(run, roots[setup], preds / setup / m / cat, caches["test"])
            results[setup][m] = merge(preds / setup / m, a.categories)
        for fz in FUSIONS:
            for cat in a.categories:
                with watch("predict_eval_fusion"):
                    predict_eval(runs / setup / "modmap" / cat, roots[setup], preds / setup / f"modmap_fuse_{fz}" / cat,
                                 caches["test"], fuse=fz)
            results[setup][f"modmap_fuse_{fz}"] = merge(preds / setup / f"modmap_fuse_{fz}", a.categories)
        if not a.no_multiclass and len(a.categories) > 1:
            run = runs / setup / "modmap_multiclass"
            with watch("fit_multiclass"):
                fit(run, roots[setup], a.categories, setup, "modmap", enc_cfg, caches[setup], a.epochs, a,
                    multi_class=True)
            with watch("predict_eval_multiclass"):
                predict_eval(run, roots[setup], preds / setup / "modmap_multiclass" / "all", caches["test"])
            results[setup]["modmap_multiclass"] = without_extra(
                json.loads((preds / setup / "modmap_multiclass" / "all" / "eval.json").read_text()))
    random_depth = None
    if not a.no_random_depth:
        rnd_cfg = encoder_config(a, None)
        with watch("features_random_depth"):
            rcaches = fill_caches(rnd_cfg, roots, a.categories, a.work, "random_depth", a.seed, ("real2real",))
        for cat in a.categories:
            run = runs / "real2real" / "modmap_random_depth" / cat
            with watch("fit_random_depth"):
                fit(run, roots["real2real"], [cat], "real2real", "modmap", rnd_cfg, rcaches["real2real"], a.epochs, a)
            with watch("predict_eval_random_depth"):
                predict_eval(run, roots["real2real"], preds / "real2real" / "modmap_random_depth" / cat,
                             rcaches["test"])
        results["real2real"]["modmap_random_depth"] = merge(preds / "real2real" / "modmap_random_depth", a.categories)
        from mv3dad.pipeline.features import load_encoders
        random_depth = load_encoders(rnd_cfg)[1].meta

    n_test = len(fps[0])
    ds_labels = [json.loads((roots["real2real"] / k.split("/")[0] / "test" / k.split("/")[1] / "meta.json")
                            .read_text()).get("label") for k in fps[0]]
    rep = {"command": cmdline, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": info,
           "settings": settings(a), "test_identical": identical, "n_test": n_test,
           "n_anomalous": sum(lbl == "anomalous" for lbl in ds_labels) if all(ds_labels) else "?",
           "encoders": encoders_summary(a, dd, random_depth), "results": results,
           "ablations": ablations(results), "json": str(a.json.relative_to(REPO) if a.json.is_relative_to(REPO)
                                                        else a.json)}
    rep["machine"]["load_avg_end"] = os.getloadavg()
    rep["stage_seconds"] = watch.stages
    rep["wall_seconds"] = watch.total()
    a.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(a.json, json.dumps(rep, indent=2, default=float))
    write_section(a.doc, markdown(rep), BEGIN, END, QUALITY_TITLE)
    log(f"done in {rep['wall_seconds'] / 60:.1f} min: {a.json}, {a.doc}")


def without_extra(res: dict) -> dict:
    return {k: v for k, v in res.items() if k != "seconds_per_sample"} | {"seconds_per_sample":
                                                                          res.get("seconds_per_sample")}


def merge(pred_dir: Path, categories: list[str]) -> dict:
    """One evaluation dict from the per-category prediction folders (mean over categories, as evaluate)."""
    out, secs = {}, []
    for cat in categories:
        r = json.loads((pred_dir / cat / "eval.json").read_text())
        out[cat] = r[cat]
        secs.append(r.get("seconds_per_sample") or np.nan)
    keys = ("i_auroc", "v_aupro_1", "v_aupro_30", "v_auroc")  # v_auroc: absent from evaluations before 03d2772
    out["mean"] = {k: float(np.nanmean([out[c].get(k, np.nan) for c in categories])) for k in keys}
    out["seconds_per_sample"] = float(np.nanmean(secs))
    return out


def settings(a) -> dict:
    return {"categories": ",".join(a.categories), "views": a.views, "image size (synth = network input)":
            a.image_size, "test instances per category": a.test_instances, "epochs (all-pairs runs)": a.epochs,
            "epochs (diagonal runs cfm, cfm_vc)": a.diag_epochs, "batch": "48 pairs", "seed": a.seed,
            "device": "cpu", "torch threads": a.threads}


def encoders_summary(a, dd: dict, random_depth: dict | None) -> dict:
    from mv3dad.encoders.patches import PATCH_ARCH

    patches = (f"encoder `{PATCH_ARCH}` (not learned: each token is its 14 x 14 pixel patch minus the patch mean, "
               f"`mv3dad/encoders/patches.py`)")
    if a.image_encoder == PATCH_ARCH:
        img = "image " + patches
    elif Path(a.image_encoder).is_dir():
        img = f"image encoder from `{a.image_encoder}` (`mv3dad pretrain-image`)"
    else:
        img = (f"image encoder `{a.image_encoder}` **randomly initialised** (`--random-init`, seeded): no pretrained "
               f"DINOv2 weights exist on this machine and there is no internet, so every number below is obtained "
               f"WITHOUT the paper's DINOv2 image features")
    if dd["arch"] == PATCH_ARCH:
        dep = "depth " + patches
    else:
        corpus = ("the endless synthetic depth stream (`--synthetic`)" if dd["synthetic_stream"] else
                  f"{dd['corpus_files']} depth maps on disk")
        dep = (f"depth encoder DINO-Depth from `{dd['dir']}` ({dd['arch']}, {dd['blocks']} blocks, width "
               f"{dd['embed_dim']}; pretrained by `mv3dad pretrain-depth` for {dd['steps']} steps x batch "
               f"{dd['global_batch']} on {corpus}, "
               f"{dd['seconds']} s on {dd['device']}; final loss {fmt(dd['final_loss'])}) - a proof-of-concept "
               f"pretraining, about 1e-4 of the paper's (ViT-S/14, 12 blocks, 47k real depth maps)")
    return {"summary": img + "; " + dep + ".", "image": a.image_encoder, "depth": dd,
            "random_depth": random_depth}


def ablations(r: dict) -> dict:
    """The paper's ablation rows next to ours, and whether the orders agree."""
    r2r, s2r = r["real2real"], r["synth2real"]
    out = {}

    def block(key, title, rows):
        ours = {k: mean_row(v) for k, (v, _) in rows.items() if v is not None}
        paper = {k: p for k, (_, p) in rows.items() if p is not None and k in ours}
        out[key] = {"title": title, "rows": {k: (ours.get(k, (np.nan, np.nan)), p) for k, (_, p) in rows.items()},
                    "checks": order_check(ours, paper) if len(paper) > 1 else []}

    block("table3", "Table 3: view conditioning (CFM without vs with view conditioning, diagonal pairs)",
          {"cfm": (r2r["cfm"], PAPER["table3"]["cfm"]), "cfm_vc": (r2r["cfm_vc"], PAPER["table3"]["cfm_vc"])})
    block("table6", "Table 6: cross-view pairs with min-ensembling (CFM + view cond. vs ModMap)",
          {"cfm_vc": (r2r["cfm_vc"], PAPER["table6"]["cfm_vc"]), "modmap": (r2r["modmap"], PAPER["table6"]["modmap"])})
    block("table6_s2r", "Table 6 on synth2real (not in the paper)",
          {"cfm_vc": (s2r["cfm_vc"], None), "modmap": (s2r["modmap"], None)})
    block("table10", "Table 10: per-view fusion of the two modality maps (ModMap)",
          {fz: (r2r["modmap"] if fz == "max" else r2r[f"modmap_fuse_{fz}"], PAPER["table10"][fz])
           for fz in ("max", "mean", "prod", "min")})
    for setup, rr in (("real2real", r2r), ("synth2real", s2r)):
        if "modmap_multiclass" in rr:
            block(f"table7_{setup}", f"Table 7: class-specific vs multi-class ModMap, {setup}",
                  {"class_specific": (rr["modmap"], PAPER["table7"][setup]["class_specific"]),
                   "multi_class": (rr["modmap_multiclass"], PAPER["table7"][setup]["multi_class"])})
    if "modmap_random_depth" in r2r:
        block("table4", "Table 4 analogue: depth encoder (paper: CFM + view cond., DINO-v2 on depth maps vs "
                        "DINO-Depth; ours: ModMap, random depth ViT-S/14 vs our DINO-Depth)",
              {"other_depth_encoder": (r2r["modmap_random_depth"], PAPER["table4"]["dino_v2_depth"]),
               "dino_depth": (r2r["modmap"], PAPER["table4"]["dino_depth"])})
    return out


if __name__ == "__main__":
    main()
