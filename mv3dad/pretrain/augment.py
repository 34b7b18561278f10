"""Multi-crop augmentation for DINOv2-style training: spatial only on depth (crops, rotations, flips).

Depth values are distances, so a depth crop only moves pixels: nearest-neighbour sampling, no interpolation,
no photometric change; pixels that fall outside the view become 0 (= no measurement). Image crops may add
a mild photometric jitter (``photometric=True``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mv3dad.encoders.preprocess import DepthScaling, image_to_rgb, normalize_image, pad_square, scale_depth


@dataclass(frozen=True)
class CropParams:
    """One crop of a square view, in normalised coordinates of the view ([-1, 1] spans it).

    Attributes:
        cx: crop centre, x.
        cy: crop centre, y.
        half_w: crop half width.
        half_h: crop half height.
        angle: rotation in radians (counter-clockwise in the image).
        flip_x: mirror left-right.
        flip_y: mirror top-bottom.
    """

    cx: float
    cy: float
    half_w: float
    half_h: float
    angle: float = 0.0
    flip_x: bool = False
    flip_y: bool = False


def prepare_view(array: np.ndarray, modality: str, scaling: DepthScaling = DepthScaling()) -> torch.Tensor:
    """A raw view -> (C, S, S) on its padded square, before cropping.

    Depth: scaled per view to [0, 1] (0 = invalid) and zero-padded, exactly as at inference.
    Image: RGB in [0, 1], edge-padded (normalisation comes after cropping).
    """
    if modality == "depth":
        d = np.asarray(array)
        if d.ndim != 2:
            raise ValueError(f"a depth view must be (H, W), got shape {d.shape}")
        return torch.from_numpy(np.ascontiguousarray(pad_square(scale_depth(d, scaling), "zeros")))[None]
    img = pad_square(image_to_rgb(array), "edge")
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)


def sample_crop(rng: np.random.Generator, scale: tuple[float, float], max_rotation_deg: float,
                ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> CropParams:
    """Random resized crop (area fraction in ``scale``, log-uniform aspect ratio), rotation and flips."""
    area = rng.uniform(*scale)
    r = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    w, h = min(math.sqrt(area * r), 1.0), min(math.sqrt(area / r), 1.0)
    cx = rng.uniform(-1 + w, 1 - w) if w < 1 else 0.0
    cy = rng.uniform(-1 + h, 1 - h) if h < 1 else 0.0
    angle = math.radians(rng.uniform(-max_rotation_deg, max_rotation_deg))
    return CropParams(cx, cy, w, h, angle, bool(rng.random() < 0.5), bool(rng.random() < 0.5))


def apply_crops(view: torch.Tensor, crops: list[CropParams], size: int, modality: str) -> torch.Tensor:
    """Render crops of a prepared view (:func:`prepare_view`).

    Args:
        view: (C, S, S) prepared view.
        crops: the crops to render.
        size: output side in pixels.
        modality: ``"depth"`` (nearest, zeros outside) or ``"image"`` (bilinear, border replication).

    Returns:
        (N, C, size, size).
    """
    theta = torch.zeros(len(crops), 2, 3)
    for i, c in enumerate(crops):
        cos, sin = math.cos(c.angle), math.sin(c.angle)
        sx = -c.half_w if c.flip_x else c.half_w
        sy = -c.half_h if c.flip_y else c.half_h
        theta[i] = torch.tensor([[cos * sx, -sin * sy, c.cx], [sin * sx, cos * sy, c.cy]])
    grid = F.affine_grid(theta, [len(crops), view.shape[0], size, size], align_corners=False)
    src = view[None].expand(len(crops), -1, -1, -1)
    if modality == "depth":
        return F.grid_sample(src, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)


def photometric_jitter(x: torch.Tensor, rng: np.random.Generator, strength: float = 0.4) -> torch.Tensor:
    """(N, 3, h, w) images in [0, 1]: random brightness, contrast and (p = 0.2) grayscale. Images only."""
    out = []
    for img in x:
        b = 1 + rng.uniform(-strength, strength)
        c = 1 + rng.uniform(-strength, strength)
        mean = img.mean()
        img = ((img * b - mean * b) * c + mean * b).clamp(0, 1)
        if rng.random() < 0.2:
            img = img.mean(0, keepdim=True).expand(3, -1, -1)
        out.append(img)
    return torch.stack(out)


@dataclass
class MultiCrop:
    """2 global + ``n_local`` local crops of one view, each resampled while it has too little valid depth.

    Attributes:
        modality: ``"depth"`` or ``"image"``.
        global_size: global crop side (pixels).
        local_size: local crop side (pixels).
        n_local: number of local crops.
        global_scale: area range of global crops.
        local_scale: area range of local crops.
        max_rotation_deg: rotation range.
        min_valid_fraction: minimum fraction of measured pixels in a depth crop.
        attempts: resampling attempts per crop.
        photometric: image-only brightness/contrast/grayscale jitter.
        scaling: depth scaling (the same as at inference).
    """

    modality: str
    global_size: int
    local_size: int
    n_local: int
    global_scale: tuple[float, float] = (0.32, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.32)
    max_rotation_deg: float = 180.0
    min_valid_fraction: float = 0.1
    attempts: int = 10
    photometric: bool = False
    scaling: DepthScaling = DepthScaling()

    def __post_init__(self) -> None:
        if self.photometric and self.modality == "depth":
            raise ValueError("photometric augmentations are not allowed on depth")

    def _crop(self, view: torch.Tensor, rng: np.random.Generator, scale: tuple[float, float], size: int):
        """One crop: ``attempts`` candidates rendered in one call, the first with enough valid depth kept."""
        n = self.attempts if self.modality == "depth" else 1
        cand = apply_crops(view, [sample_crop(rng, scale, self.max_rotation_deg) for _ in range(n)], size,
                           self.modality)
        if n > 1:
            ok = ((cand > 0).float().mean(dim=(1, 2, 3)) >= self.min_valid_fraction).nonzero()
            return cand[int(ok[0, 0]) if len(ok) else n - 1][None]
        return cand

    def __call__(self, array: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One raw view -> (global crops (2, C, G, G), local crops (n_local, C, L, L))."""
        view = prepare_view(array, self.modality, self.scaling)
        g = torch.cat([self._crop(view, rng, self.global_scale, self.global_size) for _ in range(2)])
        c = view.shape[0]
        loc = [self._crop(view, rng, self.local_scale, self.local_size) for _ in range(self.n_local)]
        loc = torch.cat(loc) if loc else torch.zeros(0, c, self.local_size, self.local_size)
        if self.modality == "image":
            if self.photometric:
                g, loc = photometric_jitter(g, rng), photometric_jitter(loc, rng)
            g, loc = normalize_image(g), normalize_image(loc)
        return g, loc
