"""Training of the modulators and the mapper on frozen, pre-computed features (seed 004 Sec. 3.2.2, Supp. A.2).

The features of every view are given once (the caller extracts and caches them); the epoch loop only gathers
tokens of the pairs of each batch from one token table and never runs an encoder. One epoch visits every
ordered (source, target) view pair of every training instance once (N x N pairs, s = t included, or the N
diagonal pairs), in a seeded random order, 48 pairs per optimizer step. The loss of a pair is the mapper's
per-token loss averaged over the foreground tokens of the *target* view (the tokens that are scored at test
time); tokens are pooled over the pairs of a batch (a token-mean, as the authors' ``1 - cos(...).mean()``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

import torch

from mv3dad.mapping.checkpoint import (check_meta, load_checkpoint, load_train_state, read_record,
                                       save_checkpoint, training_checkpoint)
from mv3dad.mapping.model import ModMapModel


@dataclass
class FitConfig:
    """Training config of a ModMap / CFM / CPIR model; the defaults below are the defaults (``configs/modmap.yaml``
    holds only overrides), and each field's entry here is also its ``mv3dad fit --help`` text.

    Attributes:
        mapper: registered mapper: ``cfm`` (CFM's two MLPs) or ``lb3m`` (CPIR's latent-bridged module).
        mapper_kwargs: extra mapper arguments, e.g. ``{"recon_weight": 1.0}`` (beta) or ``{"latent": 576}``
            for lb3m, ``{"hidden": 576}`` for cfm; empty = the papers' widths ((c_in + c_out) / 2).
        modulation: FiLM view modulators on (ModMap) or off (CFM, identity).
        modulator_hidden: hidden width of the modulator MLPs (128 in the paper).
        pairs: ``"all"``: every ordered source -> target view pair, s = t included (ModMap);
            ``"diagonal"``: s = t only (CFM per view, Table 6's first row).
        multi_class: one model for several categories, with a one-hot category code in the modulators
            (Table 7); needs ``modulation``.
        epochs: training epochs (one epoch = every pair of every training instance once).
        batch_pairs: view pairs per optimizer step (48 in the paper); the last batch of an epoch may be smaller.
        lr: Adam learning rate before scheduling ("initial learning rate" 1e-4 in the paper).
        max_lr_factor: OneCycleLR peak learning rate = ``max_lr_factor * lr`` (5x in the paper).
        pct_start: fraction of the steps spent warming up to the peak (10%).
        anneal: OneCycleLR annealing, ``"cos"`` or ``"linear"``.
        div_factor: OneCycleLR starting learning rate = peak / div_factor (PyTorch's default 25, as the authors).
        max_rows: largest number of tokens pushed through the networks at once; a batch with more is split
            into micro-batches whose gradients are accumulated (same update, bounded memory).
        seed: seed of the initial weights and of the per-epoch pair order (runs are reproducible on CPU).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        checkpoint_every: with an output directory, checkpoint every this many epochs (and after the last).
    """

    mapper: str = "cfm"
    mapper_kwargs: dict = field(default_factory=dict)
    modulation: bool = True
    modulator_hidden: int = 128
    pairs: Literal["all", "diagonal"] = "all"
    multi_class: bool = False
    epochs: int = 200
    batch_pairs: int = 48
    lr: float = 1e-4
    max_lr_factor: float = 5.0
    pct_start: float = 0.1
    anneal: Literal["cos", "linear"] = "cos"
    div_factor: float = 25.0
    max_rows: int = 262_144
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 10


#: Named variants; ``preset_config(name, **overrides)``. Baselines of issue 5 item 5 and Tables 3 / 6.
PRESETS: dict[str, dict] = {
    "modmap": {},  # view conditioning + all N x N pairs (+ min over all sources at test time)
    "cfm": {"modulation": False, "pairs": "diagonal"},  # CFM per view, no view conditioning (Table 3, row 1)
    "cfm_vc": {"modulation": True, "pairs": "diagonal"},  # CFM + view conditioning, no cross-view (Table 6, row 1)
    "cpir": {"mapper": "lb3m", "modulation": False, "pairs": "diagonal"},  # CPIR; single-view data: N = 1
    "modmap_lb3m": {"mapper": "lb3m"},  # ModMap with CPIR's mapper
}

# Fields that may change between a run and its resumption without changing the result (beyond rounding).
_RESUME_FREE = {"device", "checkpoint_every", "max_rows"}


def preset_config(name: str, **overrides) -> FitConfig:
    """A :class:`FitConfig` of the named preset (see ``PRESETS``) with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    return FitConfig(**{**PRESETS[name], **overrides})


@dataclass
class FeatureSet:
    """Frozen features of one nominal training instance.

    Attributes:
        img: (N, C_I, h, w) image token maps of the N views.
        dep: (N, C_D, h, w) depth token maps, on the same token grid.
        valid: (N, h, w) bool foreground tokens (the loss ignores the others), or None = all tokens.
        category: category name (needed by a multi-class model).
    """

    img: torch.Tensor
    dep: torch.Tensor
    valid: torch.Tensor | None = None
    category: str | None = None


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; anything else as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def fit_mapping(feats_img: torch.Tensor, feats_dep: torch.Tensor, valid: torch.Tensor | None = None,
                cfg: FitConfig | None = None, out_dir: str | Path | None = None, resume: bool = False,
                progress: bool = True, meta: dict | None = None,
                on_epoch: Callable[[int, float], None] | None = None) -> ModMapModel:
    """Train on one training instance: features (N, C_I, h, w), (N, C_D, h, w), foreground (N, h, w) bool.

    See :func:`fit_feature_sets` (this is its one-instance case); returns the trained model on the CPU.
    """
    return fit_feature_sets([FeatureSet(feats_img, feats_dep, valid)], cfg, out_dir=out_dir, resume=resume,
                            progress=progress, meta=meta, on_epoch=on_epoch)


def fit_feature_sets(sets: Sequence[FeatureSet], cfg: FitConfig | None = None, out_dir: str | Path | None = None,
                     resume: bool = False, progress: bool = True, meta: dict | None = None,
                     on_epoch: Callable[[int, float], None] | None = None) -> ModMapModel:
    """Train the modulators and mapper on the frozen features of one or more nominal instances.

    Several sets are several training instances (single-view data: many instances with N = 1) or, with
    ``cfg.multi_class``, instances of several categories (each set names its category).

    Args:
        sets: the training instances' features (never recomputed here).
        cfg: training config (defaults: :class:`FitConfig`).
        out_dir: checkpoint directory (see :mod:`mv3dad.mapping.checkpoint`); None = no checkpoints.
        resume: continue from the checkpoint in ``out_dir`` (config and ``meta`` must match); starts afresh
            when there is none.
        progress: show a progress bar.
        meta: caller metadata stored with every checkpoint (encoder names and weight hashes, rig, views, ...).
        on_epoch: called as ``on_epoch(epoch, mean_loss)`` after every epoch (1-based epoch).
    Returns:
        The trained model on the CPU, in eval mode.
    """
    cfg = cfg or FitConfig()
    _check_config(cfg)
    device = resolve_device(cfg.device)
    data = _TokenTable(sets, cfg.multi_class)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = ModMapModel(data.n_views, data.c_img, data.c_dep, mapper=cfg.mapper,
                            mapper_kwargs=cfg.mapper_kwargs, modulation=cfg.modulation,
                            modulator_hidden=cfg.modulator_hidden, categories=data.categories,
                            views_per_category=data.views_per_category, train_pairs=cfg.pairs)
    model.to(device).train()  # before the optimizer exists, so that restored optimizer state lands on device
    pairs = data.pairs(cfg.pairs)
    steps_per_epoch = math.ceil(len(pairs) / cfg.batch_pairs)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr * cfg.max_lr_factor, total_steps=max(2, cfg.epochs * steps_per_epoch),
        pct_start=cfg.pct_start, anneal_strategy=cfg.anneal, div_factor=cfg.div_factor, cycle_momentum=False)
    fit_dict = dataclasses.asdict(cfg)
    start = 0
    if resume:
        if out_dir is None:
            raise ValueError("resume=True needs out_dir, the checkpoint directory to resume from")
        start = _restore(Path(out_dir), model, opt, sched, fit_dict, meta or {})
    data.to(device)
    with _ProgressBar(progress, cfg.epochs, start) as bar:
        for epoch in range(start, cfg.epochs):
            loss = _run_epoch(model, data, pairs, cfg, opt, sched, epoch, device)
            bar(epoch + 1, loss)
            if out_dir is not None and ((epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs):
                save_checkpoint(out_dir, model, epoch=epoch + 1, fit_config=fit_dict, meta=meta,
                                train_state={"optimizer": opt.state_dict(), "scheduler": sched.state_dict()})
            if on_epoch is not None:
                on_epoch(epoch + 1, loss)
    return model.cpu().eval()


def _check_config(cfg: FitConfig) -> None:
    if cfg.pairs not in ("all", "diagonal"):
        raise ValueError(f"pairs must be 'all' or 'diagonal', got {cfg.pairs!r}")
    if cfg.multi_class and not cfg.modulation:
        raise ValueError("multi_class needs modulation (the category code enters through the modulators)")
    for name in ("epochs", "batch_pairs", "max_rows", "checkpoint_every", "modulator_hidden"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if not (cfg.lr > 0 and cfg.max_lr_factor > 0 and 0 < cfg.pct_start < 1):
        raise ValueError(f"need lr > 0, max_lr_factor > 0, 0 < pct_start < 1; got {cfg.lr}, "
                         f"{cfg.max_lr_factor}, {cfg.pct_start}")


class _TokenTable:
    """All training tokens in two (R, C) tables (image, depth; unit-normalised copies for the targets)."""

    def __init__(self, sets: Sequence[FeatureSet], multi_class: bool) -> None:
        if not sets:
            raise ValueError("no training features given")
        c_img, c_dep = sets[0].img.shape[1], sets[0].dep.shape[1]
        imgs, deps, self.offsets, self.fg = [], [], [], []
        n_of_cat: dict[str, int] = {}
        row = 0
        for i, fs in enumerate(sets):
            where = f"training features, set {i}" + (f" ({fs.category})" if fs.category else "")
            img, dep = fs.img, fs.dep
            if img.ndim != 4 or dep.ndim != 4:
                raise ValueError(f"{where}: features must be (N, C, h, w), got {tuple(img.shape)} / {tuple(dep.shape)}")
            if img.shape[1] != c_img or dep.shape[1] != c_dep:
                raise ValueError(f"{where}: channel mismatch: image {img.shape[1]} / depth {dep.shape[1]} "
                                 f"channels, set 0 has {c_img} / {c_dep}")
            if img.shape[0] != dep.shape[0] or img.shape[2:] != dep.shape[2:]:
                raise ValueError(f"{where}: image {tuple(img.shape)} and depth {tuple(dep.shape)} features differ "
                                 f"in views or token grid")
            for name, f in (("image", img), ("depth", dep)):
                if not torch.isfinite(f).all():
                    bad = (~torch.isfinite(f).flatten(1).all(1)).nonzero().flatten().tolist()
                    raise ValueError(f"{where}: {name} features hold NaN/inf in view(s) {bad}")
            n, _, h, w = img.shape
            valid = fs.valid if fs.valid is not None else torch.ones(n, h, w, dtype=torch.bool)
            if valid.shape != (n, h, w) or valid.dtype != torch.bool:
                raise ValueError(f"{where}: valid must be ({n}, {h}, {w}) bool, got {tuple(valid.shape)} {valid.dtype}")
            if multi_class:
                if fs.category is None:
                    raise ValueError(f"{where}: a multi-class model needs the category of every feature set")
                if n_of_cat.setdefault(fs.category, n) != n:
                    raise ValueError(f"{where}: {n} views, but another instance of {fs.category!r} has "
                                     f"{n_of_cat[fs.category]}")
            elif n != sets[0].img.shape[0]:
                raise ValueError(f"{where}: {n} views, but set 0 has {sets[0].img.shape[0]} (all training "
                                 f"instances of a class-specific model need the same views)")
            t = h * w
            imgs.append(img.detach().float().permute(0, 2, 3, 1).reshape(n * t, c_img))
            deps.append(dep.detach().float().permute(0, 2, 3, 1).reshape(n * t, c_dep))
            self.offsets.append([row + v * t for v in range(n)])
            self.fg.append([valid[v].flatten().nonzero().flatten() for v in range(n)])
            row += n * t
        self.categories = sorted(n_of_cat) if multi_class else None
        self.views_per_category = [n_of_cat[c] for c in self.categories] if multi_class else None
        self.set_category = [self.categories.index(fs.category) if multi_class else 0 for fs in sets]
        self.n_views = max(len(o) for o in self.offsets)
        self.c_img, self.c_dep = c_img, c_dep
        self.img, self.dep = torch.cat(imgs), torch.cat(deps)
        if not any(len(f) for fg in self.fg for f in fg):
            raise ValueError("training features: no valid (foreground) token in any view")

    def to(self, device: torch.device) -> None:
        self.img, self.dep = self.img.to(device), self.dep.to(device)
        self.img_unit = torch.nn.functional.normalize(self.img, dim=1)
        self.dep_unit = torch.nn.functional.normalize(self.dep, dim=1)
        self.fg = [[f.to(device) for f in fg] for fg in self.fg]

    def pairs(self, which: str) -> list[tuple[int, int, int]]:
        """(set, source, target) of every training pair; pairs whose target has no foreground are dropped."""
        out = []
        for i, offs in enumerate(self.offsets):
            n = len(offs)
            for t in range(n):
                if len(self.fg[i][t]) == 0:
                    continue
                out.extend((i, s, t) for s in (range(n) if which == "all" else (t,)))
        return out

    def rows(self, batch: list[tuple[int, int, int]]):
        """Source rows, target rows and pair index of every foreground token of the batch's pairs."""
        src_rows, tgt_rows, row_pair = [], [], []
        for j, (i, s, t) in enumerate(batch):
            fg = self.fg[i][t]
            src_rows.append(fg + self.offsets[i][s])
            tgt_rows.append(fg + self.offsets[i][t])
            row_pair.append(torch.full_like(fg, j))
        return torch.cat(src_rows), torch.cat(tgt_rows), torch.cat(row_pair)


def _run_epoch(model: ModMapModel, data: _TokenTable, pairs: list, cfg: FitConfig, opt, sched, epoch: int,
               device: torch.device) -> float:
    """One epoch over all pairs in a seeded order; returns the token-mean loss of the epoch."""
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    order = torch.randperm(len(pairs), generator=gen).tolist()
    total, count = 0.0, 0
    for b in range(0, len(order), cfg.batch_pairs):
        batch = [pairs[k] for k in order[b:b + cfg.batch_pairs]]
        src = torch.tensor([s for _, s, _ in batch], device=device)
        tgt = torch.tensor([t for _, _, t in batch], device=device)
        cat = torch.tensor([data.set_category[i] for i, _, _ in batch], device=device) if model.categories else None
        src_rows, tgt_rows, row_pair = data.rows(batch)
        n_rows = len(src_rows)
        opt.zero_grad(set_to_none=True)
        for r in range(0, n_rows, cfg.max_rows):
            sl = slice(r, r + cfg.max_rows)
            sr, tr = src_rows[sl], tgt_rows[sl]
            terms = model.terms(data.img[sr], data.dep[sr], data.img_unit[tr], data.dep_unit[tr],
                                src, tgt, cat, row_pair[sl])
            loss = model.mapper.loss_rows(terms).sum() / n_rows
            loss.backward()
            total += loss.item() * n_rows
        count += n_rows
        opt.step()
        sched.step()
    return total / max(count, 1)


def _restore(out_dir: Path, model: ModMapModel, opt, sched, fit_dict: dict, meta: dict) -> int:
    """Load weights and optimizer / scheduler state from the checkpoint of ``out_dir`` (the step folder its
    pointer names, :func:`~mv3dad.mapping.checkpoint.training_checkpoint`); return the completed epochs (0 if
    none)."""
    out_dir = training_checkpoint(out_dir)
    try:
        record = read_record(out_dir)
    except FileNotFoundError:
        return 0
    saved_fit = record.get("fit_config") or {}
    diffs = [f"{k}: checkpoint {saved_fit.get(k)!r}, now {v!r}" for k, v in fit_dict.items()
             if k not in _RESUME_FREE and saved_fit.get(k) != v]
    if diffs:
        raise ValueError(f"{out_dir}: cannot resume, the training config differs: " + "; ".join(diffs))
    diffs = [f"{k}: checkpoint {record['model'].get(k)!r}, now {v!r}" for k, v in model.config().items()
             if record["model"].get(k) != v]
    if diffs:
        raise ValueError(f"{out_dir}: cannot resume, the features do not fit the saved model: " + "; ".join(diffs))
    check_meta(record.get("meta") or {}, meta, where=f"{out_dir}: cannot resume, metadata")
    saved, _ = load_checkpoint(out_dir)
    model.load_state_dict(saved.state_dict())
    state = load_train_state(out_dir, record["epoch"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    return int(record["epoch"])


class _ProgressBar:
    """Rich progress bar over epochs (a no-op when disabled); call ``bar(epoch, loss)`` to advance."""

    def __init__(self, enabled: bool, epochs: int, start: int) -> None:
        self.enabled, self.epochs, self.start = enabled, epochs, start

    def __enter__(self):
        if not self.enabled:
            return lambda epoch, loss: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        self.progress = Progress(TextColumn("fit"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[loss]}"),
                                 TimeRemainingColumn())
        self.progress.__enter__()
        task = self.progress.add_task("fit", total=self.epochs, completed=self.start, loss="")
        return lambda epoch, loss: self.progress.update(task, completed=epoch, loss=f"loss {loss:.4f}")

    def __exit__(self, *exc):
        if self.enabled:
            self.progress.__exit__(*exc)
        return False
