"""The method interface and registry: every detection method is a class registered by name at its definition.

A method is fitted on a category's nominal training instances and then scores a test sample view by view; the
:class:`mv3dad.pipeline.predict.Predictor` turns its per-view maps into the 3D volume (foreground filter,
back-projection with max, :meth:`Method.finish_volume`) for every method alike. Adding a method is one new module
in this folder with a class decorated by :func:`register_method` (and its import in ``__init__.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from mv3dad.data.scene import Sample
from mv3dad.mapping.fit import FeatureSet as Features  # one feature type for training and scoring


@dataclass
class ViewScores:
    """What a method returns for one sample.

    Attributes:
        tokens: (image, depth) maps of shape (N, h, w) on the encoders' token grid, or None; the predictor brings
            them to the pixels (validity-aware) and fuses the modalities.
        pixels: (N, H, W) float32 maps at the depth resolution (NaN = not scored), or None.
        info: per-sample facts for ``scores.json`` (e.g. the registration's scale and fitness).
    """

    tokens: tuple[torch.Tensor, torch.Tensor] | None = None
    pixels: np.ndarray | None = None
    info: dict = field(default_factory=dict)


@dataclass
class FitContext:
    """What a method's ``fit`` receives.

    Attributes:
        out: the run directory (the method writes its files there).
        samples: per category, the nominal training samples restricted to the run's views.
        features: per category, the training samples' features (empty when the method needs none).
        options: the method's options (``FitJob`` fields it reads, e.g. ``coreset`` or ``reference_mesh``).
        meta: run facts the method may record with its files (encoders, views, categories, setup).
        resume: continue an interrupted training.
        progress: show progress bars.
    """

    out: Path
    samples: dict[str, list[Sample]]
    features: dict[str, list[Features]]
    options: Any
    meta: dict
    resume: bool = False
    progress: bool = True


@dataclass
class ScoreOptions:
    """Scoring options of ``predict`` that methods may use.

    Attributes:
        sources: K source views per target (cross-view methods), None = all.
        seed: seed of the random source selection.
        view_ids: the model's view index of each given view.
        category: the sample's category.
    """

    view_ids: list[int]
    category: str
    sources: int | None = None
    seed: int = 0


class Method:
    """Base class of the detection methods (see :func:`register_method`)."""

    name: ClassVar[str] = ""
    needs_features: ClassVar[bool] = True
    """Whether the method scores frozen encoder features (False: it reads the views directly)."""

    def fit(self, ctx: FitContext) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, run_dir: Path, record: dict) -> "Method":
        raise NotImplementedError

    def score_views(self, sample: Sample, feats: Features | None, opts: ScoreOptions) -> ViewScores:
        raise NotImplementedError

    def finish_volume(self, values: np.ndarray) -> np.ndarray:
        """Post-process the (X, Y, Z) volume (NaN = unobserved) before the instance score; default: unchanged."""
        return values


_METHODS: dict[str, tuple[type[Method], dict]] = {}


def register_method(name: str, **preset) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: register ``cls`` under ``name``; ``preset`` are keyword arguments of its constructor."""

    def deco(cls: type[Method]) -> type[Method]:
        if name in _METHODS:
            raise ValueError(f"method {name!r} is already registered")
        _METHODS[name] = (cls, preset)
        return cls

    return deco


def list_methods() -> list[str]:
    """Names of the registered methods."""
    return sorted(_METHODS)


def create_method(name: str, **kwargs) -> Method:
    """A new (unfitted) method ``name`` with its preset and ``kwargs``."""
    if name not in _METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {list_methods()}")
    cls, preset = _METHODS[name]
    m = cls(**{**preset, **kwargs})
    m.name = name
    return m


def method_preset(name: str) -> dict:
    """The constructor keywords ``name`` was registered with."""
    if name not in _METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {list_methods()}")
    return dict(_METHODS[name][1])


def method_class(name: str) -> type[Method]:
    if name not in _METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {list_methods()}")
    return _METHODS[name][0]


def load_method(name: str, run_dir: Path, record: dict) -> Method:
    """The fitted method ``name`` read back from its run directory."""
    m = method_class(name).load(Path(run_dir), record)
    m.name = name
    return m
