"""Block masking for the iBOT loss, restricted to tokens that see measured depth."""

from __future__ import annotations

import random

import torch
from lightly.models.utils import random_block_mask


def block_masks(n: int, grid: tuple[int, int], seed: int, probability: float = 0.5,
                ratio: tuple[float, float] = (0.1, 0.5)) -> torch.Tensor:
    """DINOv2 block masks (lightly's ``random_block_mask``), reproducible from ``seed``.

    Args:
        n: number of crops.
        grid: token grid (h, w).
        seed: seed of this call (the global ``random`` state is left untouched).
        probability: fraction of the crops that get a mask (the others get none).
        ratio: (min, max) fraction of tokens masked in a masked crop; the crops' targets are spread evenly
            over this range, as in DINOv2.

    Returns:
        (n, h, w) bool, True = masked.
    """
    if not 0 <= probability <= 1 or not 0 <= ratio[0] <= ratio[1] <= 1:
        raise ValueError(f"bad masking parameters: probability {probability}, ratio {ratio}")
    max_block = max(4, (grid[0] * grid[1]) // 2)  # DINOv2: blocks of 4 tokens to half the crop
    state = random.getstate()
    random.seed(seed)
    try:
        return random_block_mask((n, *grid), batch_mask_ratio=probability, min_image_mask_ratio=ratio[0],
                                 max_image_mask_ratio=ratio[1], min_num_masks_per_block=4,
                                 max_num_masks_per_block=max_block)
    finally:
        random.setstate(state)


def ibot_targets(masks: torch.Tensor, valid: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens the student sees masked and the tokens the iBOT loss is computed on.

    Targets are masked tokens that see measured depth (``valid``); unmeasured tokens are never targets.
    At least one target is guaranteed (a random valid token of a random crop is masked when none is), so that
    every process takes part in the loss and its centre update.

    Args:
        masks: (n, h, w) bool block masks.
        valid: (n, h, w) bool, tokens with enough measured depth (all True for images).
        generator: torch generator for the fallback choice.

    Returns:
        (masks, targets): both (n, h, w) bool, targets ⊆ masks.
    """
    masks = masks.clone()
    targets = masks & valid
    if not targets.any():
        pool = valid.flatten().nonzero()[:, 0] if valid.any() else torch.arange(valid.numel())
        i = pool[torch.randint(len(pool), (1,), generator=generator)]
        masks.view(-1)[i] = True
        targets.view(-1)[i] = True
    return masks, targets
