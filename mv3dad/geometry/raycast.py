"""Rays through a camera's pixels and their first hit on a triangle mesh (open3d's ray casting, Embree).

A pixel's ray is ``R^T K^-1 [u, v, 1]`` from the camera centre: its camera-frame z component is 1, so the ray
parameter of a hit is the depth along the optical axis (mm), the quantity a depth map holds.
"""

from __future__ import annotations

import numpy as np

from mv3dad.geometry.camera import Camera


def pixel_rays(camera: Camera, v: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(P, 3) world directions of the rays through pixels ``(v, u)`` (P,), camera-frame z component 1."""
    if np.shape(v) != np.shape(u):
        raise ValueError(f"v {np.shape(v)} and u {np.shape(u)} differ in shape")
    pix = np.stack([np.asarray(u, np.float64), np.asarray(v, np.float64), np.ones(np.shape(u))], axis=-1)
    return pix.reshape(-1, 3) @ (camera.R.T @ np.linalg.inv(camera.K)).T


class MeshCaster:
    """A triangle mesh prepared for ray casting: :meth:`cast` returns the first hit of each ray.

    Args:
        vertices: (N, 3) positions (mm). faces: (M, 3) vertex indices.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        import open3d as o3d

        vertices, faces = np.asarray(vertices), np.asarray(faces)
        if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(f"need (N, 3) vertices and (M, 3) faces, got {vertices.shape} and {faces.shape}")
        self._o3d = o3d
        self._scene = o3d.t.geometry.RaycastingScene()
        self._scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)),
                                  o3d.core.Tensor(faces.astype(np.uint32)))

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First hit of the rays ``origins + t * directions`` ((P, 3) or (3,) origins, (P, 3) directions).

        Returns:
            t: (P,) float64 ray parameter of the hit (in units of each direction's length), inf where none.
            normals: (P, 3) float64 unit normal of the hit triangle (as wound; NaN where no hit).
        """
        directions = np.asarray(directions, np.float64)
        if directions.ndim != 2 or directions.shape[1] != 3:
            raise ValueError(f"directions must be (P, 3), got {directions.shape}")
        rays = np.empty((len(directions), 6), np.float32)  # open3d's layout: origin, direction
        rays[:, :3], rays[:, 3:] = origins, directions
        ans = self._scene.cast_rays(self._o3d.core.Tensor(rays))
        t = ans["t_hit"].numpy().astype(np.float64)
        n = ans["primitive_normals"].numpy().astype(np.float64)
        n[np.isinf(t)] = np.nan
        return t, n
