"""The run record: ``run.json`` of a run directory written by ``mv3dad fit`` and read by ``predict``.

:class:`RunRecord` holds the job that produced the run (data, categories, setup, views, encoders and their weight
hashes, the categories' voxel grids and cameras, the training config); :func:`read_run` reads it with errors that
name the file. The method's own files (checkpoint, memory bank, references) sit next to it and are read by the
method (:mod:`mv3dad.scoring.methods`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mv3dad.errors import DataError
from mv3dad.io.atomic import atomic_write
from mv3dad.io.read import read_json

RUN_FILE = "run.json"
RUN_FORMAT = "mv3dad-run/1"


@dataclass
class RunRecord:
    """The contents of ``run.json``.

    Attributes:
        format: the record's format tag (``mv3dad-run/1``).
        method: the registered method the run was fitted with (:func:`mv3dad.scoring.list_methods`).
        data: the training dataset root.
        categories: the categories the run was trained on.
        setup: ``real2real`` or ``synth2real``.
        views: the rig view indices the model was trained on.
        encoders_config: the encoder options (fields of :class:`~mv3dad.pipeline.features.EncoderConfig`).
        encoders: ``{"image": identity, "depth": identity}`` of the frozen encoders, or None for methods without
            features.
        grids: per category, the voxel grid: ``{"origin": [x, y, z], "voxel_size": mm, "shape": [nx, ny, nz]}``.
        cameras: per category, the training views' cameras (``Camera.to_dict()``), one per entry of ``views``.
        fit: the mapping's training config (fields of :class:`~mv3dad.mapping.fit.FitConfig`).
        coreset: ``knn`` only: the kept fraction or number of tokens per view; None = all.
        encoder_files: the file-backed encoders by content (role -> name, path, sha256, copy inside the run);
            see :mod:`mv3dad.pipeline.encoder_files`. None for runs written before it existed.
    """

    format: str
    method: str
    data: str
    categories: list[str]
    setup: str
    views: list[int]
    encoders_config: dict
    encoders: dict | None
    grids: dict[str, dict]
    cameras: dict[str, list[dict]]
    fit: dict
    coreset: float | int | None = None
    encoder_files: dict | None = None

    @classmethod
    def from_dict(cls, d: dict, where: str | Path = RUN_FILE) -> "RunRecord":
        """The record from the parsed ``run.json``; ``where`` names the file in errors.

        Raises:
            DataError: naming ``where``: a required key is missing or the format is not ``mv3dad-run/1``.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        missing = [k for k in required if k not in d]
        if missing:
            raise DataError(f"{where}: run record lacks {', '.join(missing)} (written by another version? "
                            f"run `mv3dad fit` again)")
        if d["format"] != RUN_FORMAT:
            raise DataError(f"{where}: run record format {d['format']!r} is not {RUN_FORMAT!r}")
        return cls(**{k: d[k] for k in names if k in d})

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready mapping written to ``run.json``."""
        return dataclasses.asdict(self)

    def __getitem__(self, key: str) -> Any:
        """``record["method"]``: mapping-style access for code that reads ``run.json`` as a dict."""
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """Mapping-style ``get`` (see :meth:`__getitem__`)."""
        return getattr(self, key, default) if key in self.__dataclass_fields__ else default

    def write(self, run_dir: str | Path) -> Path:
        """Write ``<run_dir>/run.json`` atomically; returns its path."""
        path = Path(run_dir) / RUN_FILE
        atomic_write(path, json.dumps(self.to_dict(), indent=2), fsync=True)
        return path


def read_run(run_dir: str | Path) -> RunRecord:
    """The :class:`RunRecord` of a run directory.

    Raises:
        FileNotFoundError: ``run_dir`` holds no ``run.json`` (the message says to run ``mv3dad fit``).
        DataError: naming the file: unreadable, not JSON, or missing keys.
    """
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a run directory (missing {RUN_FILE}; run `mv3dad fit` first)")
    return RunRecord.from_dict(read_json(path, "run record"), where=path)
