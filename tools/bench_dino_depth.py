"""Proof that pretrain-depth learns: DINO-Depth vs a randomly initialised ViT of the same shape.

Steps (each skipped when its output exists):

1. a synthetic pretraining corpus on disk (``random_depth_maps``; .npy files, read like any generic corpus);
2. ``pretrain`` on it (the run's length and cost are printed);
3. a downstream probe on a ``mv3dad synth`` benchmark: per category, a PatchCore-like kNN memory bank of the
   nominal training instance's depth-token features; each test token is scored by its cosine distance to the
   nearest bank token; tokens are labelled defective from the ground-truth voxels (pixels back-projected into the
   GT grid). Reported: token AUROC (defect vs nominal tokens of all test views) and instance AUROC (max token
   score per instance), for the learned encoder and the random one;
4. a PCA picture (raw depth | PCA of DINO-Depth features | PCA of random features | GT defect pixels).

Usage::

    mv3dad synth BENCH --categories vase,container,cabinet,stool,bin --views 12 --image-size 224 \
        --test-instances 8 --seed 7
    python tools/bench_dino_depth.py --bench BENCH --work WORK [--steps 300] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def make_corpus(folder: Path, n_maps: int, size: int, seed: int) -> float:
    from mv3dad.synth.corpus import random_depth_maps

    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    stream = random_depth_maps(seed, size)
    for i in range(n_maps):
        np.save(folder / f"{i:05d}_depth.npy", next(stream))
    return time.perf_counter() - t0


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    from scipy.stats import rankdata

    labels = labels.astype(bool)
    n1, n0 = labels.sum(), (~labels).sum()
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(scores)
    return float((r[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def defect_pixels(view, gt) -> np.ndarray:
    """(H, W) bool: measured pixels whose 3D point lies in (or next to) a ground-truth defect voxel."""
    from scipy.ndimage import binary_dilation

    from mv3dad.geometry.grid import VoxelGrid
    from mv3dad.geometry.projection import depth_to_points

    grid = VoxelGrid.from_dataarray(gt)
    vol = binary_dilation(gt.values > 0, iterations=1)
    pts, valid = depth_to_points(view.depth, view.camera)
    idx = grid.world_to_index(pts)
    inside = grid.contains(idx)
    hit = np.zeros(len(pts), bool)
    hit[inside] = vol[tuple(idx[inside].T)]
    out = np.zeros(view.depth.shape, bool)
    out[valid] = hit  # row-major order of the valid pixels
    return out


def view_tokens(enc, sample, size: int):
    """Per view: features (V, C, h, w) L2-normalised, token validity (V, h, w), token defect labels (V, h, w)."""
    from mv3dad.encoders.preprocess import pad_square, resize_nearest, token_validity

    x = enc.preprocess([v.depth for v in sample.views], size)
    f = torch.nn.functional.normalize(enc.features(x, batch_size=12), dim=1)
    valid = token_validity(x, 14, 0.5)
    if sample.gt is None:
        lab = torch.zeros_like(valid)
    else:
        masks = [torch.from_numpy(pad_square(defect_pixels(v, sample.gt).astype(np.float32), "zeros"))
                 for v in sample.views]
        m = torch.stack([resize_nearest(mk[None], size)[0] for mk in masks])[:, None]
        lab = torch.nn.functional.avg_pool2d(m, 14)[:, 0] >= 0.1
    return f, valid, lab


class RawPatches:
    """A non-learned reference: each token is its raw 14 x 14 patch of scaled depth (196 values, dominated by the
    distance). Same preprocessing and token grid as the encoders; the centred version is the product's
    ``patch14`` encoder."""

    def __init__(self) -> None:
        from mv3dad.encoders import DepthScaling

        self.scaling = DepthScaling()

    def preprocess(self, arrays, size: int) -> torch.Tensor:
        from mv3dad.encoders import preprocess_depth

        return torch.stack([preprocess_depth(a, size, self.scaling) for a in arrays])

    def features(self, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        return torch.nn.functional.unfold(x, 14, stride=14).reshape(b, -1, h // 14, w // 14)


def probe(enc, dataset, size: int) -> dict:
    per_cat, inst_scores, inst_labels, tok_s, tok_l = {}, [], [], [], []
    for cat in dataset.categories:
        data = dataset[cat]
        bank = []
        for s in data.train:
            f, valid, _ = view_tokens(enc, s, size)
            bank.append(f.permute(0, 2, 3, 1)[valid])
        bank = torch.cat(bank)
        cs, cl = [], []
        for s in data.test:
            f, valid, lab = view_tokens(enc, s, size)
            q = f.permute(0, 2, 3, 1)[valid]
            score = (1 - (q @ bank.T).max(dim=1).values).numpy()
            cs.append(score)
            cl.append(lab[valid].numpy())
            inst_scores.append(score.max())
            inst_labels.append(s.is_anomalous)
        s_all, l_all = np.concatenate(cs), np.concatenate(cl)
        per_cat[cat] = auroc(s_all, l_all)
        tok_s.append(s_all)
        tok_l.append(l_all)
    return {"token_auroc_mean_over_categories": float(np.nanmean(list(per_cat.values()))),
            "token_auroc_per_category": per_cat,
            "instance_auroc": auroc(np.array(inst_scores), np.array(inst_labels)),
            "defect_tokens": int(np.concatenate(tok_l).sum()), "tokens": int(sum(len(x) for x in tok_l))}


def pca_picture(encoders: dict, sample, size: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mv3dad.encoders.preprocess import SquareFit, scale_depth, to_original

    vi = int(np.argmax([defect_pixels(v, sample.gt).sum() for v in sample.views]))
    view = sample.views[vi]
    h, w = view.depth.shape
    cols = [("depth (scaled)", scale_depth(view.depth))]
    for name, enc in encoders.items():
        x = enc.preprocess([view.depth], size)
        f = enc.features(x)[0]  # (C, t, t)
        valid = torch.nn.functional.avg_pool2d((x > 0).float(), 14)[0, 0] >= 0.5
        t = f.permute(1, 2, 0)[valid]
        t = t - t.mean(0)
        _, _, v = torch.pca_lowrank(t, q=3, center=False)
        rgb = torch.zeros(*valid.shape, 3)
        p = t @ v[:, :3]
        p = (p - p.min(0).values) / (p.max(0).values - p.min(0).values + 1e-8)
        rgb[valid] = p
        img = to_original(rgb.permute(2, 0, 1), SquareFit(h, w, size), mode="nearest").permute(1, 2, 0)
        cols.append((f"PCA: {name}", img.numpy()))
    cols.append(("GT defect pixels", defect_pixels(view, sample.gt)))
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 3.4))
    for ax, (title, im) in zip(axes, cols):
        ax.imshow(im, cmap="gray" if np.ndim(im) == 2 else None)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", type=Path, required=True, help="a mv3dad synth benchmark")
    ap.add_argument("--work", type=Path, required=True, help="working folder (corpus, run, results)")
    ap.add_argument("--corpus-maps", type=int, default=960)
    ap.add_argument("--corpus-size", type=int, default=112)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--image-size", type=int, default=112)
    ap.add_argument("--eval-size", type=int, default=224)
    ap.add_argument("--vit-depth", type=int, default=4)
    ap.add_argument("--embed-dim", type=int, default=192)
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--n-local", type=int, default=2)
    ap.add_argument("--base-lr", type=float, default=0.064)
    ap.add_argument("--prototypes", type=int, default=1024)
    ap.add_argument("--layer-scale", type=float, default=None, help="layer_scale_init (None: the arch's 1e-5)")
    ap.add_argument("--centering", default="ema", choices=("ema", "sinkhorn"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--picture", type=Path, default=Path("docs/img/dino_depth_pca.png"))
    ap.add_argument("--picture-size", type=int, default=448)
    args = ap.parse_args()

    from mv3dad.data import open_dataset
    from mv3dad.encoders import build_encoder, load_encoder
    from mv3dad.pretrain.config import PretrainConfig
    from mv3dad.pretrain.trainer import pretrain

    torch.set_num_threads(args.threads)
    corpus = args.work / "corpus"
    results = {"command": "python tools/bench_dino_depth.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items())}
    if not corpus.is_dir():
        results["corpus_seconds"] = make_corpus(corpus, args.corpus_maps, args.corpus_size, seed=12345)
    run = args.work / "run"
    cfg = PretrainConfig(vit_depth=args.vit_depth, embed_dim=args.embed_dim, num_heads=args.heads,
                         image_size=args.image_size, local_size=args.image_size // 2,
                         n_local_crops=args.n_local, batch_size=args.batch_size, steps=args.steps,
                         base_lr=args.base_lr, n_prototypes=args.prototypes, head_hidden_dim=512,
                         head_bottleneck_dim=128, checkpoint_every=100, layer_scale_init=args.layer_scale,
                         centering=args.centering)
    if not (run / "encoder.json").is_file():
        t0 = time.perf_counter()
        summary = pretrain(cfg, run, [corpus], resume=True)
        results["pretrain_seconds"] = time.perf_counter() - t0
        results["pretrain_final_loss"] = summary["final_loss"]
    learned = load_encoder(run)
    # the baseline is the exact initialisation the run started from (the trainer seeds with cfg.seed before
    # building the student, and the teacher starts as its copy), exported and loaded the same way
    init = args.work / "init"
    if not (init / "encoder.json").is_file():
        from mv3dad.encoders import DepthScaling, save_encoder
        from mv3dad.pretrain.heads import DinoNetwork

        torch.manual_seed(cfg.seed)
        net = DinoNetwork(cfg, cfg.drop_path_rate)
        save_encoder(init, net.backbone.vit, arch=cfg.arch, modality="depth", img_size=cfg.image_size,
                     timm_kwargs=cfg.timm_kwargs(), depth_scaling=DepthScaling(
                         cfg.depth_lo_percentile, cfg.depth_hi_percentile, cfg.depth_floor))
    random = load_encoder(init)
    ds = open_dataset(args.bench)
    for name, enc in (("dino_depth", learned), ("random", random), ("raw_patches", RawPatches()),
                      ("centred_patches", build_encoder("patch14", modality="depth"))):
        t0 = time.perf_counter()
        results[name] = probe(enc, ds, args.eval_size)
        results[name]["probe_seconds"] = time.perf_counter() - t0
        print(name, json.dumps(results[name], indent=1))
    anomalous = next(s for c in ds.categories for s in ds[c].test if s.is_anomalous)
    pca_picture({"DINO-Depth (short run)": learned, "random init, same shape": random}, anomalous,
                args.picture_size, args.picture)
    (args.work / f"results_{args.eval_size}.json").write_text(json.dumps(results, indent=1))
    print(json.dumps({k: v for k, v in results.items() if not isinstance(v, dict)}, indent=1))


if __name__ == "__main__":
    main()
