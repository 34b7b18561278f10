"""Predict across processes and GPUs with torch.distributed (the engine ``pretrain-depth`` already uses).

``torchrun --standalone --nproc_per_node N -m mv3dad predict RUN DATA --out PRED`` starts N processes; each reads
``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` from the environment, joins one process group (``nccl`` with one GPU per
process where CUDA is present, ``gloo`` on CPU) and scores the samples ``i`` (in dataset order over the categories)
with ``i % WORLD_SIZE == RANK``, writing each sample's volume once. Every process then writes its part of the
record (``scores.rank<r>.json``); after all of them have finished (a collective that also carries each process's
failure, so one failing process stops them all with its message instead of a hung barrier), rank 0 merges the parts
into one ``scores.json`` in dataset order, written atomically, and removes the parts. The scores equal those of one
process: every sample is scored by the same code with the same run; only ``seconds`` differ.

Several machines: ``torchrun --nnodes M --node_rank R --nproc_per_node N --rdzv_backend c10d
--rdzv_endpoint HOST:PORT -m mv3dad predict ...`` with ``RUN``, ``DATA`` and ``--out`` on a folder every node
sees at the same path (NFS or similar); see docs/guide.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

SHARD_PREFIX = "scores.rank"


def shard_scores_name(rank: int) -> str:
    """File name of one process's part of ``scores.json``."""
    return f"{SHARD_PREFIX}{rank}.json"


def world_size() -> int:
    """Number of processes of the launch (``WORLD_SIZE`` set by torchrun; 1 otherwise)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def init_distributed() -> tuple[int, int, bool]:
    """Join the process group of a torchrun launch (no-op for one process).

    Returns:
        (rank, world size, whether this call created the group, so the caller destroys it).
    """
    import torch
    import torch.distributed as dist

    world = world_size()
    if world == 1:
        return 0, 1, False
    created = False
    cuda = torch.cuda.is_available()
    if cuda:  # one GPU per process: the encoders' "cuda" device is then this process's GPU
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
        created = True
    return dist.get_rank(), dist.get_world_size(), created


def merge_shards(out: str | Path, world: int, data: str | Path | None = None) -> Path:
    """Merge the ``world`` parts written under ``out`` into ``out/scores.json`` (atomically) and remove the parts.

    Args:
        out: the prediction folder.
        world: number of parts (``scores.rank0.json`` ... ``scores.rank<world-1>.json``).
        data: the dataset root; its test order orders the merged instances (default: the parts' ``data``).

    Returns:
        the path of ``scores.json``.
    """
    from mv3dad.data import open_dataset
    from mv3dad.errors import DataError
    from mv3dad.io.atomic import atomic_write
    from mv3dad.io.read import read_json
    from mv3dad.pipeline.predict import SCORES_FILE

    out = Path(out)
    paths = [out / shard_scores_name(r) for r in range(world)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{out}: parts of the distributed prediction are missing: {missing}")
    parts = [read_json(p, "prediction part") for p in paths]
    record = {k: v for k, v in parts[0].items() if k != "seconds"}
    ds = open_dataset(data or record["data"])
    scores: dict = {}
    for cat in parts[0]["scores"]:
        merged = {}
        for part in parts:
            merged.update(part["scores"].get(cat, {}))
        order = list(ds[cat].test.ids) if cat in ds.categories else sorted(merged)
        lost = [i for i in order if i not in merged]
        if lost:
            raise DataError(f"{out}: no process scored {cat} instances {lost}")
        scores[cat] = {i: merged[i] for i in order}
    timings = [t for part in parts for t in part.get("seconds", [])]
    record["scores"] = scores
    record["mean_seconds_per_sample"] = float(np.mean(timings)) if timings else None
    record["world_size"] = world
    path = out / SCORES_FILE
    atomic_write(path, json.dumps(record, indent=2), fsync=True)
    for p in paths:
        p.unlink(missing_ok=True)
    return path


def predict_distributed(job, progress: bool = True) -> Path:
    """Run :func:`mv3dad.pipeline.predict.run_predict` as one process of a torchrun launch (see the module doc)."""
    import torch.distributed as dist

    from mv3dad.pipeline.predict import run_predict

    rank, world, created = init_distributed()
    try:
        _all_or_none(lambda: run_predict(job, progress=progress and rank == 0, shard=(rank, world)), rank, world)
        _all_or_none(lambda: merge_shards(job.out, world, job.data) if rank == 0 else None, rank, world)
    finally:
        if created:
            dist.destroy_process_group()
    return Path(job.out)


def _all_or_none(step, rank: int, world: int) -> None:
    """Run ``step`` on every process; if it failed anywhere, raise on every process (the failing one raises its
    own exception, the others a RuntimeError naming it), so no process waits for ever on a dead one. Returning
    normally is also a barrier: every process has finished ``step``."""
    import torch.distributed as dist

    own, error = None, None
    try:
        step()
    except Exception as exc:  # carried to every process below
        own, error = exc, f"rank {rank}: {type(exc).__name__}: {exc}"
    errors: list = [None] * world
    dist.all_gather_object(errors, error)
    if own is not None:
        raise own
    failed = [e for e in errors if e]
    if failed:
        raise RuntimeError("distributed predict failed on another process: " + "; ".join(failed))
