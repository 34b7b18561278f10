"""One prepared check for a lent GPU machine (issue 14, item 5); run it through ``tools/gpu_check.sh``.

Stages (each guarded: a failing stage is recorded with its error and the others still run):

1. ``env``: torch / CUDA / GPU / CuPy / Numba / timm / lightly versions.
2. ``gpu_tests``: the suite's GPU-only tests (CuPy back-projection == Numba, CUDA pair scoring == CPU, the CUDA
   kernels compile without FMA, plus ``--device cuda`` device-parametrised tests where the suite offers that
   option), run by pytest in a child process from the source tree.
3. ``predict``: one sample's predict stages for N views at S px (default 36 x 896) with randomly initialised
   encoders in bf16 (CUDA autocast): image ViT-B/14 features, depth ViT-S/14 features, N x N pair scoring
   (``score_views`` with a random ``ModMapModel``), back-projection of both score maps into a voxel volume
   (CuPy on a GPU), and the total; median of ``--repeats`` runs after a warm-up. The DINOv3-style ViT-S/16 depth
   encoder is timed too (its own token grid, not paired). Without timm the ViTs are the project's own
   DINOv3-style module at the same sizes (a stand-in of the same cost; recorded in the JSON).
4. ``pretrain``: DINO-Depth pretraining throughput in samples/s (ViT-S/14 and the DINOv3-style ViT-S/16, the full
   DINO + iBOT + KoLeo step with EMA teacher, bf16), over a few steps after a warm-up; without lightly only the
   backbones' forward/backward is timed (recorded).

Writes ``gpu_check.json`` and ``gpu_check.md`` into the output folder. ``--smoke`` runs tiny sizes on any device
(the CPU check that the script works).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

PAPER_MS = 2887.0  # ModMap, Supp. Table 8: ms per 36-view sample at 896 px
GOAL_MS = 500.0


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(fn, dev, repeats: int) -> tuple[float, object]:
    """Median wall time in ms of ``fn()`` over ``repeats`` runs (after one warm-up); and the last result."""
    out = fn()
    _sync(dev)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        _sync(dev)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), out


def stage_env(a, dev) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "device": str(dev),
            "cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda, "host": platform.node(),
            "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}")
    for mod in ("cupy", "numba", "timm", "lightly", "xarray", "yaml", "safetensors", "open3d", "trimesh"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", "present")
        except Exception as e:  # noqa: BLE001 - record whatever fails
            info[mod] = f"missing ({type(e).__name__})"
    return info


def stage_gpu_tests(a, dev) -> dict:
    files = ["tests/volume/test_backproject.py", "tests/scoring/test_pairs.py"]
    base = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    runs = {"gpu_only": base + [*files, "-k", "cuda or cupy or gpu"]}
    conftest = (REPO / "tests" / "conftest.py").read_text() if (REPO / "tests" / "conftest.py").is_file() else ""
    if '"--device"' in conftest or "'--device'" in conftest:
        runs["device_cuda"] = base + ["--device", "cuda" if dev.type == "cuda" else "cpu", "tests/volume",
                                      "tests/scoring", "tests/encoders", "-k", "device"]
    out = {}
    for name, cmd in runs.items():
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=a.test_timeout)
            text, rc = p.stdout + p.stderr, p.returncode
        except subprocess.TimeoutExpired as e:
            text, rc = f"timed out after {a.test_timeout} s\n{e.stdout or ''}", "timeout"
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        out[name] = {"command": " ".join(cmd[1:]), "returncode": rc, "seconds": round(time.perf_counter() - t0, 1),
                     "summary": lines[-1] if lines else "", "tail": "\n".join(lines[-25:])}
    return out


def _encoders(a, dev):
    """(image ViT-B/14, depth ViT-S/14, depth DINOv3 ViT-S/16, how they were built)."""
    from mv3dad.encoders import Encoder, build_encoder
    from mv3dad.encoders.dinov3 import DinoV3Config, DinoV3ViT

    v3 = build_encoder("dinov3_depth_vits16", pretrained=False)
    if a.smoke:  # two blocks each: the smoke run checks the plumbing, not the cost
        img = Encoder(DinoV3ViT(DinoV3Config(768, 2, 12, 14, 3)), "image")
        dep = Encoder(DinoV3ViT(DinoV3Config(384, 2, 6, 14, 1)), "depth")
        return img.to(dev), dep.to(dev), v3.to(dev), "smoke: 2-block stand-ins"
    try:
        img = build_encoder("dinov2_vitb14_reg", pretrained=False, img_size=a.size)
        dep = build_encoder("dino_depth_vits14", pretrained=False, img_size=a.size)
        how = "timm ViT-B/14 + ViT-S/14 (reg4), random init"
    except Exception as e:  # noqa: BLE001 - no timm (or no torchvision) on the lent machine
        img = Encoder(DinoV3ViT(DinoV3Config(768, 12, 12, 14, 3)), "image")
        dep = Encoder(DinoV3ViT(DinoV3Config(384, 12, 6, 14, 1)), "depth")
        how = f"stand-ins of the same size (mv3dad DinoV3ViT, RoPE, no registers): timm unusable ({e!r:.200})"
    return img.to(dev), dep.to(dev), v3.to(dev), how


def _rig_views(n: int, size: int):
    from bench_backproject import rig, sphere_depth

    from mv3dad.data.scene import View

    import numpy as np

    cams = (rig(36, size) * (n // 36 + 1))[:n]  # the 36-camera hemisphere rig (repeated beyond 36 views)
    return [View(np.zeros((size, size, 3), np.uint8), sphere_depth(cam), cam) for cam in cams]


def stage_predict(a, dev) -> dict:
    import torch

    from mv3dad.mapping import ModMapModel
    from mv3dad.scoring import score_views
    from mv3dad.volume import VolumeAccumulator, grid_for_views

    n, s = a.views, a.size
    img, dep, v3, how = _encoders(a, dev)
    res: dict = {"views": n, "size": s, "encoders": how, "precision": "bf16 autocast" if dev.type == "cuda"
                 else "fp32 (CPU)", "repeats": a.repeats}
    g = torch.Generator(device="cpu").manual_seed(0)
    x_img = torch.rand(n, 3, s, s, generator=g).to(dev)
    x_dep = torch.rand(n, 1, s, s, generator=g).to(dev)
    bs = a.encoder_batch
    res["image_encoder_ms"], f_img = _timed(lambda: img.features(x_img, batch_size=bs), dev, a.repeats)
    res["depth_encoder_ms"], f_dep = _timed(lambda: dep.features(x_dep, batch_size=bs), dev, a.repeats)
    res["token_grid"] = list(f_img.shape[2:])
    try:
        s16 = s // 16 * 16
        x16 = torch.rand(n, 1, s16, s16, generator=g).to(dev)
        res["depth_dinov3_vits16_ms"], f16 = _timed(lambda: v3.features(x16, batch_size=bs), dev, a.repeats)
        res["depth_dinov3_vits16_grid"] = list(f16.shape[2:])
        del x16, f16
    except Exception as e:  # noqa: BLE001
        res["depth_dinov3_vits16_error"] = repr(e)
    torch.manual_seed(0)
    model = ModMapModel(n, f_img.shape[1], f_dep.shape[1], mapper="cfm").eval()
    res["scoring_pairs"] = n * n
    res["scoring_ms"], (s_img, s_dep) = _timed(lambda: score_views(model, f_img, f_dep, device=dev), dev, a.repeats)
    views = _rig_views(n, s)
    grid = grid_for_views(views, voxel_size=a.voxel)
    res["grid"] = list(grid.shape)
    maps = [((s_img[i] + s_dep[i]) / 2).numpy() for i in range(n)]

    def project():
        acc = VolumeAccumulator(grid, reduce="max")
        for m, v in zip(maps, views):
            acc.add(m, v)
        return acc.backend, acc.result()

    res["backproject_ms"], (backend, _) = _timed(project, dev, a.repeats)
    res["backproject_backend"] = backend
    res["total_ms"] = round(sum(res[k] for k in ("image_encoder_ms", "depth_encoder_ms", "scoring_ms",
                                                  "backproject_ms")), 1)

    def end_to_end():
        fi = img.features(x_img, batch_size=bs)
        fd = dep.features(x_dep, batch_size=bs)
        si, sd = score_views(model, fi, fd, device=dev)
        acc = VolumeAccumulator(grid, reduce="max")
        for i, v in enumerate(views):
            acc.add(((si[i] + sd[i]) / 2).numpy(), v)
        return acc.result()

    res["end_to_end_ms"], _ = _timed(end_to_end, dev, a.repeats)
    if dev.type == "cuda":
        res["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    for k, v in list(res.items()):
        if k.endswith("_ms"):
            res[k] = round(float(v), 1)
    return res


def _pretrain_one(a, dev, arch: str) -> dict:
    import torch

    from mv3dad.pretrain.config import PretrainConfig

    small = a.smoke
    cfg = PretrainConfig(arch=arch, image_size=(32 if arch.startswith("dinov3") else 28) if small else 224, n_local_crops=2 if small else 8,
                         batch_size=a.pretrain_batch, n_prototypes=64 if small else 65536,
                         head_hidden_dim=32 if small else 2048, head_bottleneck_dim=16 if small else 256,
                         vit_depth=1 if small else None, centering="sinkhorn" if arch.startswith("dinov3") else "ema")
    b, p = cfg.batch_size, cfg.patch_size
    gsz, lsz = cfg.image_size, cfg.local_size
    gen = torch.Generator().manual_seed(0)
    glob = torch.rand(2 * b, 1, gsz, gsz, generator=gen).to(dev)
    loc = torch.rand(cfg.n_local_crops * b, 1, lsz, lsz, generator=gen).to(dev)
    grid = (gsz // p, gsz // p)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu",
                                                                                                enabled=False)
    try:
        from lightly.models.utils import update_momentum

        from mv3dad.pretrain.losses import DinoV2Loss
        from mv3dad.pretrain.masking import block_masks, ibot_targets
        from mv3dad.pretrain.trainer import build_network

        torch.manual_seed(0)
        student, teacher = build_network(cfg, cfg.drop_path_rate).to(dev), build_network(cfg).to(dev)
        teacher.load_state_dict(student.state_dict())
        teacher.eval().requires_grad_(False)
        loss_fn = DinoV2Loss(cfg.n_prototypes, cfg.student_temp, cfg.centering, cfg.sinkhorn_iterations,
                             (cfg.dino_weight, cfg.ibot_weight, cfg.koleo_weight)).to(dev)
        masks = block_masks(2 * b, grid, 0, cfg.mask_probability, cfg.mask_ratio)
        masks, targets = ibot_targets(masks, torch.ones(2 * b, *grid, dtype=torch.bool),
                                      torch.Generator().manual_seed(0))
        masks, targets = masks.to(dev), targets.to(dev)
        mode = "full step (DINO + iBOT + KoLeo, EMA teacher)"

        def step():
            with amp:
                with torch.no_grad():
                    t_out = teacher(glob, loc[:0], None, targets)
                s_out = student(glob, loc, masks, targets)
                loss, _ = loss_fn(t_out, s_out, targets, 0.04)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            update_momentum(student, teacher, 0.994)
    except ImportError as e:  # no lightly: the backbones alone
        from mv3dad.encoders.dinov3 import MaskedDinoV3, create_dinov3
        from mv3dad.encoders.vit import create_vit

        mode = f"backbone forward/backward only ({e})"
        if arch.startswith("dinov3"):
            student = MaskedDinoV3(create_dinov3(gsz, cfg.drop_path_rate, **cfg.timm_kwargs())).to(dev)
            fwd = lambda x: student.encode(x)  # noqa: E731
        else:
            student = create_vit(arch, gsz, {**cfg.timm_kwargs(), "drop_path_rate": cfg.drop_path_rate}).to(dev)
            fwd = lambda x: student.forward_features(x)  # noqa: E731

        def step():
            with amp:
                loss = fwd(glob)[:, 0].float().pow(2).mean() + fwd(loc)[:, 0].float().pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    opt = torch.optim.AdamW([q for q in student.parameters() if q.requires_grad], lr=1e-4)
    step()
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(a.pretrain_steps):
        step()
    _sync(dev)
    dt = time.perf_counter() - t0
    return {"arch": arch, "mode": mode, "batch_size": b, "global_crops": f"2 x {gsz}",
            "local_crops": f"{cfg.n_local_crops} x {lsz}", "steps_timed": a.pretrain_steps,
            "seconds": round(dt, 2), "samples_per_s": round(a.pretrain_steps * b / dt, 1)}


def stage_pretrain(a, dev) -> dict:
    out = {}
    for arch in ("vit_small_patch14_reg4_dinov2", "dinov3_depth_vits16"):
        try:
            out[arch] = _pretrain_one(a, dev, arch)
        except Exception as e:  # noqa: BLE001
            out[arch] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
    return out


def _markdown(rep: dict) -> str:
    env = rep["stages"].get("env", {})
    L = ["# GPU check", "", f"Run {rep['started']} on {env.get('gpu', env.get('device', '?'))} "
         f"(torch {env.get('torch')}, CUDA {env.get('torch_cuda')}); smoke: {rep['smoke']}; "
         f"{rep['seconds']:.0f} s in all.", ""]
    for name, err in rep["errors"].items():
        L.append(f"- **stage {name} failed**: `{err.splitlines()[-1] if err else ''}`")
    tests = rep["stages"].get("gpu_tests")
    if isinstance(tests, dict):
        L += ["", "## GPU tests", "", "| run | result | s |", "|---|---|---:|"]
        for k, v in tests.items():
            L.append(f"| {k} | {v['summary']} (rc {v['returncode']}) | {v['seconds']} |")
    p = rep["stages"].get("predict")
    if isinstance(p, dict):
        L += ["", f"## Predict, one sample: {p['views']} views at {p['size']} px ({p['precision']})", "",
              f"Encoders: {p['encoders']}. Token grid {p.get('token_grid')}; voxel grid {p.get('grid')}; "
              f"back-projection backend {p.get('backproject_backend')}. Median of {p['repeats']} after a warm-up.",
              "", "| stage | ms |", "|---|---:|"]
        for k in ("image_encoder_ms", "depth_encoder_ms", "scoring_ms", "backproject_ms", "total_ms",
                  "end_to_end_ms", "depth_dinov3_vits16_ms"):
            if k in p:
                L.append(f"| {k[:-3].replace('_', ' ')} | {p[k]} |")
        L += ["", f"Goal: total <= {GOAL_MS:.0f} ms per sample on an H100/H200-class GPU; the paper reports "
              f"{PAPER_MS:.0f} ms (Supp. Table 8)."]
    t = rep["stages"].get("pretrain")
    if isinstance(t, dict):
        L += ["", "## DINO-Depth pretraining throughput", "", "| arch | mode | batch | crops | samples/s |",
              "|---|---|---:|---|---:|"]
        for arch, v in t.items():
            if "error" in v:
                L.append(f"| {arch} | error: {v['error'][:120]} | | | |")
            else:
                L.append(f"| {arch} | {v['mode']} | {v['batch_size']} | {v['global_crops']} + {v['local_crops']} "
                         f"| {v['samples_per_s']} |")
    return "\n".join(L) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?", default=os.environ.get("OUT") or "gpu_check_out", help="output folder")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (a CPU check that the script works)")
    ap.add_argument("--device", default="auto", help="auto (CUDA when available), cuda, cpu")
    ap.add_argument("--stages", default="env,gpu_tests,predict,pretrain")
    ap.add_argument("--views", type=int, default=None)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--voxel", type=float, default=2.0, help="voxel size in mm of the back-projection grid")
    ap.add_argument("--encoder-batch", type=int, default=12, help="views per encoder forward")
    ap.add_argument("--pretrain-batch", type=int, default=None)
    ap.add_argument("--pretrain-steps", type=int, default=None)
    ap.add_argument("--test-timeout", type=int, default=150)
    a = ap.parse_args()
    a.views = a.views or (3 if a.smoke else 36)
    a.size = a.size or (56 if a.smoke else 896)
    a.repeats = a.repeats or (1 if a.smoke else 3)
    a.pretrain_batch = a.pretrain_batch or (2 if a.smoke else 64)
    a.pretrain_steps = a.pretrain_steps or (1 if a.smoke else 5)
    if a.smoke:
        a.voxel = max(a.voxel, 8.0)

    import torch

    dev = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if a.device == "auto" else a.device))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rep = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "smoke": a.smoke, "args": vars(a), "stages": {},
           "errors": {}, "git": subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                               text=True).stdout.strip() or None}
    t_all = time.perf_counter()
    fns = {"env": stage_env, "gpu_tests": stage_gpu_tests, "predict": stage_predict, "pretrain": stage_pretrain}
    for name in a.stages.split(","):
        t0 = time.perf_counter()
        print(f"[gpu_check] {name} ...", flush=True)
        try:
            rep["stages"][name] = fns[name](a, dev)
        except Exception:  # noqa: BLE001 - one failing stage must not lose the others
            rep["errors"][name] = traceback.format_exc()[-3000:]
            print(rep["errors"][name], file=sys.stderr, flush=True)
        rep.setdefault("stage_seconds", {})[name] = round(time.perf_counter() - t0, 1)
        rep["seconds"] = time.perf_counter() - t_all
        (out / "gpu_check.json").write_text(json.dumps(rep, indent=1, default=str))  # after every stage
        (out / "gpu_check.md").write_text(_markdown(rep))
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    print(_markdown(rep))
    print(f"[gpu_check] wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    return 1 if rep["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
