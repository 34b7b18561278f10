"""A picture of the per-view anomaly maps that ``mv3dad predict --save-maps`` writes (``<instance>_maps.npz``).

The file holds ``maps``: (N, H, W) float16, one fused anomaly map per view at the depth resolution, NaN off the
foreground (background and unmeasured pixels). :func:`render_maps` tiles the N views in one PNG with one colour
scale (NaN drawn grey), each tile titled with its view index and maximum.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mv3dad.errors import DataError
from mv3dad.io import atomic_file


def load_maps(path: str | Path) -> np.ndarray:
    """The (N, H, W) float32 maps of a ``*_maps.npz`` file (never unpickles).

    Raises:
        DataError: naming the file: missing, unreadable, or without a 3-D ``maps`` array.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "maps" not in z.files:
                raise DataError(f"{path}: no 'maps' array (not written by `mv3dad predict --save-maps`)")
            maps = np.asarray(z["maps"], np.float32)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read maps: {e}") from None
    if maps.ndim != 3:
        raise DataError(f"{path}: 'maps' must be (views, H, W), got shape {maps.shape}")
    return maps


def render_maps(path: str | Path, out: str | Path, vmax: float | None = None, cols: int | None = None,
                views: list[int] | None = None) -> Path:
    """Write a PNG of the maps in ``path``: one tile per view, one colour scale.

    Args:
        path: a ``<instance>_maps.npz`` from ``mv3dad predict --save-maps``.
        out: the PNG to write.
        vmax: top of the colour scale (None: the maps' 99.5th percentile over every view).
        cols: tiles per row (None: about a square).
        views: the rig view index of each map, for the titles (None: 0..N-1; ``scores.json``'s ``rig_views``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maps = load_maps(path)
    n = len(maps)
    finite = maps[np.isfinite(maps)]
    top = vmax if vmax is not None else (float(np.percentile(finite, 99.5)) if finite.size else 1.0)
    lo = float(finite.min()) if finite.size else 0.0
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows + 0.4), squeeze=False)
    cmap = matplotlib.colormaps["inferno"].copy()
    cmap.set_bad("0.75")
    im = None
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        m = maps[k]
        im = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, vmin=lo, vmax=max(top, lo + 1e-12))
        mx = np.nanmax(m) if np.isfinite(m).any() else float("nan")
        ax.set_title(f"view {views[k] if views and len(views) == n else k}  max {mx:.3g}", fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="anomaly score (grey: not scored)")
    fig.suptitle(Path(path).name, fontsize=9)
    out = Path(out)
    with atomic_file(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out
