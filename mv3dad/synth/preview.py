"""A contact sheet of a synthetic benchmark: per category a row of training views, the same views of an
anomalous test instance with its ground-truth defects outlined (red) and saturated highlights outlined (cyan),
and that instance's depth maps (shaded, so that dents and bumps show) with missing measurements on the object in
magenta."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from mv3dad.data.scene import Sample, View
from mv3dad.geometry.grid import VoxelGrid
from mv3dad.geometry.projection import project_points
from mv3dad.io import atomic_file


def gt_mask(view: View, gt, tol_mm: float | None = None) -> np.ndarray:
    """(H, W) bool: pixels where a ground-truth voxel of ``gt`` (DataArray) is seen by ``view``.

    A voxel counts as seen when it projects in front of (or within ``tol_mm`` behind) the view's depth, with
    missing depth filled from the neighbourhood; each hit pixel is grown to about a voxel's footprint.
    """
    cam = view.camera
    mask = np.zeros((cam.height, cam.width), bool)
    centres, voxel = gt_points(gt)
    if len(centres) == 0:
        return mask
    tol = 2.5 * voxel if tol_mm is None else tol_mm
    uv, z = project_points(centres, cam)
    u, v = np.rint(uv[:, 0]).astype(np.int64), np.rint(uv[:, 1]).astype(np.int64)
    ok = (z > 0) & (u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height)
    depth = view.depth
    filled = np.where(depth > 0, depth, ndimage.grey_dilation(depth, size=7))
    d = filled[v[ok], u[ok]]
    seen = (d <= 0) | (z[ok] <= d + tol)
    mask[v[ok][seen], u[ok][seen]] = True
    foot = cam.K[0, 0] * voxel / max(float(np.median(z[ok])) if ok.any() else 1.0, 1.0)
    return ndimage.binary_dilation(mask, iterations=max(1, int(round(foot)) + 1))


def gt_points(gt) -> tuple[np.ndarray, float]:
    """World centres (P, 3) of the voxels set in a ground-truth DataArray, and the voxel size (cached on it)."""
    if "_centres" not in gt.attrs:
        grid = VoxelGrid.from_dataarray(gt)
        gt.attrs["_centres"] = grid.index_to_world(np.argwhere(np.asarray(gt.values) > 0))
    return gt.attrs["_centres"], VoxelGrid.from_dataarray(gt).voxel_size


def _pick_views(sample: Sample | None, n: int, n_total: int) -> list[int]:
    if sample is None or sample.gt is None:
        return sorted(set(np.linspace(0, n_total - 1, n).round().astype(int).tolist()))
    counts = [int(gt_mask(v, sample.gt).sum()) for v in sample.views]
    best = np.argsort(-np.asarray(counts), kind="stable")[:n]
    return sorted(int(i) for i in best)


def hillshade(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(H, W) float32 Lambertian shading in [0, 1] of the surface seen in a depth map (light from the upper
    left of the camera); 0 where the depth or a neighbour's is missing. Makes dents and bumps visible."""
    v, u = np.mgrid[0:depth.shape[0], 0:depth.shape[1]].astype(np.float64)
    z = depth.astype(np.float64)
    x = (u - K[0, 2]) / K[0, 0] * z
    y = (v - K[1, 2]) / K[1, 1] * z
    p = np.stack([x, y, z], -1)
    du = np.zeros_like(p)
    dv = np.zeros_like(p)
    du[:, 1:-1] = p[:, 2:] - p[:, :-2]
    dv[1:-1] = p[2:] - p[:-2]
    n = np.cross(dv, du)  # towards the camera
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    light = np.array([-0.4, -0.5, -0.77])
    shade = np.clip(n @ (light / np.linalg.norm(light)), 0, 1)
    ok = ndimage.binary_erosion(z > 0, iterations=1)
    return np.where(ok, shade, 0).astype(np.float32)


def _crop_box(samples: list[Sample], picks: list[int], margin: float = 0.06) -> tuple[slice, slice]:
    """A square crop around everything measured in the picked views."""
    valid = np.zeros(samples[0].views[0].depth.shape, bool)
    for smp in samples:
        for i in picks:
            valid |= smp.views[i].depth > 0
    if not valid.any():
        return slice(None), slice(None)
    ys, xs = np.nonzero(valid)
    h, w = valid.shape
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    half = max(ys.max() - ys.min(), xs.max() - xs.min()) / 2 * (1 + 2 * margin) + 2
    half = min(half, max(h, w) / 2)
    y0 = int(np.clip(round(cy - half), 0, max(h - 2 * half, 0)))
    x0 = int(np.clip(round(cx - half), 0, max(w - 2 * half, 0)))
    return slice(y0, y0 + int(round(2 * half))), slice(x0, x0 + int(round(2 * half)))


def missing_depth(image: np.ndarray, depth: np.ndarray, level: float = 0.04) -> np.ndarray:
    """(H, W) bool: pixels where the image sees something (brighter than the dark background) but the depth
    has no measurement."""
    seen = ndimage.median_filter(_gray(image), size=3) > level
    return seen & (depth <= 0)


def _gray(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else img @ np.array([0.299, 0.587, 0.114])


def contact_sheet(rows: list[tuple[str, Sample, Sample | None]], path: str | Path, n_views: int = 4,
                  cell_inches: float = 2.2) -> Path:
    """Write the contact sheet PNG.

    Args:
        rows: per category ``(name, training sample, anomalous test sample or None)``.
        path: output PNG (written atomically).
        n_views: views per category (those where the defects are most visible).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_views = max(1, min(n_views, min(len(r[1].views) for r in rows)))
    nrows = sum(3 if r[2] is not None else 1 for r in rows)
    fig, axes = plt.subplots(nrows, n_views, figsize=(cell_inches * n_views, cell_inches * nrows + 0.6),
                             squeeze=False)
    r = 0
    for name, train, anom in rows:
        picks = _pick_views(anom, n_views, len(train.views))
        crop = _crop_box([train] + ([anom] if anom is not None else []), picks)
        for j, i in enumerate(picks):
            ax = axes[r, j]
            ax.imshow(train.views[i].image[crop], cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{name} train {train.instance_id} view {i}", fontsize=7)
        if anom is not None:
            types = ", ".join(f"{d['type']} {d['size_mm']:.0f}mm" for d in anom.meta.get("defects", []))
            for j, i in enumerate(picks):
                v = anom.views[i]
                m = (gt_mask(v, anom.gt) if anom.gt is not None else np.zeros(v.depth.shape, bool))[crop]
                ax = axes[r + 1, j]
                ax.imshow(v.image[crop], cmap="gray", vmin=0, vmax=1)
                sat = _gray(v.image[crop]) >= 0.995
                if sat.any():
                    ax.contour(sat, levels=[0.5], colors="cyan", linewidths=0.6)
                if m.any():
                    ax.contour(m, levels=[0.5], colors="red", linewidths=0.9)
                ax.set_title(f"test {anom.instance_id} view {i}", fontsize=7)
                ax = axes[r + 2, j]
                depth = v.depth[crop]
                valid = depth > 0
                lo, hi = (np.percentile(depth[valid], [1, 99]) if valid.any() else (0.0, 1.0))
                K = v.camera.K.copy()
                K[0, 2] -= crop[1].start or 0
                K[1, 2] -= crop[0].start or 0
                shade = hillshade(depth, K)
                rgb = plt.get_cmap("turbo")(np.clip((depth - lo) / max(hi - lo, 1e-6), 0, 1))[..., :3]
                rgb = rgb * (0.25 + 0.75 * shade[..., None])
                rgb[~valid] = 0
                rgb[missing_depth(v.image[crop], depth)] = (1, 0, 1)
                ax.imshow(rgb)
                if m.any():
                    ax.contour(m, levels=[0.5], colors="white", linewidths=0.8)
                ax.set_title("depth, shaded (magenta: missing)", fontsize=7)
            axes[r + 1, 0].set_ylabel(types, fontsize=6)
        r += 3 if anom is not None else 1
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    height = cell_inches * nrows + 0.6
    fig.suptitle("mv3dad synth: train (top), anomalous test with GT defects in red and saturated highlights in "
                 "cyan (middle), its depth (bottom)", fontsize=8, y=1 - 0.12 / height)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / height))
    path = Path(path)
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
    finally:
        plt.close(fig)
    return path
