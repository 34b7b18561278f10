"""Depth maps <-> world points <-> pixels (pure NumPy functions, OpenCV axes, mm)."""

from __future__ import annotations

import numpy as np

from mv3dad.geometry.camera import Camera


def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) u and v pixel-centre coordinates (float64)."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return u, v


def depth_to_points(depth: np.ndarray, camera: Camera, frame: str = "world") -> tuple[np.ndarray, np.ndarray]:
    """Lift a depth map to 3D points.

    Args:
        depth: (H, W) depth in mm along the optical axis; 0 (or non-finite) = no measurement.
        camera: the view's camera; its width/height must match ``depth``.
        frame: ``"world"`` or ``"camera"``.

    Returns:
        points: (P, 3) float64 points in mm, one per valid pixel, in row-major pixel order.
        mask: (H, W) bool, the valid pixels.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    if depth.shape != (camera.height, camera.width):
        raise ValueError(f"depth shape {depth.shape} does not match camera {camera.height}x{camera.width}")
    mask = np.isfinite(depth) & (depth > 0)
    v, u = np.nonzero(mask)
    z = depth[mask].astype(np.float64)
    Kinv = np.linalg.inv(camera.K)
    pix = np.stack([u, v, np.ones_like(u)], axis=0).astype(np.float64)
    pc = (Kinv @ pix) * z  # (3, P) camera frame
    if frame == "camera":
        return pc.T, mask
    if frame != "world":
        raise ValueError(f"frame must be 'world' or 'camera', got {frame!r}")
    c2w = camera.cam_to_world
    pw = c2w[:3, :3] @ pc + c2w[:3, 3:4]
    return pw.T, mask


def project_points(points: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Project world points into a camera.

    Args:
        points: (P, 3) world points in mm.

    Returns:
        uv: (P, 2) float64 pixel coordinates (u right, v down; pixel centres at integers).
        z: (P,) float64 depth along the optical axis in mm (<= 0 means behind the camera).
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    pc = points @ camera.R.T + camera.t
    z = pc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uvw = pc @ camera.K.T
        uv = uvw[:, :2] / uvw[:, 2:3]
    return uv, z


def nearest_pixel(points: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pixel each world point projects to (nearest pixel centre).

    Args:
        points: (P, 3) world points in mm.

    Returns:
        v, u: (P,) int64 row and column (0 where not ``inside``, so they can index an (H, W) map directly).
        z: (P,) depth along the optical axis (mm).
        inside: (P,) bool, in front of the camera and inside the image.
    """
    uv, z = project_points(points, camera)
    with np.errstate(invalid="ignore"):
        ui, vi = np.rint(uv[:, 0]), np.rint(uv[:, 1])
        inside = (z > 0) & (ui >= 0) & (ui < camera.width) & (vi >= 0) & (vi < camera.height)
    u = np.where(inside, ui, 0).astype(np.int64)
    v = np.where(inside, vi, 0).astype(np.int64)
    return v, u, z, inside


def visible_in_depth(points: np.ndarray, camera: Camera, depth: np.ndarray, tol: float = 2.0) -> np.ndarray:
    """Which world points are seen by a view (in the image, in front, not occluded).

    A point is visible when it projects inside the image onto a valid depth pixel (nearest pixel) whose depth
    is within ``tol`` mm of the point's own depth.

    Args:
        points: (P, 3) world points in mm.
        depth: (H, W) the view's depth map (mm, 0 = no measurement).

    Returns:
        (P,) bool.
    """
    v, u, z, ok = nearest_pixel(points, camera)
    out = np.zeros(len(z), dtype=bool)
    d = depth[v[ok], u[ok]]
    out[ok] = (d > 0) & np.isfinite(d) & (np.abs(d - z[ok]) <= tol)
    return out


def depth_to_point_image(depth: np.ndarray, camera: Camera) -> np.ndarray:
    """(H, W, 3) float64 world point of every pixel, NaN where the depth is 0 or non-finite."""
    depth = np.asarray(depth, np.float64)
    if depth.shape != (camera.height, camera.width):
        raise ValueError(f"depth shape {depth.shape} does not match camera {camera.height}x{camera.width}")
    u, v = pixel_grid(*depth.shape)
    z = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan)
    K = camera.K
    x = (u - K[0, 2]) / K[0, 0] * z
    y = (v - K[1, 2]) / K[1, 1] * z
    pc = np.stack([x, y, z], axis=-1)
    c2w = camera.cam_to_world
    return pc @ c2w[:3, :3].T + c2w[:3, 3]


def point_image_normals(points: np.ndarray, center: np.ndarray, max_jump: float = 5.0) -> np.ndarray:
    """(H, W, 3) unit normals of a point image (central differences), facing the camera centre ``center``.

    NaN where a neighbour is missing or more than ``max_jump`` mm away (depth discontinuities). Compiled
    (:func:`mv3dad.geometry.compiled.image_normals`).
    """
    P = np.asarray(points, np.float64)
    if P.ndim != 3 or P.shape[2] != 3:
        raise ValueError(f"points must be (H, W, 3), got {P.shape}")
    from mv3dad.geometry.compiled import image_normals

    n = np.full_like(P, np.nan)
    image_normals(np.ascontiguousarray(P), np.asarray(center, np.float64), float(max_jump), n)
    return n
