"""Frozen features of a sample's views: both encoders, one preprocessing, computed once and cached.

The cache key is the sample's identity plus everything that changes the features (encoder weights' hashes,
layers, input size), so a cached file is never reused for other encoders or sizes. Cache files are safetensors
written atomically.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mv3dad.data.scene import Sample
from mv3dad.encoders import (DEFAULT_DEPTH_ENCODER, DEFAULT_IMAGE_ENCODER, Encoder, EncoderError, build_encoder,
                             check_token_grids, list_encoders, load_encoder, token_validity)
from mv3dad.mapping.fit import FeatureSet


@dataclass
class EncoderConfig:
    """Which frozen encoders produce the features, and at what input size.

    Attributes:
        image_encoder: registry or timm name (e.g. ``dinov2_vitb14_reg``), or a directory written by
            ``mv3dad pretrain-image`` / :func:`mv3dad.encoders.save_encoder`.
        image_weights: local weights file for a named image encoder (.safetensors, or .pth read with
            ``weights_only=True``); None = timm's hub path (or its cache).
        depth_encoder: directory written by ``mv3dad pretrain-depth`` (DINO-Depth ViT-S/14), or a registry name
            (e.g. ``patch14``, the non-learned reference encoder); None needs ``random_init``.
        random_init: allow randomly initialised encoders where no weights are given (tests and ablations only).
        image_size: side of the square network input in pixels (a multiple of 14); 896 in the paper.
        image_layers: keep the first l blocks of the image encoder (None = all).
        depth_layers: keep the first l blocks of the depth encoder (None = all).
        min_valid_fraction: a token is foreground when at least this fraction of its pixels has depth.
        batch_size: views per encoder forward pass.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``.
    """

    image_encoder: str = DEFAULT_IMAGE_ENCODER
    image_weights: str | None = None
    depth_encoder: str | None = None
    random_init: bool = False
    image_size: int = 224
    image_layers: int | None = None
    depth_layers: int | None = None
    min_valid_fraction: float = 0.5
    batch_size: int = 8
    device: str = "auto"


def _device(name: str) -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else
                        ("cpu" if name == "auto" else name))


def load_encoders(cfg: EncoderConfig) -> tuple[Encoder, Encoder]:
    """Build the (image, depth) encoders of ``cfg``; a missing weight is an error unless ``random_init``."""
    dev = _device(cfg.device)
    if Path(cfg.image_encoder).is_dir():
        img = load_encoder(cfg.image_encoder, layers=cfg.image_layers)
    else:
        img = build_encoder(cfg.image_encoder, weights=cfg.image_weights,
                            pretrained=not (cfg.random_init and cfg.image_weights is None),
                            modality="image", layers=cfg.image_layers, img_size=cfg.image_size)
    if cfg.depth_encoder in list_encoders():  # a name, e.g. the non-learned ``patch14``
        dep = build_encoder(cfg.depth_encoder, pretrained=not cfg.random_init, modality="depth",
                            layers=cfg.depth_layers, img_size=cfg.image_size)
    elif cfg.depth_encoder is not None:
        dep = load_encoder(cfg.depth_encoder, layers=cfg.depth_layers)
    elif cfg.random_init:
        dep = build_encoder(DEFAULT_DEPTH_ENCODER, pretrained=False, layers=cfg.depth_layers,
                            img_size=cfg.image_size)
    else:
        raise EncoderError("no depth encoder: pass --depth-encoder DIR (written by `mv3dad pretrain-depth`), "
                           "or --random-init to allow an untrained one (tests and ablations only)")
    if img.modality != "image" or dep.modality != "depth":
        raise EncoderError(f"expected an image and a depth encoder, got {img.modality!r} and {dep.modality!r}")
    if cfg.image_size % img.patch_size or img.patch_size != dep.patch_size:
        raise EncoderError(f"image size {cfg.image_size} must be a multiple of both patch sizes "
                           f"({img.patch_size}, {dep.patch_size}), and the patch sizes must agree")
    return img.to(dev), dep.to(dev)


def encoder_identity(enc: Encoder) -> dict:
    """What identifies an encoder's features: architecture, weights' hash (or source), layers."""
    m = enc.meta
    return {"arch": m.get("arch"), "modality": enc.modality, "layers": enc.layers,
            "weights": m.get("weights_sha256") or m.get("weights_source"), "embed_dim": enc.embed_dim}


class FeatureExtractor:
    """Computes (and caches) the features of samples with a fixed pair of encoders.

    Args:
        img_enc, dep_enc: the frozen encoders.
        cfg: their config (input size, token validity threshold, batch size).
        cache_dir: where to keep features on disk (None: in memory only for this object's lifetime).
    """

    def __init__(self, img_enc: Encoder, dep_enc: Encoder, cfg: EncoderConfig, cache_dir: str | Path | None = None):
        self.img_enc, self.dep_enc, self.cfg = img_enc, dep_enc, cfg
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        ident = {"image": encoder_identity(img_enc), "depth": encoder_identity(dep_enc),
                 "size": cfg.image_size, "min_valid": cfg.min_valid_fraction}
        self.identity = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
        self._memory: dict[str, FeatureSet] = {}

    def _key(self, sample: Sample, split: str) -> str:
        """Names the sample and its content (a hash of every view's pixels), so that another dataset with the same
        instance names never reuses these features."""
        h = hashlib.sha256()
        for v in sample.views:
            h.update(np.ascontiguousarray(v.image).tobytes())
            h.update(np.ascontiguousarray(v.depth).tobytes())
        return f"{sample.category}__{split}__{sample.instance_id}__{h.hexdigest()[:12]}__{self.identity}"

    def __call__(self, sample: Sample, split: str = "test") -> FeatureSet:
        key = self._key(sample, split)
        if key in self._memory:
            return self._memory[key]
        feats = self._read(key)
        if feats is None:
            feats = self.compute(sample)
            self._write(key, feats)
        feats.category = sample.category
        if self.cache_dir is None:
            self._memory[key] = feats
        return feats

    @torch.no_grad()
    def compute(self, sample: Sample) -> FeatureSet:
        """Run both encoders on every view of ``sample`` (no cache)."""
        size, bs = self.cfg.image_size, self.cfg.batch_size
        x_img = self.img_enc.preprocess([v.image for v in sample.views], size)
        x_dep = self.dep_enc.preprocess([v.depth for v in sample.views], size)
        f_img = self.img_enc.features(x_img, batch_size=bs)
        f_dep = self.dep_enc.features(x_dep, batch_size=bs)
        check_token_grids(f_img, f_dep)
        valid = token_validity(x_dep, self.dep_enc.patch_size, self.cfg.min_valid_fraction)
        for name, f in (("image", f_img), ("depth", f_dep)):
            if not torch.isfinite(f).all():
                raise EncoderError(f"{sample.category}/{sample.instance_id}: NaN/inf in the {name} features")
        return FeatureSet(f_img.cpu(), f_dep.cpu(), valid.cpu(), sample.category)

    def _read(self, key: str) -> FeatureSet | None:
        if self.cache_dir is None:
            return None
        path = self.cache_dir / f"{key}.safetensors"
        if not path.is_file():
            return None
        from safetensors.torch import load_file

        try:
            t = load_file(str(path))
            return FeatureSet(t["img"], t["dep"], t["valid"].bool())
        except Exception:  # a corrupt cache entry is recomputed, never trusted
            return None

    def _write(self, key: str, feats: FeatureSet) -> None:
        if self.cache_dir is None:
            return
        from safetensors.torch import save_file

        from mv3dad.export.atomic import atomic_file

        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with atomic_file(self.cache_dir / f"{key}.safetensors") as tmp:
            save_file({"img": feats.img.contiguous(), "dep": feats.dep.contiguous(),
                       "valid": feats.valid.to(torch.uint8).contiguous()}, str(tmp))
