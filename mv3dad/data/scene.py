"""The scene model: a view (image + pixel-aligned depth + camera) and a sample (one scanned instance)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import xarray as xr

from mv3dad.errors import DataError
from mv3dad.geometry.camera import Camera

Label = Literal["nominal", "anomalous"]


@dataclass(eq=False)
class View:
    """One calibrated view.

    Attributes:
        image: (H, W) or (H, W, 3) float32 in [0, 1]; grayscale or RGB.
        depth: (H, W) float32 depth in mm along the optical axis; 0 = no measurement (never NaN/inf).
        camera: the view's calibrated camera (width W, height H).
    """

    image: np.ndarray
    depth: np.ndarray
    camera: Camera

    def validate(self, where: str = "view") -> "View":
        """Check shapes and values; raise :class:`DataError` naming ``where``."""
        img, dep, cam = self.image, self.depth, self.camera
        if dep.ndim != 2:
            raise DataError(f"{where}: depth must be (H, W), got shape {dep.shape}")
        if img.shape[:2] != dep.shape or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
            raise DataError(f"{where}: image shape {img.shape} does not match depth shape {dep.shape}")
        if dep.shape != (cam.height, cam.width):
            raise DataError(f"{where}: depth shape {dep.shape} does not match camera {cam.height}x{cam.width}")
        if not np.all(np.isfinite(dep)):
            raise DataError(f"{where}: depth holds NaN/inf (use 0 for no measurement)")
        if np.any(dep < 0):
            raise DataError(f"{where}: depth holds negative values")
        if not np.all(np.isfinite(img)):
            raise DataError(f"{where}: image holds NaN/inf")
        return self

    @property
    def valid(self) -> np.ndarray:
        """(H, W) bool, pixels with a depth measurement."""
        return self.depth > 0


@dataclass(eq=False)
class Sample:
    """One scanned instance of a part.

    Attributes:
        category: object category, e.g. ``"vase"``.
        instance_id: unique name of the instance within its category and split.
        views: the views in the rig's fixed order.
        label: ``"nominal"`` or ``"anomalous"``.
        gt: ground-truth anomaly volume (uint8 0/1, dims x, y, z, coords in mm) or None when there is none.
        mesh_path: optional path of the instance's mesh (e.g. the CAD model), for pictures.
        meta: free-form metadata (defects with type, size and centre; generator settings, ...).
    """

    category: str
    instance_id: str
    views: list[View]
    label: Label = "nominal"
    gt: xr.DataArray | None = None
    mesh_path: str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def is_anomalous(self) -> bool:
        return self.label == "anomalous"

    @property
    def cameras(self) -> list[Camera]:
        return [v.camera for v in self.views]
