"""The DINOv2 objective: DINO CLS loss + iBOT masked-patch loss + KoLeo, with EMA centring or Sinkhorn-Knopp.

EMA centring uses lightly's ``DINOLoss`` / ``IBOTPatchLoss``; the Sinkhorn-Knopp option (not in lightly) is the
project's own; KoLeo is lightly's ``KoLeoLoss``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from lightly.loss import DINOLoss, IBOTPatchLoss, KoLeoLoss


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _logsumexp_over_samples(x: torch.Tensor) -> torch.Tensor:
    """(N, K) -> (1, K) log-sum-exp over the samples of all processes."""
    top = x.max(dim=0, keepdim=True).values
    if _distributed():
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    total = torch.exp(x - top).sum(dim=0, keepdim=True)
    if _distributed():
        dist.all_reduce(total)
    return top + torch.log(total)


@torch.no_grad()
def sinkhorn_knopp(logits: torch.Tensor, temperature: float, n_iter: int = 3) -> torch.Tensor:
    """Teacher targets by Sinkhorn-Knopp (SwAV / DINOv2), over the samples of all processes when distributed.

    Computed in the log domain, so sharp teacher temperatures never underflow a whole row to 0.

    Args:
        logits: (N, K) teacher logits of this process.
        temperature: teacher temperature.
        n_iter: alternating normalisation rounds (prototypes, then samples).

    Returns:
        (N, K) float32 assignments: every row sums to 1; over all processes every prototype (column) receives
        about N_total / K (equipartition, exact in the limit of many rounds).
    """
    log_q = logits.float() / temperature
    n = torch.tensor(float(log_q.shape[0]), device=log_q.device)
    if _distributed():
        dist.all_reduce(n)
    k = log_q.shape[1]
    for _ in range(n_iter):
        log_q = log_q - _logsumexp_over_samples(log_q) - torch.log(torch.tensor(float(k)))
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - torch.log(n)
    return torch.exp(log_q + torch.log(n))


def _dino_cross_entropy(teacher_probs: torch.Tensor, student_logits: torch.Tensor, student_temp: float) -> torch.Tensor:
    """Mean cross-entropy of every student crop against every teacher global crop but its own.

    teacher_probs (T, B, K); student_logits (S, B, K) with the T global crops first.
    """
    logp = F.log_softmax(student_logits.float() / student_temp, dim=-1)
    ce = -torch.einsum("tbk,sbk->ts", teacher_probs, logp)
    ce.fill_diagonal_(0)
    n_terms = ce.numel() - min(ce.shape)
    return ce.sum() / (n_terms * teacher_probs.shape[1])


def _ibot_cross_entropy(teacher_probs: torch.Tensor, student_logits: torch.Tensor, targets: torch.Tensor,
                        student_temp: float) -> torch.Tensor:
    """Per-crop mean over its target tokens, then mean over crops (as lightly's IBOTPatchLoss)."""
    ce = -(teacher_probs * F.log_softmax(student_logits.float() / student_temp, dim=-1)).sum(-1)
    per_crop = targets.sum(dim=(1, 2), keepdim=True).clamp(min=1).expand_as(targets)[targets]
    return (ce / per_crop).sum() / targets.shape[0]


class DinoV2Loss(nn.Module):
    """DINO + iBOT + KoLeo.

    Attributes:
        n_prototypes: K, outputs of both heads.
        student_temp: student temperature.
        centering: ``"ema"`` or ``"sinkhorn"``.
        sinkhorn_iterations: Sinkhorn-Knopp rounds.
        weights: (dino, ibot, koleo) loss weights.
    """

    def __init__(self, n_prototypes: int, student_temp: float = 0.1, centering: str = "ema",
                 sinkhorn_iterations: int = 3, weights: tuple[float, float, float] = (1.0, 1.0, 0.1)) -> None:
        super().__init__()
        if centering not in ("ema", "sinkhorn"):
            raise ValueError(f"centering must be 'ema' or 'sinkhorn', got {centering!r}")
        self.centering = centering
        self.student_temp = student_temp
        self.sinkhorn_iterations = sinkhorn_iterations
        self.weights = weights
        self.dino = DINOLoss(output_dim=n_prototypes, student_temp=student_temp, warmup_teacher_temp_epochs=1)
        self.ibot = IBOTPatchLoss(output_dim=n_prototypes, student_temp=student_temp)
        self.koleo = KoLeoLoss()

    def forward(self, teacher: dict[str, torch.Tensor], student: dict[str, torch.Tensor], targets: torch.Tensor,
                teacher_temp: float) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its parts.

        Args:
            teacher: the teacher's ``cls_logits`` (2B, K) and ``patch_logits`` (M, K).
            student: the student's ``cls`` (2B, D), ``cls_logits`` (2B, K), ``local_logits`` (nB, K) if any,
                ``patch_logits`` (M, K).
            targets: (2B, h, w) bool iBOT target tokens (M of them).
            teacher_temp: current teacher temperature.
        """
        t_cls = teacher["cls_logits"].float().chunk(2)
        s_cls = list(student["cls_logits"].float().chunk(2))
        if "local_logits" in student:
            b = t_cls[0].shape[0]
            s_cls += list(student["local_logits"].float().split(b))
        t_patch, s_patch = teacher["patch_logits"].float(), student["patch_logits"].float()
        if self.centering == "ema":
            dino = self.dino(list(t_cls), s_cls, teacher_temp=teacher_temp)
            ibot = self.ibot(t_patch, s_patch, targets, teacher_temp=teacher_temp)
        else:
            tb = t_cls[0].shape[0]
            t_probs = sinkhorn_knopp(torch.cat(t_cls), teacher_temp, self.sinkhorn_iterations).view(2, tb, -1)
            dino = _dino_cross_entropy(t_probs, torch.stack(s_cls), self.student_temp)
            p_probs = sinkhorn_knopp(t_patch, teacher_temp, self.sinkhorn_iterations)
            ibot = _ibot_cross_entropy(p_probs, s_patch, targets, self.student_temp)
        cls = student["cls"].float().chunk(2)
        koleo = sum(self.koleo(c) for c in cls) if cls[0].shape[0] > 1 else cls[0].new_zeros(())
        wd, wi, wk = self.weights
        total = wd * dino + wi * ibot + wk * koleo
        return total, {"dino": float(dino.detach()), "ibot": float(ibot.detach()), "koleo": float(koleo.detach())}
