"""ModMap and its single-view special cases (CFM, CFM + view conditioning, CPIR): crossmodal feature mapping.

One class, registered under each preset of :data:`mv3dad.mapping.fit.PRESETS`; the model owns its modulation for
training (:func:`mv3dad.mapping.fit.fit_feature_sets`) and scoring (:func:`mv3dad.scoring.pairs.score_views`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mv3dad.data.scene import Sample
from mv3dad.mapping.fit import PRESETS, FitConfig, fit_feature_sets
from mv3dad.scoring.methods.base import Features, FitContext, Method, ScoreOptions, ViewScores, register_method
from mv3dad.scoring.pairs import random_sources, score_views


class MappingMethod(Method):
    """Crossmodal mapping with (optional) FiLM view modulation, trained on the preset's view pairs.

    Args:
        preset: the :data:`~mv3dad.mapping.fit.PRESETS` fields applied over the run's :class:`FitConfig`.
    """

    def __init__(self, preset: dict | None = None, model=None):
        self.preset = dict(preset or {})
        self.model = model

    def fit(self, ctx: FitContext) -> None:
        cfg: FitConfig = dataclasses.replace(ctx.options.fit, **self.preset)
        sets = [f for cat in ctx.features for f in ctx.features[cat]]
        self.model = fit_feature_sets(sets, cfg, out_dir=ctx.out, resume=ctx.resume, progress=ctx.progress,
                                      meta=ctx.meta)

    @classmethod
    def load(cls, run_dir: Path, record: dict) -> "MappingMethod":
        from mv3dad.mapping.checkpoint import load_checkpoint

        model, _ = load_checkpoint(run_dir)
        return cls(PRESETS.get(record["method"], {}), model)

    def score_views(self, sample: Sample, feats: Features | None, opts: ScoreOptions) -> ViewScores:
        n = feats.img.shape[0]
        sources = random_sources(n, opts.sources, seed=opts.seed) if opts.sources else None
        multi = self.model.categories is not None
        s_img, s_dep = score_views(self.model, feats.img, feats.dep, sources=sources,
                                   category=opts.category if multi else None, view_ids=opts.view_ids)
        return ViewScores(tokens=(s_img, s_dep))


for _name, _preset in PRESETS.items():
    register_method(_name, preset=_preset)(MappingMethod)
