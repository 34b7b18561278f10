"""Reading JSON and YAML documents with errors that name the file: one reader each for every layer.

A missing, unreadable or malformed file raises :class:`~mv3dad.errors.DataError` (or the ``error`` class the
caller passes, e.g. :class:`~mv3dad.errors.CalibrationError` for rig files) whose message starts with the path.
"""

from __future__ import annotations

import json
import hashlib
import os
from pathlib import Path
from typing import Any, Callable

from mv3dad.errors import DataError


def _read(path: str | os.PathLike, what: str, parse: Callable[[str], Any], parse_errors: tuple,
          mapping: bool, error: type[Exception]) -> Any:
    path = Path(path)
    try:
        doc = parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError, *parse_errors) as e:
        raise error(f"{path}: cannot read {what}: {e}") from None
    if mapping:
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise error(f"{path}: {what} must hold a mapping, got {type(doc).__name__}")
    return doc


def read_json(path: str | os.PathLike, what: str = "JSON file", *, mapping: bool = True,
              error: type[Exception] = DataError) -> Any:
    """The parsed JSON document at ``path``.

    Args:
        path: the file.
        what: what the file is, for the message (``"run record"``, ``"sample.json"``).
        mapping: the document must be a JSON object (else any JSON value is returned).
        error: the exception class raised (a :class:`~mv3dad.errors.Mv3dadError` subclass).

    Raises:
        DataError: (or ``error``) naming ``path``: the file is missing, unreadable, not JSON, or not a mapping.
    """
    return _read(path, what, json.loads, (json.JSONDecodeError,), mapping, error)


def read_yaml(path: str | os.PathLike, what: str = "YAML file", *, mapping: bool = True,
              error: type[Exception] = DataError) -> Any:
    """The parsed YAML document at ``path``; an empty file is an empty mapping when ``mapping`` is set.

    Arguments and errors as :func:`read_json`.
    """
    import yaml

    return _read(path, what, yaml.safe_load, (yaml.YAMLError,), mapping, error)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
