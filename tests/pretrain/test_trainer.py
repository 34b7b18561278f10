import json

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from mv3dad.encoders import load_encoder
from mv3dad.pretrain import trainer as trainer_mod
from mv3dad.pretrain.trainer import pretrain


def test_cli_short_run_exports_a_loadable_encoder(tmp_path, depth_corpus, make_cfg, tiny_fields):
    from mv3dad.cli.main import app

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_fields))
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["pretrain-depth", "--out", str(out), "--data", str(depth_corpus), "--config",
                                   str(cfg), "--steps", "3", "--batch-size", "2", "--image-size", "28"])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "encoder.json").read_text())
    assert meta["modality"] == "depth" and meta["in_chans"] == 1 and meta["patch_size"] == 14
    assert meta["training"]["steps"] == 3 and meta["training"]["corpus"] == {"files": 6, "bad": 0}
    assert (out / "loss_curve.png").stat().st_size > 0
    enc = load_encoder(out)
    assert enc.features(torch.rand(2, 1, 42, 56)).shape == (2, 48, 3, 4)
    assert len(json.loads((out / "history.json").read_text())) == 3
    with pytest.raises(FileExistsError, match="--resume"):
        pretrain(make_cfg(steps=3, batch_size=2), out, [depth_corpus], show_progress=False)


def test_resume_after_a_crash_gives_identical_weights(tmp_path, depth_corpus, monkeypatch, make_cfg):
    cfg = make_cfg(steps=4, checkpoint_every=2)
    pretrain(cfg, tmp_path / "straight", [depth_corpus], show_progress=False)

    real_step = trainer_mod.Trainer._train_step

    def crash_at_3(self, batch):
        if self.step == 3:
            raise KeyboardInterrupt("killed")
        return real_step(self, batch)

    monkeypatch.setattr(trainer_mod.Trainer, "_train_step", crash_at_3)
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, tmp_path / "resumed", [depth_corpus], show_progress=False)
    assert not (tmp_path / "resumed" / "encoder.safetensors").exists()
    assert json.loads((tmp_path / "resumed" / "checkpoints" / "latest.json").read_text())["step"] == 2
    monkeypatch.setattr(trainer_mod.Trainer, "_train_step", real_step)
    with pytest.raises(ValueError, match="different config"):
        pretrain(make_cfg(steps=5), tmp_path / "resumed", [depth_corpus], resume=True, show_progress=False)
    pretrain(cfg, tmp_path / "resumed", [depth_corpus], resume=True, show_progress=False)

    a = load_file(str(tmp_path / "straight" / "encoder.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "encoder.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ha = json.loads((tmp_path / "straight" / "history.json").read_text())
    hb = json.loads((tmp_path / "resumed" / "history.json").read_text())
    assert [h["loss"] for h in ha] == [h["loss"] for h in hb] and [h["lr"] for h in ha] == [h["lr"] for h in hb]
    first = load_file(str(tmp_path / "straight" / "checkpoints" / "step_00000002" / "model.safetensors"))
    assert any(not torch.equal(first["teacher.backbone.vit." + k], a[k]) for k in a)  # it trained


@pytest.mark.parametrize("centering", ["sinkhorn"])
def test_sinkhorn_option_trains(tmp_path, depth_corpus, centering, make_cfg):
    s = pretrain(make_cfg(steps=2, centering=centering, n_local_crops=0), tmp_path / "sk", [depth_corpus],
                 show_progress=False)
    assert s["final_loss"] == pytest.approx(s["final_loss"]) and (tmp_path / "sk" / "encoder.json").is_file()


def test_no_data_is_an_error(tmp_path, make_cfg):
    from mv3dad.data.corpus import CorpusError

    with pytest.raises(CorpusError, match="no training data"):
        pretrain(make_cfg(steps=1), tmp_path / "x")


def test_pretrain_image_on_a_png_folder(tmp_path, make_cfg):
    import numpy as np
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(folder / f"{0}_mask.png")  # not an image to train on
    s = pretrain(make_cfg(modality="image", steps=2, photometric=True), tmp_path / "img", [folder],
                 show_progress=False)
    assert s["corpus"] == {"files": 4, "bad": 0}
    enc = load_encoder(tmp_path / "img")
    assert enc.modality == "image" and enc.in_chans == 3
    assert enc.features(enc.preprocess([np.zeros((20, 30, 3), np.float32)], 28)).shape == (1, 48, 2, 2)


def test_synthetic_corpus_run(tmp_path, make_cfg):
    pytest.importorskip("mv3dad.synth.corpus")
    s = pretrain(make_cfg(steps=1, synthetic_views_per_part=2), tmp_path / "syn", synthetic=True,
                 show_progress=False)
    assert s["synthetic"] and s["corpus"] is None
    assert load_encoder(tmp_path / "syn").features(torch.zeros(1, 1, 28, 28)).shape == (1, 48, 2, 2)


def test_layer_scale_init_reaches_the_network_and_the_exported_encoder(tmp_path, depth_corpus, make_cfg):
    from mv3dad.pretrain.heads import DinoNetwork

    with pytest.raises(ValueError, match="layer_scale_init"):
        make_cfg(layer_scale_init=0.0)
    default = DinoNetwork(make_cfg()).backbone.vit.blocks[0].ls1.gamma
    assert torch.allclose(default, torch.full_like(default, 1e-5))  # the DINOv2 ViTs' own value
    cfg = make_cfg(steps=2, layer_scale_init=0.1)
    assert torch.allclose(DinoNetwork(cfg).backbone.vit.blocks[0].ls1.gamma, torch.tensor(0.1))
    pretrain(cfg, tmp_path / "run", [depth_corpus], show_progress=False)
    meta = json.loads((tmp_path / "run" / "encoder.json").read_text())
    assert meta["timm_kwargs"]["init_values"] == 0.1
    gamma = load_encoder(tmp_path / "run").vit.blocks[0].ls1.gamma
    assert 0.05 < float(gamma.mean()) < 0.15  # trained a little away from 0.1, loaded (strictly) from the export
