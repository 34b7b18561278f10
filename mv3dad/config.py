"""Component configs: one ``@dataclass`` per component, loaded from YAML and overridable from the command line.

Every field of a config dataclass carries its documentation in the class docstring (``Attributes:``). The
default YAML files ship inside the package (``mv3dad/configs/``, see :func:`default_config`); a user's own file
is given by path.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

from mv3dad.errors import DataError
from mv3dad.io import package_path, read_yaml, resolve_data_path

T = TypeVar("T")


def default_config(name: str) -> Path:
    """The packaged default config ``name`` (e.g. ``"modmap.yaml"``) from ``mv3dad/configs/``.

    Raises:
        FileNotFoundError: the file is not in the package (a broken install); defaults are never guessed.
    """
    path = package_path(Path("configs") / name)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: default config {name!r} is missing from the installed mv3dad package "
                                "(reinstall mv3dad)")
    return path


def load_config(cls: type[T], path: str | Path | None = None, **overrides: Any) -> T:
    """Build ``cls`` from its defaults, then the YAML file at ``path`` (if any), then ``overrides``.

    A relative ``path`` missing from the current folder is looked up in the package, so ``configs/synth.yaml``
    names the packaged ``mv3dad/configs/synth.yaml`` from any folder (a user's own file of that name wins).

    Overrides whose value is None are ignored (an unset command-line option). Unknown keys are an error that
    names the file and the key.
    """
    values: dict[str, Any] = {}
    names = {f.name for f in dataclasses.fields(cls)}
    if path is not None:
        path = resolve_data_path(path)
        loaded = read_yaml(path, "config")
        unknown = set(loaded) - names
        if unknown:
            raise DataError(f"{path}: unknown config keys {sorted(unknown)} for {cls.__name__}")
        values.update(loaded)
    for k, v in overrides.items():
        if v is None:
            continue
        if k not in names:
            raise ValueError(f"unknown option {k!r} for {cls.__name__}")
        values[k] = v
    hints = typing.get_type_hints(cls)
    for k, v in list(values.items()):  # YAML lists -> tuples where the field is a tuple
        if isinstance(v, list) and typing.get_origin(hints.get(k)) is tuple:
            values[k] = tuple(v)
    return cls(**values)


def config_to_dict(cfg: Any) -> dict:
    """A YAML/JSON-friendly dict of a config dataclass."""
    return dataclasses.asdict(cfg)
