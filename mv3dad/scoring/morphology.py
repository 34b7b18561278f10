"""Square-window filters of images and volumes by shifted slices: binary erosion, dilation and opening, window
minima, sums and the neighbour maximum.

The same results as ``scipy.ndimage`` (``binary_erosion`` / ``binary_dilation`` / ``binary_opening`` with
``np.ones((k, k), bool)``, even k anchored as scipy anchors it; ``minimum_filter``; a 3 x 3 footprint without its
centre) but 3-15x faster on 448 x 448 maps: the per-view maps of ``deviation`` use them a dozen times per view.
"""

from __future__ import annotations

import numpy as np


def _shifted(p: np.ndarray, axis: int, j: int, n: int) -> np.ndarray:
    """The ``n`` elements of ``p`` from ``j`` on along ``axis`` (a view)."""
    index = [slice(None)] * p.ndim
    index[axis] = slice(j, j + n)
    return p[tuple(index)]


def window_reduce(x: np.ndarray, k: int, op: np.ufunc, before: int, axes: tuple[int, ...] | None = None,
                  fill=None) -> np.ndarray:
    """``op`` (an associative ufunc) over the ``k`` consecutive elements from ``before`` elements before each one,
    along each of ``axes`` in turn (all by default): a k x k (x k) window. Outside the array: ``fill``, or the
    nearest edge element when None (scipy's ``mode="nearest"``)."""
    out = np.asarray(x)
    if k <= 1:
        return out.copy()
    for axis in range(out.ndim) if axes is None else axes:
        n = out.shape[axis]
        pad = [(0, 0)] * out.ndim
        pad[axis] = (before, k - 1 - before)
        p = np.pad(out, pad, mode="edge") if fill is None else np.pad(out, pad, constant_values=fill)
        r = _shifted(p, axis, 0, n).copy()
        for j in range(1, k):
            op(r, _shifted(p, axis, j, n), out=r)
        out = r
    return out


def _check(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got {mask.shape}")
    return mask


def erode(mask: np.ndarray, k: int) -> np.ndarray:
    """(H, W) bool: pixels whose k x k window (scipy's anchor) lies wholly in ``mask`` (H, W)."""
    return window_reduce(_check(mask), k, np.logical_and, k // 2, fill=False)


def dilate(mask: np.ndarray, k: int) -> np.ndarray:
    """(H, W) bool: pixels whose k x k window (scipy's anchor) meets ``mask`` (H, W)."""
    return window_reduce(_check(mask), k, np.logical_or, (k - 1) // 2, fill=False)


def opening(mask: np.ndarray, k: int) -> np.ndarray:
    """(H, W) bool: ``mask`` (H, W) opened by a k x k square (the union of the squares that fit in it)."""
    return dilate(erode(mask, k), k)


def neighbour_max(x: np.ndarray) -> np.ndarray:
    """Each element's largest neighbour (8 in 2D, 26 in 3D; the element itself left out; outside = -inf).

    The 3^n window without its centre is split along the first axis: the full windows of the two neighbouring
    slabs, and the centre slab's window without its centre (the same split, one axis fewer)."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"neighbour_max needs floating values, got {x.dtype}")

    def excluded(axes: tuple[int, ...]) -> np.ndarray:
        a, rest = axes[0], axes[1:]
        slabs = window_reduce(x, 3, np.maximum, 1, rest, fill=-np.inf) if rest else x
        n = x.shape[a]
        pad = [(0, 0)] * x.ndim
        pad[a] = (1, 1)
        p = np.pad(slabs, pad, constant_values=-np.inf)
        out = np.maximum(_shifted(p, a, 0, n), _shifted(p, a, 2, n))
        return np.maximum(out, excluded(rest)) if rest else out

    return excluded(tuple(range(x.ndim)))


LINE_DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))  # rows, columns, both diagonals (pixel steps)


def shift(x: np.ndarray, dy: int, dx: int, fill=0) -> np.ndarray:
    """(H, W) ``y[i, j] = x[i + dy, j + dx]`` (``fill`` where that falls outside ``x``)."""
    H, W = x.shape
    out = np.full(x.shape, fill, x.dtype)
    out[max(-dy, 0):H - max(dy, 0), max(-dx, 0):W - max(dx, 0)] = \
        x[max(dy, 0):H - max(-dy, 0), max(dx, 0):W - max(-dx, 0)]
    return out


def line_opening(mask: np.ndarray, length: int) -> np.ndarray:
    """(H, W) bool: the pixels of ``mask`` (H, W) on a run of at least ``length`` pixels of it along a row, a
    column or a diagonal (the union of its openings by the four lines of ``length`` pixels): a slot a pixel wide
    stays, isolated pixels and pairs go."""
    mask = _check(mask)
    out = np.zeros(mask.shape, bool)
    for dy, dx in LINE_DIRECTIONS:
        starts = mask.copy()  # the run of `length` from this pixel on lies in the mask
        for j in range(1, length):
            starts &= shift(mask, j * dy, j * dx, False)
        for j in range(length):
            out |= shift(starts, -j * dy, -j * dx, False)
    return out
