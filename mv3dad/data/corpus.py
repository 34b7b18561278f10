"""Pretraining corpora: depth maps (or images) gathered from any mix of dataset folders.

Recognised depth files (searched recursively; per folder, when some file name contains ``depth`` only those
are taken):

- mv3dad layout: ``views/*_depth.npy`` (float mm, 0 = no measurement);
- SiM3D: ``<class>_real/depth/*.npy`` (``inf`` = no measurement) and ``<class>_synth/DEPTH/*_depth.exr``
  (the maximum value is background);
- MVTec 3D-AD: ``xyz/*.tiff`` (H, W, 3) organised point clouds, the z channel (0 = no measurement);
- Eyecandies: ``*_depth.png`` 16-bit, converted with ``*_info_depth.yaml``'s ``normalization`` min/max
  when present;
- generic: ``.npy`` / ``.exr`` / ``.tif(f)`` anywhere, 16-bit ``.png`` in a folder named like ``depth``/``xyz``
  or with ``depth`` in the name.

Test splits are never taken: under a folder given as a corpus, a ``test`` folder beside a ``train`` folder (the
mv3dad and SiM3D layouts, MVTec 3D-AD, ...) is skipped, so pretraining on a benchmark never sees its test
instances. A file given directly is always taken.

Every depth map is returned as (H, W) float32 with 0 for no measurement (NaN, inf, <= 0 all become 0). Depth
units do not matter for pretraining: the encoders' depth scaling is invariant to unit and offset.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from mv3dad.errors import CorpusError, DataError
from mv3dad.io import atomic_write

DEPTH_SUFFIXES = {".npy", ".exr", ".tif", ".tiff", ".png"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
_DEPTH_DIRS = {"depth", "xyz", "depths"}
_NOT_IMAGE = ("depth", "mask", "normal", "xyz", "gt")


def _is_test_split(name: str, siblings: list[str]) -> bool:
    """A benchmark's test split: a folder named ``test`` beside a ``train`` folder."""
    return name.lower() == "test" and any(d.lower() == "train" for d in siblings)


def _walk(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not _is_test_split(d, dirs))
                files += [Path(root) / n for n in sorted(names) if not n.startswith(".")]
        else:
            raise CorpusError(f"{p}: no such file or folder")
    return files


def find_depth_files(paths: Iterable[str | Path]) -> list[Path]:
    """Depth files under ``paths`` (files given directly are always taken), in a stable sorted order."""
    paths = list(paths)
    direct = [Path(p) for p in paths if Path(p).is_file()]
    by_dir: dict[Path, list[Path]] = {}
    for f in _walk(p for p in paths if not Path(p).is_file()):
        if f.suffix.lower() in DEPTH_SUFFIXES:
            by_dir.setdefault(f.parent, []).append(f)
    out = list(direct)
    for d, files in by_dir.items():
        named = [f for f in files if "depth" in f.stem.lower()]
        if named:
            out += named
        elif d.name.lower() in _DEPTH_DIRS:
            out += files
        else:
            out += [f for f in files if f.suffix.lower() != ".png"]
    return sorted(set(out))


def find_image_files(paths: Iterable[str | Path]) -> list[Path]:
    """Image files under ``paths`` (not depth, masks, normals or ground truth), sorted."""
    out = []
    for f in _walk(paths):
        parts = (f.stem.lower(), f.parent.name.lower())
        if f.suffix.lower() in IMAGE_SUFFIXES and not any(w in p for p in parts for w in _NOT_IMAGE):
            out.append(f)
    return sorted(set(out))


def _z_channel(a: np.ndarray, path: Path) -> np.ndarray:
    a = np.squeeze(np.asarray(a))
    if a.ndim == 3 and a.shape[-1] == 3:
        a = a[..., 2]
    elif a.ndim == 3 and a.shape[0] == 3:
        a = a[2]
    if a.ndim != 2:
        raise CorpusError(f"{path}: expected a (H, W) depth map or an (H, W, 3) xyz map, got shape {a.shape}")
    return a


def _read_exr(path: Path) -> np.ndarray:
    import OpenEXR

    with OpenEXR.File(str(path)) as f:
        ch = {k: v.pixels for k, v in f.channels().items()}
    for key in ("Z", "depth", "Depth", "Y", "R"):
        if key in ch:
            return np.asarray(ch[key])
    if len(ch) == 1:
        a = np.asarray(next(iter(ch.values())))
        return a[..., 0] if a.ndim == 3 else a
    raise CorpusError(f"{path}: EXR without a depth channel (channels {sorted(ch)})")


def _read_png16(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("I;16", "I;16B", "I;16L", "I"):
            raise CorpusError(f"{path}: PNG mode {im.mode} is not a 16-bit depth map")
        a = np.asarray(im, dtype=np.float32)
    info = path.with_name(path.stem.removesuffix("depth").rstrip("_") + "_info_depth.yaml")
    if not info.is_file():
        info = path.with_name("info_depth.yaml")
    if info.is_file():
        import yaml

        norm = (yaml.safe_load(info.read_text()) or {}).get("normalization", {})
        if "min" in norm and "max" in norm:
            valid = a > 0
            a = np.where(valid, a / 65535.0 * (float(norm["max"]) - float(norm["min"])) + float(norm["min"]), 0)
    return a


def read_depth(path: str | Path) -> np.ndarray:
    """One depth file -> (H, W) float32, 0 = no measurement. Raises :class:`CorpusError` naming the file."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            a = np.load(path, allow_pickle=False)
        elif suffix == ".exr":
            a = _read_exr(path)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            a = tifffile.imread(path)
        elif suffix == ".png":
            a = _read_png16(path)
        else:
            raise CorpusError(f"{path}: unsupported depth file type {suffix!r}")
    except CorpusError:
        raise
    except Exception as e:
        raise CorpusError(f"{path}: cannot read: {type(e).__name__}: {e}") from None
    if not np.issubdtype(np.asarray(a).dtype, np.number):
        raise CorpusError(f"{path}: not numeric (dtype {np.asarray(a).dtype})")
    d = _z_channel(a, path).astype(np.float32)
    if suffix == ".exr" and path.parent.name == "DEPTH" and path.parent.parent.name.endswith("_synth"):
        finite = np.isfinite(d)
        if finite.any():
            d = np.where(d >= d[finite].max(), 0, d)  # SiM3D synth: maximum value = background
    d = np.where(np.isfinite(d) & (d > 0), d, 0).astype(np.float32)
    if not (d > 0).any():
        raise CorpusError(f"{path}: no valid depth (all 0, NaN, inf or negative)")
    return d


def read_image(path: str | Path) -> np.ndarray:
    """One image file -> (H, W) or (H, W, 3) float32 in [0, 1]. Raises :class:`CorpusError` naming the file."""
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                a = np.asarray(im, dtype=np.float32) / 65535.0
            else:
                a = np.asarray(im.convert("L" if im.mode in ("L", "1") else "RGB"),
                               dtype=np.float32) / 255.0
    except Exception as e:
        raise CorpusError(f"{path}: cannot read image: {type(e).__name__}: {e}") from None
    return np.clip(a, 0, 1)


@dataclass
class Corpus:
    """The readable files of a corpus and what was skipped.

    Attributes:
        files: readable files, sorted.
        bad: (file, reason) for every skipped file.
        modality: ``"depth"`` or ``"image"``.
    """

    files: list[Path]
    bad: list[tuple[Path, str]] = field(default_factory=list)
    modality: str = "depth"

    @property
    def reader(self) -> Callable[[str | Path], np.ndarray]:
        return read_depth if self.modality == "depth" else read_image

    def __len__(self) -> int:
        return len(self.files)

    def to_json(self) -> dict:
        return {"modality": self.modality, "files": [str(f) for f in self.files],
                "bad": [[str(f), r] for f, r in self.bad]}

    @classmethod
    def from_json(cls, d: dict) -> "Corpus":
        return cls([Path(f) for f in d["files"]], [(Path(f), r) for f, r in d["bad"]], d["modality"])


def scan_corpus(paths: Iterable[str | Path], modality: str = "depth", max_bad_fraction: float = 0.05,
                progress: Callable[[Iterable], Iterable] | None = None) -> Corpus:
    """Find and read every file once; skip unreadable ones with a warning and count them.

    Args:
        paths: folders and/or files.
        modality: ``"depth"`` or ``"image"``.
        max_bad_fraction: raise :class:`CorpusError` when more than this fraction of the files is bad.
        progress: optional wrapper of the file iterable (e.g. a progress bar).

    Raises:
        CorpusError: no file found, every file bad, or too many bad files.
    """
    if modality not in ("depth", "image"):
        raise ValueError(f"modality must be 'depth' or 'image', got {modality!r}")
    paths = list(paths)
    found = find_depth_files(paths) if modality == "depth" else find_image_files(paths)
    if not found:
        raise CorpusError(f"empty corpus: no {modality} files under {[str(p) for p in paths]}")
    reader = read_depth if modality == "depth" else read_image
    good, bad = [], []
    for f in (progress(found) if progress else found):
        try:
            reader(f)
            good.append(f)
        except CorpusError as e:
            bad.append((f, str(e)))
            warnings.warn(f"skipped: {e}", stacklevel=2)
    frac = len(bad) / len(found)
    if not good or frac > max_bad_fraction:
        raise CorpusError(f"{len(bad)} of {len(found)} {modality} files are unreadable ({frac:.1%} > "
                          f"max_bad_fraction {max_bad_fraction:.1%}); first: {bad[0][1]}")
    return Corpus(good, bad, modality)


def save_corpus(corpus: Corpus, path: str | Path) -> None:
    """Write the scan result as JSON (atomically)."""
    atomic_write(path, json.dumps(corpus.to_json()))
