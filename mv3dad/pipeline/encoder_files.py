"""Encoders recorded by content, so that a run works from any folder and after being moved or copied.

``fit`` records every encoder that comes from a file (a directory written by ``pretrain-depth`` /
``pretrain-image`` or in the ModMap authors' layout, or an ``--image-weights`` file) in ``run.json``'s
``encoder_files``: its role, the name as given, the absolute path, the sha256 of its weights file and, when copied,
the folder inside the run (``encoders/<role>``). Named encoders (``texture``, ``geometric``, timm names) need no
file. ``predict`` finds each file-backed encoder, in this order: the explicit override (``predict --depth-encoder
DIR`` / ``--image-encoder DIR`` / ``--image-weights FILE``), the copy inside the run, the recorded path, the
recorded path relative to the run folder; the first whose sha256 matches is used, and an override whose hash does
not match is an error naming both hashes.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from mv3dad.errors import DataError
from mv3dad.io.read import sha256_file

ROLES = ("image", "depth")
ENCODERS_DIR = "encoders"
_MV3DAD_FILES = ("encoder.json", "encoder.safetensors")
_RELEASE_FILES = ("config.yaml", "eval/last_checkpoint/teacher_checkpoint.pth")




def _layout(d: Path) -> tuple[str, ...] | None:
    """The files that make up an encoder directory (None: not an encoder directory)."""
    for files in (_MV3DAD_FILES, _RELEASE_FILES):
        if all((d / f).is_file() for f in files):
            return files
    return None


def weights_digest(path: str | Path) -> str:
    """sha256 of the weights of an encoder directory (its ``encoder.safetensors`` or ``teacher_checkpoint.pth``)
    or of a weights file.

    Raises:
        DataError: naming ``path``: not an encoder directory or weights file.
    """
    p = Path(path)
    if p.is_file():
        return sha256_file(p)
    files = _layout(p) if p.is_dir() else None
    if files is None:
        raise DataError(f"{p}: not an encoder directory (needs encoder.json + encoder.safetensors, or config.yaml + "
                        f"eval/last_checkpoint/teacher_checkpoint.pth)")
    return sha256_file(p / files[-1])


def _file_backed(cfg) -> dict[str, str]:
    """{key: path as given} of the encoder config's entries that name files or folders on disk."""
    out = {}
    if cfg.image_encoder and Path(cfg.image_encoder).is_dir():
        out["image"] = cfg.image_encoder
    if cfg.depth_encoder and Path(cfg.depth_encoder).is_dir():
        out["depth"] = cfg.depth_encoder
    if cfg.image_weights:
        out["image_weights"] = cfg.image_weights
    return out


def record_encoder_files(cfg, run_dir: str | Path, copy: bool = True) -> dict:
    """Hash (and, with ``copy``, copy into ``<run_dir>/encoders/<role>``) the file-backed encoders of ``cfg``;
    returns the ``encoder_files`` entry of ``run.json``. Encoder directories are copied; weights files are only
    recorded (they can be large: give ``predict --image-weights`` after a move)."""
    run_dir = Path(run_dir)
    rec = {}
    for key, given in _file_backed(cfg).items():
        src = Path(given)
        entry = {"given": str(given), "path": str(src.resolve()), "name": src.name, "sha256": weights_digest(src),
                 "stored": None}
        if copy and key in ROLES:
            dst = run_dir / ENCODERS_DIR / key
            if dst.resolve() != src.resolve():
                tmp = dst.parent / f".tmp-{key}-{os.getpid()}"
                shutil.rmtree(tmp, ignore_errors=True)
                for f in _layout(src):
                    (tmp / f).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src / f, tmp / f)
                shutil.rmtree(dst, ignore_errors=True)
                os.replace(tmp, dst)
            entry["stored"] = f"{ENCODERS_DIR}/{key}"
        rec[key] = entry
    return rec


_OPTION = {"image": "--image-encoder", "depth": "--depth-encoder", "image_weights": "--image-weights"}
_FIELD = {"image": "image_encoder", "depth": "depth_encoder", "image_weights": "image_weights"}


def resolve_encoder_config(cfg, run_dir: str | Path, files: dict | None, overrides: dict | None = None):
    """The encoder config of a run with every file-backed encoder found by content (see the module docstring).

    Args:
        cfg: the run's :class:`~mv3dad.pipeline.features.EncoderConfig` (paths as typed at ``fit``).
        run_dir: the run folder.
        files: ``run.json``'s ``encoder_files`` (None: a run written before it existed; paths are used as given,
            relative ones also tried from the run folder).
        overrides: ``{"image" | "depth" | "image_weights": path}`` given to ``predict``.

    Raises:
        DataError: an override's sha256 differs from the run's, or no candidate is found (the message names the
            places tried and the option to pass).
    """
    run_dir = Path(run_dir)
    overrides = {k: v for k, v in (overrides or {}).items() if v}
    changes = {}
    for key in ("image", "depth", "image_weights"):
        given = getattr(cfg, _FIELD[key])
        entry = (files or {}).get(key)
        if key in overrides:
            path = Path(overrides[key])
            if entry is not None:
                if not path.exists():
                    raise DataError(f"{_OPTION[key]} {path}: not found")
                digest = weights_digest(path)
                if digest != entry["sha256"]:
                    raise DataError(f"{_OPTION[key]} {path}: weights sha256 {digest[:12]}... differ from the run's "
                                    f"{entry['name']} ({entry['sha256'][:12]}...): not the encoder {run_dir} was "
                                    f"trained with")
            changes[_FIELD[key]] = str(path)
            continue
        if entry is None:
            if files is None and given and not Path(given).is_absolute() and not Path(given).exists() \
                    and (run_dir / given).exists():
                changes[_FIELD[key]] = str(run_dir / given)
            continue
        candidates = ([run_dir / entry["stored"]] if entry.get("stored") else []) + [
            Path(entry["path"]), run_dir / entry["given"]]
        for c in candidates:
            if c.exists() and weights_digest(c) == entry["sha256"]:
                changes[_FIELD[key]] = str(c)
                break
        else:
            tried = ", ".join(str(c) for c in dict.fromkeys(candidates))
            raise DataError(f"{run_dir}: the {key.replace('_', ' ')} encoder {entry['name']!r} (sha256 "
                            f"{entry['sha256'][:12]}...) is not found (tried {tried}); pass {_OPTION[key]} PATH "
                            f"to the same file")
    return dataclasses.replace(cfg, **changes) if changes else cfg
