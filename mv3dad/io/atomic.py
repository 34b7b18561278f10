"""All-or-nothing file and folder writes: write under a temporary name in the target's folder, then rename.

A crash, a full disk or an exception while writing leaves the target untouched and no temporary behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mv3dad.errors import ExportError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _writable_parent(path: Path) -> Path:
    parent = path.parent
    if not parent.is_dir():
        raise ExportError(f"{path}: cannot write, folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"{path}: cannot write, folder {parent} is not writable")
    return parent


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on error it is deleted.

    Raises:
        ExportError: the folder is missing or unwritable, or writing failed (the cause is chained).
    """
    path = Path(path)
    parent = _writable_parent(path)
    if path.is_dir():
        raise ExportError(f"{path}: cannot write a file, a folder of that name exists")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # again: writers that recreate the file (safetensors) make it 0600
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, ExportError):
            raise
        raise ExportError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str, *, fsync: bool = False) -> Path:
    """Write ``data`` (a ``str`` as UTF-8) to ``path`` through :func:`atomic_file`; return ``path``.

    ``fsync=True`` flushes the file to disk before the rename, so that a power cut keeps the old or the new file.

    Raises:
        ExportError: as :func:`atomic_file`.
    """
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    return path


def _nearest_existing(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return probe


def check_output_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Check, without creating anything, that folder ``path`` exists and is writable or can be created.

    Called before any input is loaded, so that an unwritable output fails at once, in one line.

    Raises:
        ExportError: naming ``option`` and ``path``: a file stands where the folder (or one of its parents)
            must go, or the nearest existing folder is not writable.
    """
    path = Path(path)
    probe = _nearest_existing(path)
    if probe.exists() and not probe.is_dir():
        what = "is a file" if probe == path else f"cannot be created: {probe} is a file"
        raise ExportError(f"{option} {path}: {what}, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ExportError(f"{option} {path}: folder {probe} is not writable")
    return path


def check_output_file(path: str | os.PathLike, option: str) -> Path:
    """Check, without creating anything, that file ``path`` can be written (its folder exists or can be made).

    Raises:
        ExportError: naming ``option`` and ``path`` (a folder of that name exists, a file stands where its
            folder must go, or that folder is not writable).
    """
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"{option} {path}: is a folder, not a file")
    probe = _nearest_existing(path.parent)
    if probe.exists() and not probe.is_dir():
        raise ExportError(f"{option} {path}: cannot be written: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ExportError(f"{option} {path}: folder {probe} is not writable")
    return path


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Like :func:`atomic_file` for a folder (e.g. a Zarr store): an existing ``path`` folder is replaced whole."""
    path = Path(path)
    parent = _writable_parent(path)
    if path.exists() and not path.is_dir():
        raise ExportError(f"{path}: cannot write a folder, a file of that name exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, ExportError):
            raise
        raise ExportError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
