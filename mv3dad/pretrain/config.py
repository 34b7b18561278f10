"""The pretraining config (``configs/pretrain_depth.yaml``, ``configs/pretrain_image.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class PretrainConfig:
    """DINOv2-style self-supervised pretraining of a ViT encoder (DINO-Depth or an image encoder).

    Attributes:
        modality: ``"depth"`` (1-channel DINO-Depth) or ``"image"`` (3 channels).
        arch: timm ViT architecture to train from scratch, or ``dinov3_depth_vits16`` (ModMap's DINOv3-style
            ViT-S/16 with RoPE, :mod:`mv3dad.encoders.dinov3`; also exported in the authors' release layout).
        vit_depth: number of transformer blocks (None: the architecture's).
        embed_dim: token width (None: the architecture's).
        num_heads: attention heads (None: the architecture's).
        layer_scale_init: initial LayerScale of every block (None: the architecture's, 1e-5 for the DINOv2
            ViTs). At 1e-5 a freshly initialised ViT is almost the identity, so its CLS token hardly depends on
            the input and the DINO loss sits at ln K for a long time; short CPU runs train better at 0.1.
        drop_path_rate: stochastic depth of the student.
        image_size: global crop side in pixels (a multiple of the patch size, 14 or 16); also the exported
            encoder's nominal size.
        local_size: local crop side in pixels (a multiple of the patch size); None: 7/16 of ``image_size`` rounded
            to a multiple of the patch size (DINOv2: 98 for 224 at patch 14; 96 at patch 16 as DINOv3).
        n_local_crops: local crops per sample (DINOv2: 8).
        global_scale: area range of a global crop relative to the (square-padded) view.
        local_scale: area range of a local crop.
        max_rotation_deg: crops are rotated by a uniform angle in [-max, max] (nearest neighbour, 0 outside).
        min_valid_fraction: a crop with fewer measured pixels is resampled (up to ``crop_attempts`` times).
        crop_attempts: attempts per crop before the last one is kept.
        token_valid_fraction: a token counts as measured when this fraction of its pixels is; unmeasured tokens
            are never iBOT targets.
        photometric: brightness/contrast/grayscale jitter (image modality only; depth is never jittered).
        batch_size: samples per step and process (global batch = batch_size x world size).
        steps: optimisation steps.
        base_lr: learning rate for a global batch of 1024 (lr = base_lr x global batch / 1024).
        min_lr: final learning rate of the cosine schedule.
        warmup_fraction: fraction of the steps with linear lr warm-up.
        weight_decay: (start, end) of the cosine weight-decay schedule.
        momentum_teacher: (start, end) of the cosine EMA momentum of the teacher.
        teacher_temp: (warm-up start, final) teacher temperature.
        teacher_temp_warmup_fraction: fraction of the steps with linear teacher-temperature warm-up.
        student_temp: student temperature.
        centering: ``"ema"`` (DINO centring with an EMA centre) or ``"sinkhorn"`` (Sinkhorn-Knopp).
        sinkhorn_iterations: Sinkhorn-Knopp iterations.
        n_prototypes: prototypes of the DINO and iBOT heads (DINOv2: 65536; smaller for small runs).
        head_hidden_dim: hidden width of the heads.
        head_bottleneck_dim: bottleneck width before the weight-normalised last layer.
        dino_weight: weight of the DINO CLS-token loss.
        ibot_weight: weight of the iBOT masked-patch loss.
        koleo_weight: weight of the KoLeo regulariser.
        mask_probability: fraction of global crops that get a block mask.
        mask_ratio: (min, max) fraction of tokens masked in a masked crop.
        clip_grad: gradient-norm clipping threshold.
        freeze_last_layer_fraction: the heads' last layers are frozen for this fraction of the steps
            (DINOv2: the first epoch of 100).
        amp: bf16 autocast on CUDA.
        seed: seed of everything (data, masks, init).
        checkpoint_every: steps between checkpoints.
        keep_checkpoints: checkpoints kept on disk.
        num_workers: data-loading worker processes.
        synthetic_size: side of the synthetic depth maps in pixels (None: ``image_size``).
        synthetic_views_per_part: synthetic views taken of each random part (building a part is the slow step).
        max_bad_fraction: the run fails when more than this fraction of the corpus files is unreadable.
        depth_lo_percentile: depth scaling, percentile mapped to ``depth_floor``.
        depth_hi_percentile: depth scaling, percentile mapped to 1.
        depth_floor: depth scaling, value of the nearest valid depth (0 is "no measurement").
    """

    modality: Literal["depth", "image"] = "depth"
    arch: str = "vit_small_patch14_reg4_dinov2"
    vit_depth: int | None = None
    embed_dim: int | None = None
    num_heads: int | None = None
    layer_scale_init: float | None = None
    drop_path_rate: float = 0.1
    image_size: int = 224
    local_size: int | None = None
    n_local_crops: int = 8
    global_scale: tuple[float, float] = (0.32, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.32)
    max_rotation_deg: float = 180.0
    min_valid_fraction: float = 0.1
    crop_attempts: int = 10
    token_valid_fraction: float = 0.5
    photometric: bool = False
    batch_size: int = 64
    steps: int = 10000
    base_lr: float = 4e-3
    min_lr: float = 1e-6
    warmup_fraction: float = 0.1
    weight_decay: tuple[float, float] = (0.04, 0.2)
    momentum_teacher: tuple[float, float] = (0.992, 1.0)
    teacher_temp: tuple[float, float] = (0.04, 0.07)
    teacher_temp_warmup_fraction: float = 0.3
    student_temp: float = 0.1
    centering: Literal["ema", "sinkhorn"] = "ema"
    sinkhorn_iterations: int = 3
    n_prototypes: int = 65536
    head_hidden_dim: int = 2048
    head_bottleneck_dim: int = 256
    dino_weight: float = 1.0
    ibot_weight: float = 1.0
    koleo_weight: float = 0.1
    mask_probability: float = 0.5
    mask_ratio: tuple[float, float] = (0.1, 0.5)
    clip_grad: float = 3.0
    freeze_last_layer_fraction: float = 0.01
    amp: bool = True
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    num_workers: int = 0
    synthetic_size: int | None = None
    synthetic_views_per_part: int = 4
    max_bad_fraction: float = 0.05
    depth_lo_percentile: float = 1.0
    depth_hi_percentile: float = 99.0
    depth_floor: float = 0.1

    def __post_init__(self) -> None:
        if self.modality not in ("depth", "image"):
            raise ValueError(f"modality must be 'depth' or 'image', got {self.modality!r}")
        p = self.patch_size
        if self.local_size is None:
            self.local_size = max(p, p * round(self.image_size * 7 / 16 / p))
        if self.image_size % p or self.local_size % p:
            raise ValueError(f"image_size ({self.image_size}) and local_size ({self.local_size}) must be "
                             f"multiples of {self.arch}'s patch size {p}")
        if self.centering not in ("ema", "sinkhorn"):
            raise ValueError(f"centering must be 'ema' or 'sinkhorn', got {self.centering!r}")
        if self.photometric and self.modality == "depth":
            raise ValueError("photometric augmentations are not allowed on depth (values are distances)")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")
        if self.layer_scale_init is not None and not self.layer_scale_init > 0:
            raise ValueError(f"layer_scale_init must be > 0 or None, got {self.layer_scale_init}")
        if self.n_local_crops < 0:
            raise ValueError(f"n_local_crops must be >= 0, got {self.n_local_crops}")

    @property
    def patch_size(self) -> int:
        """The architecture's patch size: 16 for ``dinov3_*``, else the ``patchN`` of the timm name (default 14)."""
        import re

        if self.arch.split(".")[0].startswith("dinov3_"):
            return 16
        m = re.search(r"patch(\d+)", self.arch)
        return int(m.group(1)) if m else 14

    @property
    def in_chans(self) -> int:
        return 1 if self.modality == "depth" else 3

    def timm_kwargs(self) -> dict:
        """Architecture overrides for ``timm.create_model``."""
        kw = {"in_chans": self.in_chans}
        for key, val in (("depth", self.vit_depth), ("embed_dim", self.embed_dim), ("num_heads", self.num_heads),
                         ("init_values", self.layer_scale_init)):
            if val is not None:
                kw[key] = val
        return kw
