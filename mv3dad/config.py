"""Component configs: one ``@dataclass`` per component, loaded from YAML and overridable from the command line.

Every field of a config dataclass carries its documentation in the class docstring (``Attributes:``).
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def load_config(cls: type[T], path: str | Path | None = None, **overrides: Any) -> T:
    """Build ``cls`` from its defaults, then the YAML file at ``path`` (if any), then ``overrides``.

    Overrides whose value is None are ignored (an unset command-line option). Unknown keys are an error that
    names the file and the key.
    """
    values: dict[str, Any] = {}
    names = {f.name for f in dataclasses.fields(cls)}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"{path}: cannot read config: {e}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a config file must hold a mapping, got {type(loaded).__name__}")
        unknown = set(loaded) - names
        if unknown:
            raise ValueError(f"{path}: unknown config keys {sorted(unknown)} for {cls.__name__}")
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
