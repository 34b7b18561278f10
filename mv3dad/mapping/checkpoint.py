"""Save / load a ModMap model: weights as safetensors, everything else as JSON, each file written atomically.

A checkpoint directory holds

- ``modmap.safetensors``: the model weights (and the epoch in the safetensors metadata);
- ``modmap.json``: model config, fit config, caller metadata (encoder names and weight hashes, rig, views,
  preprocessing, ...), the epoch and the SHA-256 of the weights file; written last, so it is the commit record;
- ``train_state.pt`` (training checkpoints only): optimizer and LR-scheduler state dicts, plain tensors and
  numbers saved with ``torch.save`` and read back with ``torch.load(weights_only=True)``.

A training checkpoint is written as a unit: the three files go into a new step folder
``checkpoints/epoch-NNNNNN/`` (built under a temporary name and renamed), then the pointer
``checkpoints/latest.json`` is replaced, then the model files at the top of the directory (what ``predict``
reads). ``--resume`` reads everything from the folder the pointer names, so a kill at any moment leaves either
the previous or the new checkpoint, never weights of one epoch with the optimizer state of another.

Every file is written through :func:`mv3dad.io.atomic_write` (a temporary name in the same directory,
flushed to disk, then renamed), so a crash never leaves a half-written file; a weights file that does not match
the JSON (hash or epoch) is an error.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mv3dad.io import atomic_dir, atomic_write, read_json
from mv3dad.mapping.model import ModMapModel

WEIGHTS = "modmap.safetensors"
RECORD = "modmap.json"
TRAIN_STATE = "train_state.pt"
STEPS_DIR = "checkpoints"
POINTER = "latest.json"
KEEP_STEPS = 2
FORMAT_VERSION = 1


def save_checkpoint(out_dir: str | Path, model: ModMapModel, *, epoch: int, fit_config: dict | None = None,
                    meta: dict | None = None, train_state: dict | None = None) -> Path:
    """Write ``model`` (and optionally the training state) to ``out_dir``; return the JSON record's path.

    Args:
        out_dir: checkpoint directory (created if missing).
        model: the model to save (any device).
        epoch: number of completed training epochs.
        fit_config: the training config as a dict (stored for the record and checked on resume).
        meta: JSON-serialisable caller metadata (encoder names / weight hashes, rig, views, preprocessing).
        train_state: ``{"optimizer": ..., "scheduler": ...}`` state dicts for resuming, or None.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = st_save(tensors, metadata={"epoch": str(epoch), "format_version": str(FORMAT_VERSION)})
    record = {"format_version": FORMAT_VERSION, "epoch": epoch, "weights_sha256": hashlib.sha256(blob).hexdigest(),
              "model": model.config(), "fit_config": fit_config, "meta": meta or {}}
    try:
        text = json.dumps(record, indent=2, sort_keys=True)
    except TypeError as e:
        raise ValueError(f"{out_dir / RECORD}: metadata is not JSON-serialisable: {e}") from None
    if train_state is not None:  # the step folder, whole, then the pointer to it
        buf = io.BytesIO()
        torch.save({**train_state, "epoch": epoch}, buf)
        steps = out_dir / STEPS_DIR
        steps.mkdir(exist_ok=True)
        name = f"epoch-{epoch:06d}"
        with atomic_dir(steps / name) as tmp:
            for fname, data in ((TRAIN_STATE, buf.getvalue()), (WEIGHTS, blob), (RECORD, text.encode())):
                with open(tmp / fname, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
        atomic_write(steps / POINTER, json.dumps({"checkpoint": name, "epoch": epoch}), fsync=True)
        for old in sorted(p for p in steps.glob("epoch-*") if p.is_dir() and p.name != name)[:-(KEEP_STEPS - 1)
                                                                                                 or None]:
            shutil.rmtree(old, ignore_errors=True)
    atomic_write(out_dir / WEIGHTS, blob, fsync=True)
    atomic_write(out_dir / RECORD, text, fsync=True)
    return out_dir / RECORD


def training_checkpoint(out_dir: str | Path) -> Path:
    """The folder to resume from: the step folder ``checkpoints/latest.json`` names, or ``out_dir`` itself for a
    run written before step folders existed.

    Raises:
        ValueError: naming the pointer file when it is unreadable or names a missing folder.
    """
    out_dir = Path(out_dir)
    pointer = out_dir / STEPS_DIR / POINTER
    if not pointer.exists():
        return out_dir
    doc = read_json(pointer, "checkpoint pointer")
    folder = out_dir / STEPS_DIR / str(doc.get("checkpoint"))
    if not isinstance(doc.get("checkpoint"), str) or not (folder / RECORD).is_file():
        raise ValueError(f"{pointer}: names checkpoint {doc.get('checkpoint')!r}, which is missing; remove "
                         f"{out_dir / STEPS_DIR} and fit again without --resume")
    return folder


def read_record(ckpt_dir: str | Path) -> dict:
    """The JSON record of a checkpoint directory (clear error naming the file when missing or malformed)."""
    path = Path(ckpt_dir) / RECORD
    if not path.exists():
        raise FileNotFoundError(f"{path}: no ModMap checkpoint here (missing {RECORD})")
    record = read_json(path, "checkpoint record")
    missing = {"format_version", "epoch", "weights_sha256", "model"} - set(record)
    if missing:
        raise ValueError(f"{path}: checkpoint record lacks {sorted(missing)}")
    if record["format_version"] != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {record['format_version']} is not {FORMAT_VERSION}")
    return record


def load_checkpoint(ckpt_dir: str | Path, device: str | torch.device = "cpu") -> tuple[ModMapModel, dict]:
    """Rebuild the model saved in ``ckpt_dir``; return ``(model in eval mode, record)``."""
    ckpt_dir = Path(ckpt_dir)
    record = read_record(ckpt_dir)
    wpath = ckpt_dir / WEIGHTS
    try:
        blob = wpath.read_bytes()
    except OSError as e:
        raise FileNotFoundError(f"{wpath}: cannot read weights: {e}") from None
    if hashlib.sha256(blob).hexdigest() != record["weights_sha256"]:
        raise ValueError(f"{wpath}: weights do not match {ckpt_dir / RECORD} (hash differs; interrupted save "
                         f"or mixed files)")
    try:
        model = ModMapModel(**record["model"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{ckpt_dir / RECORD}: bad model config: {e}") from None
    state = st_load(blob)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{wpath}: weights do not fit the model config: {e}") from None
    return model.to(device).eval(), record


def load_train_state(ckpt_dir: str | Path, epoch: int) -> dict:
    """Optimizer / scheduler state saved with epoch ``epoch`` (error if missing or from another epoch)."""
    path = Path(ckpt_dir) / TRAIN_STATE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no training state to resume from") from None
    except Exception as e:  # truncated, corrupt, or pickled objects that weights_only refuses
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: cannot read the training state ({first}); it is truncated, corrupt or not "
                         f"written by mv3dad; fit again without --resume") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a training state (a {type(state).__name__})")
    if state.get("epoch") != epoch:
        raise ValueError(f"{path}: training state is from epoch {state.get('epoch')}, weights from epoch {epoch}")
    return state


def check_meta(saved: dict, expected: dict, where: str = "checkpoint") -> None:
    """Raise naming every key of ``expected`` whose value differs from ``saved`` (e.g. encoder hash, rig)."""
    diffs = [f"{k}: checkpoint has {saved.get(k)!r}, expected {v!r}" for k, v in expected.items()
             if saved.get(k) != v]
    if diffs:
        raise ValueError(f"{where} does not match: " + "; ".join(diffs))
