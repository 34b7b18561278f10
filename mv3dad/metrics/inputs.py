"""Check score/ground-truth pairs and pool their evaluated elements into flat arrays (the metrics' one input form).

Which elements are evaluated is set by ``evaluate`` (NaN in a score marks an element no view observed):

- ``"observed"`` (default): elements with a score, plus every ground-truth element; an unobserved
  ground-truth element scores ``-inf`` (a missed defect). Unobserved background is left out.
- ``"all"``: every element; NaN scores become ``-inf``.
- ``"observed_only"``: only elements with a score; regions keep the shape of the full ground truth but are
  measured over their observed elements, and a region with none is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

EVALUATE_MODES = ("observed", "all", "observed_only")


@dataclass(frozen=True)
class Pooled:
    """Evaluated elements of all instances, pooled.

    Attributes:
        neg: (K,) scores of the evaluated elements with ground truth 0.
        pos: (P,) scores of the evaluated elements with ground truth 1 (``-inf`` where missed).
        pos_region: (P,) int64 index in [0, R) of the pooled ground-truth region of each ``pos`` element,
            or None when regions were not asked for.
        region_size: (R,) int64 number of evaluated elements of each region, or None.
    """

    neg: np.ndarray
    pos: np.ndarray
    pos_region: np.ndarray | None
    region_size: np.ndarray | None

    @property
    def n_regions(self) -> int:
        """Number of pooled ground-truth regions (0 when regions were not asked for)."""
        return 0 if self.region_size is None else len(self.region_size)

    def region_weights(self) -> np.ndarray:
        """(P,) weight ``1 / (|region| * R)`` of each ``pos`` element, so that the weights of the elements above
        a threshold sum to the mean per-region overlap (the PRO)."""
        return 1.0 / (self.region_size[self.pos_region] * float(self.n_regions))


def as_instances(x, name: str) -> list[np.ndarray]:
    """A list of per-instance arrays from a list/tuple of arrays or a 4D array of volumes stacked along axis 0.

    A bare 3D array is refused: it could be one volume or a stack of 2D maps.

    Args:
        x: list/tuple of N arrays, or an array of shape (N, X, Y, Z).
        name: argument name used in error messages.
    """
    if isinstance(x, np.ndarray):
        if x.ndim != 4:
            raise ValueError(f"{name}: pass a list of 2D/3D arrays (one per instance), e.g. [volume] or list(maps); "
                             f"a single array of shape {x.shape} is ambiguous (only (N,X,Y,Z) stacks are accepted)")
        return list(x)
    if not isinstance(x, Sequence) or isinstance(x, (str, bytes)):
        raise TypeError(f"{name}: expected a list of arrays (one per instance), got {type(x).__name__}")
    return [np.asarray(a) for a in x]


def check_scores(s: np.ndarray, name: str) -> np.ndarray:
    """Scores as a float array (float32 kept, other types to float64); ±inf or non-real values are errors."""
    if s.dtype == bool or not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)):
        raise ValueError(f"{name}: scores must be real numbers, got dtype {s.dtype}")
    s = s.astype(np.float32 if s.dtype == np.float32 else np.float64, copy=False)
    if np.isinf(s).any():
        raise ValueError(f"{name}: scores hold ±inf; use NaN to mark a non-evaluated element")
    return s


def check_binary(g: np.ndarray, name: str) -> np.ndarray:
    """A 0/1 (or bool) array as bool; NaN or any other value is an error."""
    if g.dtype == bool:
        return g
    if not (np.issubdtype(g.dtype, np.floating) or np.issubdtype(g.dtype, np.integer)):
        raise ValueError(f"{name}: must be binary 0/1, got dtype {g.dtype}")
    if np.issubdtype(g.dtype, np.floating) and np.isnan(g).any():
        raise ValueError(f"{name}: holds NaN; ground truth must be binary 0/1")
    if not ((g == 0) | (g == 1)).all():
        raise ValueError(f"{name}: must be binary 0/1, found values {np.unique(g)[:5].tolist()}")
    return g.astype(bool)


def _bounding_box(g: np.ndarray) -> tuple[slice, ...]:
    """Slices of the smallest box holding every True element of ``g`` (empty slices when there is none)."""
    box = []
    for ax in range(g.ndim):
        hit = np.flatnonzero(g.any(axis=tuple(a for a in range(g.ndim) if a != ax)))
        box.append(slice(hit[0], hit[-1] + 1) if hit.size else slice(0, 0))
    return tuple(box)


def pool(scores, gts, evaluate: str = "observed", regions: bool = True) -> Pooled:
    """Check N (score, ground truth) pairs and pool their evaluated elements.

    Regions are the connected components of each instance's ground truth (8-connectivity in 2D, 26 in 3D),
    numbered consecutively over all instances.

    Args:
        scores: N float arrays, each (H, W) or (X, Y, Z); NaN = non-evaluated element.
        gts: N binary arrays of the same shapes.
        evaluate: "observed", "all" or "observed_only" (see the module docstring).
        regions: label connected components (needed by AUPRO, not by pixel AUROC).

    Raises:
        ValueError: on a count, shape, dimension or value problem; the message names the instance index.
    """
    if evaluate not in EVALUATE_MODES:
        raise ValueError(f"evaluate must be one of {EVALUATE_MODES}, got {evaluate!r}")
    scores, gts = as_instances(scores, "scores"), as_instances(gts, "gts")
    if len(scores) != len(gts):
        raise ValueError(f"got {len(scores)} score arrays but {len(gts)} ground-truth arrays")
    if not scores:
        raise ValueError("no instances given")
    ndim = scores[0].ndim
    negs, poss, labels, sizes = [], [], [], []
    offset = 0  # regions of the previous instances
    for i, (s, g) in enumerate(zip(scores, gts)):
        if s.shape != g.shape:
            raise ValueError(f"instance {i}: score shape {s.shape} != ground-truth shape {g.shape}")
        if s.ndim not in (2, 3) or s.ndim != ndim:
            raise ValueError(f"instance {i}: expected a {ndim}D array like instance 0 (2D map or 3D volume), "
                             f"got shape {s.shape}")
        s = check_scores(s, f"scores[{i}]")
        g = check_binary(g, f"gts[{i}]")
        nan = np.isnan(s)
        if evaluate == "all":
            neg = s[~g]
            neg[np.isnan(neg)] = -np.inf
        else:
            neg = s[~(nan | g)]
        negs.append(neg)
        box = _bounding_box(g)
        inside = g[box] if evaluate != "observed_only" else g[box] & ~nan[box]
        pos = s[box][inside]
        pos[np.isnan(pos)] = -np.inf  # an unobserved ground-truth element is a missed one
        poss.append(pos)
        if regions:
            lab, n = ndimage.label(g[box], structure=np.ones((3,) * ndim, dtype=bool))
            lab = lab[inside].astype(np.int64) - 1  # elements in a region are labelled 1..n
            labels.append(lab + offset)
            sizes.append(np.bincount(lab, minlength=n))
            offset += n
    neg = np.concatenate(negs)
    pos = np.concatenate(poss)
    if not regions:
        return Pooled(neg, pos, None, None)
    pos_region = np.concatenate(labels)
    size = np.concatenate(sizes)
    keep = size > 0  # only "observed_only" can leave a region without an evaluated element
    if not keep.all():
        pos_region = (np.cumsum(keep) - 1)[pos_region]
        size = size[keep]
    return Pooled(neg, pos, pos_region, size)
