"""PatchCore-style per-view memory bank on the same frozen features (:mod:`mv3dad.scoring.knn`)."""

from __future__ import annotations

from pathlib import Path

import torch

from mv3dad.data.scene import Sample
from mv3dad.io.atomic import atomic_file
from mv3dad.scoring.knn import MemoryBank, build_memory, knn_score_views
from mv3dad.scoring.methods.base import (Features, FitContext, Method, ScoreOptions, ViewScores, method_preset,
                                         register_method)

MEMORY_FILE = "memory.safetensors"


@register_method("knn_all", views="all")
@register_method("knn")
class KnnMethod(Method):
    """Nearest-neighbour distance of each test token to nominal tokens (one map per modality): those of the same
    view (``knn``), or of every view (``knn_all``: tolerates the pose variation between instances, which moves a
    part's surface across a view's token grid, at the cost of a bank N times larger).

    Reads ``coreset`` (None, a fraction or a count of tokens kept per view) from the fit options.

    Args:
        views: ``"same"`` or ``"all"``: which views' nominal tokens a test token is compared with.
    """

    def __init__(self, bank: MemoryBank | None = None, views: str = "same"):
        self.bank = bank
        self.views = views

    def fit(self, ctx: FitContext) -> None:
        from safetensors.torch import save_file

        if len(ctx.features) != 1:
            raise ValueError("the knn memory bank is class-specific: pass one category")
        sets = next(iter(ctx.features.values()))
        self.bank = build_memory(sets, mode="separate", coreset=ctx.options.coreset, seed=ctx.options.fit.seed)
        tensors = {f"img_{i}": t.contiguous() for i, t in enumerate(self.bank.img)}
        tensors.update({f"dep_{i}": t.contiguous() for i, t in enumerate(self.bank.dep)})
        with atomic_file(ctx.out / MEMORY_FILE) as tmp:
            save_file(tensors, str(tmp))

    @classmethod
    def load(cls, run_dir: Path, record: dict) -> "KnnMethod":
        from safetensors.torch import load_file

        path = Path(run_dir) / MEMORY_FILE
        try:
            t = load_file(str(path))
            n = sum(1 for k in t if k.startswith("img_"))
            img = [t[f"img_{i}"] for i in range(n)]
            dep = [t[f"dep_{i}"] for i in range(n)]
        except (OSError, KeyError, RuntimeError) as e:
            raise ValueError(f"{path}: cannot read the memory bank: {e}") from None
        if not n:
            raise ValueError(f"{path}: empty memory bank")
        views = method_preset(record["method"]).get("views", "same")
        if views == "all":  # every view's memory is the union of all views' memories
            img, dep = [torch.cat(img)] * n, [torch.cat(dep)] * n
        return cls(MemoryBank("separate", img, dep, img[0].shape[1], dep[0].shape[1]), views)

    def score_views(self, sample: Sample, feats: Features | None, opts: ScoreOptions) -> ViewScores:
        return ViewScores(tokens=knn_score_views(self.bank, feats.img, feats.dep, view_ids=opts.view_ids))
