import json

import pytest
import torch

from mv3dad.encoders import EncoderError, build_encoder, check_token_grids, load_encoder, save_encoder
from mv3dad.encoders import vit as vitmod

TINY = {"depth": 3, "embed_dim": 48, "num_heads": 3}
ARCH = "vit_small_patch14_reg4_dinov2"


def _tiny(modality="image", **kw):
    return build_encoder(ARCH, pretrained=False, modality=modality, img_size=56, timm_kwargs=dict(TINY), **kw)


def test_token_grid_both_encoders_non_square():
    img, dep = _tiny("image"), _tiny("depth")
    fi = img.features(torch.rand(2, 3, 70, 42))
    fd = dep.features(torch.rand(2, 1, 70, 42))
    assert fi.shape == (2, 48, 5, 3) and fd.shape == (2, 48, 5, 3)
    assert fi.dtype == torch.float32 and not img.training
    check_token_grids(fi, fd)
    with pytest.raises(EncoderError, match="token grid mismatch"):
        check_token_grids(fi, dep.features(torch.rand(2, 1, 42, 42)))
    assert torch.allclose(img.features(torch.ones(3, 3, 28, 28), batch_size=1)[1],
                          img.features(torch.ones(1, 3, 28, 28))[0], atol=1e-5)


def test_wrong_channel_count_and_size():
    dep = _tiny("depth")
    with pytest.raises(EncoderError, match="1 input channel"):
        dep.features(torch.rand(1, 3, 28, 28))
    with pytest.raises(EncoderError, match="multiple of the patch size"):
        dep.features(torch.rand(1, 1, 30, 28))


def test_layer_pruning_matches_intermediate():
    torch.manual_seed(0)
    full = _tiny("depth")
    for blk in full.vit.blocks:  # DINOv2 layer scale starts at 1e-5: make the blocks matter
        blk.ls1.gamma.data.fill_(1.0)
        blk.ls2.gamma.data.fill_(1.0)
    sd = full.vit.state_dict()
    torch.manual_seed(1)
    pruned = build_encoder(ARCH, pretrained=False, modality="depth", img_size=56, timm_kwargs=dict(TINY), layers=1)
    pruned.vit.load_state_dict({k: v for k, v in sd.items() if k in pruned.vit.state_dict()})
    assert len(pruned.vit.blocks) == 1 and pruned.layers == 1
    x = torch.rand(2, 1, 28, 42)
    ref = full.vit.forward_intermediates(x, indices=[0], norm=True, intermediates_only=True)[0]
    assert torch.allclose(pruned.features(x), ref, atol=1e-5)
    assert not torch.allclose(full.features(x), ref, atol=1e-3)
    with pytest.raises(EncoderError, match="layers must be"):
        _tiny("depth", layers=4)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights(tmp_path, suffix):
    src = vitmod.create_vit(ARCH, 56, {**TINY, "in_chans": 3})
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    else:
        torch.save({"model": src.state_dict()}, path)
    enc = build_encoder(ARCH, weights=path, img_size=56, timm_kwargs=dict(TINY))
    for k, v in src.state_dict().items():
        assert torch.equal(enc.vit.state_dict()[k], v), k
    assert enc.meta["weights_source"] == str(path)


def test_pickled_or_wrong_weights_refused(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"model": {"x": object()}}, bad)  # a pickled object: refused by weights_only=True
    with pytest.raises(EncoderError, match="bad.pth"):
        build_encoder(ARCH, weights=bad, img_size=56, timm_kwargs=dict(TINY))
    other = tmp_path / "other.pth"
    torch.save(vitmod.create_vit(ARCH, 56, {"depth": 2, "embed_dim": 48, "num_heads": 3}).state_dict(), other)
    with pytest.raises(EncoderError, match="do not match"):
        build_encoder(ARCH, weights=other, img_size=56, timm_kwargs=dict(TINY))


def test_offline_without_file_names_both_ways(monkeypatch, tmp_path):
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(vitmod, "_hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(EncoderError) as e:
        build_encoder("dinov2_vits14_reg", img_size=56)
    msg = str(e.value)
    assert "hub" in msg and "weights=PATH" in msg and "--image-weights" in msg


def test_unknown_name():
    with pytest.raises(EncoderError, match="unknown encoder"):
        build_encoder("not_a_model", pretrained=False)


def test_save_load_round_trip_and_checksum(tmp_path):
    enc = _tiny("depth")
    save_encoder(tmp_path, enc.vit, arch=ARCH, modality="depth", img_size=56, timm_kwargs={**TINY, "in_chans": 1},
                 training={"steps": 0})
    cfg = json.loads((tmp_path / "encoder.json").read_text())
    assert cfg["in_chans"] == 1 and cfg["patch_size"] == 14 and cfg["normalisation"]["type"] == "depth_percentile"
    loaded = load_encoder(tmp_path)
    x = torch.rand(1, 1, 42, 28)
    assert torch.allclose(loaded.features(x), enc.features(x), atol=1e-6)
    assert load_encoder(tmp_path, layers=1).features(x).shape == (1, 48, 3, 2)
    raw = (tmp_path / "encoder.safetensors").read_bytes()
    (tmp_path / "encoder.safetensors").write_bytes(raw[:-4] + b"\0\0\0\0")
    with pytest.raises(EncoderError, match="sha256"):
        load_encoder(tmp_path)
