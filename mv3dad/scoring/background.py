"""Foreground filter of a view from its depth map (seed 004 Sec. 3.2.3: "filter out background regions").

``depth != 0`` -> optional removal of the support plane (RANSAC with open3d, for scenes on a table) -> 3 x 3
binary opening (drops specks and one-pixel bridges) -> largest connected component (the part).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mv3dad.geometry.camera import Camera
from mv3dad.geometry.projection import depth_to_points
from mv3dad.scoring.morphology import opening as square_opening


def foreground_mask(depth: np.ndarray, camera: Camera | None = None, remove_plane: bool = False,
                    plane_distance_mm: float = 1.0, opening: int = 3, largest: bool = True,
                    seed: int = 0, min_share: float = 1.0) -> np.ndarray:
    """(H, W) bool mask of the object's pixels.

    Args:
        depth: (H, W) depth in mm, 0 = no measurement.
        camera: the view's camera; needed only with ``remove_plane`` (to lift pixels to 3D points).
        remove_plane: drop the dominant plane (the table) found by RANSAC among the measured points.
        plane_distance_mm: RANSAC inlier distance of the support plane.
        opening: side of the square structuring element of the binary opening (0 or 1 = none).
        largest: keep only the 8-connected components of at least ``min_share`` times the largest's size.
        seed: seed of the RANSAC sampling.
        min_share: with ``largest``: 1 keeps the largest component only; less also keeps the pieces a view sees
            of the part apart from its main body (legs, a tail beyond a missing chunk).
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"foreground_mask: depth must be (H, W), got shape {depth.shape}")
    mask = np.isfinite(depth) & (depth != 0)
    if remove_plane:
        if camera is None:
            raise ValueError("foreground_mask: remove_plane needs the view's camera")
        mask &= ~support_plane_mask(depth, camera, plane_distance_mm, seed=seed)
    if opening > 1:
        mask = square_opening(mask, opening)
    if largest and mask.any():
        labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
        if n > 1:
            sizes = np.bincount(labels.ravel())
            sizes[0] = 0
            mask = (sizes >= min_share * sizes.max())[labels] & (labels > 0)
    return mask


def support_plane_mask(depth: np.ndarray, camera: Camera, distance_mm: float = 1.0, max_points: int = 200_000,
                       iterations: int = 1000, seed: int = 0) -> np.ndarray:
    """(H, W) bool, pixels on the dominant plane of the depth map (RANSAC on at most ``max_points`` samples).

    The plane is fitted with open3d's ``segment_plane`` on a random subset of the lifted points (camera frame),
    then every measured pixel within ``distance_mm`` of it is marked.
    """
    import open3d as o3d

    pts, valid = depth_to_points(depth, camera, frame="camera")
    out = np.zeros(depth.shape, bool)
    if len(pts) < 3:
        return out
    rng = np.random.default_rng(seed)
    sample = pts if len(pts) <= max_points else pts[rng.choice(len(pts), max_points, replace=False)]
    o3d.utility.random.seed(seed)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(sample))
    (a, b, c, d), _ = pcd.segment_plane(distance_threshold=distance_mm, ransac_n=3, num_iterations=iterations)
    dist = np.abs(pts @ np.array([a, b, c]) + d) / np.linalg.norm([a, b, c])
    out[valid] = dist <= distance_mm
    return out
