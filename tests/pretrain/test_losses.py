import pytest
import torch

from mv3dad.pretrain.config import PretrainConfig
from mv3dad.pretrain.losses import DinoV2Loss, sinkhorn_knopp
from mv3dad.pretrain.schedules import schedule


def test_sinkhorn_knopp_marginals():
    torch.manual_seed(0)
    logits = torch.randn(64, 16)
    q = sinkhorn_knopp(logits, temperature=0.5, n_iter=30)
    assert torch.allclose(q.sum(1), torch.ones(64), atol=1e-4)  # each sample a distribution
    assert torch.allclose(q.sum(0), torch.full((16,), 64 / 16), rtol=1e-2)  # equipartition over prototypes
    q3 = sinkhorn_knopp(logits, 0.5, 3)  # DINOv2's 3 rounds: much closer to equipartition than a softmax
    assert torch.allclose(q3.sum(1), torch.ones(64), atol=1e-4)
    assert (q3.sum(0) - 4).abs().max() < 0.25 * (torch.softmax(logits / 0.5, 1).sum(0) - 4).abs().max()
    sharp = sinkhorn_knopp(logits * 100, 0.04, 3)  # log domain: no row underflows to 0
    assert torch.isfinite(sharp).all() and torch.allclose(sharp.sum(1), torch.ones(64), atol=1e-4)


@pytest.mark.parametrize("centering", ["ema", "sinkhorn"])
def test_dinov2_loss_finite_with_gradients(centering):
    torch.manual_seed(0)
    k, b = 32, 4
    targets = torch.zeros(2 * b, 3, 3, dtype=torch.bool)
    targets[:, 1, 1] = True
    m = int(targets.sum())
    student = {"cls": torch.randn(2 * b, 8), "cls_logits": torch.randn(2 * b, k),
               "local_logits": torch.randn(3 * b, k), "patch_logits": torch.randn(m, k)}
    student = {key: v.requires_grad_() for key, v in student.items()}
    teacher = {"cls_logits": torch.randn(2 * b, k), "patch_logits": torch.randn(m, k)}
    loss_fn = DinoV2Loss(k, centering=centering)
    loss, parts = loss_fn(teacher, student, targets, teacher_temp=0.04)
    loss.backward()
    assert torch.isfinite(loss) and set(parts) == {"dino", "ibot", "koleo"}
    assert all(student[key].grad.abs().sum() > 0 for key in student)
    # a student that copies the teacher scores lower than a random one
    copy = {**student, "cls_logits": teacher["cls_logits"] / 0.04 * 0.1,
            "patch_logits": teacher["patch_logits"] / 0.04 * 0.1}
    assert DinoV2Loss(k, centering=centering)(teacher, copy, targets, 0.04)[1]["ibot"] < parts["ibot"]


def test_schedules():
    cfg = PretrainConfig(steps=100, base_lr=4e-3, warmup_fraction=0.1, freeze_last_layer_fraction=0.05)
    s = [schedule(i, cfg, global_batch=256) for i in range(100)]
    assert s[9].lr == pytest.approx(4e-3 * 256 / 1024)  # peak after warm-up, linear batch scaling
    assert s[0].lr < s[5].lr < s[9].lr and s[50].lr < s[10].lr and s[99].lr == pytest.approx(cfg.min_lr)
    assert s[0].momentum == pytest.approx(0.992) and s[99].momentum == pytest.approx(1.0)
    assert s[0].teacher_temp == pytest.approx(0.04) and s[30].teacher_temp == pytest.approx(0.07)
    assert s[0].weight_decay == pytest.approx(0.04) and s[99].weight_decay == pytest.approx(0.2)
    assert [x.freeze_last_layer for x in s[:6]] == [True] * 5 + [False]
