"""Frozen features of a sample's views: both encoders, one preprocessing, computed once and cached.

The cache key is the sample's identity plus everything that changes the features (encoder weights' hashes,
layers, input sizes, preprocessing, bf16), so a cached file is never reused for other encoders or sizes. Cache
files are safetensors written atomically.

Token grid: the image encoder's, ``image_size / p_image`` tokens a side. A depth encoder with another patch size
(e.g. the ViT-S/16 ``dinov3_depth_vits16`` beside the ViT-B/14 image encoder) gets the input side that gives the
same grid, ``grid x p_depth`` (896 px image -> 64 x 64 tokens, 1024 px depth -> 64 x 64), so both token maps cover
the same padded square cell for cell; ``pair_grids="resample"`` instead feeds it ``image_size`` and resamples its
token map bilinearly onto the image grid (measured in ``docs/encoders.md``). Either way the features end up on a
square grid over the padded square, so :class:`mv3dad.encoders.SquareFit` with ``image_size`` brings them back
to the view's pixels.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mv3dad.data.scene import Sample
import torch.nn.functional as F

from mv3dad.encoders import (DEFAULT_DEPTH_ENCODER, DEFAULT_IMAGE_ENCODER, PRECISIONS, PREPROCESS_MODES, Encoder,
                             EncoderError, build_encoder, check_token_grids, depth_validity_input, list_encoders,
                             load_encoder, set_precision, token_validity)
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
        image_size: side of the square network input of the image encoder in pixels (a multiple of its patch
            size); 896 in the paper. The token grid is ``image_size / p_image`` a side; a depth encoder with
            another patch size p_depth gets ``grid x p_depth`` pixels (see ``pair_grids``).
        image_layers: keep the first l blocks of the image encoder (None = all).
        depth_layers: keep the first l blocks of the depth encoder (None = all).
        min_valid_fraction: a token is foreground when at least this fraction of its pixels has depth.
        batch_size: views per encoder forward pass.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``.
        preprocess: ``"default"`` (ImageNet-normalised RGB; per-view percentile depth scaling, 0 = no
            measurement) or ``"modmap"`` (the ModMap authors': gray image, edge pad, bicubic, divided by the max,
            mean 0.445 / std 0.269; depth edge-padded, nearest, divided by the max); see ``docs/encoders.md``.
        precision: ``"auto"``: the learned encoders run under bf16 autocast where the device computes bf16
            natively (CPUs with ``avx512_bf16``/``amx_bf16``, CUDA GPUs with bf16) and a quick agreement check at
            load passes (patch-token cosine to fp32 >= 0.999 on a fixed small random input); ``"fp32"``: never;
            ``"bf16"``: always. Non-learned encoders (``patch14``, ``geometric``, ``texture``) stay fp32. The
            effective precision is part of the encoders' identity (bf16 features never mix with fp32 ones).
        pair_grids: how encoders with different patch sizes reach one token grid: ``"size"`` (each encoder's
            input side = grid x its patch size; default) or ``"resample"`` (both at ``image_size``, the depth
            token map resampled bilinearly to the image grid). No effect when the patch sizes agree.
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
    preprocess: str = "default"
    precision: str = "auto"
    pair_grids: str = "size"

    def __post_init__(self) -> None:
        if self.preprocess not in PREPROCESS_MODES:
            raise ValueError(f"preprocess must be one of {PREPROCESS_MODES}, got {self.preprocess!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.pair_grids not in PAIR_GRIDS:
            raise ValueError(f"pair_grids must be one of {PAIR_GRIDS}, got {self.pair_grids!r}")

    @classmethod
    def from_record(cls, rec: dict) -> "EncoderConfig":
        """The config stored in a run (``run.json``'s ``encoders_config``); a run written before ``precision``
        existed computed its features in fp32 on CPU, so a missing ``precision`` reads as ``"fp32"``."""
        return cls(**{"precision": "fp32", **rec})


PAIR_GRIDS = ("size", "resample")


def _device(name: str) -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else
                        ("cpu" if name == "auto" else name))


def load_encoders(cfg: EncoderConfig) -> tuple[Encoder, Encoder]:
    """Build the (image, depth) encoders of ``cfg`` on its device, with its precision (``set_precision``: the bf16
    agreement check runs here, once per load); a missing weight is an error unless ``random_init``."""
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
    if cfg.image_size % img.patch_size:
        raise EncoderError(f"image size {cfg.image_size} must be a multiple of the image encoder's patch size "
                           f"{img.patch_size}")
    if cfg.pair_grids == "resample" and cfg.image_size % dep.patch_size:
        raise EncoderError(f"pair_grids='resample' feeds the depth encoder image size {cfg.image_size}, which must "
                           f"be a multiple of its patch size {dep.patch_size}")
    img, dep = img.to(dev), dep.to(dev)
    set_precision(img, cfg.precision)
    set_precision(dep, cfg.precision)
    return img, dep


def input_sizes(cfg: EncoderConfig, img: Encoder, dep: Encoder) -> tuple[int, int, int]:
    """(image input side, depth input side, token grid side) of ``cfg`` for this pair of encoders."""
    grid = cfg.image_size // img.patch_size
    if dep.patch_size == img.patch_size or cfg.pair_grids == "resample":
        return cfg.image_size, cfg.image_size, grid
    return cfg.image_size, grid * dep.patch_size, grid


def encoder_identity(enc: Encoder) -> dict:
    """What identifies an encoder's features: architecture, weights' hash (or source), layers, and
    ``"precision": "bf16"`` when it runs in bf16 (absent for fp32, so runs and caches written before bf16 existed
    keep their identity)."""
    m = enc.meta
    ident = {"arch": m.get("arch"), "modality": enc.modality, "layers": enc.layers,
             "weights": m.get("weights_sha256") or m.get("weights_source"), "embed_dim": enc.embed_dim}
    if enc.effective_precision() == "bf16":
        ident["precision"] = "bf16"
    return ident


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
        self.sizes = input_sizes(cfg, img_enc, dep_enc)
        ident = {"image": encoder_identity(img_enc), "depth": encoder_identity(dep_enc),
                 "size": cfg.image_size, "min_valid": cfg.min_valid_fraction}
        if self.sizes[1] != cfg.image_size:  # only where it differs: older caches keep their key
            ident["depth_size"] = self.sizes[1]
        if img_enc.patch_size != dep_enc.patch_size and cfg.pair_grids != "size":
            ident["pair_grids"] = cfg.pair_grids
        if cfg.preprocess != "default":
            ident["preprocess"] = cfg.preprocess
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
        """Run both encoders on every view of ``sample`` (no cache): features on the image encoder's token grid,
        token validity on that same grid (from the measured pixels the depth encoder saw)."""
        (s_img, s_dep, grid), bs, mode = self.sizes, self.cfg.batch_size, self.cfg.preprocess
        x_img = self.img_enc.preprocess([v.image for v in sample.views], s_img, mode)
        x_dep = self.dep_enc.preprocess([v.depth for v in sample.views], s_dep, mode)
        f_img = self.img_enc.features(x_img, batch_size=bs)
        f_dep = self.dep_enc.features(x_dep, batch_size=bs)
        if f_dep.shape[-2:] != f_img.shape[-2:]:  # pair_grids="resample": depth tokens onto the image grid
            f_dep = F.interpolate(f_dep, size=f_img.shape[-2:], mode="bilinear", align_corners=False)
        check_token_grids(f_img, f_dep)
        if mode == "default":  # 0 = no measurement in the network input itself
            mask = (x_dep > 0).float()
        else:
            mask = torch.stack([depth_validity_input(v.depth, s_dep) for v in sample.views])
        valid = token_validity(mask, self.dep_enc.patch_size, self.cfg.min_valid_fraction, grid=grid)
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

        from mv3dad.io import atomic_file

        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with atomic_file(self.cache_dir / f"{key}.safetensors") as tmp:
            save_file({"img": feats.img.contiguous(), "dep": feats.dep.contiguous(),
                       "valid": feats.valid.to(torch.uint8).contiguous()}, str(tmp))
