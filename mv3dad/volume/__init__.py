"""Anomaly volumes: back-projection of per-view score maps into a voxel grid (Numba / CuPy / torch backends)."""

from mv3dad.volume.accumulate import (DEFAULT_MAX_BYTES, GridTooLargeError, VolumeAccumulator, backproject,
                                      required_bytes)
from mv3dad.volume.backends import BACKENDS, cuda_available, resolve_backend
from mv3dad.volume.grid_for import as_grid, grid_for_views
from mv3dad.volume.resample import resize_bilinear

__all__ = ["BACKENDS", "DEFAULT_MAX_BYTES", "GridTooLargeError", "VolumeAccumulator", "as_grid", "backproject",
           "cuda_available", "grid_for_views", "required_bytes", "resize_bilinear", "resolve_backend"]
