"""Procedural 3D surface textures, evaluated at a hit point in the object's own frame (mm).

Each texture maps a local point ``q = (qx, qy, qz)`` (object frame, mm) to a value ``t`` in [0, 1] that the material turns into
a colour (``mix(dark, light, t)``). Textures are numba functions so that the renderer can call them per pixel.
``phase`` (3,) shifts the pattern between instances; ``ideal`` removes the random irregularities (the
idealised CAD-like look of a synth2real training instance).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

# texture ids (the renderer dispatches on them)
TEXTURES = {"wood": 0, "wicker": 1, "speckle": 2, "brushed": 3, "laminate": 4, "rubber": 5}


@nb.njit(cache=True, inline="always", error_model="numpy", fastmath=True)
def _hash(ix: int, iy: int, iz: int) -> float:
    """A lattice hash in [0, 1)."""
    h = (ix * 73856093) ^ (iy * 19349663) ^ (iz * 83492791)
    h = h & 0xFFFFFFFF
    h = ((h >> 16) ^ h) * 0x45D9F3B & 0xFFFFFFFF
    h = ((h >> 16) ^ h) * 0x45D9F3B & 0xFFFFFFFF
    h = (h >> 16) ^ h
    return (h & 0xFFFFFF) / 16777216.0


@nb.njit(cache=True, inline="always", error_model="numpy", fastmath=True)
def _smooth(t: float) -> float:
    return t * t * (3.0 - 2.0 * t)


@nb.njit(cache=True, error_model="numpy", fastmath=True)
def value_noise(x: float, y: float, z: float) -> float:
    """Trilinear value noise in [0, 1] with unit lattice spacing."""
    fx, fy, fz = math.floor(x), math.floor(y), math.floor(z)
    ix, iy, iz = int(fx), int(fy), int(fz)
    tx, ty, tz = _smooth(x - fx), _smooth(y - fy), _smooth(z - fz)
    c000 = _hash(ix, iy, iz)
    c100 = _hash(ix + 1, iy, iz)
    c010 = _hash(ix, iy + 1, iz)
    c110 = _hash(ix + 1, iy + 1, iz)
    c001 = _hash(ix, iy, iz + 1)
    c101 = _hash(ix + 1, iy, iz + 1)
    c011 = _hash(ix, iy + 1, iz + 1)
    c111 = _hash(ix + 1, iy + 1, iz + 1)
    a = c000 + tx * (c100 - c000)
    b = c010 + tx * (c110 - c010)
    c = c001 + tx * (c101 - c001)
    d = c011 + tx * (c111 - c011)
    e = a + ty * (b - a)
    f = c + ty * (d - c)
    return e + tz * (f - e)


@nb.njit(cache=True, error_model="numpy", fastmath=True)
def fbm(x: float, y: float, z: float, octaves: int) -> float:
    """Fractal sum of value noise, in [0, 1]."""
    s, amp, norm = 0.0, 0.5, 0.0
    for _ in range(octaves):
        s += amp * value_noise(x, y, z)
        norm += amp
        x, y, z = 2.03 * x + 17.1, 2.03 * y + 5.3, 2.03 * z + 11.7
        amp *= 0.5
    return s / norm


@nb.njit(cache=True, error_model="numpy", fastmath=True)
def wood(qx, qy, qz, phase, scale: float, ideal: bool) -> float:
    """Wood: growth rings around an axis parallel to x, distorted, with fine streaks along the grain."""
    y, z = qy + phase[1] + 200.0, qz + phase[2] + 150.0
    x = qx + phase[0]
    r = math.sqrt(y * y + z * z)
    if not ideal:
        r += 9.0 * scale * (fbm(x * 0.004, y * 0.02, z * 0.02, 3) - 0.5)
    ring = r / (7.0 * scale)
    ring = ring - math.floor(ring)
    t = 0.75 - 0.45 * ring ** 3  # late wood is dark, ring boundary sharp
    if not ideal:
        t += 0.18 * (fbm(x * 0.01, y * 0.6, z * 0.6, 2) - 0.5)
    return min(max(t, 0.0), 1.0)


@nb.njit(cache=True, error_model="numpy", fastmath=True)
def wicker(qx, qy, qz, phase, scale: float, ideal: bool) -> float:
    """Wicker: horizontal weft strands woven over and under vertical stakes (cylindrical coordinates)."""
    s = (math.atan2(qy, qx) + phase[0] * 0.01) * 100.0  # arc length at a 100 mm radius
    z = qz + phase[2]
    ph, pw = 9.0 * scale, 14.0 * scale
    row = math.floor(z / ph)
    col = math.floor(s / pw)
    fz = z / ph - row
    fs = s / pw - col
    over = (int(row) + int(col)) % 2 == 0
    if over:  # the weft strand passes in front: round profile across its height
        prof = math.sin(math.pi * fz)
    else:  # the stake shows between two weft passes
        prof = math.sin(math.pi * fs) * 0.85
    t = 0.15 + 0.8 * prof ** 0.6
    if not ideal:
        t *= 0.8 + 0.4 * fbm(s * 0.05 + 3.0 * row, z * 0.05, 3.1 * col, 3)
        t *= 0.9 + 0.2 * value_noise(s * 1.3, z * 1.3, 0.0)  # fibres
    return min(max(t, 0.0), 1.0)


@nb.njit(cache=True, error_model="numpy", fastmath=True)
def speckle(qx, qy, qz, phase, scale: float, ideal: bool) -> float:
    """Moulded plastic: uniform colour, slight mottling, sparse dark and light flecks."""
    if ideal:
        return 0.6
    x, y, z = qx + phase[0], qy + phase[1], qz + phase[2]
    t = 0.6 + 0.12 * (fbm(x * 0.02, y * 0.02, z * 0.02, 3) - 0.5)
    n = value_noise(x * 0.9 / scale, y * 0.9 / scale, z * 0.9 / scale)
    if n > 0.88:
        t -= 0.35
    elif n < 0.07:
        t += 0.25
    return min(max(t, 0.0), 1.0)


@nb.njit(cache=True, error_model="numpy", fastmath=True)
def brushed(qx, qy, qz, phase, scale: float, ideal: bool) -> float:
    """Brushed metal: fine streaks running vertically, around the object's axis."""
    a = math.atan2(qy, qx) * 120.0
    z = qz + phase[2]
    if ideal:
        return 0.55
    t = 0.55 + 0.25 * (fbm(a * 1.5 / scale + phase[0], z * 0.015, 0.0, 3) - 0.5)
    t += 0.08 * (fbm(qx * 0.01, qy * 0.01, z * 0.01, 2) - 0.5)
    return min(max(t, 0.0), 1.0)


@nb.njit(cache=True, error_model="numpy", fastmath=True)
def laminate(qx, qy, qz, phase, scale: float, ideal: bool) -> float:
    """White laminate with a faint, straight wood-like print."""
    if ideal:
        return 0.85
    x, y, z = qx + phase[0], qy + phase[1], qz + phase[2]
    t = 0.85 + 0.08 * (fbm(x * 0.02, y * 0.02, z * 0.2, 3) - 0.5)
    t += 0.05 * (value_noise(x * 0.5, y * 0.5, z * 0.02) - 0.5)
    return min(max(t, 0.0), 1.0)


@nb.njit(cache=True, error_model="numpy", fastmath=True)
def rubber(qx, qy, qz, phase, scale: float, ideal: bool) -> float:
    """Turntable rubber: dark, fine grain."""
    return 0.5 + (0.0 if ideal else 0.3 * (value_noise(qx * 0.4, qy * 0.4, qz * 0.4) - 0.5))


@nb.njit(cache=True, error_model="numpy", fastmath=True)
def texture(tex_id: int, qx, qy, qz, phase, scale: float, ideal: bool) -> float:
    """Dispatch on ``tex_id`` (see :data:`TEXTURES`)."""
    if tex_id == 0:
        return wood(qx, qy, qz, phase, scale, ideal)
    if tex_id == 1:
        return wicker(qx, qy, qz, phase, scale, ideal)
    if tex_id == 2:
        return speckle(qx, qy, qz, phase, scale, ideal)
    if tex_id == 3:
        return brushed(qx, qy, qz, phase, scale, ideal)
    if tex_id == 4:
        return laminate(qx, qy, qz, phase, scale, ideal)
    return rubber(qx, qy, qz, phase, scale, ideal)


@nb.njit(cache=True, error_model="numpy", fastmath=True)
def stain_weight(qx, qy, qz, stains) -> float:
    """Strength in [0, 1] of the stains at local point ``(qx, qy, qz)``.

    ``stains``: (S, 6) rows ``cx, cy, cz, radius, strength, seed``; a stain is a blob with a noisy edge.
    Returns the largest ``strength * coverage`` over the stains.
    """
    best = 0.0
    for k in range(stains.shape[0]):
        dx, dy, dz = qx - stains[k, 0], qy - stains[k, 1], qz - stains[k, 2]
        r = stains[k, 3]
        d = math.sqrt(dx * dx + dy * dy + dz * dz) / r
        if d > 1.6:
            continue
        sd = stains[k, 5]
        d += 0.45 * (fbm(qx * 4.0 / r + sd, qy * 4.0 / r, qz * 4.0 / r, 3) - 0.5)
        cov = min(max((1.0 - d) * 5.0, 0.0), 1.0)
        w = cov * stains[k, 4]
        if w > best:
            best = w
    return best


def stain_weights(points: np.ndarray, stains: np.ndarray) -> np.ndarray:
    """Vectorised :func:`stain_weight`: (P, 3) local points -> (P,) weights."""
    return _stain_weights(np.ascontiguousarray(points, dtype=np.float64), np.ascontiguousarray(stains, np.float64))


@nb.njit(cache=True, error_model="numpy", fastmath=True)
def _stain_weights(points, stains):
    out = np.zeros(points.shape[0])
    for i in range(points.shape[0]):
        out[i] = stain_weight(points[i, 0], points[i, 1], points[i, 2], stains)
    return out
