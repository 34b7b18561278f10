"""FiLM view modulator: per-(source view, target view[, category]) scale and shift of the source features.

ModMap (seed 004, Eqs. 3-5): ``[gamma, beta] = MLP([v_s; v_t])``, ``Phi(F^s) = gamma * F^s + beta``, with the MLP
(two linear layers, hidden width 128, GELU) initialised to the identity (gamma = 1, beta = 0). For the
multi-class model (Table 7) a one-hot category code is appended to the input.
"""

from __future__ import annotations

import torch
from torch import nn


class FiLM(nn.Module):
    """Feature-wise linear modulation conditioned on one-hot source view, target view and (optionally) category.

    The last linear layer is zero-initialised and ``gamma = 1 + delta``, so the module is the identity at
    initialisation. With ``n_views = 1`` and no category the code is always ``[1; 1]``: the modulation is then a
    learned constant (gamma, beta).

    Args:
        n_views: number of views N (size of each one-hot view code).
        channels: feature channels C modulated (gamma, beta in R^C).
        n_categories: size of the one-hot category code (0 = class-specific model, no category input).
        hidden: hidden width of the MLP.
    """

    def __init__(self, n_views: int, channels: int, n_categories: int = 0, hidden: int = 128) -> None:
        super().__init__()
        if n_views < 1 or channels < 1 or n_categories < 0 or hidden < 1:
            raise ValueError(f"FiLM: bad sizes n_views={n_views} channels={channels} "
                             f"n_categories={n_categories} hidden={hidden}")
        self.n_views, self.channels, self.n_categories = n_views, channels, n_categories
        self.mlp = nn.Sequential(nn.Linear(2 * n_views + n_categories, hidden), nn.GELU(),
                                 nn.Linear(hidden, 2 * channels))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def code(self, src: torch.Tensor, tgt: torch.Tensor, category: torch.Tensor | None = None) -> torch.Tensor:
        """(P, 2N [+K]) float one-hot codes ``[v_s; v_t; c]`` of P pairs given as (P,) int64 indices."""
        if src.shape != tgt.shape or src.ndim != 1:
            raise ValueError(f"FiLM: src and tgt must be equal (P,) index tensors, got {tuple(src.shape)} "
                             f"and {tuple(tgt.shape)}")
        parts = [nn.functional.one_hot(src, self.n_views), nn.functional.one_hot(tgt, self.n_views)]
        if self.n_categories:
            if category is None:
                raise ValueError("FiLM: this multi-class modulator needs a category index per pair")
            parts.append(nn.functional.one_hot(category.expand_as(src), self.n_categories))
        return torch.cat(parts, dim=1).to(self.mlp[0].weight.dtype)

    def params(self, src: torch.Tensor, tgt: torch.Tensor,
               category: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """gamma, beta: (P, C) each, for P pairs of (P,) int64 source / target (/ category) indices."""
        delta, beta = self.mlp(self.code(src, tgt, category)).chunk(2, dim=1)
        return 1.0 + delta, beta

    def forward(self, x: torch.Tensor, src: torch.Tensor, tgt: torch.Tensor,
                category: torch.Tensor | None = None) -> torch.Tensor:
        """Modulate x: (P, T, C) source tokens of P pairs -> (P, T, C) ``gamma * x + beta``."""
        gamma, beta = self.params(src, tgt, category)
        return torch.addcmul(beta[:, None, :], x, gamma[:, None, :])
