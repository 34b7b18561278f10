import json

import pytest
import torch

from mv3dad.mapping import (FeatureSet, FitConfig, check_meta, fit_feature_sets, fit_mapping, load_checkpoint,
                            preset_config, save_checkpoint)
from mv3dad.mapping.checkpoint import WEIGHTS
from mv3dad.scoring import score_views


def _synthetic(n=3, c_img=8, c_dep=6, h=4, w=4, seed=0):
    """Views of one object: img[v] = B_v z, dep[v] = A_v img[v] (fixed random linear maps per view)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(h * w, c_img, generator=g)
    img = torch.stack([z @ torch.randn(c_img, c_img, generator=g) for _ in range(n)])
    dep = torch.stack([img[v] @ torch.randn(c_img, c_dep, generator=g) for v in range(n)])
    to_map = lambda t: t.T.reshape(-1, h, w)  # noqa: E731
    img = torch.stack([to_map(t) for t in img])
    dep = torch.stack([to_map(t) for t in dep])
    valid = torch.ones(n, h, w, dtype=torch.bool)
    valid[:, 0, 0] = False
    return img, dep, valid


def _cfg(**kw):
    base = dict(epochs=6, batch_pairs=4, lr=3e-3, device="cpu", checkpoint_every=1)
    return FitConfig(**{**base, **kw})


def test_training_reduces_the_loss_on_a_learnable_relation():
    img, dep, valid = _synthetic()
    losses = []
    fit_mapping(img, dep, valid, _cfg(epochs=60), progress=False, on_epoch=lambda e, l: losses.append(l))
    assert len(losses) == 60
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("mapper", ["cfm", "lb3m"])
def test_same_seed_same_model_and_resume_equals_uninterrupted(tmp_path, mapper):
    img, dep, valid = _synthetic()
    cfg = _cfg(mapper=mapper)
    full = fit_mapping(img, dep, valid, cfg, out_dir=tmp_path / "full", progress=False)
    again = fit_mapping(img, dep, valid, cfg, progress=False)
    for k, v in full.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k

    class Stop(Exception):
        pass

    def stop_at_3(epoch, loss):
        if epoch == 3:
            raise Stop

    with pytest.raises(Stop):
        fit_mapping(img, dep, valid, cfg, out_dir=tmp_path / "part", progress=False, on_epoch=stop_at_3)
    assert json.loads((tmp_path / "part" / "modmap.json").read_text())["epoch"] == 3
    seen = []
    resumed = fit_mapping(img, dep, valid, cfg, out_dir=tmp_path / "part", resume=True, progress=False,
                          on_epoch=lambda e, l: seen.append(e))
    assert seen == [4, 5, 6]
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="lr: checkpoint 0.003, now 0.001"):
        fit_mapping(img, dep, valid, _cfg(mapper=mapper, lr=1e-3), out_dir=tmp_path / "part", resume=True,
                    progress=False)


def test_checkpoint_roundtrip_meta_and_corruption(tmp_path):
    img, dep, valid = _synthetic()
    meta = {"image_encoder": "vit_s", "image_encoder_sha256": "abc"}
    model = fit_mapping(img, dep, valid, _cfg(epochs=2), out_dir=tmp_path, progress=False, meta=meta)
    loaded, record = load_checkpoint(tmp_path)
    assert record["epoch"] == 2 and record["meta"] == meta and record["fit_config"]["epochs"] == 2
    a = score_views(model, img, dep, device="cpu")
    b = score_views(loaded, img, dep, device="cpu")
    torch.testing.assert_close(a, b)
    check_meta(record["meta"], {"image_encoder": "vit_s"})
    with pytest.raises(ValueError, match="image_encoder_sha256: checkpoint has 'abc', expected 'def'"):
        check_meta(record["meta"], {"image_encoder_sha256": "def"})
    save_checkpoint(tmp_path / "other", model, epoch=1)
    (tmp_path / WEIGHTS).write_bytes((tmp_path / "other" / WEIGHTS).read_bytes())  # mixed files
    with pytest.raises(ValueError, match="weights do not match"):
        load_checkpoint(tmp_path)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary leftovers
    with pytest.raises(FileNotFoundError, match="no ModMap checkpoint"):
        load_checkpoint(tmp_path / "missing")


def test_bad_inputs_are_named():
    img, dep, valid = _synthetic()
    bad = img.clone()
    bad[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match=r"image features hold NaN/inf in view\(s\) \[1\]"):
        fit_mapping(bad, dep, valid, _cfg(epochs=1), progress=False)
    model = fit_mapping(img, dep, valid, _cfg(epochs=1), progress=False)
    with pytest.raises(ValueError, match=r"image features hold NaN/inf in view\(s\) \[1\]"):
        score_views(model, bad, dep, device="cpu")
    with pytest.raises(ValueError, match="got 2 views but the model was trained with 3 views"):
        score_views(model, img[:2], dep[:2], device="cpu")
    with pytest.raises(ValueError, match="channel mismatch"):
        score_views(model, img[:, :7], dep, device="cpu")
    with pytest.raises(ValueError, match="no valid"):
        fit_mapping(img, dep, torch.zeros_like(valid), _cfg(epochs=1), progress=False)


def test_multi_class_and_presets():
    a = _synthetic(n=3, seed=1)
    b = _synthetic(n=2, seed=2)
    sets = [FeatureSet(*a, category="vase"), FeatureSet(*b, category="stool")]
    model = fit_feature_sets(sets, _cfg(epochs=2, multi_class=True), progress=False)
    assert model.categories == ["stool", "vase"] and model.views_per_category == [2, 3] and model.n_views == 3
    s_img, s_dep = score_views(model, *b[:2], category="stool", device="cpu")
    assert s_img.shape == s_dep.shape == (2, 4, 4)
    with pytest.raises(ValueError, match="'bin' is not in this multi-class model"):
        score_views(model, *b[:2], category="bin", device="cpu")
    with pytest.raises(ValueError, match="got 3 views but the model was trained with 2 views"):
        score_views(model, *a[:2], category="stool", device="cpu")
    with pytest.raises(ValueError, match="multi-class model: name a category"):
        score_views(model, *a[:2], device="cpu")
    cfm = preset_config("cfm", epochs=1, device="cpu")
    assert (cfm.modulation, cfm.pairs) == (False, "diagonal")
    m = fit_mapping(*a, cfm, progress=False)
    assert m.train_pairs == "diagonal" and m.film_img is None


def test_single_view_cpir_over_many_instances():
    sets = [FeatureSet(*_synthetic(n=1, seed=s)) for s in range(5)]
    losses = []
    model = fit_feature_sets(sets, preset_config("cpir", epochs=30, batch_pairs=2, lr=3e-3, device="cpu"),
                             progress=False, on_epoch=lambda e, l: losses.append(l))
    assert model.n_views == 1 and model.mapper.name == "lb3m"
    assert losses[-1] < losses[0]
    s_img, s_dep = score_views(model, sets[0].img, sets[0].dep, device="cpu")
    assert torch.equal(s_img, s_dep) and s_img.shape == (1, 4, 4)


@pytest.mark.parametrize("kill_at", [1, 2, 3])
def test_a_kill_between_the_checkpoint_files_resumes_consistently(tmp_path, monkeypatch, kill_at):
    """Kill the epoch-4 checkpoint after its ``kill_at``-th file write: --resume continues from a consistent
    epoch (3 or 4) and ends with the weights of an uninterrupted run (issue 11, point 7)."""
    import mv3dad.mapping.checkpoint as ckpt

    img, dep, valid = _synthetic()
    cfg = _cfg(epochs=6)
    full = fit_mapping(img, dep, valid, cfg, progress=False)

    class Kill(BaseException):
        pass

    real, calls = ckpt.atomic_write, []

    def write(*a, **k):
        calls.append(a[0])
        if len(calls) == 3 * 3 + kill_at:  # three files per checkpoint: the kill falls in epoch 4's
            raise Kill
        return real(*a, **k)

    monkeypatch.setattr(ckpt, "atomic_write", write)
    with pytest.raises(Kill):
        fit_mapping(img, dep, valid, cfg, out_dir=tmp_path, progress=False)
    monkeypatch.setattr(ckpt, "atomic_write", real)
    seen = []
    resumed = fit_mapping(img, dep, valid, cfg, out_dir=tmp_path, resume=True, progress=False,
                          on_epoch=lambda e, l: seen.append(e))
    assert seen[0] in (4, 5) and seen[-1] == 6
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, atol=1e-6, rtol=1e-5)
    loaded, record = load_checkpoint(tmp_path)  # the top-level model is the final one
    assert record["epoch"] == 6


@pytest.mark.parametrize("damage", ["truncate", "pickle"])
def test_a_bad_training_state_is_an_error_naming_the_file(tmp_path, damage):
    import pickle

    from mv3dad.mapping.checkpoint import training_checkpoint

    img, dep, valid = _synthetic()

    def stop(epoch, loss):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_mapping(img, dep, valid, _cfg(epochs=4), out_dir=tmp_path, progress=False, on_epoch=stop)
    state = training_checkpoint(tmp_path) / "train_state.pt"
    if damage == "truncate":
        state.write_bytes(state.read_bytes()[:100])
    else:
        state.write_bytes(pickle.dumps(object()))
    with pytest.raises(ValueError, match=f"{state}: cannot read the training state"):
        fit_mapping(img, dep, valid, _cfg(epochs=4), out_dir=tmp_path, resume=True, progress=False)
