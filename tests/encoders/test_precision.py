"""``EncoderConfig.precision``: bf16 encoders where the device computes bf16 and they agree with fp32."""

import numpy as np
import pytest
import torch

import mv3dad.encoders.vit as vit
from mv3dad.encoders import bf16_agreement, build_encoder, set_precision
from mv3dad.pipeline.features import EncoderConfig, FeatureExtractor, encoder_identity, load_encoders


def _small(name="vit_small_patch14_dinov2", **kw):
    return build_encoder(name, pretrained=False, layers=2, **kw)


def test_fp32_and_bf16_and_identity():
    e = _small()
    assert set_precision(e, "fp32") == "fp32" and "precision" not in encoder_identity(e)
    ident32 = encoder_identity(e)
    assert set_precision(e, "bf16") == "bf16"
    assert encoder_identity(e) == {**ident32, "precision": "bf16"}  # fp32 keeps the identity runs were written with
    x = torch.rand(2, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    f16 = e.features(x)
    assert f16.dtype == torch.float32
    set_precision(e, "fp32")
    f32 = e.features(x)
    assert not torch.equal(f16, f32)
    assert torch.nn.functional.cosine_similarity(f16, f32, dim=1).mean() > 0.999
    with pytest.raises(vit.EncoderError, match="precision"):
        set_precision(e, "fp16")


def test_auto_follows_the_cpu_and_the_agreement_check(monkeypatch):
    e = _small()
    monkeypatch.setattr(vit, "cpu_supports_bf16", lambda: False)
    assert set_precision(e, "auto") == "fp32" and "bf16_check" not in e.meta
    monkeypatch.setattr(vit, "cpu_supports_bf16", lambda: True)
    assert set_precision(e, "auto") == "bf16"
    check = e.meta["bf16_check"]
    assert check["mean"] >= check["min"] >= 0.99 and check["mean"] >= vit.BF16_MIN_COSINE
    assert bf16_agreement(e) == {k: check[k] for k in ("mean", "min")}  # fixed input: the same every time
    assert set_precision(e, "auto", min_cosine=1.01) == "fp32"  # a failed check keeps fp32


@pytest.mark.parametrize("name,modality", [("patch14", "depth"), ("geometric", "depth"), ("texture", "image")])
def test_non_learned_encoders_stay_fp32(name, modality):
    e = build_encoder(name, modality=modality)
    for p in ("auto", "bf16", "fp32"):
        assert set_precision(e, p) == "fp32" and "precision" not in encoder_identity(e)


def test_bf16_on_the_device(device):
    e = _small().to(device)
    assert set_precision(e, "bf16") == "bf16"
    x = torch.rand(1, 3, 28, 28, device=device)
    assert e.features(x).device.type == torch.device(device).type


def test_config_precision_and_runs_without_it(monkeypatch):
    assert EncoderConfig().precision == "auto"
    assert EncoderConfig.from_record({"image_size": 28}).precision == "fp32"  # written before precision existed
    assert EncoderConfig.from_record({"precision": "auto"}).precision == "auto"
    with pytest.raises(ValueError, match="precision"):
        EncoderConfig(precision="half")
    monkeypatch.setattr(vit, "cpu_supports_bf16", lambda: True)
    kw = dict(image_encoder="vit_small_patch14_dinov2", random_init=True, image_size=28, image_layers=1,
              depth_layers=1, device="cpu")
    i16, d16 = load_encoders(EncoderConfig(precision="auto", **kw))
    i32, d32 = load_encoders(EncoderConfig(precision="fp32", **kw))
    assert i16.effective_precision() == d16.effective_precision() == "bf16"
    assert i32.effective_precision() == d32.effective_precision() == "fp32"
    cfg = EncoderConfig(**kw)
    assert FeatureExtractor(i16, d16, cfg).identity != FeatureExtractor(i32, d32, cfg).identity  # never one cache
    assert np.isfinite(i16.meta["bf16_check"]["mean"])
