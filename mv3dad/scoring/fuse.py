"""Per-view fusion of the image and depth anomaly maps before projection (seed 004 Supp. Table 10)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

Fusion = Literal["max", "mean", "min", "prod"]
FUSIONS: tuple[str, ...] = ("max", "mean", "min", "prod")


def fuse(map_img, map_dep, how: Fusion = "max"):
    """Element-wise fusion of two equally shaped maps (NumPy arrays or torch tensors; the type is kept).

    ``max``: flagged if either modality flags it (the paper's choice); ``min``: both must; ``mean``; ``prod``.
    The paper's default pipeline does not fuse: it projects both maps and takes the max in the volume, which
    equals projecting the ``max`` fusion.
    """
    if how not in FUSIONS:
        raise ValueError(f"unknown fusion {how!r}; choose one of {FUSIONS}")
    if tuple(map_img.shape) != tuple(map_dep.shape):
        raise ValueError(f"fuse: image map {tuple(map_img.shape)} and depth map {tuple(map_dep.shape)} differ in shape")
    xp = torch if isinstance(map_img, torch.Tensor) else np
    if how == "max":
        return xp.maximum(map_img, map_dep)
    if how == "min":
        return xp.minimum(map_img, map_dep)
    if how == "mean":
        return (map_img + map_dep) / 2
    return map_img * map_dep
