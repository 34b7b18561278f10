"""DINOv2-style self-supervised pretraining of ViT encoders (DINO-Depth, image encoders)."""

from mv3dad.pretrain.config import PretrainConfig

__all__ = ["PretrainConfig", "pretrain"]


def pretrain(*args, **kwargs):
    """See :func:`mv3dad.pretrain.trainer.pretrain` (imported lazily: torch, timm and lightly are heavy)."""
    from mv3dad.pretrain.trainer import pretrain as _pretrain

    return _pretrain(*args, **kwargs)
