"""ModMapModel: the two view modulators (one per modality) and a crossmodal mapper, as one module.

ModMap = modulation on; CFM = modulation off (identity); single-view CPIR = ``lb3m`` with N = 1 (where the
modulator, if on, is a learned constant). The model also records what scoring needs to know: the number of
views, the channel widths, the categories of a multi-class model and the pairs it was trained on.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from mv3dad.mapping.film import FiLM
from mv3dad.mapping.mappers import Mapper, build_mapper

Pairs = Literal["all", "diagonal"]


class ModMapModel(nn.Module):
    """Modulate-and-map over source -> target view pairs.

    Args:
        n_views: N, the number of views of the rig (for a multi-class model: the largest over categories).
        c_img, c_dep: image / depth token widths C_I, C_D.
        mapper: registered mapper name (``cfm``, ``lb3m``).
        mapper_kwargs: extra keyword arguments of the mapper (e.g. ``{"recon_weight": 1.0}`` for lb3m).
        modulation: FiLM view modulators on (ModMap) or off (CFM).
        modulator_hidden: hidden width of the modulator MLPs.
        categories: category names of a multi-class model (one-hot category code in the modulators), or None.
        views_per_category: number of views of each category of a multi-class model (defaults to N for all).
        train_pairs: ``"all"`` (N x N pairs) or ``"diagonal"`` (s = t only): the default sources when scoring.
    """

    def __init__(self, n_views: int, c_img: int, c_dep: int, mapper: str = "cfm",
                 mapper_kwargs: dict | None = None, modulation: bool = True, modulator_hidden: int = 128,
                 categories: Sequence[str] | None = None, views_per_category: Sequence[int] | None = None,
                 train_pairs: Pairs = "all") -> None:
        super().__init__()
        if n_views < 1:
            raise ValueError(f"n_views must be >= 1, got {n_views}")
        if train_pairs not in ("all", "diagonal"):
            raise ValueError(f"train_pairs must be 'all' or 'diagonal', got {train_pairs!r}")
        self.categories = list(categories) if categories else None
        if self.categories is not None and len(set(self.categories)) != len(self.categories):
            raise ValueError(f"duplicate category names in {self.categories}")
        n_cat = len(self.categories) if self.categories else 0
        vpc = list(views_per_category) if views_per_category is not None else [n_views] * n_cat
        if len(vpc) != n_cat or any(not 1 <= v <= n_views for v in vpc):
            raise ValueError(f"views_per_category {vpc} does not fit {n_cat} categories of at most {n_views} views")
        self.n_views, self.c_img, self.c_dep = n_views, c_img, c_dep
        self.views_per_category = vpc
        self.modulation, self.modulator_hidden, self.train_pairs = modulation, modulator_hidden, train_pairs
        self.mapper: Mapper = build_mapper(mapper, c_img, c_dep, **(mapper_kwargs or {}))
        self.film_img = FiLM(n_views, c_img, n_cat, modulator_hidden) if modulation else None
        self.film_dep = FiLM(n_views, c_dep, n_cat, modulator_hidden) if modulation else None

    def config(self) -> dict:
        """JSON-friendly constructor arguments; ``ModMapModel(**model.config())`` rebuilds the architecture."""
        return {"n_views": self.n_views, "c_img": self.c_img, "c_dep": self.c_dep, "mapper": self.mapper.name,
                "mapper_kwargs": self.mapper.hparams(), "modulation": self.modulation,
                "modulator_hidden": self.modulator_hidden, "categories": self.categories,
                "views_per_category": self.views_per_category, "train_pairs": self.train_pairs}

    def category_index(self, category: str | None) -> int | None:
        """Index of ``category`` in a multi-class model (None for a class-specific one); clear error otherwise."""
        if self.categories is None:
            return None
        if category is None:
            raise ValueError(f"this is a multi-class model: name a category, one of {self.categories}")
        if category not in self.categories:
            raise ValueError(f"category {category!r} is not in this multi-class model (has {self.categories})")
        return self.categories.index(category)

    def expected_views(self, category: str | None = None) -> int:
        """Number of views the model was trained with (for ``category`` in a multi-class model)."""
        ci = self.category_index(category)
        return self.n_views if ci is None else self.views_per_category[ci]

    def check_features(self, feats_img: torch.Tensor, feats_dep: torch.Tensor, n_expected: int | None = None,
                       where: str = "features") -> None:
        """Validate (N, C_I, h, w) / (N, C_D, h, w) features: shapes, channel widths, view count, finiteness."""
        if feats_img.ndim != 4 or feats_dep.ndim != 4:
            raise ValueError(f"{where}: features must be (N, C, h, w), got image {tuple(feats_img.shape)} "
                             f"and depth {tuple(feats_dep.shape)}")
        if feats_img.shape[1] != self.c_img or feats_dep.shape[1] != self.c_dep:
            raise ValueError(f"{where}: channel mismatch: model expects image {self.c_img} / depth {self.c_dep} "
                             f"channels, got image {feats_img.shape[1]} / depth {feats_dep.shape[1]}")
        if feats_img.shape[0] != feats_dep.shape[0] or feats_img.shape[2:] != feats_dep.shape[2:]:
            raise ValueError(f"{where}: image features {tuple(feats_img.shape)} and depth features "
                             f"{tuple(feats_dep.shape)} differ in views or token grid")
        if n_expected is not None and feats_img.shape[0] != n_expected:
            raise ValueError(f"{where}: got {feats_img.shape[0]} views but the model was trained with "
                             f"{n_expected} views (pass view_ids to map a subset onto the model's views)")
        for name, f in (("image", feats_img), ("depth", feats_dep)):
            if torch.isfinite(f).all():
                continue
            bad = ~torch.isfinite(f).flatten(1).all(1)
            if bad.any():
                raise ValueError(f"{where}: {name} features hold NaN/inf in view(s) "
                                 f"{bad.nonzero().flatten().tolist()}")

    def terms(self, x_img: torch.Tensor, x_dep: torch.Tensor, y_img: torch.Tensor, y_dep: torch.Tensor,
              src: torch.Tensor, tgt: torch.Tensor, category: torch.Tensor | None = None,
              row_pair: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Modulate and map source tokens of P pairs; return the mapper's per-token distance terms.

        Args:
            x_img, x_dep: (M, C_I), (M, C_D) source tokens.
            y_img, y_dep: (M, C_I), (M, C_D) unit-normalised observed target tokens at the same rows.
            src, tgt: (P,) int64 source / target view of each pair.
            category: (P,) or () int64 category index (multi-class models only).
            row_pair: (M,) int64 pair of each row; None = rows are P equal contiguous blocks (M = P * T).
        Returns:
            name -> (M,) cosine distances (see :mod:`mv3dad.mapping.mappers`).
        """
        if self.modulation:
            x_img = self._modulate(self.film_img, x_img, src, tgt, category, row_pair)
            x_dep = self._modulate(self.film_dep, x_dep, src, tgt, category, row_pair)
        return self.mapper.terms(x_img, x_dep, y_img, y_dep)

    def film_params(self, src: torch.Tensor, tgt: torch.Tensor, category: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(gamma_img, beta_img, gamma_dep, beta_dep), each (P, C), of P pairs; None when modulation is off."""
        if not self.modulation:
            return None
        return (*self.film_img.params(src, tgt, category), *self.film_dep.params(src, tgt, category))

    @staticmethod
    def _modulate(film: FiLM, x: torch.Tensor, src, tgt, category, row_pair) -> torch.Tensor:
        gamma, beta = film.params(src, tgt, category)
        if row_pair is not None:
            return torch.addcmul(beta[row_pair], x, gamma[row_pair])
        p = src.shape[0]
        xp = x.view(p, -1, x.shape[-1])
        return torch.addcmul(beta[:, None], xp, gamma[:, None]).view_as(x)
