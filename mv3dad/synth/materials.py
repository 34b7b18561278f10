"""Materials of the synthetic parts: a procedural texture, two colours, Blinn-Phong reflectance and how readily
the scanner loses depth on them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mv3dad.synth.textures import TEXTURES


@dataclass(frozen=True)
class Material:
    """Appearance of a surface.

    Attributes:
        texture: procedural texture name (a key of :data:`mv3dad.synth.textures.TEXTURES`).
        scale: texture feature size multiplier (1 = the texture's natural size).
        dark: RGB in [0, 1] of texture value 0.
        light: RGB in [0, 1] of texture value 1.
        kd: diffuse reflectance factor.
        ks: specular (Blinn-Phong) strength; large values saturate the sensor.
        shininess: Blinn-Phong exponent (sharper highlights when larger), rounded to a power of two.
        spec_dropout: probability-like factor in [0, 1] that a saturated highlight loses its depth.
    """

    texture: str
    scale: float = 1.0
    dark: tuple[float, float, float] = (0.1, 0.1, 0.1)
    light: tuple[float, float, float] = (0.9, 0.9, 0.9)
    kd: float = 0.9
    ks: float = 0.3
    shininess: float = 40.0
    spec_dropout: float = 0.5

    def __post_init__(self) -> None:
        if self.texture not in TEXTURES:
            raise ValueError(f"unknown texture {self.texture!r}; choose from {sorted(TEXTURES)}")


MATERIALS: dict[str, Material] = {
    "stool": Material("wood", 1.0, (0.30, 0.17, 0.07), (0.85, 0.62, 0.38), 0.95, 0.35, 30.0, 0.3),
    "bin": Material("brushed", 1.0, (0.35, 0.36, 0.38), (0.80, 0.81, 0.83), 0.6, 1.4, 16.0, 0.9),
    "vase": Material("wicker", 1.0, (0.12, 0.08, 0.04), (0.86, 0.72, 0.48), 1.0, 0.12, 12.0, 0.2),
    "cabinet": Material("laminate", 1.0, (0.55, 0.55, 0.52), (0.98, 0.97, 0.93), 0.9, 0.55, 45.0, 0.5),
    "container": Material("speckle", 1.0, (0.10, 0.22, 0.40), (0.35, 0.60, 0.90), 0.95, 0.7, 50.0, 0.6),
    "default": Material("speckle", 1.0, (0.25, 0.25, 0.25), (0.75, 0.75, 0.72), 0.95, 0.5, 40.0, 0.5),
    "support": Material("rubber", 1.0, (0.12, 0.12, 0.12), (0.30, 0.30, 0.30), 0.9, 0.05, 8.0, 0.0),
}


def material_for(category: str) -> Material:
    """The material of a category (``default`` for user meshes)."""
    return MATERIALS.get(category, MATERIALS["default"])


def pack(materials: list[Material]) -> tuple[np.ndarray, np.ndarray]:
    """Materials as arrays for the renderer: (M, 10) float64 ``kd, ks, shininess, scale, dark rgb, light rgb``
    and (M,) int64 texture ids."""
    params = np.array([[m.kd, m.ks, m.shininess, m.scale, *m.dark, *m.light] for m in materials], dtype=np.float64)
    ids = np.array([TEXTURES[m.texture] for m in materials], dtype=np.int64)
    return params, ids
