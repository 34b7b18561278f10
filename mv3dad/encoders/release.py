"""DINOv3-style encoders in the ModMap authors' release layout: read them strictly, write them for tests and export.

The layout (a DINOv3 training output folder)::

    <dir>/config.yaml                                   # the run's config; its ``student`` section gives the ViT
    <dir>/eval/last_checkpoint/teacher_checkpoint.pth   # torch.save({"teacher": {key: tensor, ...}})

The teacher state dict holds the backbone under ``backbone.`` (``backbone.cls_token``, ``backbone.blocks.0.attn.qkv
.weight``, ...) beside the heads (``dino_head.``, ``ibot_head.``), which are not part of the encoder and are
ignored. The backbone keys are loaded strictly into :class:`mv3dad.encoders.dinov3.DinoV3ViT`: every key
consumed, every shape checked; the error names what is missing, unexpected or of the wrong shape. The file is
read with ``torch.load(..., weights_only=True)``: a checkpoint that pickles arbitrary objects is refused.

:func:`save_as_authors_release` writes an encoder (a seeded random one, or a given ViT) in exactly that layout,
for tests and for users who take a DINO-Depth trained here to the authors' code.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mv3dad.encoders.dinov3 import ARCH_NAME, VIT_SIZES, DinoV3Config, DinoV3ViT
from mv3dad.encoders.preprocess import DepthScaling
from mv3dad.encoders.vit import Encoder, EncoderError
from mv3dad.io.read import sha256_file

CONFIG_YAML = "config.yaml"
TEACHER_PTH = Path("eval") / "last_checkpoint" / "teacher_checkpoint.pth"
BACKBONE = "backbone."
ROPE_PERIODS = "rope_embed.periods"
# Our registry names -> DINOv3 ``student`` settings that differ from :func:`student_section`'s defaults.
ARCHS = {ARCH_NAME: {"arch": "vit_small", "patch_size": 16, "in_chans": 1}}


def student_section(cfg: DinoV3Config, drop_path_rate: float = 0.0) -> dict:
    """The ``student`` section of a DINOv3 config describing ``cfg``."""
    names = {v: k for k, v in VIT_SIZES.items()}
    arch = names.get((cfg.embed_dim, cfg.depth, cfg.num_heads))
    sizes = {}
    if arch is None:  # not a DINOv3 size (e.g. a small test run): this project's extension keys give it
        arch = next((k for k, (d, _, h) in VIT_SIZES.items() if (d, h) == (cfg.embed_dim, cfg.num_heads)),
                    "vit_small")
        sizes = {"embed_dim": cfg.embed_dim, "depth": cfg.depth, "num_heads": cfg.num_heads}
    return {
        "arch": arch, **sizes, "patch_size": cfg.patch_size, "in_chans": cfg.in_chans, "drop_path_rate": drop_path_rate,
        "layerscale": cfg.layer_scale_init, "ffn_layer": "mlp", "ffn_ratio": cfg.mlp_ratio, "qkv_bias": cfg.qkv_bias,
        "proj_bias": True, "ffn_bias": True, "norm_layer": "layernorm", "n_storage_tokens": 0, "mask_k_bias": False,
        "untie_cls_and_patch_norms": False, "untie_global_and_local_cls_norm": False, "pos_embed_type": "rope",
        "pos_embed_rope_base": cfg.rope_base, "pos_embed_rope_min_period": None, "pos_embed_rope_max_period": None,
        "pos_embed_rope_normalize_coords": cfg.rope_normalize_coords, "pos_embed_rope_shift_coords": None,
        "pos_embed_rope_jitter_coords": None, "pos_embed_rope_rescale_coords": None, "pretrained_weights": "",
    }


def config_from_student(student: dict, where: str = "config.yaml", img_size: int = 224) -> DinoV3Config:
    """:class:`DinoV3Config` from a DINOv3 ``student`` section; anything this module cannot reproduce is an error."""
    if not isinstance(student, dict):
        raise EncoderError(f"{where}: no 'student' section (a mapping) describing the architecture")
    arch = str(student.get("arch", "")).split("_p")[0]  # "vit_small" (DINOv3 also accepts e.g. vit_small_p16)
    if arch not in VIT_SIZES:
        raise EncoderError(f"{where}: student.arch {student.get('arch')!r} is not one of {sorted(VIT_SIZES)}")
    checks = {"n_storage_tokens": 0, "ffn_layer": "mlp", "untie_cls_and_patch_norms": False,
              "untie_global_and_local_cls_norm": False, "proj_bias": True, "ffn_bias": True, "pos_embed_type": "rope"}
    for key, want in checks.items():
        if key in student and student[key] != want:
            raise EncoderError(f"{where}: student.{key} = {student[key]!r} is not supported (only {want!r})")
    if str(student.get("norm_layer", "layernorm")) not in ("layernorm", "layernormbf16"):
        raise EncoderError(f"{where}: student.norm_layer {student['norm_layer']!r} is not supported (layernorm)")
    dim, depth, heads = VIT_SIZES[arch]
    # embed_dim / depth / num_heads are not DINOv3 keys: write_authors_release adds them for sizes that its arch
    # names do not cover (the authors' code cannot build those)
    dim, depth, heads = (int(student.get(k, d)) for k, d in (("embed_dim", dim), ("depth", depth),
                                                              ("num_heads", heads)))
    ls = student.get("layerscale", 1e-5)
    try:
        return DinoV3Config(
            embed_dim=dim, depth=depth, num_heads=heads, patch_size=int(student.get("patch_size", 16)),
            in_chans=int(student.get("in_chans", 3)), mlp_ratio=float(student.get("ffn_ratio", 4.0)),
            layer_scale_init=float(ls) if ls else None, rope_base=float(student.get("pos_embed_rope_base", 100.0)),
            rope_normalize_coords=str(student.get("pos_embed_rope_normalize_coords", "separate")),
            qkv_bias=bool(student.get("qkv_bias", True)), img_size=img_size)
    except (TypeError, ValueError) as e:
        raise EncoderError(f"{where}: invalid student section: {e}") from None


def _find_config(pth: Path) -> Path | None:
    for parent in pth.parents:
        if (parent / CONFIG_YAML).is_file():
            return parent / CONFIG_YAML
    return None


def is_authors_release(path: str | Path) -> bool:
    """A folder with ``config.yaml`` + ``eval/last_checkpoint/teacher_checkpoint.pth``, or a ``.pth`` with a
    ``config.yaml`` in one of its parent folders."""
    path = Path(path)
    if path.is_dir():
        return (path / CONFIG_YAML).is_file() and (path / TEACHER_PTH).is_file()
    return path.suffix == ".pth" and path.is_file() and _find_config(path) is not None


def _paths(path: Path) -> tuple[Path, Path]:
    if path.is_dir():
        cfg, pth = path / CONFIG_YAML, path / TEACHER_PTH
        for p in (cfg, pth):
            if not p.is_file():
                raise EncoderError(f"{path}: not a release in the authors' layout: {p} is missing "
                                   f"(expected {CONFIG_YAML} and {TEACHER_PTH})")
        return cfg, pth
    if not path.is_file():
        raise EncoderError(f"{path}: no such file or folder")
    cfg = _find_config(path)
    if cfg is None:
        raise EncoderError(f"{path}: no {CONFIG_YAML} in any parent folder (the architecture is read from it)")
    return cfg, path


def read_teacher(pth: str | Path) -> dict[str, torch.Tensor]:
    """The ``teacher`` state dict of a DINOv3 checkpoint, read with ``weights_only=True``."""
    pth = Path(pth)
    try:
        ckpt = torch.load(pth, map_location="cpu", weights_only=True)
    except Exception as e:  # pickled objects refused by weights_only, truncated file, not a torch file, ...
        raise EncoderError(f"{pth}: cannot read the checkpoint with torch.load(weights_only=True) (only tensors "
                           f"and plain containers are accepted): {type(e).__name__}: {e}") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("teacher"), dict):
        keys = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise EncoderError(f"{pth}: no 'teacher' state dict in the checkpoint (found {keys})")
    sd = ckpt["teacher"]
    bad = sorted(k for k, v in sd.items() if not isinstance(v, torch.Tensor))[:8]
    if bad:
        raise EncoderError(f"{pth}: teacher entries that are not tensors: {bad}")
    return sd


def load_backbone_state(vit: DinoV3ViT, sd: dict[str, torch.Tensor], where: str = "checkpoint",
                        mask_k_bias: bool = False) -> None:
    """Load a DINOv3 backbone state dict into ``vit`` strictly.

    ``sd`` is a teacher state dict (its ``backbone.`` keys are used, the heads ignored) or a bare backbone state
    dict. Every backbone key must be one of ``vit``'s with the same shape and every one of ``vit``'s keys must be
    present; only ``rope_embed.periods`` (a buffer computed from the config) may be absent. With ``mask_k_bias``
    (DINOv3's masked key bias), the ``attn.qkv.bias_mask`` buffers are consumed and applied to the biases.
    """
    if any(k.startswith(BACKBONE) for k in sd):
        sd = {k[len(BACKBONE):]: v for k, v in sd.items() if k.startswith(BACKBONE)}
    sd = dict(sd)
    if mask_k_bias:
        for k in [k for k in sd if k.endswith("attn.qkv.bias_mask")]:
            bias = k.removesuffix("_mask")
            if bias in sd:
                sd[bias] = sd[bias] * sd[k].to(sd[bias].dtype)
            del sd[k]
    own = vit.state_dict()
    missing = sorted(set(own) - set(sd) - {ROPE_PERIODS})
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in set(sd) & set(own) if sd[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing[:10]}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected[:10]}")
        if shapes:
            parts.append(f"mismatched shapes ({len(shapes)}): {shapes[:10]}")
        raise EncoderError(f"{where}: the backbone does not match the architecture ({vit.cfg.embed_dim} wide, "
                           f"{len(vit.blocks)} blocks, patch {vit.cfg.patch_size}, {vit.cfg.in_chans} channel(s)): "
                           + "; ".join(parts))
    if ROPE_PERIODS not in sd:
        vit.rope_embed.reset_periods()
        sd[ROPE_PERIODS] = vit.rope_embed.periods.clone()
    vit.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)




def load_authors_release(path: str | Path, layers: int | None = None, img_size: int = 224,
                         depth_scaling: DepthScaling = DepthScaling()) -> Encoder:
    """An :class:`Encoder` from a release in the authors' layout (the folder, or its ``teacher_checkpoint.pth``).

    The architecture comes from ``config.yaml``'s ``student`` section (read with ``yaml.safe_load``); the weights
    are the teacher's ``backbone.`` entries, loaded strictly (:func:`load_backbone_state`). The features are the
    final-norm patch tokens. A 1-channel model is a depth encoder, a 3-channel one an image encoder.
    """
    import yaml

    cfg_path, pth = _paths(Path(path))
    try:
        doc = yaml.safe_load(cfg_path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise EncoderError(f"{cfg_path}: cannot read the config: {e}") from None
    if not isinstance(doc, dict):
        raise EncoderError(f"{cfg_path}: a config must hold a mapping, got {type(doc).__name__}")
    student = doc.get("student")
    cfg = config_from_student(student, str(cfg_path), img_size)
    if cfg.in_chans not in (1, 3):
        raise EncoderError(f"{cfg_path}: student.in_chans must be 1 (depth) or 3 (image), got {cfg.in_chans}")
    vit = DinoV3ViT(cfg)
    load_backbone_state(vit, read_teacher(pth), str(pth), mask_k_bias=bool(student.get("mask_k_bias", False)))
    modality = "depth" if cfg.in_chans == 1 else "image"
    arch = ARCH_NAME if (cfg.embed_dim, cfg.depth, cfg.patch_size, cfg.in_chans) == (384, 12, 16, 1) else \
        f"dinov3_{student['arch']}_p{cfg.patch_size}_c{cfg.in_chans}"
    kwargs = {"embed_dim": cfg.embed_dim, "depth": cfg.depth, "num_heads": cfg.num_heads,
              "patch_size": cfg.patch_size, "in_chans": cfg.in_chans, "layer_scale_init": cfg.layer_scale_init,
              "rope_base": cfg.rope_base, "rope_normalize_coords": cfg.rope_normalize_coords}
    meta = {"format": "modmap-authors-release", "arch": arch, "modality": modality, "timm_kwargs": kwargs,
            "img_size": img_size, "layers": len(vit.blocks), "weights_source": str(pth),
            "weights_sha256": sha256_file(pth), "config_yaml": str(cfg_path)}
    return Encoder(vit, modality, layers, depth_scaling, meta)


def write_authors_release(out_dir: str | Path, vit: DinoV3ViT, heads: dict[str, torch.Tensor] | None = None,
                          extra_config: dict | None = None, drop_path_rate: float = 0.0) -> Path:
    """Write ``vit`` (and optional head weights, keys like ``dino_head.…``) in the authors' layout.

    ``config.yaml`` gets the ``student`` section (and ``teacher`` naming the same arch) plus ``extra_config``.
    Both files are written atomically. Returns the folder.
    """
    import yaml

    from mv3dad.io.atomic import atomic_file, atomic_write

    out = Path(out_dir)
    teacher = {BACKBONE + k: v.detach().float().cpu().contiguous() for k, v in vit.state_dict().items()}
    for k, v in (heads or {}).items():
        if k.startswith(BACKBONE):
            raise ValueError(f"head key {k!r} must not start with {BACKBONE!r}")
        teacher[k] = v.detach().float().cpu().contiguous()
    pth = out / TEACHER_PTH
    pth.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(pth) as tmp:
        torch.save({"teacher": teacher}, tmp)
    student = student_section(vit.cfg, drop_path_rate)
    doc = {"MODEL": {"META_ARCHITECTURE": "SSLMetaArch"}, "student": student,
           "teacher": {"in_chans": vit.cfg.in_chans}, **(extra_config or {})}
    atomic_write(out / CONFIG_YAML, yaml.safe_dump(doc, sort_keys=False))
    return out


def _random_heads(dim: int, seed: int, n_prototypes: int = 16, hidden: int = 32, bottleneck: int = 8
                  ) -> dict[str, torch.Tensor]:
    """Small DINO/iBOT head weights with DINOv3's key names (the loader must ignore them)."""
    g = torch.Generator().manual_seed(seed + 1)
    out: dict[str, torch.Tensor] = {}
    for head in ("dino_head", "ibot_head"):
        for i, (a, b) in zip((0, 2, 4), ((dim, hidden), (hidden, hidden), (hidden, bottleneck))):
            out[f"{head}.mlp.{i}.weight"] = torch.randn(b, a, generator=g) * 0.02
            out[f"{head}.mlp.{i}.bias"] = torch.zeros(b)
        out[f"{head}.last_layer.weight"] = torch.randn(n_prototypes, bottleneck, generator=g) * 0.02
    return out


def save_as_authors_release(out_dir: str | Path, arch: str = ARCH_NAME, seed: int = 0) -> Encoder:
    """Write a seeded, randomly initialised encoder ``arch`` in the authors' layout and return it (in memory).

    The weights are those of ``build_encoder(arch, pretrained=False, seed=seed)``, with a non-trivial cls token,
    LayerScale and biases (so that a loader that drops or mixes up a key changes the features); the heads are
    small random ``dino_head``/``ibot_head`` entries as in a DINOv3 teacher checkpoint.
    """
    if arch not in ARCHS:
        raise EncoderError(f"save_as_authors_release: unknown arch {arch!r}; known: {sorted(ARCHS)}")
    from mv3dad.encoders.vit import build_encoder

    enc = build_encoder(arch, pretrained=False, seed=seed)
    vit = enc.vit
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # perturb what a fresh init leaves constant (zeros, ones, 1e-5)
        for name, p in vit.named_parameters():
            if name.endswith("bias") or name.endswith("gamma") or name in ("cls_token", "mask_token") \
                    or name.startswith("norm") or ".norm" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    out = write_authors_release(out_dir, vit, _random_heads(vit.embed_dim, seed),
                                {"crops": {"global_crops_size": 224, "local_crops_size": 96,
                                           "local_crops_number": 8}})
    enc.meta.update({"format": "modmap-authors-release", "weights_source": str(out / TEACHER_PTH),
                     "weights_sha256": sha256_file(out / TEACHER_PTH), "config_yaml": str(out / CONFIG_YAML)})
    return enc


__all__ = ["CONFIG_YAML", "TEACHER_PTH", "config_from_student", "is_authors_release", "load_authors_release",
           "load_backbone_state", "read_teacher", "save_as_authors_release", "student_section",
           "write_authors_release"]
