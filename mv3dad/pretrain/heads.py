"""The DINOv2 network: a maskable ViT backbone with a DINO (CLS) head and an iBOT (patch) head."""

from __future__ import annotations

import torch
import torch.nn as nn
from lightly.models.modules import DINOv2ProjectionHead, MaskedVisionTransformerTIMM

from mv3dad.encoders.vit import create_vit
from mv3dad.pretrain.config import PretrainConfig


class DinoNetwork(nn.Module):
    """Backbone + heads; the student and the EMA teacher are two copies.

    Attributes:
        backbone: lightly's ``MaskedVisionTransformerTIMM`` around a timm ViT (``backbone.vit`` is exported).
        dino_head: projection head of the CLS token, weight-normalised last layer with ``n_prototypes`` outputs.
        ibot_head: projection head of the patch tokens (same shape, separate weights as in DINOv2).
    """

    def __init__(self, cfg: PretrainConfig, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        vit = create_vit(cfg.arch, cfg.image_size, {**cfg.timm_kwargs(), "drop_path_rate": drop_path_rate})
        self.backbone = MaskedVisionTransformerTIMM(vit, weight_initialization="skip", pos_embed_initialization="skip")
        dim = vit.embed_dim
        kw = dict(input_dim=dim, hidden_dim=cfg.head_hidden_dim, bottleneck_dim=cfg.head_bottleneck_dim,
                  output_dim=cfg.n_prototypes)
        self.dino_head = DINOv2ProjectionHead(**kw)
        self.ibot_head = DINOv2ProjectionHead(**kw)

    @property
    def n_prefix(self) -> int:
        return int(self.backbone.vit.num_prefix_tokens)

    def last_layers(self) -> list[nn.Parameter]:
        """Parameters of the heads' weight-normalised last layers (frozen at the start of training)."""
        return [*self.dino_head.last_layer.parameters(), *self.ibot_head.last_layer.parameters()]

    def forward(self, global_crops: torch.Tensor, local_crops: torch.Tensor, masks: torch.Tensor | None,
                targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Student pass (or teacher pass with ``masks=None`` and no local crops).

        Args:
            global_crops: (2B, C, G, G).
            local_crops: (nB, C, L, L), possibly empty.
            masks: (2B, g, g) bool tokens replaced by the mask token (None: no masking).
            targets: (2B, g, g) bool tokens whose iBOT logits are returned.

        Returns:
            ``cls``: (2B, D) global CLS tokens; ``cls_logits``: (2B, K); ``local_logits``: (nB, K);
            ``patch_logits``: (targets.sum(), K).
        """
        seq_mask = None
        if masks is not None:
            prefix = masks.new_zeros(masks.shape[0], self.n_prefix)
            seq_mask = torch.cat([prefix, masks.flatten(1)], dim=1)
        tokens = self.backbone.encode(global_crops, mask=seq_mask)
        cls = tokens[:, 0]
        patches = tokens[:, self.n_prefix:]
        out = {"cls": cls, "cls_logits": self.dino_head(cls),
               "patch_logits": self.ibot_head(patches[targets.flatten(1)])}
        if local_crops.shape[0]:
            out["local_logits"] = self.dino_head(self.backbone.encode(local_crops)[:, 0])
        return out
