"""The N x N source -> target pair scoring engine with min-ensembling over sources (seed 004 Sec. 3.2.3).

For each target view t and each source view s in ``sources[t]``: modulate the source features with (s, t), map
them to the other modality, and score every token by the cosine distance of the prediction to the observed
target features; then keep, per target view, modality and token, the minimum over the sources.

The work is streamed in chunks of pairs: memory holds the N feature maps, the N running-minimum maps and one
chunk of pairs (``batch_pairs`` x tokens x channels), never the N x N maps. Each chunk is one stacked set of
matrix products (dense BLAS / cuBLAS); on CUDA when available.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from mv3dad.mapping.fit import resolve_device
from mv3dad.mapping.model import ModMapModel


def all_sources(n_views: int) -> list[list[int]]:
    """Every view is a source of every target (s = t included): ModMap's N x N pairs."""
    return [list(range(n_views)) for _ in range(n_views)]


def diagonal_sources(n_views: int) -> list[list[int]]:
    """Each target is its own only source (CFM per view; Table 6's first row)."""
    return [[t] for t in range(n_views)]


def random_sources(n_views: int, k: int, seed: int = 0) -> list[list[int]]:
    """K sources per target for the cost study (Supp. Table 8): the target itself plus K - 1 others at random.

    The target is always included: the s = t pair is the view-conditioned CFM prediction, the one that needs no
    cross-view correspondence, so K = 1 reduces exactly to the diagonal (no cross-view) model and growing K only
    adds ensemble members. The K - 1 others are drawn without replacement, independently per target, from a
    NumPy generator seeded with ``seed``; K >= N gives all sources.
    """
    if k < 1:
        raise ValueError(f"need at least one source per target, got K={k}")
    if k >= n_views:
        return all_sources(n_views)
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n_views):
        others = np.array([s for s in range(n_views) if s != t])
        out.append(sorted([t, *rng.choice(others, size=k - 1, replace=False).tolist()]))
    return out


def default_sources(model: ModMapModel, n_views: int) -> list[list[int]]:
    """All sources for a model trained on all pairs, the diagonal for one trained on diagonal pairs only."""
    return all_sources(n_views) if model.train_pairs == "all" else diagonal_sources(n_views)


def score_views(model: ModMapModel, feats_img: torch.Tensor, feats_dep: torch.Tensor,
                sources: Sequence[Sequence[int]] | None = None, category: str | None = None,
                view_ids: Sequence[int] | None = None, batch_pairs: int | None = None,
                device: str | torch.device = "auto", max_rows: int = 16_384) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-view image and depth anomaly maps of one sample, min-ensembled over source views.

    Args:
        model: trained model (moved to ``device``).
        feats_img: (N, C_I, h, w) image token maps of the sample's N views.
        feats_dep: (N, C_D, h, w) depth token maps.
        sources: ``sources[t]`` = indices (into the N given views) of the source views of target t; None =
            :func:`default_sources` (all N for a model trained on all pairs).
        category: the category, for a multi-class model.
        view_ids: the model's view index of each given view (a subset or re-ordering of the rig's views);
            None = the given views are the model's views 0..N-1 (N must equal the model's view count).
        batch_pairs: pairs per chunk; None = as many as fit in ``max_rows`` tokens.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
        max_rows: token budget of one chunk when ``batch_pairs`` is None.
    Returns:
        score_img, score_dep: (N, h, w) float32 on the CPU. Image map = distance between the image features
        predicted from depth and the observed ones; depth map analogous. For ``lb3m`` both are the geometric
        mean of its four distances (per pair, before the min).
    """
    ci = model.category_index(category)
    n_model = model.expected_views(category)
    model.check_features(feats_img, feats_dep, None if view_ids is not None else n_model, where="score_views")
    n, _, h, w = feats_img.shape
    sources = default_sources(model, n) if sources is None else _check_sources(sources, n)
    dev = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    model.to(dev).eval()
    ids = _view_ids(view_ids, n, n_model).to(dev)
    t_tok = h * w
    cat = torch.tensor(ci, device=dev) if ci is not None else None
    with torch.inference_mode():
        f_img = feats_img.to(dev, torch.float32).flatten(2).transpose(1, 2).contiguous()  # (N, T, C_I)
        f_dep = feats_dep.to(dev, torch.float32).flatten(2).transpose(1, 2).contiguous()
        u_img = torch.nn.functional.normalize(f_img, dim=-1)
        u_dep = torch.nn.functional.normalize(f_dep, dim=-1)
        min_img = torch.full((n, t_tok), float("inf"), device=dev)
        min_dep = torch.full((n, t_tok), float("inf"), device=dev)
        for targets, srcs in plan_chunks(sources, batch_pairs or max(1, max_rows // t_tok)):
            tg = torch.tensor(targets, device=dev)  # (n_t,)
            sm = torch.tensor(srcs, device=dev)  # (n_t, S)
            x_img, x_dep = _modulated_sources(model, f_img, f_dep, ids[sm], ids[tg], sm, cat, srcs)
            terms = model.mapper.terms(x_img, x_dep, u_img[tg, None], u_dep[tg, None])  # targets broadcast over S
            s_img, s_dep = model.mapper.score_rows(terms)  # (n_t, S, T) each
            min_img[tg] = torch.minimum(min_img[tg], s_img.amin(1))
            min_dep[tg] = torch.minimum(min_dep[tg], s_dep.amin(1))
    return min_img.view(n, h, w).cpu(), min_dep.view(n, h, w).cpu()


def plan_chunks(sources: Sequence[Sequence[int]], chunk: int) -> list[tuple[list[int], list[list[int]]]]:
    """Split the pairs into chunks of at most ``chunk`` pairs, each ``(targets, sources of each target)``.

    Within a chunk the targets are distinct and each has the same number S of sources (a rectangular
    (n_t, S) block); a target with more than ``chunk`` sources is spread over several chunks.
    """
    plan: list[tuple[list[int], list[list[int]]]] = []
    for t, ss in enumerate(sources):
        ss = list(ss)
        if len(ss) > chunk:
            plan.extend(([t], [ss[a:a + chunk]]) for a in range(0, len(ss), chunk))
        elif plan and len(plan[-1][1][0]) == len(ss) and (len(plan[-1][0]) + 1) * len(ss) <= chunk:
            plan[-1][0].append(t)
            plan[-1][1].append(ss)
        else:
            plan.append(([t], [ss]))
    return plan


def _modulated_sources(model: ModMapModel, f_img, f_dep, m_src, m_tgt, sm, cat, srcs):
    """(n_t, S, T, C) modulated source tokens of a chunk, or (1, S, T, C) when they do not depend on the target.

    When every target of the chunk has the same sources, the source maps are read once and broadcast into the
    modulation (no gather of n_t x S maps); without modulation they are not even copied per target.
    """
    same = all(row == srcs[0] for row in srcs)
    if same:
        x_img, x_dep = f_img[sm[0]][None], f_dep[sm[0]][None]  # (1, S, T, C)
    else:
        x_img, x_dep = f_img[sm], f_dep[sm]  # (n_t, S, T, C)
    n_t, s = sm.shape
    params = model.film_params(m_src.flatten(), m_tgt.repeat_interleave(s), cat)
    if params is None:
        return x_img, x_dep
    g_i, b_i, g_d, b_d = (p.view(n_t, s, 1, -1) for p in params)
    return torch.addcmul(b_i, x_img, g_i), torch.addcmul(b_d, x_dep, g_d)


def _view_ids(view_ids: Sequence[int] | None, n: int, n_model: int) -> torch.Tensor:
    if view_ids is None:
        return torch.arange(n)
    ids = [int(v) for v in view_ids]
    if len(ids) != n:
        raise ValueError(f"view_ids names {len(ids)} views but {n} feature maps were given")
    if len(set(ids)) != n or any(not 0 <= v < n_model for v in ids):
        raise ValueError(f"view_ids {ids} must be distinct model views in 0..{n_model - 1}")
    return torch.tensor(ids)


def _check_sources(sources: Sequence[Sequence[int]], n: int) -> list[list[int]]:
    if len(sources) != n:
        raise ValueError(f"sources must list the sources of each of the {n} target views, got {len(sources)} lists")
    out = []
    for t, ss in enumerate(sources):
        ss = [int(s) for s in ss]
        if not ss or len(set(ss)) != len(ss) or any(not 0 <= s < n for s in ss):
            raise ValueError(f"sources[{t}] = {ss}: need distinct view indices in 0..{n - 1}, at least one")
        out.append(ss)
    return out
