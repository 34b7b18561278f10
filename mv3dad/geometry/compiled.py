"""Numba-compiled inner loops (per-pixel and per-point work done once per test view): the point-image normals behind
:func:`mv3dad.geometry.projection.point_image_normals`, and the missing-material z-buffer and line averages of the
``deviation`` maps.

Imported lazily by the functions that use them (numba takes ~0.3 s to import). No fast-math, no fused
multiply-add: the normals and the z-buffer follow the NumPy code they replaced operation by operation (bit-identical
results); the line averages are float32 sums.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")
def image_normals(P, center, max_jump, out):  # pragma: no cover - compiled
    """Unit normals of the (H, W, 3) float64 point image ``P`` into ``out`` (H, W, 3), which holds NaN: the cross
    product of the central differences along rows and columns, turned towards ``center`` (3,); pixels whose
    differences exceed ``2 * max_jump`` (a depth discontinuity), border pixels and NaN neighbours stay NaN."""
    H, W = P.shape[0], P.shape[1]
    lim = 2.0 * max_jump
    for i in range(1, H - 1):
        for j in range(1, W - 1):
            ax = P[i, j + 1, 0] - P[i, j - 1, 0]
            ay = P[i, j + 1, 1] - P[i, j - 1, 1]
            az = P[i, j + 1, 2] - P[i, j - 1, 2]
            bx = P[i + 1, j, 0] - P[i - 1, j, 0]
            by = P[i + 1, j, 1] - P[i - 1, j, 1]
            bz = P[i + 1, j, 2] - P[i - 1, j, 2]
            if math.sqrt(ax * ax + ay * ay + az * az) > lim or math.sqrt(bx * bx + by * by + bz * bz) > lim:
                continue
            cx = ay * bz - az * by
            cy = az * bx - ax * bz
            cz = ax * by - ay * bx
            length = math.sqrt(cx * cx + cy * cy + cz * cz)
            cx, cy, cz = cx / length, cy / length, cz / length
            if cx * (center[0] - P[i, j, 0]) + cy * (center[1] - P[i, j, 1]) + cz * (center[2] - P[i, j, 2]) < 0:
                cx, cy, cz = -cx, -cy, -cz
            out[i, j, 0] = cx
            out[i, j, 1] = cy
            out[i, j, 2] = cz


@njit(cache=True, error_model="numpy")
def facing_zbuffer(points, normals, center, R, t, K, k, min_cos, zbuf):  # pragma: no cover - compiled
    """Z-buffer the (P, 3) world ``points`` whose unit ``normals`` face the camera (cosine with the direction to
    ``center`` above ``min_cos``) on cells of ``k`` x ``k`` pixels: ``zbuf`` (h, w), filled with inf, keeps each
    cell's nearest depth. ``R``, ``t``: world -> camera; ``K``: intrinsics; pixel centres at integers."""
    h, w = zbuf.shape
    for p in range(points.shape[0]):
        dx, dy, dz = center[0] - points[p, 0], center[1] - points[p, 1], center[2] - points[p, 2]
        dot = normals[p, 0] * dx + normals[p, 1] * dy + normals[p, 2] * dz
        if not dot / max(math.sqrt(dx * dx + dy * dy + dz * dz), 1e-9) > min_cos:
            continue
        x = R[0, 0] * points[p, 0] + R[0, 1] * points[p, 1] + R[0, 2] * points[p, 2] + t[0]
        y = R[1, 0] * points[p, 0] + R[1, 1] * points[p, 1] + R[1, 2] * points[p, 2] + t[1]
        z = R[2, 0] * points[p, 0] + R[2, 1] * points[p, 1] + R[2, 2] * points[p, 2] + t[2]
        if not z > 0:
            continue
        uw = K[0, 0] * x + K[0, 1] * y + K[0, 2] * z
        vw = K[1, 0] * x + K[1, 1] * y + K[1, 2] * z
        ww = K[2, 0] * x + K[2, 1] * y + K[2, 2] * z
        cu = math.floor((uw / ww + 0.5) / k)
        cv = math.floor((vw / ww + 0.5) / k)
        if cu >= 0 and cv >= 0 and cu < w and cv < h and z < zbuf[int(cv), int(cu)]:
            zbuf[int(cv), int(cu)] = z


@njit(cache=True, error_model="numpy")
def best_line_score(v, w, mask, inv, pen, out):  # pragma: no cover - compiled
    """For each ``mask`` (H, W) pixel: over the lines of 5 pixels centred on it along a row, a column and both
    diagonals, the largest ``|sum| inv[n] - pen[n]`` of the values (``n`` used pixels on the line, at least 3), at
    least 0, into ``out`` (H, W). ``v``: (H + 4, W + 4) float32, padded by 2 with zeros, the values (0 where
    unused); ``w``: the same shape, int64, 1 where used; ``inv``, ``pen``: (6,) float32 per count, ``1 / n`` and
    the noise penalty. (The taps are written out: with the offsets as variables the loop runs 4x slower.)"""
    H, W = mask.shape
    for i in range(H):
        for j in range(W):
            if not mask[i, j]:
                continue
            a = i + 2
            b = j + 2
            best = np.float32(0.0)
            t = v[a, b - 2] + v[a, b - 1] + v[a, b] + v[a, b + 1] + v[a, b + 2]  # along the row
            c = w[a, b - 2] + w[a, b - 1] + w[a, b] + w[a, b + 1] + w[a, b + 2]
            if c >= 3:
                best = max(best, abs(t * inv[c]) - pen[c])
            t = v[a - 2, b] + v[a - 1, b] + v[a, b] + v[a + 1, b] + v[a + 2, b]  # along the column
            c = w[a - 2, b] + w[a - 1, b] + w[a, b] + w[a + 1, b] + w[a + 2, b]
            if c >= 3:
                best = max(best, abs(t * inv[c]) - pen[c])
            t = v[a - 2, b - 2] + v[a - 1, b - 1] + v[a, b] + v[a + 1, b + 1] + v[a + 2, b + 2]  # diagonal
            c = w[a - 2, b - 2] + w[a - 1, b - 1] + w[a, b] + w[a + 1, b + 1] + w[a + 2, b + 2]
            if c >= 3:
                best = max(best, abs(t * inv[c]) - pen[c])
            t = v[a - 2, b + 2] + v[a - 1, b + 1] + v[a, b] + v[a + 1, b - 1] + v[a + 2, b - 2]  # anti-diagonal
            c = w[a - 2, b + 2] + w[a - 1, b + 1] + w[a, b] + w[a + 1, b - 1] + w[a + 2, b - 2]
            if c >= 3:
                best = max(best, abs(t * inv[c]) - pen[c])
            out[i, j] = best
