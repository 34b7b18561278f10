"""Calibrated multi-camera rigs: the hemisphere rigs of the synthetic benchmark and the ``calib/`` YAML format.

A rig file (see ``mv3dad/calib/README.md``) is human-readable YAML::

    name: hemisphere12
    units: mm
    convention: opencv
    cameras:
      - width: 1024
        height: 1024
        K: [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]
        world_to_cam: [[r00, r01, r02, tx], [r10, r11, r12, ty], [r20, r21, r22, tz], [0, 0, 0, 1]]
      - ...

Cameras are listed in the rig's fixed view order. Loading validates every camera (orthonormal rotation with
determinant +1, positive focal lengths, principal point inside the image, matrix shapes) and fails with a
:class:`~mv3dad.geometry.camera.CalibrationError` naming the file, the camera index and the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from mv3dad.errors import CalibrationError
from mv3dad.geometry.camera import Camera
from mv3dad.io import atomic_write, package_path, read_yaml, resolve_data_path

CALIB_DIR = package_path("calib")
"""The folder of the built-in rig files, shipped inside the package (``mv3dad/calib/``)."""

BUILTIN_RIGS = {"hemisphere12": "hemisphere12.yaml", "hemisphere36": "hemisphere36.yaml"}
"""Built-in rig name -> file name in :data:`CALIB_DIR`."""

DEFAULT_ELEVATIONS_DEG = {1: (35.0,), 2: (25.0, 50.0), 3: (15.0, 40.0, 65.0)}
"""Ring elevations (degrees above the turntable plane, seen from the target) by number of rings."""


@dataclass(eq=False)
class Rig:
    """A named set of calibrated cameras in a fixed view order.

    Attributes:
        name: the rig's name (e.g. ``"hemisphere12"``).
        cameras: one :class:`Camera` per view, in view order.
    """

    name: str
    cameras: list[Camera]

    def __len__(self) -> int:
        return len(self.cameras)

    def scaled(self, image_size: int) -> "Rig":
        """The same rig with every camera rescaled to ``image_size`` x ``image_size`` pixels."""
        if int(image_size) <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        return Rig(self.name, [c.scaled(int(image_size), int(image_size)) for c in self.cameras])


def resolve_repo_path(path: str | Path) -> Path:
    """``path`` itself when absolute or present relative to the current folder, else inside the package
    (``"calib/sim3d"`` -> ``mv3dad/calib/sim3d``); :func:`mv3dad.io.resolve_data_path` under its old name."""
    return resolve_data_path(path)


# ------------------------------------------------------------------------------------------------ hemisphere
def _ring_sizes(n_views: int, n_rings: int) -> list[int]:
    """Split ``n_views`` into ``n_rings`` near-equal ring sizes (lower rings get the extra views)."""
    base, extra = divmod(n_views, n_rings)
    return [base + (1 if r < extra else 0) for r in range(n_rings)]


def hemisphere_rig(n_views: int, *, distance_mm: float = 900.0, target_mm=(0.0, 0.0, 150.0),
                   elevations_deg=None, image_size: int = 1024, fov_deg: float = 40.0,
                   name: str | None = None) -> Rig:
    """Cameras on horizontal rings over a turntable, all looking at ``target_mm`` (world z up).

    Ring ``r`` sits at elevation ``elevations_deg[r]`` (degrees above the horizontal plane through the target)
    and at ``distance_mm`` from the target; its cameras are equally spaced in azimuth, and ring ``r`` is rotated
    by ``r / n_rings`` of its azimuth step so that rings are staggered. By default 1-3 views use one ring,
    4-24 views two rings (25°, 50°) and more views three rings (15°, 40°, 65°): 12 views = 2 x 6,
    36 views = 3 x 12. Views are ordered ring by ring (lowest first), then by increasing azimuth.

    Args:
        n_views: number of cameras (>= 1).
        distance_mm: camera-to-target distance in mm.
        target_mm: (3,) world point every camera looks at, in mm.
        elevations_deg: ring elevations in degrees, in (0, 90); None for the defaults above.
        image_size: square image side in pixels.
        fov_deg: full field of view (horizontal = vertical) in degrees.
        name: rig name; ``f"hemisphere{n_views}"`` when None.

    Returns:
        A :class:`Rig` of ``n_views`` validated cameras, principal point at the image centre.
    """
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    if not distance_mm > 0:
        raise ValueError(f"distance_mm must be positive, got {distance_mm}")
    if not 0 < fov_deg < 180:
        raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg}")
    if elevations_deg is None:
        elevations_deg = DEFAULT_ELEVATIONS_DEG[1 if n_views < 4 else 2 if n_views <= 24 else 3]
    elevations = [float(e) for e in elevations_deg]
    if not elevations or len(elevations) > n_views or not all(0 < e < 90 for e in elevations):
        raise ValueError(f"elevations_deg must hold 1..n_views angles in (0, 90), got {elevations_deg}")
    target = np.asarray(target_mm, dtype=np.float64).reshape(3)
    focal = (image_size / 2) / math.tan(math.radians(fov_deg) / 2)
    cameras = []
    for r, (el, n_ring) in enumerate(zip(elevations, _ring_sizes(n_views, len(elevations)))):
        step = 2 * math.pi / n_ring
        for k in range(n_ring):
            az = step * (k + r / len(elevations))
            e = math.radians(el)
            eye = target + distance_mm * np.array([math.cos(e) * math.cos(az), math.cos(e) * math.sin(az), math.sin(e)])
            cam = Camera.look_at(eye, target, (0.0, 0.0, 1.0), focal, focal, image_size, image_size)
            cameras.append(cam.validate(f"hemisphere camera {len(cameras)}"))
    return Rig(name or f"hemisphere{n_views}", cameras)


# ------------------------------------------------------------------------------------------------ YAML I/O
def _matrix(d: dict, field: str, shape: tuple[int, int], where: str) -> np.ndarray:
    """Field ``field`` of ``d`` as a float64 array of ``shape``; a CalibrationError naming ``where`` and it."""
    if field not in d:
        raise CalibrationError(f"{where}: missing field {field!r}")
    try:
        arr = np.asarray(d[field], dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f"{where}: {field}: must be a {shape[0]}x{shape[1]} matrix of numbers") from None
    if arr.shape != shape:
        raise CalibrationError(f"{where}: {field}: must be {shape[0]}x{shape[1]}, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise CalibrationError(f"{where}: {field}: holds NaN/inf")
    return arr


def _size(d: dict, field: str, where: str) -> int:
    """Field ``field`` of ``d`` as a positive int; a CalibrationError naming ``where`` and it."""
    if field not in d:
        raise CalibrationError(f"{where}: missing field {field!r}")
    v = d[field]
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise CalibrationError(f"{where}: {field}: must be a positive integer, got {v!r}")
    return v


def camera_from_yaml(d: object, where: str) -> Camera:
    """One camera entry of a rig file -> validated :class:`Camera`; errors name ``where`` and the field."""
    if not isinstance(d, dict):
        raise CalibrationError(f"{where}: must be a mapping with width, height, K, world_to_cam")
    cam = Camera(_matrix(d, "K", (3, 3), where), _matrix(d, "world_to_cam", (4, 4), where),
                 _size(d, "width", where), _size(d, "height", where))
    return cam.validate(where)


def load_rig(path: str | Path) -> Rig:
    """Read and validate a rig YAML file (format in the module docstring and ``mv3dad/calib/README.md``).

    Raises:
        CalibrationError: naming ``path``, the camera index and the field on any problem.
    """
    path = Path(path)
    doc = read_yaml(path, "rig file", mapping=False, error=CalibrationError)
    if not isinstance(doc, dict):
        raise CalibrationError(f"{path}: a rig file must hold a mapping with name, units, convention, cameras")
    if doc.get("units", "mm") != "mm":
        raise CalibrationError(f"{path}: units: only 'mm' is supported, got {doc['units']!r}")
    if doc.get("convention", "opencv") != "opencv":
        raise CalibrationError(f"{path}: convention: only 'opencv' is supported, got {doc['convention']!r}")
    cams = doc.get("cameras")
    if not isinstance(cams, list) or not cams:
        raise CalibrationError(f"{path}: cameras: must be a non-empty list")
    cameras = [camera_from_yaml(c, f"{path}: camera {i}") for i, c in enumerate(cams)]
    return Rig(str(doc.get("name", path.stem)), cameras)


def _row(values) -> str:
    """``[a, b, c]`` with every float written to full precision."""
    return "[" + ", ".join(repr(float(v) + 0.0) for v in values) + "]"  # + 0.0 turns -0.0 into 0.0


def rig_to_yaml(rig: Rig) -> str:
    """The YAML text of ``rig`` (matrices written row by row, full float precision)."""
    lines = [f"name: {yaml.safe_dump(rig.name, default_style=None).splitlines()[0]}", "units: mm",
             "convention: opencv", "cameras:"]
    for i, cam in enumerate(rig.cameras):
        lines += [f"  # camera {i}", f"  - width: {cam.width}", f"    height: {cam.height}", "    K:"]
        lines += [f"      - {_row(r)}" for r in cam.K]
        lines += ["    world_to_cam:"] + [f"      - {_row(r)}" for r in cam.world_to_cam]
    return "\n".join(lines) + "\n"


def save_rig(rig: Rig, path: str | Path) -> Path:
    """Validate ``rig`` and write it to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    if not rig.cameras:
        raise CalibrationError(f"{path}: rig {rig.name!r} has no cameras")
    for i, cam in enumerate(rig.cameras):
        cam.validate(f"{path}: camera {i}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, rig_to_yaml(rig))


def builtin_rig(name: str) -> Rig:
    """A built-in rig by name (``"hemisphere12"``, ``"hemisphere36"`` from the package's ``mv3dad/calib/``) or a
    rig file path (a file of that name in the current folder wins over the packaged one)."""
    if name in BUILTIN_RIGS:
        path = CALIB_DIR / BUILTIN_RIGS[name]
        if not path.is_file():
            raise CalibrationError(f"{path}: built-in rig {name!r} is missing from the installed mv3dad package "
                                   "(reinstall mv3dad)")
        return load_rig(path)
    path = resolve_data_path(name)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return load_rig(path)
    raise CalibrationError(f"unknown rig {name!r}: use one of {sorted(BUILTIN_RIGS)} or a rig YAML file path")
