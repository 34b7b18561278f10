import random

import torch

from mv3dad.pretrain.masking import block_masks, ibot_targets


def test_block_mask_ratios_and_reproducibility():
    state = random.getstate()
    m = block_masks(200, (16, 16), seed=3, probability=0.5, ratio=(0.1, 0.5))
    assert random.getstate() == state
    assert m.shape == (200, 16, 16) and m.dtype == torch.bool
    frac = m.float().mean(dim=(1, 2))
    masked = frac > 0
    assert masked.sum() == 100  # exactly the requested share of crops is masked
    assert frac[masked].max() <= 0.5 + 1e-6
    assert 0.2 < frac[masked].mean() < 0.4  # targets spread over [0.1, 0.5]
    assert torch.equal(m, block_masks(200, (16, 16), seed=3))
    assert not torch.equal(m, block_masks(200, (16, 16), seed=4))


def test_targets_exclude_unmeasured_tokens():
    m = block_masks(4, (8, 8), seed=1, probability=1.0, ratio=(0.3, 0.5))
    valid = torch.zeros(4, 8, 8, dtype=torch.bool)
    valid[:, :, :4] = True
    masks, targets = ibot_targets(m, valid, torch.Generator().manual_seed(0))
    assert torch.equal(masks, m) and torch.equal(targets, m & valid) and targets.any()
    none = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks, targets = ibot_targets(none, valid[:2], torch.Generator().manual_seed(0))
    assert targets.sum() == 1 and (targets & valid[:2]).sum() == 1 and torch.equal(masks, targets)
