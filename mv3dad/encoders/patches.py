"""A non-learned reference encoder: every token is its own patch of pixels, centred.

``patch14`` needs no weights. Each token of a (B, C, H, W) input is the C x 14 x 14 block of pixels it covers,
minus the block's mean: the local pattern (shading, texture, or for depth the local shape) without the offset
(brightness, or the distance to the camera). It is the bar a learned encoder has to clear on a benchmark, and
a way to run the whole pipeline without any weights. It mimics the part of the timm ViT interface that
:class:`~mv3dad.encoders.vit.Encoder` uses, so it is wrapped like any other encoder.
"""

from __future__ import annotations

import torch
import torch.nn as nn

PATCH_ARCH = "patch14"


class _PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, patch: int) -> None:
        super().__init__()
        # output channel k copies pixel k of the patch (channel-major, then row, then column)
        self.proj = nn.Conv2d(in_chans, in_chans * patch * patch, patch, stride=patch, bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(in_chans * patch * patch).view(-1, in_chans, patch, patch))
        self.patch_size = (patch, patch)


class PatchTokens(nn.Module):
    """(B, C, H, W) -> (B, C*p*p, H/p, W/p) centred pixel patches; H and W multiples of p.

    Attributes:
        patch_embed: the fixed pixel-copying convolution (``patch_embed.proj``, ``patch_embed.patch_size``).
        blocks: a single identity block (the features are "block 1").
        embed_dim: C * p * p.
    """

    num_prefix_tokens = 0

    def __init__(self, in_chans: int, patch: int = 14) -> None:
        super().__init__()
        self.patch_embed = _PatchEmbed(in_chans, patch)
        self.blocks = nn.ModuleList([nn.Identity()])
        self.embed_dim = in_chans * patch * patch
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch_embed.proj(x)
        return t - t.mean(dim=1, keepdim=True)

    def forward_intermediates(self, x: torch.Tensor, indices=None, norm: bool = True, output_fmt: str = "NCHW",
                              intermediates_only: bool = True) -> list[torch.Tensor]:
        """The timm call :class:`Encoder` makes; returns ``[features]`` in NCHW."""
        if output_fmt != "NCHW" or not intermediates_only:
            raise ValueError("PatchTokens supports output_fmt='NCHW' with intermediates_only=True only")
        return [self(x)]
