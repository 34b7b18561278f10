"""Data files shipped inside the package: the built-in rigs (``mv3dad/calib/``) and default configs (``mv3dad/configs/``).

They are found through :mod:`importlib.resources`, so an installed (non-editable) copy finds them from any folder.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path


def package_path(relative: str | os.PathLike) -> Path:
    """The path of ``relative`` (e.g. ``"calib/hemisphere12.yaml"``) inside the installed ``mv3dad`` package.

    The package is installed as plain files (a wheel, an editable or a source checkout), so this is a real path;
    it may not exist (the caller says what is missing).
    """
    return Path(str(files("mv3dad"))) / Path(relative)


def resolve_data_path(path: str | os.PathLike) -> Path:
    """``path`` itself when absolute or present relative to the current folder, else inside the package.

    A user's own file always wins; ``"calib/sim3d"`` falls back to the package's ``mv3dad/calib/sim3d``.
    """
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    return package_path(path)
