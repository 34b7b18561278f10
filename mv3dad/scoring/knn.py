"""Memory-bank nearest-neighbour baseline per view (PatchCore-style), on the same frozen features as ModMap.

For every view v, the memory holds the nominal training tokens of view v (foreground only), optionally
subsampled by greedy k-center coreset selection on a random projection (PatchCore). A test token of view v
scores its Euclidean distance to the nearest memory token of view v. Image and depth tokens have separate
memories (``mode="separate"``: one map per modality) or one memory of the concatenated tokens
(``mode="concat"``: one map, returned for both modalities, as BTF / M3DM-style fusion by concatenation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from mv3dad.mapping.fit import FeatureSet


@dataclass
class MemoryBank:
    """Per-view memories of nominal tokens.

    Attributes:
        mode: ``"separate"`` (image and depth memories) or ``"concat"`` (one memory of [image; depth] tokens).
        img: per view, (M_v, C_I) image tokens (mode "separate") or (M_v, C_I + C_D) concatenated tokens.
        dep: per view, (M_v, C_D) depth tokens (mode "separate"); empty list in mode "concat".
        c_img, c_dep: channel widths of the features the bank was built from.
    """

    mode: Literal["separate", "concat"]
    img: list[torch.Tensor]
    dep: list[torch.Tensor]
    c_img: int
    c_dep: int

    @property
    def n_views(self) -> int:
        return len(self.img)


def build_memory(sets: Sequence[FeatureSet], mode: Literal["separate", "concat"] = "separate",
                 coreset: float | int | None = None, proj_dim: int = 128, seed: int = 0) -> MemoryBank:
    """Collect the foreground tokens of every view of the nominal training instances into per-view memories.

    Args:
        sets: training instances, all with the same N views and channels (their ``valid`` masks select tokens).
        mode: see :class:`MemoryBank`.
        coreset: None = keep every token; a float in (0, 1] = keep that fraction of each view's memory;
            an int = keep at most that many tokens per view (greedy coreset on a random projection).
        proj_dim: dimension of the random projection used by the coreset selection.
        seed: seed of the projection and of the first coreset centre.
    """
    if mode not in ("separate", "concat"):
        raise ValueError(f"mode must be 'separate' or 'concat', got {mode!r}")
    if not sets:
        raise ValueError("build_memory: no training features given")
    n, c_img, c_dep = sets[0].img.shape[0], sets[0].img.shape[1], sets[0].dep.shape[1]
    per_view_img: list[list[torch.Tensor]] = [[] for _ in range(n)]
    per_view_dep: list[list[torch.Tensor]] = [[] for _ in range(n)]
    for i, fs in enumerate(sets):
        _check(fs.img, fs.dep, n, c_img, c_dep, f"build_memory: set {i}")
        for v in range(n):
            keep = fs.valid[v].flatten() if fs.valid is not None else slice(None)
            per_view_img[v].append(fs.img[v].flatten(1).T[keep].float())
            per_view_dep[v].append(fs.dep[v].flatten(1).T[keep].float())
    imgs, deps = [], []
    for v in range(n):
        a, b = torch.cat(per_view_img[v]), torch.cat(per_view_dep[v])
        if len(a) == 0:
            raise ValueError(f"build_memory: view {v} has no foreground token in any training instance")
        if mode == "concat":
            a = torch.cat([a, b], dim=1)
        idx = _coreset_indices(a if mode == "concat" else torch.cat([a, b], dim=1), coreset, proj_dim, seed + v)
        imgs.append(a[idx].contiguous())
        deps.append(b[idx].contiguous() if mode == "separate" else torch.empty(0))
    return MemoryBank(mode, imgs, deps if mode == "separate" else [], c_img, c_dep)


def greedy_coreset(x: torch.Tensor, n: int, proj_dim: int = 128, seed: int = 0) -> torch.Tensor:
    """Indices (n,) of a greedy k-center coreset of x (M, C), computed on a Gaussian random projection.

    Starts from a seeded random point, then repeatedly adds the point farthest from the selected set.
    """
    m = x.shape[0]
    if not 1 <= n <= m:
        raise ValueError(f"greedy_coreset: cannot select {n} of {m} points")
    gen = torch.Generator().manual_seed(seed)
    if proj_dim < x.shape[1]:
        proj = torch.randn(x.shape[1], proj_dim, generator=gen, dtype=x.dtype) / proj_dim ** 0.5
        z = x @ proj.to(x.device)
    else:
        z = x
    sel = torch.empty(n, dtype=torch.long)
    sel[0] = torch.randint(m, (1,), generator=gen).item()
    dist = (z - z[sel[0]]).pow(2).sum(1)
    for k in range(1, n):
        sel[k] = int(torch.argmax(dist))
        dist = torch.minimum(dist, (z - z[sel[k]]).pow(2).sum(1))
    return sel


def nearest_distance(queries: torch.Tensor, memory: torch.Tensor, q_chunk: int = 2048,
                     m_chunk: int = 32_768) -> torch.Tensor:
    """(Q,) Euclidean distance of each query (Q, C) to its nearest memory row (M, C), in chunks (torch.cdist)."""
    if queries.shape[1] != memory.shape[1]:
        raise ValueError(f"nearest_distance: queries have {queries.shape[1]} channels, memory {memory.shape[1]}")
    out = torch.empty(queries.shape[0], dtype=queries.dtype, device=queries.device)
    for a in range(0, queries.shape[0], q_chunk):
        q = queries[a:a + q_chunk]
        best = torch.full((q.shape[0],), float("inf"), dtype=q.dtype, device=q.device)
        for b in range(0, memory.shape[0], m_chunk):
            best = torch.minimum(best, torch.cdist(q, memory[b:b + m_chunk]).amin(1))
        out[a:a + q_chunk] = best
    return out


def knn_score_views(bank: MemoryBank, feats_img: torch.Tensor, feats_dep: torch.Tensor,
                    view_ids: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, h, w) image and depth nearest-neighbour distance maps of one sample (identical maps in concat mode).

    ``view_ids``: the bank's view index of each given view (None = views 0..N-1, N must equal the bank's).
    """
    n, _, h, w = feats_img.shape
    ids = list(range(n)) if view_ids is None else [int(v) for v in view_ids]
    if view_ids is None and n != bank.n_views:
        raise ValueError(f"knn_score_views: got {n} views but the memory bank was built from {bank.n_views} views")
    if len(ids) != n or any(not 0 <= v < bank.n_views for v in ids):
        raise ValueError(f"knn_score_views: view_ids {ids} do not name {n} views of the bank's {bank.n_views}")
    _check(feats_img, feats_dep, n, bank.c_img, bank.c_dep, "knn_score_views")
    s_img = torch.empty(n, h * w)
    s_dep = torch.empty(n, h * w)
    for k, v in enumerate(ids):
        qi = feats_img[k].flatten(1).T.float()
        qd = feats_dep[k].flatten(1).T.float()
        if bank.mode == "concat":
            s_img[k] = s_dep[k] = nearest_distance(torch.cat([qi, qd], dim=1), bank.img[v]).cpu()
        else:
            s_img[k] = nearest_distance(qi, bank.img[v]).cpu()
            s_dep[k] = nearest_distance(qd, bank.dep[v]).cpu()
    return s_img.view(n, h, w), s_dep.view(n, h, w)


def _coreset_indices(x: torch.Tensor, coreset: float | int | None, proj_dim: int, seed: int) -> torch.Tensor:
    m = x.shape[0]
    if coreset is None:
        return torch.arange(m)
    if isinstance(coreset, float):
        if not 0 < coreset <= 1:
            raise ValueError(f"coreset fraction must be in (0, 1], got {coreset}")
        k = max(1, round(coreset * m))
    else:
        if coreset < 1:
            raise ValueError(f"coreset size must be >= 1, got {coreset}")
        k = min(int(coreset), m)
    return torch.arange(m) if k == m else greedy_coreset(x, k, proj_dim, seed)


def _check(img: torch.Tensor, dep: torch.Tensor, n: int, c_img: int, c_dep: int, where: str) -> None:
    if img.ndim != 4 or dep.ndim != 4 or img.shape[0] != n or dep.shape[0] != n or img.shape[2:] != dep.shape[2:]:
        raise ValueError(f"{where}: expected ({n}, C, h, w) image and depth features on one grid, got "
                         f"{tuple(img.shape)} / {tuple(dep.shape)}")
    if img.shape[1] != c_img or dep.shape[1] != c_dep:
        raise ValueError(f"{where}: channel mismatch: expected image {c_img} / depth {c_dep}, got "
                         f"{img.shape[1]} / {dep.shape[1]}")
    for name, f in (("image", img), ("depth", dep)):
        if not torch.isfinite(f).all():
            raise ValueError(f"{where}: {name} features hold NaN/inf")
