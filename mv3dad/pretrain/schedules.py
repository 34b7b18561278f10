"""Training schedules, all pure functions of the step (so a resumed run follows the same curves)."""

from __future__ import annotations

from dataclasses import dataclass

from lightly.utils.scheduler import cosine_schedule

from mv3dad.pretrain.config import PretrainConfig


@dataclass(frozen=True)
class StepSchedule:
    """Hyper-parameters of one step.

    Attributes:
        lr: learning rate (linear warm-up, then cosine to ``min_lr``; scaled by global batch / 1024).
        weight_decay: cosine from start to end.
        momentum: teacher EMA momentum, cosine from start to end (1.0 at the end).
        teacher_temp: linear warm-up, then constant.
        freeze_last_layer: the heads' last layers get no update this step.
    """

    lr: float
    weight_decay: float
    momentum: float
    teacher_temp: float
    freeze_last_layer: bool


def schedule(step: int, cfg: PretrainConfig, global_batch: int) -> StepSchedule:
    """The hyper-parameters of ``step`` (0-based) of a ``cfg.steps`` run with batch ``global_batch``."""
    total = cfg.steps
    peak = cfg.base_lr * global_batch / 1024
    warm = int(round(cfg.warmup_fraction * total))
    if step < warm:
        lr = peak * (step + 1) / warm
    else:
        lr = cosine_schedule(step - warm, max(total - warm, 1), peak, cfg.min_lr)
    wd = cosine_schedule(step, total, *cfg.weight_decay)
    mom = cosine_schedule(step, total, *cfg.momentum_teacher)
    t_warm = int(round(cfg.teacher_temp_warmup_fraction * total))
    t0, t1 = cfg.teacher_temp
    temp = t0 + (t1 - t0) * step / t_warm if step < t_warm else t1
    freeze = step < int(round(cfg.freeze_last_layer_fraction * total))
    return StepSchedule(float(lr), float(wd), float(mom), float(temp), freeze)
