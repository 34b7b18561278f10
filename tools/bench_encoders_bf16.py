"""bf16 vs fp32 encoders on this CPU (or GPU), side by side in one run (issue 14, item 6).

Times ``Encoder.features`` for N views at S px (median of R runs, after one warm-up; the fp32 and bf16 runs
alternate, so a shared machine's load falls on both alike) in fp32 and under bf16 autocast, and the patch-token
cosine between the two (mean and min over every token of every view), plus the agreement check that
``--precision auto`` runs at load (``mv3dad.encoders.vit.bf16_agreement``). Random-init weights (seeded), random
inputs (seeded).

``--pair-grids`` instead times the two ways a depth encoder with another patch size reaches the image grid
(``EncoderConfig.pair_grids``, issue 14 item 3): ``size`` (input side = grid x its patch) vs ``resample`` (input
side S, token map resampled bilinearly to the grid), for ``--encoder dinov3_depth_vits16 --modality depth`` and an
image grid of S/14 (fp32 unless ``--bf16``).

    OMP_NUM_THREADS=2 python3 tools/bench_encoders_bf16.py [--encoder vit_base_patch14_dinov2] [--views 12]
        [--size 448] [--repeats 3] [--json OUT.json]
    OMP_NUM_THREADS=2 python3 tools/bench_encoders_bf16.py --pair-grids --encoder dinov3_depth_vits16 \
        --modality depth
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, text=True,
                              capture_output=True).stdout.strip() or "?"
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--encoder", default="vit_base_patch14_dinov2", help="registry or timm name (random init)")
    ap.add_argument("--modality", default="image", choices=["image", "depth"])
    ap.add_argument("--views", type=int, default=12)
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8, help="views per forward pass (EncoderConfig.batch_size)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--pair-grids", action="store_true", help="time pair_grids size vs resample instead")
    ap.add_argument("--bf16", action="store_true", help="with --pair-grids: under bf16 autocast")
    ap.add_argument("--image-patch", type=int, default=14, help="with --pair-grids: the image encoder's patch")
    a = ap.parse_args()
    if a.pair_grids:
        return pair_grids(a)

    from mv3dad.encoders import bf16_agreement, bf16_supported, build_encoder

    enc = build_encoder(a.encoder, pretrained=False, modality=a.modality, img_size=a.size).to(a.device)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(a.views, enc.in_chans, a.size, a.size, generator=g).to(a.device)
    sync = torch.cuda.synchronize if torch.device(a.device).type == "cuda" else (lambda: None)
    feats, times = {}, {"fp32": [], "bf16": []}
    for prec in times:
        enc.precision = prec
        enc.features(x[:1])  # warm-up
    for _ in range(a.repeats):
        for prec in times:  # alternating
            enc.precision = prec
            sync()
            t0 = time.perf_counter()
            feats[prec] = enc.features(x, batch_size=a.batch_size)
            sync()
            times[prec].append(time.perf_counter() - t0)
    cos = torch.nn.functional.cosine_similarity(feats["fp32"].double(), feats["bf16"].double(), dim=1)
    t32, t16 = statistics.median(times["fp32"]), statistics.median(times["bf16"])
    res = {"encoder": a.encoder, "modality": a.modality, "views": a.views, "size": a.size,
           "tokens_per_view": (a.size // enc.patch_size) ** 2, "repeats": a.repeats, "device": a.device,
           "bf16_native": bf16_supported(a.device), "torch_threads": torch.get_num_threads(),
           "fp32_s": round(t32, 3), "bf16_s": round(t16, 3), "speedup": round(t32 / t16, 3),
           "fp32_runs_s": [round(t, 3) for t in times["fp32"]], "bf16_runs_s": [round(t, 3) for t in times["bf16"]],
           "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
           "load_check": bf16_agreement(enc), "torch": torch.__version__, "cpu": platform.processor() or "?",
           "commit": _commit()}
    print(json.dumps(res, indent=2))
    print(f"\n| precision | {a.views} views x {a.size} px, median of {a.repeats} | speed-up | patch-token cosine "
          f"(mean / min) |\n|---|---|---|---|\n| fp32 | {t32:.2f} s | 1.00x | — |\n"
          f"| bf16 | {t16:.2f} s | {t32 / t16:.2f}x | {res['cosine_mean']:.6f} / {res['cosine_min']:.6f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


def pair_grids(a) -> None:
    """Time ``pair_grids`` ``size`` vs ``resample`` for one depth encoder (alternating runs)."""
    import torch.nn.functional as F

    from mv3dad.encoders import build_encoder

    enc = build_encoder(a.encoder, pretrained=False, modality=a.modality, img_size=a.size).to(a.device)
    enc.precision = "bf16" if a.bf16 else "fp32"
    p, grid = enc.patch_size, a.size // a.image_patch
    sides = {"size": grid * p, "resample": a.size}
    if a.size % p:
        del sides["resample"]
    g = torch.Generator().manual_seed(0)
    xs = {k: torch.rand(a.views, enc.in_chans, s, s, generator=g).to(a.device) for k, s in sides.items()}
    times: dict = {k: [] for k in sides}

    def run(k):
        f = enc.features(xs[k], batch_size=a.batch_size)
        if f.shape[-1] != grid:
            f = F.interpolate(f, size=(grid, grid), mode="bilinear", align_corners=False)
        return f

    for k in sides:
        enc.features(xs[k][:1])  # warm-up
    for _ in range(a.repeats):
        for k in sides:
            t0 = time.perf_counter()
            run(k)
            times[k].append(time.perf_counter() - t0)
    res = {"encoder": a.encoder, "views": a.views, "image_size": a.size, "image_patch": a.image_patch, "grid": grid,
           "precision": enc.precision, "torch_threads": torch.get_num_threads(), "commit": _commit(),
           **{k: {"depth_px": sides[k], "native_grid": sides[k] // p, "tokens": (sides[k] // p) ** 2,
                  "median_s": round(statistics.median(v), 3), "runs_s": [round(t, 3) for t in v]}
              for k, v in times.items()}}
    print(json.dumps(res, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
