"""The atomic writers, kept importable from here; they live in :mod:`mv3dad.io.atomic` (every layer uses them)."""

from mv3dad.io.atomic import ExportError, atomic_dir, atomic_file, atomic_write

__all__ = ["ExportError", "atomic_dir", "atomic_file", "atomic_write"]
