"""Component configs: one ``@dataclass`` per component, loaded from YAML and overridable from the command line.

Every field of a config dataclass carries its documentation in the class docstring (``Attributes:``), the one
place it is written: :func:`field_help` and :func:`field_default` hand it to the command line (``typer.Option``
help and shown defaults), so the two cannot drift. The default YAML files ship inside the package
(``mv3dad/configs/``, see :func:`default_config`) and hold only overrides of the dataclasses' defaults; a user's
own file is given by path.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.util
import inspect
import re
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


ClassRef = type | str
"""A config dataclass, or ``"package.module:Class"`` to read it from the source without importing the module
(keeps ``mv3dad --help`` fast: the config modules import torch)."""


def _clean(text: str) -> str:
    """Docstring markup to plain help text: ``:func:`~a.b``` and double backticks become single backticks."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def _parse_attributes(doc: str, where: str) -> dict[str, str]:
    """The ``Attributes:`` section of a Google-style docstring: {name: one-line text} (continuations joined)."""
    lines = inspect.cleandoc(doc or "").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:") + 1
    except StopIteration:
        raise ValueError(f"{where}: docstring has no 'Attributes:' section") from None
    out: dict[str, list[str]] = {}
    indent = None
    for line in lines[start:]:
        if not line.strip():
            if out:
                break
            continue
        width = len(line) - len(line.lstrip())
        if indent is None:
            indent = width
        if width < indent:
            break
        m = re.match(r"(\w+)(?: \([^)]*\))?: ?(.*)", line.strip())
        if width == indent and m:
            out[m.group(1)] = [m.group(2)]
        elif out:
            out[list(out)[-1]].append(line.strip())
    return {k: _clean(" ".join(v).strip()) for k, v in out.items()}


@functools.lru_cache(maxsize=None)
def _source_class(ref: str) -> tuple[str, dict[str, Any]]:
    """(docstring, {field: literal default}) of ``"module:Class"`` read from its source file, not imported."""
    module, _, name = ref.partition(":")
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)  # the top package only: its subpackages are not imported
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{ref}: package {top!r} not found")
    base = Path(list(spec.submodule_search_locations)[0]).joinpath(*rest)
    path = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    consts: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                consts[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
        if isinstance(node, ast.ClassDef) and node.name == name:
            defaults: dict[str, Any] = {}
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value is not None:
                    if isinstance(item.value, ast.Name) and item.value.id in consts:
                        defaults[item.target.id] = consts[item.value.id]
                        continue
                    try:
                        defaults[item.target.id] = ast.literal_eval(item.value)
                    except ValueError:  # field(default_factory=...) and other expressions: no shown default
                        pass
            return ast.get_docstring(node) or "", defaults
    raise ValueError(f"{ref}: no class {name!r} in {path}")


def field_docs(cls: ClassRef) -> dict[str, str]:
    """Every documented field of a config dataclass: {name: help text} from its docstring's ``Attributes:``."""
    if isinstance(cls, str):
        return _parse_attributes(_source_class(cls)[0], cls)
    return _parse_attributes(cls.__doc__ or "", cls.__qualname__)


def field_help(cls: ClassRef, name: str) -> str:
    """The help text of field ``name`` of ``cls``: its ``Attributes:`` entry, continuation lines joined.

    Raises:
        ValueError: the field is not documented (a config field without documentation is a bug).
    """
    docs = field_docs(cls)
    if name not in docs:
        raise ValueError(f"{cls if isinstance(cls, str) else cls.__qualname__}: field {name!r} is not documented "
                         "in the class docstring's 'Attributes:'")
    return docs[name]


def field_default(cls: ClassRef, name: str) -> Any:
    """The default of field ``name`` of ``cls`` (``dataclasses.MISSING`` when it has none or, read from source,
    when it is not a literal, e.g. a ``default_factory``)."""
    if isinstance(cls, str):
        return _source_class(cls)[1].get(name, dataclasses.MISSING)
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING
