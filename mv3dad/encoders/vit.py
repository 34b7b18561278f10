"""Frozen ViT feature extractors: a timm-backed factory/registry and the :class:`Encoder` interface.

Every encoder maps a preprocessed batch (B, C_in, H, W), H and W multiples of the patch size p (14), to
pixel-aligned patch-token maps (B, C, H/p, W/p). Layer pruning keeps the first ``layers`` blocks only (features of
block ``layers``, after the final norm), as CFM's Sec. 3.4.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn as nn

from mv3dad.encoders.patches import PATCH_ARCH, PatchTokens
from mv3dad.encoders.preprocess import (IMAGENET_MEAN, IMAGENET_STD, DepthScaling, check_preprocess, preprocess_depth,
                                        preprocess_depth_modmap, preprocess_image, preprocess_image_modmap)
from mv3dad.io.read import sha256_file

Modality = Literal["image", "depth"]

DEFAULT_IMAGE_ENCODER = "dinov2_vitb14_reg"
DEFAULT_DEPTH_ENCODER = "dino_depth_vits14"
WEIGHTS_FILE = "encoder.safetensors"
CONFIG_FILE = "encoder.json"
PRECISIONS = ("auto", "fp32", "bf16")
BF16_MIN_COSINE = 0.999  # ``auto`` keeps bf16 when the patch tokens' mean cosine to fp32 reaches this


class EncoderError(RuntimeError):
    """An encoder cannot be built, loaded or applied; the message says why and what to do."""


@dataclass(frozen=True)
class EncoderSpec:
    """A named encoder in the registry.

    Attributes:
        arch: timm model name, optionally with a pretrained tag (``name.tag``).
        modality: ``"image"`` (3 channels) or ``"depth"`` (1 channel).
        timm_kwargs: extra keyword arguments for ``timm.create_model`` (``in_chans``, ``depth``, ...).
    """

    arch: str
    modality: Modality
    timm_kwargs: dict = field(default_factory=dict)


_REGISTRY: dict[str, EncoderSpec] = {}


def register_encoder(name: str, spec: EncoderSpec) -> None:
    """Register ``spec`` under ``name`` (an existing name is an error)."""
    if name in _REGISTRY:
        raise ValueError(f"encoder {name!r} is already registered")
    _REGISTRY[name] = spec


def list_encoders() -> list[str]:
    """Names in the registry (any other timm ViT name is accepted too)."""
    return sorted(_REGISTRY)


register_encoder("dinov2_vitb14_reg", EncoderSpec("vit_base_patch14_reg4_dinov2.lvd142m", "image"))
register_encoder("dinov2_vits14_reg", EncoderSpec("vit_small_patch14_reg4_dinov2.lvd142m", "image"))
register_encoder("dino_depth_vits14", EncoderSpec("vit_small_patch14_reg4_dinov2", "depth", {"in_chans": 1}))
register_encoder(PATCH_ARCH, EncoderSpec(PATCH_ARCH, "image", {"in_chans": 3}))  # not learned: patches.py
# ModMap's DINO-Depth architecture (DINOv3-style ViT-S/16 with RoPE, the project's own module: dinov3.py)
register_encoder("dinov3_depth_vits16", EncoderSpec("dinov3_depth_vits16", "depth", {"in_chans": 1}))


def _custom_arch(arch: str):
    """The factory of an architecture implemented in this package (not in timm), or None."""
    from mv3dad.encoders.dinov3 import ARCH_NAME, create_dinov3

    return create_dinov3 if arch.split(".")[0] == ARCH_NAME else None


def resolve(name: str, modality: Modality | None = None) -> EncoderSpec:
    """A registry name or a timm ViT name -> :class:`EncoderSpec` (timm names default to the image modality)."""
    if name in _REGISTRY:
        spec = _REGISTRY[name]
        if modality is not None and modality != spec.modality and _custom_arch(spec.arch) is not None:
            raise EncoderError(f"encoder {name!r} is a {spec.modality} encoder; it cannot be built as {modality}")
        if modality is not None and modality != spec.modality:
            spec = EncoderSpec(spec.arch, modality, {**spec.timm_kwargs, "in_chans": 1 if modality == "depth" else 3})
        return spec
    import timm

    if not timm.is_model(name.split(".")[0]):
        raise EncoderError(f"unknown encoder {name!r}: not in the registry {list_encoders()} nor a timm model name")
    modality = modality or "image"
    return EncoderSpec(name, modality, {"in_chans": 1 if modality == "depth" else 3})


def create_vit(arch: str, img_size: int, timm_kwargs: dict | None = None, pretrained: bool = False) -> nn.Module:
    """A timm ViT with a dynamic image size (any multiple of the patch size works), no classifier head."""
    import timm

    kwargs = {"img_size": img_size, "dynamic_img_size": True, "num_classes": 0, **(timm_kwargs or {})}
    factory = _custom_arch(arch)
    if factory is not None:
        if pretrained:
            raise EncoderError(f"{arch!r} has no downloadable weights: load a release with load_encoder(DIR)")
        return factory(**kwargs)
    model = timm.create_model(arch, pretrained=pretrained, **kwargs)
    if not hasattr(model, "forward_intermediates") or not hasattr(model, "patch_embed"):
        raise EncoderError(f"timm model {arch!r} is not a ViT with forward_intermediates")
    return model


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights from a ``.safetensors`` file or a ``.pth``/``.pt``/``.bin`` file (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise EncoderError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, pickled objects refused by weights_only, ...
        raise EncoderError(f"{path}: cannot read weights: {e}") from None
    for key in ("model", "state_dict", "teacher"):  # common checkpoint wrappers
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise EncoderError(f"{path}: not a state dict of tensors")
    return sd


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local weights file into a timm ViT; timm's own and the original DINOv2 key layouts both work."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    from mv3dad.encoders.dinov3 import DinoV3ViT

    sd = read_state_dict(path)
    if isinstance(model, DinoV3ViT):  # DINOv3 key layout, loaded strictly
        from mv3dad.encoders.release import load_backbone_state

        load_backbone_state(model, sd, where=str(path))
        return
    sd = {k.removeprefix("backbone.").removeprefix("module."): v for k, v in sd.items()}
    sd = checkpoint_filter_fn(sd, model)
    sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise EncoderError(f"{path}: weights do not match the architecture: missing {sorted(missing)[:8]}, "
                           f"unexpected {sorted(unexpected)[:8]}")


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline(offline: bool):
    """Make huggingface_hub use its local cache only (no 50 s of retries when there is no network)."""
    import huggingface_hub.constants as hfc

    old = hfc.HF_HUB_OFFLINE
    hfc.HF_HUB_OFFLINE = old or offline
    try:
        yield
    finally:
        hfc.HF_HUB_OFFLINE = old


def _create_pretrained(arch: str, img_size: int, timm_kwargs: dict) -> nn.Module:
    with _hub_offline(not _hub_reachable()):
        try:
            return create_vit(arch, img_size, timm_kwargs, pretrained=True)
        except Exception as e:
            raise EncoderError(
                f"no pretrained weights for {arch!r}: the Hugging Face hub is not reachable and its local cache "
                f"does not hold them ({type(e).__name__}). Either (1) make the hub reachable once (or copy its "
                f"cache into $HF_HOME) so that timm downloads them, or (2) pass a local weights file by path "
                f"(weights=PATH in Python, --image-weights PATH on the command line): .safetensors, or .pth "
                f"loaded with weights_only=True.") from None


class Encoder(nn.Module):
    """A frozen ViT that maps (B, C_in, H, W) to patch-token maps (B, C, H/p, W/p).

    Attributes:
        vit: the timm VisionTransformer (pruned to ``layers`` blocks).
        modality: ``"image"`` or ``"depth"``; decides the preprocessing.
        layers: number of transformer blocks used (the features are those of block ``layers``, normed).
        depth_scaling: depth-to-[0, 1] mapping used by :meth:`preprocess` for depth encoders.
        meta: the description written to / read from ``encoder.json``.
        precision: ``"fp32"``, ``"bf16"`` (autocast on the encoder's device), or ``"default"`` (bf16 on CUDA, fp32
            on CPU); set by :func:`mv3dad.pipeline.features.load_encoders` from ``EncoderConfig.precision``.
            Non-learned encoders (``patch14``, ``geometric``, ``texture``) always run in fp32.
    """

    def __init__(self, vit: nn.Module, modality: Modality, layers: int | None = None,
                 depth_scaling: DepthScaling = DepthScaling(), meta: dict | None = None) -> None:
        super().__init__()
        n_blocks = len(vit.blocks)
        layers = n_blocks if layers is None else int(layers)
        if not 1 <= layers <= n_blocks:
            raise EncoderError(f"layers must be in [1, {n_blocks}], got {layers}")
        if layers < n_blocks:
            vit.prune_intermediate_layers([layers - 1], prune_norm=False, prune_head=True)
        self.vit = vit.eval().requires_grad_(False)
        self.modality = modality
        self.layers = layers
        self.depth_scaling = depth_scaling
        self.meta = dict(meta or {})
        self.precision = "default"
        self.eval()

    @property
    def learned(self) -> bool:
        """False for the non-learned encoders (``patch14``, ``geometric``, ``texture``): no weights, always fp32."""
        return self.meta.get("arch") not in NON_LEARNED

    @property
    def device(self) -> torch.device:
        p = next(self.vit.parameters(), None)
        if p is None:
            p = next(self.vit.buffers(), None)
        return p.device if p is not None else torch.device("cpu")

    def effective_precision(self, device: torch.device | None = None) -> str:
        """``"fp32"`` or ``"bf16"``: what :meth:`features` runs in on ``device`` (None: the encoder's)."""
        if not self.learned:
            return "fp32"
        if self.precision == "default":
            return "bf16" if (device or self.device).type == "cuda" else "fp32"
        return self.precision

    @property
    def in_chans(self) -> int:
        return int(self.vit.patch_embed.proj.in_channels)

    @property
    def patch_size(self) -> int:
        return int(self.vit.patch_embed.patch_size[0])

    @property
    def embed_dim(self) -> int:
        return int(self.vit.embed_dim)

    def train(self, mode: bool = True) -> "Encoder":
        """The encoder stays in eval mode (frozen)."""
        return super().train(False)

    @torch.no_grad()
    def features(self, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Patch-token maps of a preprocessed batch.

        Args:
            x: (B, C_in, H, W) float, H and W multiples of the patch size p (see :meth:`preprocess`).
            batch_size: process at most this many inputs at a time (None: all at once).

        Returns:
            (B, C, H/p, W/p) float32 on ``x``'s device; computed under bf16 autocast when
            :meth:`effective_precision` is ``"bf16"``.
        """
        if x.ndim != 4:
            raise EncoderError(f"features expects (B, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_chans:
            raise EncoderError(f"{self.modality} encoder expects {self.in_chans} input channel(s), "
                               f"got {x.shape[1]} (shape {tuple(x.shape)})")
        p = self.patch_size
        if x.shape[2] % p or x.shape[3] % p:
            raise EncoderError(f"input size {tuple(x.shape[2:])} is not a multiple of the patch size {p}")
        dev = self.device
        chunks = x.split(batch_size or max(len(x), 1))
        amp = (torch.autocast(dev.type, dtype=torch.bfloat16) if self.effective_precision(dev) == "bf16"
               else contextlib.nullcontext())
        out = []
        with amp:
            for c in chunks:
                f = self.vit.forward_intermediates(c.to(dev, torch.float32), indices=[self.layers - 1], norm=True,
                                                   output_fmt="NCHW", intermediates_only=True)[0]
                out.append(f.float().to(x.device))
        return torch.cat(out)

    def preprocess(self, arrays: Sequence[np.ndarray], size: int, mode: str = "default") -> torch.Tensor:
        """Views -> a network batch (B, C_in, size, size) with this encoder's preprocessing.

        Args:
            arrays: images (image encoders) or depth maps (depth encoders).
            size: input side in pixels (a multiple of the patch size).
            mode: ``"default"`` (ImageNet-normalised RGB; percentile-scaled depth, see
                :mod:`mv3dad.encoders.preprocess`) or ``"modmap"`` (the ModMap authors' preprocessing).
        """
        if size % self.patch_size:
            raise EncoderError(f"size {size} is not a multiple of the patch size {self.patch_size}")
        check_preprocess(mode)
        if self.modality == "depth":
            if mode == "modmap":
                return torch.stack([preprocess_depth_modmap(a, size) for a in arrays])
            return torch.stack([preprocess_depth(a, size, self.depth_scaling) for a in arrays])
        if mode == "modmap":
            return torch.stack([preprocess_image_modmap(a, size) for a in arrays])
        return torch.stack([preprocess_image(a, size) for a in arrays])


def check_token_grids(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str] = ("image", "depth")) -> None:
    """Raise :class:`EncoderError` unless two feature batches (B, C, h, w) share the batch size and token grid."""
    if a.ndim != 4 or b.ndim != 4:
        raise EncoderError(f"feature maps must be (B, C, h, w), got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] != b.shape[0] or a.shape[2:] != b.shape[2:]:
        raise EncoderError(f"token grid mismatch: {names[0]} features {tuple(a.shape)} vs {names[1]} features "
                           f"{tuple(b.shape)}; give each encoder the input size (token grid x its patch size) that "
                           f"makes the grids equal (mv3dad.pipeline.features.FeatureExtractor does)")


def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bf16 natively (``avx512_bf16`` or ``amx_bf16`` in /proc/cpuinfo; elsewhere oneDNN's
    own check). Without it, autocast to bf16 on CPU is emulated and slower than fp32."""
    return _cpu_bf16()


@functools.lru_cache(maxsize=1)
def _cpu_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        pass
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001 - no way to tell: assume not
        return False


def bf16_supported(device: torch.device | str) -> bool:
    """Whether bf16 autocast is fast on ``device`` (CUDA: ``torch.cuda.is_bf16_supported()``; CPU:
    :func:`cpu_supports_bf16`)."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return device.type == "cpu" and cpu_supports_bf16()


@torch.no_grad()
def bf16_agreement(enc: "Encoder", side_tokens: int = 8, batch: int = 1, seed: int = 0) -> dict:
    """Patch-token cosine between ``enc``'s bf16 and fp32 features on a fixed small random input.

    The input is ``batch`` x C_in x (side_tokens p) x (side_tokens p), uniform in [0, 1) from a seeded generator
    (the same in every process). Returns ``{"mean": ..., "min": ...}`` over the tokens.
    """
    g = torch.Generator().manual_seed(seed)
    p = enc.patch_size
    x = torch.rand(batch, enc.in_chans, side_tokens * p, side_tokens * p, generator=g).to(enc.device)
    old = enc.precision
    try:
        enc.precision = "fp32"
        a = enc.features(x)
        enc.precision = "bf16"
        b = enc.features(x)
    finally:
        enc.precision = old
    cos = torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=1)
    return {"mean": float(cos.mean()), "min": float(cos.min())}


def set_precision(enc: "Encoder", precision: str = "auto", min_cosine: float = BF16_MIN_COSINE) -> str:
    """Choose and set ``enc.precision`` on its current device; returns the effective precision.

    ``fp32``: fp32. ``bf16``: bf16 autocast (even where it is emulated). ``auto``: bf16 where the device computes
    bf16 natively (:func:`bf16_supported`) AND :func:`bf16_agreement`'s mean cosine reaches ``min_cosine``
    (recorded in ``enc.meta["bf16_check"]``), else fp32. Non-learned encoders stay fp32.
    """
    if precision not in PRECISIONS:
        raise EncoderError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not enc.learned or precision == "fp32":
        enc.precision = "fp32"
    elif precision == "bf16":
        enc.precision = "bf16"
    elif not bf16_supported(enc.device):
        enc.precision = "fp32"
    else:
        check = bf16_agreement(enc)
        enc.meta["bf16_check"] = {**check, "threshold": min_cosine}
        enc.precision = "bf16" if check["mean"] >= min_cosine else "fp32"
    return enc.effective_precision()


def build_encoder(name: str = DEFAULT_IMAGE_ENCODER, *, weights: str | Path | None = None,
                  pretrained: bool = True, modality: Modality | None = None, layers: int | None = None,
                  img_size: int = 224, timm_kwargs: dict | None = None,
                  depth_scaling: DepthScaling = DepthScaling(), seed: int = 0) -> Encoder:
    """Build a frozen encoder by registry or timm name.

    Args:
        name: a registry name (:func:`list_encoders`) or a timm ViT name (``arch.tag``); ``patch14`` is the
            non-learned reference encoder of :mod:`mv3dad.encoders.patches` (weights and seed do not apply);
            ``geometric`` (depth) and ``texture`` (image) are the weight-free descriptors of
            :mod:`mv3dad.encoders.classical` (``pretrained`` and seed do not apply, ``weights`` is an error).
        weights: a local weights file (.safetensors, or .pth loaded with ``weights_only=True``); wins over
            ``pretrained``.
        pretrained: without ``weights``, fetch timm's pretrained weights through the hub (or its cache); a
            clear :class:`EncoderError` names both ways when neither is available. False: random init.
        modality: override the registry's modality (``"depth"`` builds a 1-channel ViT).
        layers: keep the first ``layers`` blocks (None: all).
        img_size: nominal input size (the position embedding is resampled to any other multiple of 14).
        timm_kwargs: extra ``timm.create_model`` arguments (e.g. ``depth``, ``embed_dim``).
        depth_scaling: the depth mapping used by :meth:`Encoder.preprocess` (depth encoders).
        seed: seed of a random initialisation (the same seed gives the same weights in every process).
    """
    from mv3dad.encoders.classical import CLASSICAL_ENCODERS

    spec = resolve(name, modality)
    kwargs = {**spec.timm_kwargs, **(timm_kwargs or {})}
    if spec.arch == PATCH_ARCH:  # nothing to load or initialise
        vit, source = PatchTokens(kwargs["in_chans"]), "none (not learned)"
    elif spec.arch in CLASSICAL_ENCODERS:  # weight-free descriptors (classical.py): pretrained and seed do not apply
        cls = CLASSICAL_ENCODERS[spec.arch]
        if spec.modality != cls.modality:
            raise EncoderError(f"encoder {name!r} is a {cls.modality} encoder; it cannot be built as {spec.modality}")
        if weights is not None:
            raise EncoderError(f"encoder {name!r} has no weights (it is not learned): do not pass weights")
        vit = cls()
        source = vit.version
        kwargs = {"in_chans": cls.in_chans}
    elif weights is not None:
        vit = create_vit(spec.arch, img_size, kwargs)
        load_weights(vit, weights)
        source = str(weights)
    elif pretrained and "." in spec.arch:
        vit = _create_pretrained(spec.arch, img_size, kwargs)
        source = f"timm:{spec.arch}"
    elif pretrained:
        raise EncoderError(f"{spec.arch!r} has no pretrained weights to download: pass weights=PATH, "
                           f"load a pretrain-depth/pretrain-image run with load_encoder(DIR), or pretrained=False")
    else:  # seeded, so that fit and predict build the same untrained encoder in any process
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            vit = create_vit(spec.arch, img_size, kwargs)
        source = f"random:seed={seed}"
    meta = {"arch": spec.arch.split(".")[0], "modality": spec.modality, "timm_kwargs": kwargs,
            "img_size": img_size, "weights_source": source}
    return Encoder(vit, spec.modality, layers, depth_scaling, meta)




def save_encoder(out_dir: str | Path, vit: nn.Module, *, arch: str, modality: Modality, img_size: int,
                 timm_kwargs: dict, depth_scaling: DepthScaling | None = None, training: dict | None = None) -> Path:
    """Write ``encoder.safetensors`` (the ViT's weights) and ``encoder.json`` (how to rebuild and use it).

    Both files are written atomically; the JSON (written last) records the weights' sha256.
    Returns the directory.
    """
    from safetensors.torch import save_file

    from mv3dad.io import atomic_file, atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().float().cpu().contiguous() for k, v in vit.state_dict().items()}
    wpath = out / WEIGHTS_FILE
    with atomic_file(wpath) as tmp:
        save_file(sd, str(tmp))
    kwargs = {k: v for k, v in timm_kwargs.items() if k not in ("img_size", "dynamic_img_size", "num_classes")}
    cfg = {
        "format": "mv3dad-encoder/1",
        "arch": arch,
        "modality": modality,
        "in_chans": int(vit.patch_embed.proj.in_channels),
        "img_size": int(img_size),
        "patch_size": int(vit.patch_embed.patch_size[0]),
        "embed_dim": int(vit.embed_dim),
        "n_blocks": len(vit.blocks),
        "layers": len(vit.blocks),
        "timm_kwargs": kwargs,
        "normalisation": ({"type": "depth_percentile", **dataclasses.asdict(depth_scaling or DepthScaling())}
                          if modality == "depth"
                          else {"type": "imagenet", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}),
        "training": training or {},
        "weights_sha256": sha256_file(wpath),
    }
    atomic_write(out / CONFIG_FILE, json.dumps(cfg, indent=2))
    return out


TIMM_KWARGS_ALLOWED = frozenset({
    "in_chans", "img_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias", "qk_norm",
    "num_classes", "reg_tokens", "init_values", "dynamic_img_size", "no_embed_class", "class_token", "global_pool",
    "fc_norm", "pos_embed", "drop_path_rate", "layer_scale_init", "rope_base", "rope_normalize_coords", "norm_eps"})
"""The architecture fields an ``encoder.json``'s ``timm_kwargs`` may hold (plain values only): nothing that makes
timm read a file or fetch weights (``checkpoint_path``, ``pretrained_cfg_overlay``, ``pretrained_cfg`` ...)."""


def check_encoder_config(cfg: dict, where: str | Path) -> None:
    """Validate an ``encoder.json`` against the allowlist of architecture fields (:data:`TIMM_KWARGS_ALLOWED`).

    Raises:
        EncoderError: naming ``where`` and the offending field.
    """
    import re

    if not isinstance(cfg.get("arch"), str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", cfg["arch"]):
        raise EncoderError(f"{where}: field 'arch' must be a model name, got {cfg.get('arch')!r}")
    kwargs = cfg.get("timm_kwargs")
    if not isinstance(kwargs, dict):
        raise EncoderError(f"{where}: field 'timm_kwargs' must be a mapping")
    for key, value in kwargs.items():
        if key not in TIMM_KWARGS_ALLOWED:
            raise EncoderError(f"{where}: timm_kwargs field {key!r} is not an architecture field this loader accepts "
                               f"(allowed: {', '.join(sorted(TIMM_KWARGS_ALLOWED))})")
        if not (value is None or isinstance(value, (bool, int, float, str))):
            raise EncoderError(f"{where}: timm_kwargs field {key!r} must be a plain value, got "
                               f"{type(value).__name__}")
    for key in ("in_chans", "img_size", "layers"):
        if not isinstance(cfg.get(key), int) or isinstance(cfg.get(key), bool) or cfg[key] < 1:
            raise EncoderError(f"{where}: field {key!r} must be a positive integer, got {cfg.get(key)!r}")


def load_encoder(path: str | Path, layers: int | None = None, device: str | torch.device | None = None,
                 verify: bool = True) -> Encoder:
    """Load an encoder written by :func:`save_encoder` (e.g. by ``mv3dad pretrain-depth``), or a DINOv3-style
    release in the ModMap authors' layout (see :mod:`mv3dad.encoders.release`).

    Args:
        path: the directory holding ``encoder.json`` and ``encoder.safetensors`` (or the JSON file itself); or a
            folder holding ``config.yaml`` and ``eval/last_checkpoint/teacher_checkpoint.pth`` (or that ``.pth``
            itself, a ``config.yaml`` in one of its parent folders).
        layers: keep the first ``layers`` blocks (None: the JSON's ``layers``).
        device: where to put it (None: CPU).
        verify: check the weights' sha256 against the JSON.
    """
    path = Path(path)
    from mv3dad.encoders.release import is_authors_release, load_authors_release

    if is_authors_release(path):
        enc = load_authors_release(path, layers=layers)
        return enc.to(device) if device is not None else enc
    cfg_path = path if path.suffix == ".json" else path / CONFIG_FILE
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise EncoderError(f"{cfg_path}: cannot read encoder config: {e}") from None
    for key in ("arch", "modality", "in_chans", "img_size", "timm_kwargs", "layers"):
        if key not in cfg:
            raise EncoderError(f"{cfg_path}: missing field {key!r}")
    check_encoder_config(cfg, cfg_path)
    wpath = cfg_path.parent / WEIGHTS_FILE
    if not wpath.is_file():
        raise EncoderError(f"{wpath}: weights file not found")
    if verify and cfg.get("weights_sha256") and sha256_file(wpath) != cfg["weights_sha256"]:
        raise EncoderError(f"{wpath}: sha256 differs from {cfg_path} (corrupt or replaced weights)")
    kwargs = {**cfg["timm_kwargs"], "in_chans": cfg["in_chans"]}
    vit = create_vit(cfg["arch"], cfg["img_size"], kwargs)
    from safetensors.torch import load_file

    missing, unexpected = vit.load_state_dict(load_file(str(wpath)), strict=False)
    if missing or unexpected:
        raise EncoderError(f"{wpath}: weights do not match {cfg['arch']}: missing {sorted(missing)[:8]}, "
                           f"unexpected {sorted(unexpected)[:8]}")
    norm = cfg.get("normalisation", {})
    scaling = DepthScaling(**{k: norm[k] for k in ("lo_percentile", "hi_percentile", "floor") if k in norm})
    enc = Encoder(vit, cfg["modality"], layers or cfg["layers"], scaling, cfg)
    return enc.to(device) if device is not None else enc


# the weight-free descriptors of classical.py (built by build_encoder without weights, like patch14)
from mv3dad.encoders.classical import GEOMETRIC_ARCH, SHADING_ARCH, TEXTURE_ARCH  # noqa: E402

NON_LEARNED = frozenset({PATCH_ARCH, GEOMETRIC_ARCH, TEXTURE_ARCH, SHADING_ARCH})
register_encoder(GEOMETRIC_ARCH, EncoderSpec(GEOMETRIC_ARCH, "depth", {"in_chans": 1}))
register_encoder(TEXTURE_ARCH, EncoderSpec(TEXTURE_ARCH, "image", {"in_chans": 3}))
register_encoder(SHADING_ARCH, EncoderSpec(SHADING_ARCH, "image", {"in_chans": 3}))


__all__ = ["NON_LEARNED", "PRECISIONS", "TIMM_KWARGS_ALLOWED", "Encoder", "EncoderError", "EncoderSpec",
           "bf16_agreement", "bf16_supported", "build_encoder", "check_encoder_config", "check_token_grids",
           "cpu_supports_bf16", "list_encoders", "load_encoder", "load_weights", "read_state_dict",
           "register_encoder", "save_encoder", "set_precision"]
