"""Crossmodal mapping networks behind one interface, built by name (timm-style registry).

A mapper takes (modulated) source tokens of both modalities, ``x_img`` (M, C_I) and ``x_dep`` (M, C_D), and the
unit-normalised observed target tokens ``y_img``, ``y_dep``, and returns its per-token cosine-distance terms.
From those terms it gives a per-token training loss and the per-token (image, depth) anomaly scores.

- ``cfm`` (seed 001, CFM; seed 004 Supp. A.2): M_I->D and M_D->I, each three linear layers
  ``c_in -> h -> h -> c_out`` with GELU after the first two and ``h = (c_in + c_out) // 2``. For c_I = 768,
  c_D = 384 that is widths [768, 576, 384] for M_I->D (the paper's numbers) and [384, 576, 768] for M_D->I
  (the paper prints [1152, 576, 384] there, which matches no (c_in + c_out) / 2 rule; the authors' released
  FeatureMapping class builds ``c_in -> (c_in + c_out) // 2 -> (c_in + c_out) // 2 -> c_out`` for both).
  Loss ``(1 - cos)_{I->D} + (1 - cos)_{D->I}``; image score = distance of the image features predicted from
  depth to the observed image features, depth score analogous.
- ``lb3m`` (seed 000, CPIR Sec. 3.3-3.5): encoders image->latent, depth->latent and decoders latent->image,
  latent->depth, each a single-hidden-layer MLP (hidden = mean of its in and out widths), latent width
  ``(c_I + c_D) // 2``. Terms: cross-modal predictions i2d, d2i and intra-modal reconstructions i2i, d2d;
  loss ``L_pred + beta * L_recon``; the four distance maps are fused by their geometric mean, which is the
  score of both modalities (CPIR's Eq. 11 writes a square root of the product; the fourth root used here is a
  monotone function of it, so every ranking, min and max is the same, and it stays in distance units).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

_REGISTRY: dict[str, type["Mapper"]] = {}


def register_mapper(name: str) -> Callable[[type["Mapper"]], type["Mapper"]]:
    """Class decorator: make a :class:`Mapper` subclass buildable as ``build_mapper(name, ...)``."""
    def deco(cls: type["Mapper"]) -> type["Mapper"]:
        if name in _REGISTRY:
            raise ValueError(f"mapper {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return deco


def list_mappers() -> list[str]:
    """Names accepted by :func:`build_mapper`."""
    return sorted(_REGISTRY)


def build_mapper(name: str, c_img: int, c_dep: int, **kw) -> "Mapper":
    """Build the mapper registered as ``name`` for image / depth token widths ``c_img`` / ``c_dep``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown mapper {name!r}; known: {list_mappers()}")
    if c_img < 1 or c_dep < 1:
        raise ValueError(f"mapper {name!r}: channel counts must be positive, got c_img={c_img} c_dep={c_dep}")
    return _REGISTRY[name](c_img, c_dep, **kw)


def cosine_distance(pred: torch.Tensor, target_unit: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``1 - cos(pred, target)`` over the last dim; ``target_unit`` already L2-normalised and broadcastable
    against ``pred``. (..., C) -> (...)."""
    return 1.0 - torch.linalg.vecdot(pred, target_unit) / torch.linalg.vector_norm(pred, dim=-1).clamp_min(eps)


def mlp(widths: list[int]) -> nn.Sequential:
    """Linear layers through ``widths`` with GELU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        if i:
            layers.append(nn.GELU())
        layers.append(nn.Linear(a, b))
    return nn.Sequential(*layers)


class Mapper(nn.Module):
    """Interface of a crossmodal mapper (see the module docstring). Subclasses set ``term_names``."""

    name: str = ""
    term_names: tuple[str, ...] = ()

    def __init__(self, c_img: int, c_dep: int) -> None:
        super().__init__()
        self.c_img, self.c_dep = c_img, c_dep

    def hparams(self) -> dict:
        """Keyword arguments that rebuild this mapper with :func:`build_mapper` (besides c_img, c_dep)."""
        raise NotImplementedError

    def terms(self, x_img: torch.Tensor, x_dep: torch.Tensor, y_img: torch.Tensor,
              y_dep: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-token cosine distances, name -> (M,), from sources (M, C_I), (M, C_D) and unit targets."""
        raise NotImplementedError

    def loss_rows(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """(M,) per-token training loss."""
        raise NotImplementedError

    def score_rows(self, terms: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(M,) image and (M,) depth anomaly scores of each token."""
        raise NotImplementedError


@register_mapper("cfm")
class CFMMapper(Mapper):
    """CFM's two crossmodal MLPs, image -> depth and depth -> image.

    Args:
        c_img, c_dep: token widths.
        hidden: hidden width of both MLPs; None = ``(c_in + c_out) // 2`` (the same for both directions).
    """

    term_names = ("i2d", "d2i")

    def __init__(self, c_img: int, c_dep: int, hidden: int | None = None) -> None:
        super().__init__(c_img, c_dep)
        self.hidden = hidden or (c_img + c_dep) // 2
        self.img_to_dep = mlp([c_img, self.hidden, self.hidden, c_dep])
        self.dep_to_img = mlp([c_dep, self.hidden, self.hidden, c_img])

    def hparams(self) -> dict:
        return {"hidden": self.hidden}

    def terms(self, x_img, x_dep, y_img, y_dep):
        return {"i2d": cosine_distance(self.img_to_dep(x_img), y_dep),
                "d2i": cosine_distance(self.dep_to_img(x_dep), y_img)}

    def loss_rows(self, terms):
        return terms["i2d"] + terms["d2i"]

    def score_rows(self, terms):
        return terms["d2i"], terms["i2d"]


@register_mapper("lb3m")
class LB3MMapper(Mapper):
    """CPIR's latent-bridged module: two encoders into a shared latent space and two decoders out of it.

    Args:
        c_img, c_dep: token widths.
        latent: latent width; None = ``(c_img + c_dep) // 2``.
        recon_weight: beta in ``L = L_pred + beta * L_recon`` (CPIR does not state its value; 1 by default).
    """

    term_names = ("i2d", "d2i", "i2i", "d2d")

    def __init__(self, c_img: int, c_dep: int, latent: int | None = None, recon_weight: float = 1.0) -> None:
        super().__init__(c_img, c_dep)
        self.latent = latent or (c_img + c_dep) // 2
        self.recon_weight = float(recon_weight)
        L = self.latent
        self.enc_img = mlp([c_img, (c_img + L) // 2, L])
        self.enc_dep = mlp([c_dep, (c_dep + L) // 2, L])
        self.dec_img = mlp([L, (L + c_img) // 2, c_img])
        self.dec_dep = mlp([L, (L + c_dep) // 2, c_dep])

    def hparams(self) -> dict:
        return {"latent": self.latent, "recon_weight": self.recon_weight}

    def terms(self, x_img, x_dep, y_img, y_dep):
        m = x_img.shape[0]
        z = torch.cat([self.enc_img(x_img), self.enc_dep(x_dep)])  # one matmul per decoder for both latents
        img = self.dec_img(z)  # [i2i; d2i]
        dep = self.dec_dep(z)  # [i2d; d2d]
        return {"i2d": cosine_distance(dep[:m], y_dep), "d2i": cosine_distance(img[m:], y_img),
                "i2i": cosine_distance(img[:m], y_img), "d2d": cosine_distance(dep[m:], y_dep)}

    def loss_rows(self, terms):
        return terms["i2d"] + terms["d2i"] + self.recon_weight * (terms["i2i"] + terms["d2d"])

    def score_rows(self, terms):
        g = geometric_mean([terms[k] for k in self.term_names])
        return g, g


def geometric_mean(maps: list[torch.Tensor]) -> torch.Tensor:
    """Element-wise geometric mean of equally shaped non-negative maps (tiny negatives from rounding -> 0)."""
    prod = maps[0].clamp_min(0)
    for m in maps[1:]:
        prod = prod * m.clamp_min(0)
    return prod.pow(1.0 / len(maps))
