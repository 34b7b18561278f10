"""Binary erosion, dilation and opening of (H, W) masks by a k x k square: separable runs of shifted slices.

Same result as ``scipy.ndimage.binary_erosion`` / ``binary_dilation`` / ``binary_opening`` with
``np.ones((k, k), bool)`` (outside the image counts as False; even k anchored as scipy anchors it), 10-15x faster
on 448 x 448 masks: the per-view maps of ``deviation`` use them a dozen times per view.
"""

from __future__ import annotations

import numpy as np


def _run(mask: np.ndarray, k: int, op: np.ufunc, before: int) -> np.ndarray:
    """``op`` over the k consecutive pixels from ``before`` pixels before each one, along rows then columns."""
    out = np.asarray(mask, bool)
    if out.ndim != 2:
        raise ValueError(f"mask must be (H, W), got {out.shape}")
    if k <= 1:
        return out.copy()
    for axis in (0, 1):
        n = out.shape[axis]
        pad = [(0, 0), (0, 0)]
        pad[axis] = (before, k - 1 - before)
        p = np.pad(out, pad, constant_values=False)

        def shifted(j: int) -> np.ndarray:
            return p[j:j + n] if axis == 0 else p[:, j:j + n]

        r = shifted(0).copy()
        for j in range(1, k):
            op(r, shifted(j), out=r)
        out = r
    return out


def erode(mask: np.ndarray, k: int) -> np.ndarray:
    """(H, W) bool: pixels whose k x k window (scipy's anchor) lies wholly in ``mask`` (H, W)."""
    return _run(mask, k, np.logical_and, k // 2)


def dilate(mask: np.ndarray, k: int) -> np.ndarray:
    """(H, W) bool: pixels whose k x k window (scipy's anchor) meets ``mask`` (H, W)."""
    return _run(mask, k, np.logical_or, (k - 1) // 2)


def opening(mask: np.ndarray, k: int) -> np.ndarray:
    """(H, W) bool: ``mask`` (H, W) opened by a k x k square (the union of the squares that fit in it)."""
    return dilate(erode(mask, k), k)
