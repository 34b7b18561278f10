"""The DINOv2-style trainer behind ``mv3dad pretrain-depth`` / ``pretrain-image``.

Student + EMA teacher, multi-crop, block masking, DINO + iBOT + KoLeo, atomic checkpoints and exact resume,
DistributedDataParallel under ``torchrun`` (gloo on CPU, NCCL on GPU). Everything random in a step is drawn
from seeds derived from (seed, rank, step), so a resumed run repeats exactly what an uninterrupted run does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from mv3dad.data.corpus import Corpus, CorpusError, save_corpus, scan_corpus
from mv3dad.encoders.preprocess import DepthScaling, token_validity
from mv3dad.encoders.dinov3 import ARCH_NAME as DINOV3_ARCH
from mv3dad.encoders.dinov3 import MaskedDinoV3, create_dinov3
from mv3dad.encoders.vit import save_encoder
from mv3dad.io import atomic_dir, atomic_file, atomic_write
from mv3dad.pretrain.augment import MultiCrop
from mv3dad.pretrain.config import PretrainConfig
from mv3dad.pretrain.heads import DinoNetwork
from mv3dad.pretrain.losses import DinoV2Loss
from mv3dad.pretrain.masking import block_masks, ibot_targets
from mv3dad.pretrain.schedules import schedule

CKPT_DIR = "checkpoints"
# Config fields that may change between a run and its resumption (they do not change what is computed).
_RESUMABLE_CHANGES = {"checkpoint_every", "keep_checkpoints", "num_workers"}


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys (seed, rank, step, purpose)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class CorpusSource:
    """Views drawn uniformly from a scanned corpus (a file that became unreadable is replaced, with a warning)."""

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus

    def _one(self, rng: np.random.Generator) -> np.ndarray:
        for _ in range(20):
            f = self.corpus.files[int(rng.integers(len(self.corpus)))]
            try:
                return self.corpus.reader(f)
            except CorpusError as e:
                warnings.warn(f"skipped during training: {e}", stacklevel=2)
        raise CorpusError("20 unreadable files in a row during training; the corpus changed since it was scanned")

    def sample(self, rng: np.random.Generator, n: int) -> list[np.ndarray]:
        return [self._one(rng) for _ in range(n)]


class SyntheticSource:
    """The endless synthetic depth corpus (``mv3dad.synth.corpus.random_depth_maps``), reproducible per step.

    Each call starts fresh streams seeded from ``rng`` and takes ``views_per_part`` views of each random part
    (building a part costs far more than rendering a view; the stream renders lazily).
    """

    def __init__(self, image_size: int, modality: str = "depth", views_per_part: int = 4) -> None:
        if modality != "depth":
            raise ValueError("the synthetic corpus holds depth maps: use --data with images for pretrain-image")
        self.image_size, self.views_per_part = image_size, views_per_part

    def sample(self, rng: np.random.Generator, n: int) -> list[np.ndarray]:
        try:
            from mv3dad.synth.corpus import random_depth_maps
        except ImportError as e:
            raise RuntimeError(f"--synthetic needs mv3dad.synth.corpus.random_depth_maps: {e}") from None
        out: list[np.ndarray] = []
        while len(out) < n:
            stream = random_depth_maps(int(rng.integers(2**31)), self.image_size)
            out += [next(stream) for _ in range(min(self.views_per_part, n - len(out)))]
        return out


class StepBatches(Dataset):
    """Item ``step`` is this process's batch of step ``step``: crops, masks and iBOT targets.

    Returns a dict: ``global`` (2B, C, G, G) with crop 0 of every sample first, ``local`` (nB, C, L, L) crop by crop,
    ``masks`` and ``targets`` (2B, G/p, G/p) bool.
    """

    def __init__(self, sources: Sequence, cfg: PretrainConfig, rank: int, patch_size: int) -> None:
        self.sources, self.cfg, self.rank, self.patch = list(sources), cfg, rank, patch_size
        scaling = DepthScaling(cfg.depth_lo_percentile, cfg.depth_hi_percentile, cfg.depth_floor)
        self.multicrop = MultiCrop(cfg.modality, cfg.image_size, cfg.local_size, cfg.n_local_crops, cfg.global_scale,
                                   cfg.local_scale, cfg.max_rotation_deg, cfg.min_valid_fraction, cfg.crop_attempts,
                                   cfg.photometric, scaling)

    def __len__(self) -> int:
        return self.cfg.steps

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        rng = np.random.default_rng(derive_seed(cfg.seed, self.rank, step, 0))
        counts = np.bincount(rng.integers(len(self.sources), size=cfg.batch_size), minlength=len(self.sources))
        arrays = [a for src, k in zip(self.sources, counts) if k for a in src.sample(rng, int(k))]
        crops = [self.multicrop(a, rng) for a in arrays]
        g = torch.cat([torch.stack([c[0][i] for c in crops]) for i in range(2)])
        loc = torch.cat([torch.stack([c[1][i] for c in crops]) for i in range(cfg.n_local_crops)]) \
            if cfg.n_local_crops else g.new_zeros(0, g.shape[1], cfg.local_size, cfg.local_size)
        grid = (cfg.image_size // self.patch,) * 2
        if cfg.modality == "depth":
            valid = token_validity(g, self.patch, cfg.token_valid_fraction)
        else:
            valid = torch.ones(len(g), *grid, dtype=torch.bool)
        mask_seed = derive_seed(cfg.seed, self.rank, step, 1)
        masks = block_masks(len(g), grid, mask_seed, cfg.mask_probability, cfg.mask_ratio)
        masks, targets = ibot_targets(masks, valid, torch.Generator().manual_seed(mask_seed))
        return {"global": g, "local": loc, "masks": masks, "targets": targets}


def build_network(cfg: PretrainConfig, drop_path_rate: float = 0.0) -> torch.nn.Module:
    """The student/teacher network: :class:`DinoNetwork` around a timm ViT, or around the DINOv3-style ViT."""
    if cfg.arch.split(".")[0] != DINOV3_ARCH:
        return DinoNetwork(cfg, drop_path_rate)
    return DinoV3Network(cfg, drop_path_rate)


class DinoV3Network(DinoNetwork):
    """:class:`DinoNetwork` with the DINOv3-style ViT (RoPE, DINOv3 key names) as its maskable backbone."""

    def __init__(self, cfg: PretrainConfig, drop_path_rate: float = 0.0) -> None:
        from lightly.models.modules import DINOv2ProjectionHead

        torch.nn.Module.__init__(self)
        vit = create_dinov3(cfg.image_size, drop_path_rate, **cfg.timm_kwargs())
        self.backbone = MaskedDinoV3(vit)
        kw = dict(input_dim=vit.embed_dim, hidden_dim=cfg.head_hidden_dim, bottleneck_dim=cfg.head_bottleneck_dim,
                  output_dim=cfg.n_prototypes)
        self.dino_head = DINOv2ProjectionHead(**kw)
        self.ibot_head = DINOv2ProjectionHead(**kw)


def _init_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def _state_hash(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _write_json(path: Path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=1))


def _comparable(cfg_dict: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg_dict.items() if k not in _RESUMABLE_CHANGES}


class Trainer:
    """One pretraining run in ``out_dir`` (see :func:`pretrain`)."""

    def __init__(self, cfg: PretrainConfig, out_dir: str | Path, data: Sequence[str | Path] = (),
                 synthetic: bool = False, resume: bool = False, show_progress: bool = True) -> None:
        if not data and not synthetic:
            raise CorpusError("no training data: give --data PATH (repeatable) and/or --synthetic")
        self.cfg, self.out = cfg, Path(out_dir)
        self.rank, self.world, self.device = _init_distributed()
        self.show_progress = show_progress and self.rank == 0
        self.global_batch = cfg.batch_size * self.world
        from mv3dad.io import check_output_dir

        check_output_dir(self.out, "--out")
        self.out.mkdir(parents=True, exist_ok=True)
        self.ckpt_dir = self.out / CKPT_DIR
        latest = self._latest()
        if latest is not None and not resume:
            raise FileExistsError(f"{self.out} already holds a pretraining run ({latest}); pass --resume to "
                                  f"continue it or choose another --out")
        self.sources = self._sources(data, synthetic, resume and latest is not None)

        torch.manual_seed(cfg.seed)
        self.student_module = build_network(cfg, cfg.drop_path_rate).to(self.device)
        self.teacher = build_network(cfg, 0.0).to(self.device)
        self.teacher.load_state_dict(self.student_module.state_dict())
        self.teacher.eval().requires_grad_(False)
        self.loss_fn = DinoV2Loss(cfg.n_prototypes, cfg.student_temp, cfg.centering, cfg.sinkhorn_iterations,
                                  (cfg.dino_weight, cfg.ibot_weight, cfg.koleo_weight)).to(self.device)
        self.student = self.student_module
        if self.world > 1:
            self.student = torch.nn.parallel.DistributedDataParallel(
                self.student_module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        decay, no_decay = [], []
        for name, p in self.student_module.named_parameters():
            skip = p.ndim <= 1 or any(t in name for t in ("pos_embed", "cls_token", "reg_token", "mask_token"))
            (no_decay if skip else decay).append(p)
        self.opt = torch.optim.AdamW([{"params": decay, "wd": True}, {"params": no_decay, "wd": False}],
                                     lr=0.0, weight_decay=0.0, betas=(0.9, 0.999))
        self.step, self.history = 0, []
        if latest is not None:
            self._load(latest)

    # -- data -------------------------------------------------------------------------------------------------
    def _sources(self, data, synthetic: bool, resuming: bool) -> list:
        sources: list = []
        if data:
            path = self.out / "corpus.json"
            if self.rank == 0 and not (resuming and path.is_file()):
                corpus = scan_corpus(data, self.cfg.modality, self.cfg.max_bad_fraction, self._scan_progress())
                save_corpus(corpus, path)
            _barrier(self.world)
            corpus = Corpus.from_json(json.loads(path.read_text()))
            if corpus.modality != self.cfg.modality:
                raise CorpusError(f"{path}: a {corpus.modality} corpus, but this run trains a "
                                  f"{self.cfg.modality} encoder")
            self.corpus_summary = {"files": len(corpus), "bad": len(corpus.bad)}
            sources.append(CorpusSource(corpus))
        if synthetic:
            sources.append(SyntheticSource(self.cfg.synthetic_size or self.cfg.image_size, self.cfg.modality,
                                           self.cfg.synthetic_views_per_part))
        return sources

    def _scan_progress(self):
        if not self.show_progress:
            return None
        from rich.progress import track

        return lambda files: track(files, description="scanning corpus")

    # -- checkpoints ------------------------------------------------------------------------------------------
    def _latest(self) -> Path | None:
        f = self.ckpt_dir / "latest.json"
        if not f.is_file():
            return None
        from mv3dad.io import read_json

        name = read_json(f, "checkpoint pointer").get("checkpoint")
        if not isinstance(name, str) or not (self.ckpt_dir / name).is_dir():
            raise CorpusError(f"{f}: names checkpoint {name!r}, which is missing; choose another --out")
        return self.ckpt_dir / name

    def _weights(self) -> dict[str, torch.Tensor]:
        out = {}
        for prefix, m in (("student.", self.student_module), ("teacher.", self.teacher), ("loss.", self.loss_fn)):
            for k, v in m.state_dict().items():
                out[prefix + k] = v.detach().cpu().contiguous()
        return out

    def save_checkpoint(self) -> Path:
        """Write the run state after ``self.step`` steps atomically; keep the newest ``keep_checkpoints``."""
        from safetensors.torch import save_file

        name = f"step_{self.step:08d}"
        final = self.ckpt_dir / name
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        with atomic_dir(final) as tmp:
            save_file(self._weights(), str(tmp / "model.safetensors"))
            torch.save(self.opt.state_dict(), tmp / "optimizer.pt")
            state = {"step": self.step, "world_size": self.world, "global_batch": self.global_batch,
                     "config": dataclasses.asdict(self.cfg), "history": self.history}
            (tmp / "state.json").write_text(json.dumps(state))
        _write_json(self.ckpt_dir / "latest.json", {"checkpoint": name, "step": self.step})
        old = sorted(p for p in self.ckpt_dir.glob("step_*") if p.is_dir())[: -self.cfg.keep_checkpoints]
        for p in old:
            shutil.rmtree(p, ignore_errors=True)
        return final

    def _load(self, ckpt: Path) -> None:
        from safetensors.torch import load_file

        from mv3dad.io import read_json

        state = read_json(ckpt / "state.json", "checkpoint state")
        for key in ("config", "global_batch", "step", "history"):
            if key not in state:
                raise CorpusError(f"{ckpt / 'state.json'}: checkpoint state lacks {key!r}")
        saved, now = _comparable(state["config"]), _comparable(dataclasses.asdict(self.cfg))
        diff = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k))
        if diff:
            raise ValueError(f"{ckpt}: cannot resume with a different config (fields {diff}); the schedules "
                             f"would change. Use the original settings or a new --out")
        if state["global_batch"] != self.global_batch:
            raise ValueError(f"{ckpt}: saved with global batch {state['global_batch']}, now {self.global_batch}")
        weights = _read_checkpoint_file(ckpt / "model.safetensors",
                                        lambda p: load_file(str(p), device=str(self.device)))
        for prefix, m in (("student.", self.student_module), ("teacher.", self.teacher), ("loss.", self.loss_fn)):
            try:
                m.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)})
            except RuntimeError as e:
                raise CorpusError(f"{ckpt / 'model.safetensors'}: does not fit this model: "
                                  f"{str(e).splitlines()[0]}") from None
        opt_state = _read_checkpoint_file(
            ckpt / "optimizer.pt", lambda p: torch.load(p, map_location=self.device, weights_only=True))
        try:
            self.opt.load_state_dict(opt_state)
        except (ValueError, KeyError, TypeError) as e:
            raise CorpusError(f"{ckpt / 'optimizer.pt'}: not this run's optimizer state: {e}") from None
        self.step, self.history = int(state["step"]), list(state["history"])

    # -- training ---------------------------------------------------------------------------------------------
    def _train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg = self.cfg
        sch = schedule(self.step, cfg, self.global_batch)
        for group in self.opt.param_groups:
            group["lr"] = sch.lr
            group["weight_decay"] = sch.weight_decay if group["wd"] else 0.0
        torch.manual_seed(derive_seed(cfg.seed, self.rank, self.step, 2))  # stochastic depth
        g, loc, masks, targets = (batch[k].to(self.device, non_blocking=True)
                                  for k in ("global", "local", "masks", "targets"))
        amp = (torch.autocast("cuda", dtype=torch.bfloat16) if cfg.amp and self.device.type == "cuda"
               else nullcontext())
        with amp:
            with torch.no_grad():
                t_out = self.teacher(g, loc[:0], None, targets)
            s_out = self.student(g, loc, masks, targets)
            loss, parts = self.loss_fn(t_out, s_out, targets, sch.teacher_temp)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {self.step}: {parts}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if sch.freeze_last_layer:
            for p in self.student_module.last_layers():
                p.grad = None
        torch.nn.utils.clip_grad_norm_(self.student_module.parameters(), cfg.clip_grad)
        self.opt.step()
        from lightly.models.utils import update_momentum

        update_momentum(self.student_module, self.teacher, sch.momentum)
        return {"step": self.step, "loss": float(loss.detach()), **parts, "lr": sch.lr,
                "teacher_temp": sch.teacher_temp}

    def run(self) -> dict:
        """Train to ``cfg.steps``, checkpointing every ``checkpoint_every`` steps; then export. Returns a summary."""
        cfg = self.cfg
        patch = int(self.student_module.backbone.vit.patch_embed.patch_size[0])
        dataset = StepBatches(self.sources, cfg, self.rank, patch)
        loader = DataLoader(dataset, batch_size=None, sampler=range(self.step, cfg.steps),
                            num_workers=cfg.num_workers, pin_memory=self.device.type == "cuda")
        self.student.train()
        t0, n0 = time.perf_counter(), self.step
        with self._progress() as progress:
            task = progress.add_task("pretraining", total=cfg.steps, completed=self.step, info="")
            for batch in loader:
                rec = self._train_step(batch)
                self.step += 1
                rec["samples_per_s"] = (self.step - n0) * self.global_batch / (time.perf_counter() - t0)
                self.history.append(rec)
                progress.update(task, advance=1, info=f"loss {rec['loss']:.3f} lr {rec['lr']:.2e} "
                                                      f"{rec['samples_per_s']:.1f} samples/s")
                if self.rank == 0 and (self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps):
                    self.save_checkpoint()
        elapsed = time.perf_counter() - t0
        summary = self._finish(elapsed, self.step - n0)
        return summary

    def _progress(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeRemainingColumn(), disable=not self.show_progress)

    def _finish(self, elapsed: float, steps_run: int) -> dict:
        cfg = self.cfg
        hashes = {"student": _state_hash(self.student_module), "teacher": _state_hash(self.teacher)}
        if self.world > 1:
            ddp_dir = self.out / "ddp"
            ddp_dir.mkdir(exist_ok=True)
            _write_json(ddp_dir / f"rank{self.rank}.json", hashes)
            gathered: list = [None] * self.world
            dist.all_gather_object(gathered, hashes)
            if any(h != gathered[0] for h in gathered):
                raise RuntimeError(f"ranks ended with different weights: {gathered}")
        summary = {"rank": self.rank, "steps": cfg.steps, "global_batch": self.global_batch, "world_size": self.world,
                   "device": str(self.device), "seconds_this_session": round(elapsed, 2),
                   "steps_this_session": steps_run, "final_loss": self.history[-1]["loss"] if self.history else None,
                   "corpus": getattr(self, "corpus_summary", None), "synthetic": any(
                       isinstance(s, SyntheticSource) for s in self.sources), "weights_hash": hashes["teacher"],
                   "config": dataclasses.asdict(cfg)}
        if self.rank == 0:
            vit = self.teacher.backbone.vit
            scaling = DepthScaling(cfg.depth_lo_percentile, cfg.depth_hi_percentile, cfg.depth_floor)
            save_encoder(self.out, vit, arch=cfg.arch, modality=cfg.modality, img_size=cfg.image_size,
                         timm_kwargs=cfg.timm_kwargs(), depth_scaling=scaling if cfg.modality == "depth" else None,
                         training=summary)
            if isinstance(self.teacher, DinoV3Network):  # also in the ModMap authors' layout
                from mv3dad.encoders.release import write_authors_release

                heads = {f"{n}.{k}": v for n in ("dino_head", "ibot_head")
                         for k, v in getattr(self.teacher, n).state_dict().items()}
                write_authors_release(self.out / "authors_release", vit, heads, {"crops": {
                    "global_crops_size": cfg.image_size, "local_crops_size": cfg.local_size,
                    "local_crops_number": cfg.n_local_crops}}, cfg.drop_path_rate)
            _write_json(self.out / "history.json", self.history)
            plot_history(self.history, self.out / "loss_curve.png")
        _barrier(self.world)
        return summary


def _read_checkpoint_file(path: Path, read):
    """``read(path)`` with any failure (missing, truncated, corrupt, pickled objects refused by
    ``weights_only``) turned into one error naming ``path``."""
    if not path.is_file():
        raise CorpusError(f"{path}: checkpoint file is missing; the checkpoint is incomplete")
    try:
        return read(path)
    except Exception as e:  # safetensors and torch raise many types for bad files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CorpusError(f"{path}: cannot read the checkpoint file ({first}); it is truncated, corrupt or "
                          f"not written by mv3dad") from None


def plot_history(history: list[dict], path: Path) -> None:
    """Loss curves (total, DINO, iBOT, KoLeo) and the learning rate against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    steps = [h["step"] + 1 for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    for key in ("loss", "dino", "ibot", "koleo"):
        a.plot(steps, [h[key] for h in history], label=key, lw=1)
    a.set_xlabel("step")
    a.set_ylabel("loss")
    a.legend()
    b.plot(steps, [h["lr"] for h in history], color="k", lw=1)
    b.set_xlabel("step")
    b.set_ylabel("learning rate")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def pretrain(cfg: PretrainConfig, out_dir: str | Path, data: Sequence[str | Path] = (), synthetic: bool = False,
             resume: bool = False, show_progress: bool = True) -> dict:
    """Run (or resume) a pretraining and export ``out_dir/encoder.safetensors`` + ``encoder.json``.

    Args:
        cfg: the run's config.
        out_dir: output folder (checkpoints, corpus scan, history, loss curve, the exported encoder).
        data: corpus folders/files (any mix of layouts, see :mod:`mv3dad.data.corpus`).
        synthetic: add the endless synthetic depth corpus.
        resume: continue from the latest checkpoint in ``out_dir`` (a run without one starts fresh).
        show_progress: rich progress bar (rank 0).

    Returns:
        A summary (steps, batch, time, final loss, corpus counts, weight hash).
    """
    return Trainer(cfg, out_dir, data, synthetic, resume, show_progress).run()
