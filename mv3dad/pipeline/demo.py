"""``mv3dad demo``: the main job, end to end, on a small benchmark it generates itself (the README's first command).

Stages (each skipped when its output already exists, so a rerun reuses what was made):

1. ``synth``: a SiM3D-style benchmark (2 categories, 12 views, 256 px, 6 test instances each, the parts' CAD meshes
   saved) in ``OUT/data``;
2. ``deviation`` with the CAD reference (the best configuration without downloadable weights, docs/quality.md) and
   with the measured training scan as reference: ``fit`` -> ``predict`` -> ``evaluate`` per category;
3. briefly, every stage of the learned method once: DINO-Depth pretraining (``pretrain-depth``, the quick recipe, a
   few steps on synthetic depth maps) and ModMap (``fit --method modmap`` on the weight-free ``texture`` image
   encoder and that DINO-Depth, a few epochs) -> ``predict`` -> ``evaluate``; at these settings ModMap is at
   chance, it shows the pipeline, not the method's quality;
4. export of each category's pictured anomalous volume to OpenVDB, NumPy and a coloured PLY point cloud;
5. a picture per category: the highest-scoring anomalous and the highest-scoring nominal part side by side, with
   one threshold (the largest nominal instance score of the prediction) and the ground truth outlined.

Everything lands under ``OUT``; ``OUT/demo.json`` records the settings (a rerun with other settings is refused
instead of mixing outputs), ``OUT/results.md`` / ``results.json`` the table.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from mv3dad.errors import DataError
from mv3dad.io.atomic import atomic_write

DEMO_FILE = "demo.json"


@dataclass
class DemoConfig:
    """Settings of ``mv3dad demo`` (the defaults run in 3-5 minutes on a 2-core CPU).

    Attributes:
        categories: procedural categories of the benchmark.
        views: views of the hemisphere rig.
        image_size: image side in pixels (detection improves with it: 448 px in docs/quality.md).
        test_instances: test instances per category (about half anomalous).
        seed: seed of the benchmark.
        pretrain_steps: DINO-Depth pretraining steps (the real recipe: 10^4 or more, on a GPU).
        pretrain_image_size: DINO-Depth crop side (multiple of 14).
        modmap_categories: categories ModMap is fitted on (its cost grows with views squared).
        modmap_image_size: ModMap's input side (multiple of 14; the paper: 448 px on DINOv2).
        modmap_epochs: ModMap training epochs (the paper: 200).
        formats: export formats of the pictured anomalous volumes.
    """

    categories: tuple[str, ...] = ("vase", "stool")
    views: int = 12
    image_size: int = 256
    test_instances: int = 6
    seed: int = 0
    pretrain_steps: int = 10
    pretrain_image_size: int = 112
    modmap_categories: tuple[str, ...] = ("vase",)
    modmap_image_size: int = 112
    modmap_epochs: int = 10
    formats: tuple[str, ...] = ("vdb", "npy", "ply")

    def __post_init__(self) -> None:
        self.categories = tuple(self.categories)
        self.modmap_categories = tuple(self.modmap_categories)
        self.formats = tuple(self.formats)
        extra = [c for c in self.modmap_categories if c not in self.categories]
        if extra:
            raise ValueError(f"modmap categories {extra} are not among the benchmark's {list(self.categories)}")
        for name in ("pretrain_image_size", "modmap_image_size"):
            if getattr(self, name) % 14:
                raise ValueError(f"{name} must be a multiple of 14, got {getattr(self, name)}")


CONFIGS = {
    "deviation_cad": "deviation, CAD reference",
    "deviation_scan": "deviation, measured scan",
    "modmap": "ModMap (texture + DINO-Depth, brief)",
}
"""Configurations of the demo's table: folder prefix -> label."""


@dataclass
class DemoResult:
    """What the demo made.

    Attributes:
        table: the result table (Markdown).
        rows: one dict per (configuration, category): the metrics and seconds per sample.
        outputs: label -> path of every output.
        seconds: wall time of this call.
        skipped: names of the stages reused from an earlier call.
    """

    table: str
    rows: list[dict]
    outputs: dict[str, str]
    seconds: float
    skipped: list[str] = field(default_factory=list)


class _Stage:
    def __init__(self, name: str, done: Path, run):
        self.name, self.done, self.run = name, done, run


def _check_settings(out: Path, cfg: DemoConfig) -> None:
    path = out / DEMO_FILE
    now = dataclasses.asdict(cfg)
    now = json.loads(json.dumps(now))  # tuples -> lists, as stored
    if path.is_file():
        before = json.loads(path.read_text())
        if before != now:
            diff = sorted(k for k in now if before.get(k) != now[k])
            raise DataError(f"{out}: made by a demo with other settings ({', '.join(diff)}); pass another output "
                            f"folder or delete this one")
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(now, indent=2))


def plan(out: str | Path, cfg: DemoConfig | None = None) -> list[_Stage]:
    """The demo's stages in order, each with the file whose presence marks it done."""
    from mv3dad.pipeline.evaluate import run_evaluate

    cfg = cfg or DemoConfig()
    out = Path(out)
    data, dd = out / "data", out / "dino_depth"
    stages = [_Stage(f"synth benchmark ({len(cfg.categories)} categories, {cfg.views} views, {cfg.image_size} px)",
                     data / "benchmark.json", lambda: _synth(data, cfg)),
              _Stage(f"pretrain DINO-Depth ({cfg.pretrain_steps} steps)", dd / "encoder.json",
                     lambda: _pretrain(dd, cfg))]
    for key in CONFIGS:
        cats = cfg.modmap_categories if key == "modmap" else cfg.categories
        for cat in cats:
            run, pred = out / "runs" / f"{key}_{cat}", out / "pred" / f"{key}_{cat}"
            stages += [
                _Stage(f"fit {CONFIGS[key]}: {cat}", run / "run.json",
                       lambda key=key, cat=cat, run=run: _fit(key, data, cat, run, dd, cfg)),
                _Stage(f"predict {CONFIGS[key]}: {cat}", pred / "scores.json",
                       lambda run=run, pred=pred: _predict(run, data, pred)),
                _Stage(f"evaluate {CONFIGS[key]}: {cat}", pred / "metrics.json",
                       lambda pred=pred: run_evaluate(pred, data, pred / "metrics.json")),
            ]
    for cat in cfg.categories:
        pred = out / "pred" / f"deviation_cad_{cat}"
        stages += [_Stage(f"export {cat} (vdb, npy, ply)", out / "export" / f"{cat}.done",
                          lambda cat=cat, pred=pred: _export(pred, data, cat, out / "export", cfg)),
                   _Stage(f"picture {cat}", out / f"picture_{cat}.png",
                          lambda cat=cat, pred=pred: _picture(pred, data, cat, out / f"picture_{cat}.png"))]
    return stages


def run_demo(out: str | Path = "out/demo", cfg: DemoConfig | None = None, progress: bool = True) -> DemoResult:
    """Run (or finish) the demo in ``out``; returns the table and the outputs."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    cfg = cfg or DemoConfig()
    out = Path(out)
    _check_settings(out, cfg)
    t0 = time.perf_counter()
    stages = plan(out, cfg)
    skipped = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("demo", total=len(stages))
        for stage in stages:
            if stage.done.exists():
                skipped.append(stage.name)
            else:
                bar.update(task, description=f"demo: {stage.name}")
                stage.run()
            bar.advance(task)
        bar.update(task, description="demo: done")
    rows = _rows(out, cfg)
    table = _table(rows)
    atomic_write(out / "results.md", table + "\n")
    atomic_write(out / "results.json", json.dumps(rows, indent=2))
    return DemoResult(table, rows, _outputs(out, cfg), time.perf_counter() - t0, skipped)


# ---- stages -----------------------------------------------------------------------------------------------------
def _synth(data: Path, cfg: DemoConfig) -> None:
    from mv3dad.synth.generate import SynthConfig, generate_benchmark

    generate_benchmark(data, SynthConfig(categories=cfg.categories, views=cfg.views, image_size=cfg.image_size,
                                         test_instances=cfg.test_instances, seed=cfg.seed, save_meshes=True),
                       overwrite=True, progress=False)


def _pretrain(dd: Path, cfg: DemoConfig) -> None:
    from mv3dad.config import default_config, load_config
    from mv3dad.pretrain.config import PretrainConfig
    from mv3dad.pretrain.trainer import pretrain

    pc = load_config(PretrainConfig, default_config("pretrain_depth_quick.yaml"), modality="depth",
                     steps=cfg.pretrain_steps, image_size=cfg.pretrain_image_size, batch_size=4, seed=cfg.seed)
    pretrain(pc, dd, [], synthetic=True, show_progress=False)


def _fit(key: str, data: Path, cat: str, run: Path, dd: Path, cfg: DemoConfig) -> None:
    from mv3dad.config import default_config, load_config
    from mv3dad.mapping.fit import FitConfig
    from mv3dad.pipeline.features import EncoderConfig
    from mv3dad.pipeline.fit import FitJob, run_fit
    from mv3dad.scoring.methods.deviation import DeviationConfig

    if key.startswith("deviation"):
        mesh = data / cat / "train" / "000" / "mesh.ply" if key == "deviation_cad" else None
        job = FitJob(str(data), [cat], str(run), method="deviation",
                     deviation=DeviationConfig(reference_mesh=str(mesh) if mesh else None))
    else:
        fit_cfg = load_config(FitConfig, default_config("modmap.yaml"), epochs=cfg.modmap_epochs)
        enc = load_config(EncoderConfig, None, image_encoder="texture", depth_encoder=str(dd),
                          image_size=cfg.modmap_image_size)
        job = FitJob(str(data), [cat], str(run), method="modmap", encoders=enc, fit=fit_cfg)
    run_fit(job, progress=False)


def _predict(run: Path, data: Path, pred: Path) -> None:
    from mv3dad.pipeline.predict import PredictJob, run_predict

    run_predict(PredictJob(str(run), str(data), str(pred)), progress=False)


def _pictured(pred: Path, cat: str) -> tuple[str, str]:
    """(highest-scoring anomalous, highest-scoring nominal) instance ids of a prediction."""
    rec = json.loads((pred / "scores.json").read_text())["scores"][cat]

    def top(label):
        cands = [(v["score"] if math.isfinite(v["score"]) else -math.inf, k) for k, v in rec.items()
                 if v["label"] == label]
        if not cands:
            raise DataError(f"{pred}: no {label} test instance of {cat} to draw")
        return max(cands)[1]

    return top("anomalous"), top("nominal")


def _export(pred: Path, data: Path, cat: str, folder: Path, cfg: DemoConfig) -> None:
    from mv3dad.export import load_volume, save_volume, write_ply_points

    folder.mkdir(parents=True, exist_ok=True)
    iid, _ = _pictured(pred, cat)
    vol = load_volume(pred / cat / f"{iid}.npz")
    for fmt in cfg.formats:
        path = folder / f"{cat}_{iid}.{fmt}"
        if fmt == "ply":
            write_ply_points(vol, path)
        else:
            save_volume(vol, path, fmt)
    atomic_write(folder / f"{cat}.done", iid + "\n")


def _picture(pred: Path, data: Path, cat: str, png: Path) -> None:
    from mv3dad.data import open_dataset
    from mv3dad.export import load_volume
    from mv3dad.viz.render import RenderConfig, nominal_threshold, render_volumes

    bad, good = _pictured(pred, cat)
    threshold, note = nominal_threshold(pred / "scores.json", cat)
    tests = open_dataset(data)[cat].test
    gts = [tests[tests.ids.index(bad)].gt, None]
    render_volumes([load_volume(pred / cat / f"{i}.npz") for i in (bad, good)], png,
                   objs=[data / cat / "test" / i / "mesh.ply" for i in (bad, good)], threshold=threshold,
                   config=RenderConfig(views=3), gts=gts, threshold_note=note,
                   titles=[f"{cat} {bad}: anomalous (ground truth outlined)", f"{cat} {good}: nominal"])


# ---- report -----------------------------------------------------------------------------------------------------
def _rows(out: Path, cfg: DemoConfig) -> list[dict]:
    rows = []
    for key, label in CONFIGS.items():
        for cat in (cfg.modmap_categories if key == "modmap" else cfg.categories):
            pred = out / "pred" / f"{key}_{cat}"
            m = json.loads((pred / "metrics.json").read_text())[cat]
            s = json.loads((pred / "scores.json").read_text())
            rows.append({"configuration": label, "category": cat, "i_auroc": m.get("i_auroc"),
                         "v_aupro_1": m.get("v_aupro_1"), "v_aupro_30": m.get("v_aupro_30"),
                         "v_auroc": m.get("v_auroc"), "seconds_per_sample": s.get("mean_seconds_per_sample"),
                         "pred": str(pred)})
    return rows


def _f(x, digits=3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _table(rows: list[dict]) -> str:
    lines = ["| configuration | category | I-AUROC | V-AUPRO@1% | V-AUPRO@30% | V-AUROC | s / sample |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['configuration']} | {r['category']} | {_f(r['i_auroc'])} | {_f(r['v_aupro_1'])} | "
                     f"{_f(r['v_aupro_30'])} | {_f(r['v_auroc'])} | {_f(r['seconds_per_sample'], 2)} |")
    return "\n".join(lines)


def _outputs(out: Path, cfg: DemoConfig) -> dict[str, str]:
    o = {"benchmark": out / "data", "benchmark preview": out / "data" / "preview.png",
         "DINO-Depth encoder": out / "dino_depth" / "encoder.safetensors", "runs": out / "runs",
         "predictions (volumes .npz, scores.json, metrics.json)": out / "pred",
         "result table": out / "results.md"}
    for cat in cfg.categories:
        for p in sorted((out / "export").glob(f"{cat}_*")):
            o[f"export {cat} ({p.suffix[1:]})"] = p
        o[f"picture {cat}"] = out / f"picture_{cat}.png"
    return {k: str(v) for k, v in o.items()}


REAL_USE = """For real use, raise:
  - image size: --image-size 448 or more in `mv3dad synth` / your scanner's resolution (detection improves with it,
    docs/quality.md); more test parts for stable figures;
  - the reference: your part's CAD mesh (`fit --method deviation --reference-mesh FILE`), the best offline setup;
  - ModMap: the DINOv2 image encoder (timm hub or --image-weights FILE), DINO-Depth pretrained for 10^4+ steps on
    your depth maps (`pretrain-depth --data DIR`), 200 epochs at 448 px;
  - a GPU (`pip install -e .[gpu]`), and `torchrun --nproc_per_node N -m mv3dad predict ...` for many parts.
See docs/guide.md."""
