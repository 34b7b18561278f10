"""Cameras, voxel grids and projection maths.

Conventions, written once for the whole toolkit:

- lengths are millimetres;
- camera axes are OpenCV's: x right, y down, z forward (into the scene);
- ``world_to_cam`` is a rigid 4x4 matrix mapping homogeneous world points to camera points;
- pixel (u, v) has its centre at integer coordinates; the ray through it is ``K^-1 [u, v, 1]``;
- depth is the z coordinate in the camera frame (along the optical axis, not along the ray), in mm;
  0 means "no measurement".
"""

from mv3dad.geometry.camera import Camera
from mv3dad.geometry.grid import VoxelGrid
from mv3dad.geometry.projection import depth_to_points, project_points, visible_in_depth

__all__ = ["Camera", "VoxelGrid", "depth_to_points", "project_points", "visible_in_depth"]
