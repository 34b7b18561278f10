"""The scene model and every on-disk layout (mv3dad, SiM3D, pretraining corpora)."""

from mv3dad.data.scene import DataError, Sample, View

__all__ = ["DataError", "Sample", "View"]
