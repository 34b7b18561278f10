"""Bottom-floor file helpers used by every layer: all-or-nothing writes, JSON/YAML reads that name the file, and
the paths of the data files shipped in the package.

This package imports only :mod:`mv3dad.errors`; any package may import it.
"""

from mv3dad.io.atomic import (ExportError, atomic_dir, atomic_file, atomic_write, check_output_dir,
                              check_output_file)
from mv3dad.io.read import read_json, read_yaml, sha256_file
from mv3dad.io.resources import package_path, resolve_data_path

__all__ = ["ExportError", "atomic_dir", "atomic_file", "atomic_write", "check_output_dir", "check_output_file", "package_path", "read_json", "read_yaml",
           "resolve_data_path", "sha256_file"]
