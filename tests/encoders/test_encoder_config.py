"""encoder.json is checked against an allowlist of architecture fields before timm sees it (issue 11, point 8)."""

import json

import pytest
import torch

from mv3dad.encoders import EncoderError, load_encoder
from mv3dad.encoders.vit import create_vit, save_encoder


@pytest.fixture
def enc_dir(tmp_path):
    torch.manual_seed(0)
    kw = {"in_chans": 1, "depth": 1}
    vit = create_vit("vit_small_patch14_dinov2", 56, kw)
    return save_encoder(tmp_path / "enc", vit, arch="vit_small_patch14_dinov2", modality="depth", img_size=56,
                        timm_kwargs=kw)


def test_a_saved_encoder_passes(enc_dir):
    assert load_encoder(enc_dir).modality == "depth"


@pytest.mark.parametrize("key,value", [("checkpoint_path", "/etc/passwd"), ("pretrained_cfg_overlay", {"file": "x"}),
                                       ("pretrained_cfg", {"url": "http://x"}), ("depth", [1, 2])])
def test_fields_outside_the_allowlist_are_refused(enc_dir, key, value):
    cfg_path = enc_dir / "encoder.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["timm_kwargs"][key] = value
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(EncoderError, match=f"{cfg_path}: timm_kwargs field '{key}'"):
        load_encoder(enc_dir)


def test_a_bad_arch_name_is_refused(enc_dir):
    cfg_path = enc_dir / "encoder.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["arch"] = "hf-hub:evil/model"
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(EncoderError, match="arch"):
        load_encoder(enc_dir)
