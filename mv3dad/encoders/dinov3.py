"""A DINOv3-style ViT with rotary position embeddings (RoPE): the architecture of ModMap's DINO-Depth.

The authors trained their depth encoder with a modified DINOv3 code base: a ViT-S (384 wide, 12 blocks, 6 heads),
patch 16, one input channel, RoPE (base 100, patch-centre coordinates normalised separately per axis to
[-1, 1]), a CLS token and no register ("storage") tokens, LayerScale initialised at 1e-5, a qkv projection
with a full bias (the key bias is not masked: under RoPE it changes the scores), LayerNorm with eps 1e-6 and a
final norm whose patch tokens are the features.

This is the project's own module (timm 1.0.x's Eva/DINOv3 models split the qkv bias, drop the key bias and use
LayerNorm eps 1e-5, so they do not reproduce such a checkpoint). Parameter names follow the DINOv3 layout
(``cls_token``, ``mask_token``, ``patch_embed.proj``, ``rope_embed.periods``, ``blocks.i.{norm1, attn.qkv,
attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}``, ``norm``), so the backbone of a DINOv3 teacher
checkpoint loads into it key for key (see :mod:`mv3dad.encoders.release`).

The module offers the parts of timm's ViT interface that :class:`mv3dad.encoders.vit.Encoder` and the
pretraining code use: ``patch_embed.proj``/``patch_embed.patch_size``, ``embed_dim``, ``blocks``,
``num_prefix_tokens``, ``forward_features``, ``forward_intermediates`` and ``prune_intermediate_layers``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

ARCH_NAME = "dinov3_depth_vits16"
# DINOv3's ``student.arch`` names -> (embed_dim, depth, num_heads).
VIT_SIZES = {"vit_small": (384, 12, 6), "vit_base": (768, 12, 12), "vit_large": (1024, 24, 16)}


@dataclass(frozen=True)
class DinoV3Config:
    """Architecture of a DINOv3-style ViT (defaults: ModMap's DINO-Depth ViT-S/16).

    Attributes:
        embed_dim: token width.
        depth: number of transformer blocks.
        num_heads: attention heads (head width = embed_dim / num_heads, a multiple of 4 for RoPE).
        patch_size: patch side in pixels.
        in_chans: input channels (1 for depth).
        mlp_ratio: hidden width of the MLP relative to embed_dim.
        layer_scale_init: initial LayerScale (None: no LayerScale).
        rope_base: RoPE period base.
        rope_normalize_coords: ``"separate"`` (each axis to [-1, 1] by its own length), ``"min"`` or ``"max"``
            (both axes by the shorter / longer side).
        norm_eps: LayerNorm epsilon.
        qkv_bias: bias of the qkv projection (all of q, k and v).
        img_size: nominal input side (only recorded; any multiple of ``patch_size`` works).
    """

    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    patch_size: int = 16
    in_chans: int = 1
    mlp_ratio: float = 4.0
    layer_scale_init: float | None = 1e-5
    rope_base: float = 100.0
    rope_normalize_coords: Literal["separate", "min", "max"] = "separate"
    norm_eps: float = 1e-6
    qkv_bias: bool = True
    img_size: int = 224

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads or (self.embed_dim // self.num_heads) % 4:
            raise ValueError(f"embed_dim {self.embed_dim} / num_heads {self.num_heads} must be a multiple of 4")
        if self.rope_normalize_coords not in ("separate", "min", "max"):
            raise ValueError(f"rope_normalize_coords must be 'separate', 'min' or 'max', "
                             f"got {self.rope_normalize_coords!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens (B, h, w, D) through a strided convolution ``proj``."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = (patch_size, patch_size)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # (B, h, w, D)


class RopePositionEmbedding(nn.Module):
    """Axial 2-D RoPE: sin/cos (h*w, head_dim) of the patch centres' coordinates.

    ``periods`` (head_dim / 4,) = base ** (2 i / (head_dim / 2)); the angle of axis a for frequency i is
    2 pi c_a / periods[i], with c_a the patch centre normalised to [-1, 1]. The angles of the two axes are
    concatenated (head_dim / 2) and repeated twice (head_dim), to match :func:`rope_apply`'s half rotation.
    """

    def __init__(self, head_dim: int, base: float = 100.0, normalize_coords: str = "separate") -> None:
        super().__init__()
        self.head_dim, self.base, self.normalize_coords = head_dim, float(base), normalize_coords
        self.register_buffer("periods", self.default_periods(head_dim, base), persistent=True)

    @staticmethod
    def default_periods(head_dim: int, base: float) -> torch.Tensor:
        n = head_dim // 4
        return float(base) ** (2 * torch.arange(n, dtype=torch.float32) / (head_dim // 2))

    def reset_periods(self) -> None:
        with torch.no_grad():
            self.periods.copy_(self.default_periods(self.head_dim, self.base))

    def forward(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        dev = self.periods.device
        if self.normalize_coords == "separate":
            dh, dw = float(h), float(w)
        elif self.normalize_coords == "max":
            dh = dw = float(max(h, w))
        else:
            dh = dw = float(min(h, w))
        ch = torch.arange(0.5, h, device=dev, dtype=torch.float32) / dh
        cw = torch.arange(0.5, w, device=dev, dtype=torch.float32) / dw
        coords = torch.stack(torch.meshgrid(ch, cw, indexing="ij"), dim=-1).flatten(0, 1)  # (hw, 2) in [0, 1]
        coords = 2.0 * coords - 1.0
        angles = 2 * math.pi * coords[:, :, None] / self.periods.float()[None, None, :]  # (hw, 2, head_dim/4)
        angles = angles.flatten(1).tile(2)  # (hw, head_dim)
        return torch.sin(angles), torch.cos(angles)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope_apply(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """Rotate (..., T, head_dim) by the angles whose sin/cos are (T, head_dim)."""
    return x * cos + _rotate_half(x) * sin


class Attention(nn.Module):
    """Multi-head self-attention with RoPE on the patch tokens (prefix tokens are not rotated)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                n_prefix: int = 1) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, H, N, hd)
        if rope is not None:
            sin, cos = (t.to(q.dtype) for t in rope)
            q = torch.cat([q[:, :, :n_prefix], rope_apply(q[:, :, n_prefix:], sin, cos)], dim=2)
            k = torch.cat([k[:, :, :n_prefix], rope_apply(k[:, :, n_prefix:], sin, cos)], dim=2)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - p)
    return x * keep / (1 - p)


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1 x)), then x + ls2(mlp(norm2 x)); stochastic depth."""

    def __init__(self, cfg: DinoV3Config, drop_path: float = 0.0) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.attn = Attention(d, cfg.num_heads, cfg.qkv_bias)
        self.ls1 = LayerScale(d, cfg.layer_scale_init) if cfg.layer_scale_init else nn.Identity()
        self.norm2 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.mlp = Mlp(d, int(d * cfg.mlp_ratio))
        self.ls2 = LayerScale(d, cfg.layer_scale_init) if cfg.layer_scale_init else nn.Identity()
        self.drop_path = float(drop_path)

    def forward(self, x: torch.Tensor, rope=None, n_prefix: int = 1) -> torch.Tensor:
        x = x + _drop_path(self.ls1(self.attn(self.norm1(x), rope, n_prefix)), self.drop_path, self.training)
        return x + _drop_path(self.ls2(self.mlp(self.norm2(x))), self.drop_path, self.training)


class DinoV3ViT(nn.Module):
    """The DINOv3-style ViT (see the module docstring). Tokens: [CLS, patches...]; no registers."""

    num_prefix_tokens = 1
    has_class_token = True

    def __init__(self, cfg: DinoV3Config = DinoV3Config(), drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_dim = self.num_features = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.in_chans, cfg.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, cfg.embed_dim))
        self.rope_embed = RopePositionEmbedding(cfg.embed_dim // cfg.num_heads, cfg.rope_base,
                                                cfg.rope_normalize_coords)
        # stochastic depth: the same rate in every block (DINOv3's uniform drop path)
        self.blocks = nn.ModuleList(Block(cfg, drop_path_rate) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.init_weights()

    def init_weights(self) -> None:
        """Truncated-normal (std 0.02) linear weights, zero biases, unit norms, LayerScale at its init value."""
        nn.init.normal_(self.cls_token, std=1e-6)
        nn.init.zeros_(self.mask_token)
        self.rope_embed.reset_periods()
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.patch_embed.proj.weight
        k = 1.0 / math.sqrt(w[0].numel())
        nn.init.uniform_(w, -k, k)
        nn.init.uniform_(self.patch_embed.proj.bias, -k, k)

    # -- the pieces (also used by the maskable pretraining wrapper) ----------------------------------------------
    def tokens(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patch tokens with the CLS token prepended: (B, 1 + h*w, D), and the grid (h, w).

        ``mask`` (B, h*w) bool replaces those patch tokens by the mask token (iBOT).
        """
        p = self.cfg.patch_size
        if x.shape[-2] % p or x.shape[-1] % p:
            raise ValueError(f"input size {tuple(x.shape[-2:])} is not a multiple of the patch size {p}")
        t = self.patch_embed(x)
        b, h, w, d = t.shape
        t = t.reshape(b, h * w, d)
        if mask is not None:
            t = torch.where(mask[..., None], self.mask_token.to(t.dtype)[None], t)
        return torch.cat([self.cls_token.expand(b, -1, -1).to(t.dtype), t], dim=1), (h, w)

    def run_blocks(self, x: torch.Tensor, grid: tuple[int, int], n_blocks: int | None = None,
                   collect: Sequence[int] = ()) -> tuple[torch.Tensor, list[torch.Tensor]]:
        rope = self.rope_embed(*grid)
        out = []
        for i, blk in enumerate(self.blocks[:n_blocks] if n_blocks is not None else self.blocks):
            x = blk(x, rope, self.num_prefix_tokens)
            if i in collect:
                out.append(x)
        return x, out

    def forward_tokens(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Normed tokens (B, 1 + h*w, D) after all blocks."""
        t, grid = self.tokens(x, mask)
        t, _ = self.run_blocks(t, grid)
        return self.norm(t)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Final-norm patch tokens as a map (B, D, h, w)."""
        t, grid = self.tokens(x)
        t, _ = self.run_blocks(t, grid)
        return self._to_map(self.norm(t), grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The normed CLS token (B, D)."""
        return self.forward_tokens(x)[:, 0]

    def _to_map(self, t: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        b, _, d = t.shape
        return t[:, self.num_prefix_tokens:].reshape(b, *grid, d).permute(0, 3, 1, 2).contiguous()

    # -- timm-compatible interface used by Encoder -------------------------------------------------------------
    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
                              output_fmt: str = "NCHW", intermediates_only: bool = False, **_):
        """timm-style: the outputs of blocks ``indices`` (an int n: the last n), optionally normed, NCHW maps."""
        n = len(self.blocks)
        if indices is None:
            idx = list(range(n))
        elif isinstance(indices, int):
            idx = list(range(n - indices, n))
        else:
            idx = [i % n for i in indices]
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
        t, grid = self.tokens(x)
        last, inter = self.run_blocks(t, grid, max(idx) + 1 if intermediates_only else None, set(idx))
        inter = [self.norm(y) if norm else y for y in inter]
        inter = [self._to_map(y, grid) if output_fmt == "NCHW" else y[:, self.num_prefix_tokens:] for y in inter]
        if intermediates_only:
            return inter
        return self.norm(last), inter

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Keep the blocks up to the largest of ``indices`` (timm semantics); the final norm is kept."""
        n = len(self.blocks)
        idx = list(range(n - indices, n)) if isinstance(indices, int) else [i % n for i in indices]
        keep = max(idx) + 1
        self.blocks = self.blocks[:keep]
        if prune_norm:
            self.norm = nn.Identity()
        return idx


class MaskedDinoV3(nn.Module):
    """The pretraining wrapper: ``encode(images, mask)`` -> normed tokens (B, 1 + h*w, D); ``vit`` is exported.

    ``mask`` is (B, 1 + h*w) bool over the whole sequence as lightly's masked ViT takes it (the CLS column is
    ignored), or (B, h*w) over the patches.
    """

    def __init__(self, vit: DinoV3ViT) -> None:
        super().__init__()
        self.vit = vit

    def encode(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None and mask.shape[1] != images.shape[-2] // self.vit.cfg.patch_size * (
                images.shape[-1] // self.vit.cfg.patch_size):
            mask = mask[:, self.vit.num_prefix_tokens:]
        return self.vit.forward_tokens(images, mask)


def create_dinov3(img_size: int = 224, drop_path_rate: float = 0.0, **overrides) -> DinoV3ViT:
    """The DINOv3-style ViT; ``overrides`` are :class:`DinoV3Config` fields. Unknown timm-only keyword arguments
    (``dynamic_img_size``, ``num_classes``, ``img_size``) are accepted and ignored; ``depth``, ``embed_dim``,
    ``num_heads``, ``in_chans`` and ``init_values`` (LayerScale) are mapped as timm names them."""
    overrides = dict(overrides)
    for k in ("dynamic_img_size", "num_classes", "img_size", "global_pool"):
        overrides.pop(k, None)
    if "init_values" in overrides:
        overrides["layer_scale_init"] = overrides.pop("init_values")
    fields = set(DinoV3Config.__dataclass_fields__)
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown DINOv3 ViT options {unknown}; known: {sorted(fields)}")
    return DinoV3ViT(DinoV3Config(img_size=int(img_size), **overrides), drop_path_rate)


__all__ = ["ARCH_NAME", "VIT_SIZES", "DinoV3Config", "DinoV3ViT", "MaskedDinoV3", "RopePositionEmbedding",
           "create_dinov3", "rope_apply"]
