"""The DINOv3-style DINO-Depth (ViT-S/16, RoPE) and the ModMap authors' release layout.

The checkpoints are made here, in exactly the authors' layout and with the key names their DINOv3-based code
implies (``<dir>/config.yaml`` with a ``student`` section, ``<dir>/eval/last_checkpoint/teacher_checkpoint.pth``
holding ``{"teacher": {"backbone.<key>": tensor, "dino_head.<key>": tensor, ...}}``), independently of the writer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from mv3dad.encoders import EncoderError, build_encoder, load_encoder
from mv3dad.encoders.dinov3 import DinoV3Config, DinoV3ViT, RopePositionEmbedding
from mv3dad.encoders.release import TEACHER_PTH, is_authors_release, save_as_authors_release

D, DEPTH, P, HID = 384, 12, 16, 1536
PTH = Path("eval") / "last_checkpoint" / "teacher_checkpoint.pth"


def authors_backbone_shapes(depth: int = DEPTH, dim: int = D, in_chans: int = 1) -> dict[str, tuple]:
    """The backbone keys (without ``backbone.``) and shapes of a DINOv3 ViT-S/16 with RoPE, no storage tokens,
    LayerScale, an unmasked qkv bias and an MLP: written out by hand from the DINOv3 parameter names."""
    keys = {"cls_token": (1, 1, dim), "mask_token": (1, dim), "patch_embed.proj.weight": (dim, in_chans, P, P),
            "patch_embed.proj.bias": (dim,), "rope_embed.periods": (dim // 6 // 4,), "norm.weight": (dim,),
            "norm.bias": (dim,)}
    for i in range(depth):
        b = f"blocks.{i}."
        keys.update({b + "norm1.weight": (dim,), b + "norm1.bias": (dim,), b + "attn.qkv.weight": (3 * dim, dim),
                     b + "attn.qkv.bias": (3 * dim,), b + "attn.proj.weight": (dim, dim), b + "attn.proj.bias": (dim,),
                     b + "ls1.gamma": (dim,), b + "norm2.weight": (dim,), b + "norm2.bias": (dim,),
                     b + "mlp.fc1.weight": (4 * dim, dim), b + "mlp.fc1.bias": (4 * dim,),
                     b + "mlp.fc2.weight": (dim, 4 * dim), b + "mlp.fc2.bias": (dim,), b + "ls2.gamma": (dim,)})
    return keys


HEADS = {"dino_head.mlp.0.weight": (2048, D), "dino_head.mlp.0.bias": (2048,), "dino_head.mlp.2.weight": (256, 2048),
         "dino_head.last_layer.weight": (4096, 256), "ibot_head.mlp.0.weight": (2048, D),
         "ibot_head.last_layer.weight": (4096, 256)}

STUDENT = {"arch": "vit_small", "patch_size": 16, "in_chans": 1, "drop_path_rate": 0.1, "layerscale": 1.0e-05,
           "ffn_layer": "mlp", "qkv_bias": True, "proj_bias": True, "ffn_bias": True, "n_storage_tokens": 0,
           "mask_k_bias": False, "untie_cls_and_patch_norms": False, "pos_embed_rope_base": 100.0,
           "pos_embed_rope_normalize_coords": "separate", "norm_layer": "layernormbf16"}


def authors_teacher(seed: int = 0, depth: int = DEPTH) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {"backbone." + k: torch.randn(s, generator=g) * 0.05 for k, s in authors_backbone_shapes(depth).items()}
    sd["backbone.rope_embed.periods"] = 100.0 ** (2 * torch.arange(16, dtype=torch.float32) / 32)
    sd.update({k: torch.randn(s, generator=g) * 0.02 for k, s in HEADS.items()})
    return sd


def write_release(root: Path, teacher, student: dict | None = None, extra: dict | None = None) -> Path:
    """A release folder in the authors' layout, written by hand (not by mv3dad's writer)."""
    (root / PTH).parent.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump({"student": student or STUDENT, "teacher": {"in_chans": 1},
                                                      "crops": {"global_crops_size": 224, "local_crops_size": 96},
                                                      **(extra or {})}))
    torch.save({"teacher": teacher}, root / PTH)
    return root


@pytest.fixture(scope="module")
def x():
    return torch.rand(2, 1, 224, 224, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    d = tmp_path_factory.mktemp("release")
    return d, save_as_authors_release(d, arch="dinov3_depth_vits16", seed=0)


def test_build_random_init_shape():
    enc = build_encoder("dinov3_depth_vits16", pretrained=False)
    out = enc.features(torch.zeros(2, 1, 224, 224))
    assert out.shape == (2, 384, 14, 14)
    assert (enc.modality, enc.patch_size, enc.embed_dim, enc.in_chans) == ("depth", 16, 384, 1)
    assert enc.preprocess([torch.rand(40, 30).numpy() + 1], 224).shape == (1, 1, 224, 224)
    with pytest.raises(EncoderError, match="no pretrained weights"):
        build_encoder("dinov3_depth_vits16")


def test_round_trip_contract(release, x):
    d, e = release
    assert (d / "config.yaml").is_file() and (d / TEACHER_PTH).is_file() and is_authors_release(d)
    loaded = load_encoder(d)
    a, b = e.features(x), loaded.features(x)
    assert a.shape == (2, 384, 14, 14)
    assert torch.equal(a, b)
    assert torch.equal(load_encoder(d / TEACHER_PTH).features(x), a)  # the .pth, config.yaml found above it
    assert loaded.modality == "depth" and loaded.patch_size == 16 and loaded.meta["arch"] == "dinov3_depth_vits16"
    assert not torch.allclose(a[0], a[1])  # the features depend on the input


def test_written_layout_has_exactly_the_authors_keys(release):
    d, _ = release
    ckpt = torch.load(d / TEACHER_PTH, weights_only=True)
    assert list(ckpt) == ["teacher"]
    backbone = {k[len("backbone."):]: tuple(v.shape) for k, v in ckpt["teacher"].items() if k.startswith("backbone.")}
    assert backbone == authors_backbone_shapes()
    assert any(k.startswith("dino_head.") for k in ckpt["teacher"])
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    assert cfg["student"]["arch"] == "vit_small" and cfg["student"]["patch_size"] == 16
    assert cfg["student"]["in_chans"] == 1 and cfg["student"]["n_storage_tokens"] == 0


def test_hand_made_release_loads_every_tensor(tmp_path, x):
    teacher = authors_teacher()
    d = write_release(tmp_path, teacher)
    enc = load_encoder(d, layers=12)
    sd = enc.vit.state_dict()
    for k, v in teacher.items():
        if k.startswith("backbone."):
            assert torch.equal(sd[k[len("backbone."):]], v), k
    assert enc.features(x[:1]).shape == (1, 384, 14, 14)
    assert enc.vit.norm.eps == 1e-6 and enc.vit.blocks[0].norm1.eps == 1e-6
    pruned = load_encoder(d, layers=6)  # features of block 6, final-normed
    assert len(pruned.vit.blocks) == 6 and pruned.features(x[:1]).shape == (1, 384, 14, 14)
    # without rope_embed.periods (a buffer some exports drop): computed from the config's base
    del teacher["backbone.rope_embed.periods"]
    torch.testing.assert_close(load_encoder(write_release(tmp_path / "b", teacher)).features(x[:1]),
                               enc.features(x[:1]), rtol=0, atol=0)


def test_unexpected_key_is_named(tmp_path):
    teacher = authors_teacher()
    teacher["backbone.storage_tokens"] = torch.zeros(1, 4, D)
    with pytest.raises(EncoderError, match=r"unexpected keys \(1\): \['storage_tokens'\]"):
        load_encoder(write_release(tmp_path, teacher))


def test_renamed_key_names_missing_and_unexpected(tmp_path):
    teacher = authors_teacher()
    teacher["backbone.blocks.0.attn.q_bias"] = teacher.pop("backbone.blocks.0.attn.qkv.bias")
    with pytest.raises(EncoderError, match="missing keys") as err:
        load_encoder(write_release(tmp_path, teacher))
    assert "blocks.0.attn.qkv.bias" in str(err.value) and "blocks.0.attn.q_bias" in str(err.value)
    assert str(tmp_path / PTH) in str(err.value)


def test_missing_key_is_named(tmp_path):
    teacher = authors_teacher()
    del teacher["backbone.blocks.3.ls1.gamma"]
    with pytest.raises(EncoderError, match=r"missing keys \(1\): \['blocks.3.ls1.gamma'\]"):
        load_encoder(write_release(tmp_path, teacher))


def test_mismatched_shapes_are_named(tmp_path):
    teacher = authors_teacher()
    teacher["backbone.patch_embed.proj.weight"] = torch.zeros(D, 3, P, P)  # an RGB checkpoint
    teacher["backbone.blocks.2.mlp.fc1.bias"] = torch.zeros(HID + 1)
    with pytest.raises(EncoderError, match="mismatched shapes") as err:
        load_encoder(write_release(tmp_path, teacher))
    msg = str(err.value)
    assert "patch_embed.proj.weight: checkpoint (384, 3, 16, 16) vs model (384, 1, 16, 16)" in msg
    assert "blocks.2.mlp.fc1.bias" in msg


class _Payload:
    """Unpickling this would create a marker file: weights_only=True must refuse it before that happens."""

    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_object_is_refused(tmp_path):
    payload = _Payload()
    payload.marker = tmp_path / "executed"
    d = tmp_path / "rel"
    (d / PTH).parent.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump({"student": STUDENT}))
    with open(d / PTH, "wb") as f:
        torch.save({"teacher": authors_teacher(), "extra": payload}, f)
    with pytest.raises(EncoderError, match="weights_only=True") as err:
        load_encoder(d)
    assert str(d / PTH) in str(err.value)
    assert not payload.marker.exists()
    torch.load(d / PTH, weights_only=False)  # the payload is live: a plain torch.load would run it
    assert payload.marker.exists()


def test_unsupported_config_and_broken_layout(tmp_path):
    with pytest.raises(EncoderError, match="n_storage_tokens"):
        load_encoder(write_release(tmp_path / "a", authors_teacher(), {**STUDENT, "n_storage_tokens": 4}))
    with pytest.raises(EncoderError, match="student.arch"):
        load_encoder(write_release(tmp_path / "b", authors_teacher(), {**STUDENT, "arch": "vit_7b"}))
    d = tmp_path / "c"
    d.mkdir()
    (d / "config.yaml").write_text(yaml.safe_dump({"student": STUDENT}))
    assert not is_authors_release(d)  # no checkpoint: not dispatched, the encoder.json loader names what is missing
    with pytest.raises(EncoderError):
        load_encoder(d)
    e = tmp_path / "e"
    (e / PTH).parent.mkdir(parents=True)
    torch.save({"student": {}}, e / PTH)
    (e / "config.yaml").write_text(yaml.safe_dump({"student": STUDENT}))
    with pytest.raises(EncoderError, match="no 'teacher' state dict"):
        load_encoder(e)


def test_weights_file_into_build_encoder(release, x):
    d, e = release
    enc = build_encoder("dinov3_depth_vits16", weights=d / TEACHER_PTH)
    assert torch.equal(enc.features(x[:1]), e.features(x[:1]))


def test_rope_matches_timm_dinov3_rope():
    """Our RoPE tables equal timm's port of DINOv3's RopePositionEmbedding (non-square grid, both coordinate
    normalisations); the rest of timm's DINOv3 model does not fit this checkpoint (key bias, eps)."""
    pytest.importorskip("timm")
    try:
        from timm.layers.pos_embed_sincos import RotaryEmbeddingDinoV3
    except ImportError:
        pytest.skip("timm without RotaryEmbeddingDinoV3")
    for norm in ("separate", "max"):
        ours = RopePositionEmbedding(64, 100.0, norm)
        ref = RotaryEmbeddingDinoV3(64, temperature=100.0, normalize_coords=norm).eval()
        emb = ref.get_embed([5, 7])
        sin, cos = emb.chunk(2, -1)
        s, c = ours(5, 7)
        torch.testing.assert_close(s, sin, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(c, cos, rtol=1e-6, atol=1e-6)


def test_non_square_input_and_rope_depends_on_position():
    torch.manual_seed(0)
    vit = DinoV3ViT(DinoV3Config(depth=2, layer_scale_init=1.0)).eval()
    x = torch.rand(1, 1, 64, 96)
    f = vit.forward_features(x)
    assert f.shape == (1, 384, 4, 6)
    # a constant image: tokens differ only through RoPE, so the map is not constant
    g = vit.forward_features(torch.full((1, 1, 64, 64), 0.5))
    assert g.flatten(2).std(-1).mean() > 1e-3


def test_pretrain_network_for_dinov3_config():
    from mv3dad.pretrain.config import PretrainConfig
    from mv3dad.pretrain.trainer import DinoV3Network, build_network

    cfg = PretrainConfig(arch="dinov3_depth_vits16", vit_depth=1, image_size=32, n_local_crops=1,
                         n_prototypes=16, head_hidden_dim=16, head_bottleneck_dim=8)
    assert cfg.patch_size == 16 and cfg.local_size == 16
    net = build_network(cfg)
    assert isinstance(net, DinoV3Network) and net.n_prefix == 1
    masks = torch.zeros(2, 2, 2, dtype=torch.bool)
    masks[0, 0, 0] = True
    out = net(torch.rand(2, 1, 32, 32), torch.rand(1, 1, 16, 16), masks, masks)
    assert out["cls_logits"].shape == (2, 16) and out["patch_logits"].shape == (1, 16)
    assert out["local_logits"].shape == (1, 16)
    with pytest.raises(ValueError, match="patch size 16"):
        PretrainConfig(arch="dinov3_depth_vits16", image_size=224, local_size=98)
