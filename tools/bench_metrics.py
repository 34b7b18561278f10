"""Benchmark of mv3dad.metrics (not a test): time per call on synthetic volumes and maps, side by side with
scikit-learn's roc_auc_score (P-AUROC) and a per-threshold loop of the MVTec 3D-AD / CFM algorithm (AUPRO).

    python tools/bench_metrics.py [--volumes 8] [--size 128] [--maps 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage


def _volumes(n: int, size: int, seed: int = 0):
    """n cubic score volumes with a third unobserved (NaN) and a few box defects with raised scores."""
    rng = np.random.default_rng(seed)
    scores, gts = [], []
    for i in range(n):
        g = np.zeros((size,) * 3, np.uint8)
        for _ in range(i % 3):  # some instances without a defect
            a = rng.integers(size // 4, size // 2, 3)
            g[a[0]:a[0] + 12, a[1]:a[1] + 8, a[2]:a[2] + 6] = 1
        s = rng.random(g.shape, dtype=np.float32) + 0.5 * g
        s[: size // 3] = np.nan
        scores.append(s)
        gts.append(g)
    return scores, gts


def _maps(n: int, seed: int = 1):
    """n 224x224 maps with a box defect in most."""
    rng = np.random.default_rng(seed)
    scores, gts = [], []
    for i in range(n):
        g = np.zeros((224, 224), np.uint8)
        if i % 4:
            r, c = rng.integers(0, 200, 2)
            g[r:r + 20, c:c + 15] = 1
        scores.append(rng.random(g.shape, dtype=np.float32) + 0.4 * g)
        gts.append(g)
    return scores, gts


def _loop_mvtec_aupro(scores, gts, limit, num_thresholds=99):
    """The MVTec 3D-AD / CFM algorithm with a Python loop over thresholds and regions (the usual code path),
    every element evaluated (NaN as -inf, like evaluate="all")."""
    regions, ok = [], []
    for s, g in zip(scores, gts):
        s = np.where(np.isnan(s), -np.inf, s)
        lab, n = ndimage.label(g, structure=np.ones((3,) * g.ndim))
        regions += [np.sort(s[lab == k]) for k in range(1, n + 1)]
        ok.append(s[g == 0])
    ok = np.sort(np.concatenate(ok))
    fprs, pros = [1.0], [1.0]
    for pos in np.linspace(0, len(ok) - 1, num_thresholds, dtype=int):
        fprs.append(1 - (pos + 1) / len(ok))
        pros.append(np.mean([1 - np.searchsorted(r, ok[pos], side="right") / len(r) for r in regions]))
    x, y = np.array(fprs[::-1]), np.array(pros[::-1])
    j = np.searchsorted(x, limit, side="right")
    y_lim = y[j - 1] + (y[j] - y[j - 1]) * (limit - x[j - 1]) / (x[j] - x[j - 1])
    return (np.trapezoid(y[:j], x[:j]) + 0.5 * (y[j - 1] + y_lim) * (limit - x[j - 1])) / limit


def _time(fn, repeat: int) -> tuple[float, object]:
    best, out = np.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    from sklearn.metrics import roc_auc_score

    from mv3dad.metrics import aupro, aupro_at, pixel_auroc

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--volumes", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--maps", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    for name, (scores, gts) in (("volumes", _volumes(a.volumes, a.size)), ("maps", _maps(a.maps))):
        n = sum(s.size for s in scores)
        print(f"\n{name}: {len(scores)} x {scores[0].shape} = {n / 1e6:.1f} M elements (best of {a.repeat})")
        rows = [
            ("aupro@0.01 exact", lambda: aupro(scores, gts, 0.01)),
            ("aupro_at(0.01..0.3) exact", lambda: aupro_at(scores, gts)),
            ("aupro@0.3 exact", lambda: aupro(scores, gts, 0.3)),
            ("aupro@0.3 mode=mvtec (99 thr)", lambda: aupro(scores, gts, 0.3, mode="mvtec", evaluate="all")),
            ("loop MVTec/CFM algorithm (99 thr)", lambda: _loop_mvtec_aupro(scores, gts, 0.3)),
            ("pixel_auroc", lambda: pixel_auroc(scores, gts, evaluate="all")),
        ]
        flat_s = np.concatenate([np.nan_to_num(s, nan=-1.0).ravel() for s in scores])
        flat_g = np.concatenate([g.ravel() for g in gts])
        rows.append(("sklearn roc_auc_score (same elements)", lambda: roc_auc_score(flat_g, flat_s)))
        times = {}
        for label, fn in rows:
            times[label], value = _time(fn, a.repeat)
            value = value if isinstance(value, float) else value[0.01]
            print(f"  {label:40s} {times[label]:8.3f} s  {n / times[label] / 1e6:8.1f} M el/s  value {value:.6f}")
        loop_ratio = times["loop MVTec/CFM algorithm (99 thr)"] / times["aupro@0.3 mode=mvtec (99 thr)"]
        sk_ratio = times["sklearn roc_auc_score (same elements)"] / times["pixel_auroc"]
        print(f"  ratio loop-MVTec / mode=mvtec: {loop_ratio:.1f}x; sklearn / pixel_auroc: {sk_ratio:.1f}x")


if __name__ == "__main__":
    main()
