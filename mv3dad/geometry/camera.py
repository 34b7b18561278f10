"""The pinhole camera of one view (OpenCV axes, millimetres)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mv3dad.errors import CalibrationError


@dataclass(frozen=True, eq=False)
class Camera:
    """A calibrated pinhole camera.

    Attributes:
        K: (3, 3) float64 intrinsics ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` in pixels.
        world_to_cam: (4, 4) float64 rigid transform, world mm -> camera mm (OpenCV axes).
        width: image width in pixels (number of columns, u in [0, width)).
        height: image height in pixels (number of rows, v in [0, height)).
    """

    K: np.ndarray
    world_to_cam: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "K", np.asarray(self.K, dtype=np.float64).reshape(3, 3))
        object.__setattr__(self, "world_to_cam", np.asarray(self.world_to_cam, dtype=np.float64).reshape(4, 4))
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    # ----------------------------------------------------------------- checks
    def validate(self, where: str = "camera") -> "Camera":
        """Raise :class:`CalibrationError` naming ``where`` and the field when a parameter is invalid."""
        K, T = self.K, self.world_to_cam
        if not (np.all(np.isfinite(K)) and np.all(np.isfinite(T))):
            raise CalibrationError(f"{where}: K or world_to_cam holds NaN/inf")
        if self.width <= 0 or self.height <= 0:
            raise CalibrationError(f"{where}: width/height must be positive, got {self.width}x{self.height}")
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise CalibrationError(f"{where}: K: focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}")
        if not np.allclose(K[2], [0, 0, 1]) or abs(K[1, 0]) > 0:
            raise CalibrationError(f"{where}: K: last row must be [0, 0, 1] and K[1, 0] must be 0")
        if not (0 <= K[0, 2] < self.width and 0 <= K[1, 2] < self.height):
            raise CalibrationError(
                f"{where}: K: principal point ({K[0, 2]}, {K[1, 2]}) is outside the {self.width}x{self.height} image")
        R = T[:3, :3]
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-5):
            raise CalibrationError(f"{where}: world_to_cam: rotation is not orthonormal")
        if not np.isclose(np.linalg.det(R), 1.0, atol=1e-5):
            raise CalibrationError(f"{where}: world_to_cam: rotation determinant is {np.linalg.det(R):.6f}, not +1")
        if not np.allclose(T[3], [0, 0, 0, 1]):
            raise CalibrationError(f"{where}: world_to_cam: last row must be [0, 0, 0, 1]")
        return self

    # ------------------------------------------------------------ derived
    @property
    def R(self) -> np.ndarray:
        """(3, 3) world -> camera rotation."""
        return self.world_to_cam[:3, :3]

    @property
    def t(self) -> np.ndarray:
        """(3,) world -> camera translation in mm."""
        return self.world_to_cam[:3, 3]

    @property
    def cam_to_world(self) -> np.ndarray:
        """(4, 4) inverse of ``world_to_cam``."""
        inv = np.eye(4)
        inv[:3, :3] = self.R.T
        inv[:3, 3] = -self.R.T @ self.t
        return inv

    @property
    def center(self) -> np.ndarray:
        """(3,) camera centre in world mm."""
        return -self.R.T @ self.t

    def scaled(self, width: int, height: int) -> "Camera":
        """The same camera for an image resized to ``width`` x ``height`` (pixel centres preserved)."""
        sx, sy = width / self.width, height / self.height
        K = self.K.copy()
        K[0, 0] *= sx
        K[0, 1] *= sx
        K[1, 1] *= sy
        K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
        K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
        return Camera(K, self.world_to_cam.copy(), width, height)

    @staticmethod
    def look_at(eye, target, up, fx: float, fy: float, width: int, height: int) -> "Camera":
        """A camera at ``eye`` (mm) looking at ``target`` with image-up roughly along ``up``.

        The principal point is the image centre ``((width - 1) / 2, (height - 1) / 2)``.
        """
        eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
        z = target - eye
        z /= np.linalg.norm(z)
        x = np.cross(z, up)
        if np.linalg.norm(x) < 1e-9:  # looking along `up`: pick any perpendicular
            x = np.cross(z, [1.0, 0.0, 0.0] if abs(z[0]) < 0.9 else [0.0, 1.0, 0.0])
        x /= np.linalg.norm(x)
        y = np.cross(z, x)  # image down
        R = np.stack([x, y, z])
        T = np.eye(4)
        T[:3, :3] = R
        T[:3, 3] = -R @ eye
        K = np.array([[fx, 0, (width - 1) / 2], [0, fy, (height - 1) / 2], [0, 0, 1]], dtype=np.float64)
        return Camera(K, T, width, height)

    def to_dict(self) -> dict:
        """A JSON/YAML-friendly dict (lists of floats)."""
        return {"width": self.width, "height": self.height, "K": self.K.tolist(),
                "world_to_cam": self.world_to_cam.tolist()}

    @staticmethod
    def from_dict(d: dict, where: str = "camera") -> "Camera":
        """Inverse of :meth:`to_dict`; validates and names ``where`` in errors."""
        try:
            cam = Camera(np.asarray(d["K"], dtype=np.float64), np.asarray(d["world_to_cam"], dtype=np.float64),
                         int(d["width"]), int(d["height"]))
        except KeyError as e:
            raise CalibrationError(f"{where}: missing field {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise CalibrationError(f"{where}: malformed field: {e}") from None
        return cam.validate(where)
