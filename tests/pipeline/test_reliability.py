"""Issue 11: bad inputs a user can make (a relocated run, a wrong dataset, a finished run, an unwritable path, a
corrupt sample among good ones, a killed synth) give one clear error or a partial result, never a traceback or a
silently wrong answer. Weight-free encoders (texture / geometric) keep every run fast."""

import json
import os
import shutil
import stat

import numpy as np
import pytest

from mv3dad.data import open_dataset

KNN = ["--method", "knn", "--image-encoder", "texture", "--depth-encoder", "geometric", "--image-size", "112"]


def _cli(*args, code=0):
    from typer.testing import CliRunner

    from mv3dad.cli.main import app

    r = CliRunner().invoke(app, [str(a) for a in args])
    if code is not None:
        assert r.exit_code == code, r.output + repr(r.exception)
    assert "Traceback" not in r.output
    return r


def _synth(root, seed=0, n_test=3):
    _cli("synth", root, "--categories", "vase", "--views", "6", "--image-size", "96", "--test-instances", n_test,
         "--seed", seed, "--no-preview", "--no-progress")
    return root


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return _synth(tmp_path_factory.mktemp("bench") / "data")


@pytest.fixture(scope="module")
def run(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    _cli("fit", bench, "-c", "vase", "--out", out, *KNN)
    return out


def _tiny_depth_encoder(path, seed=0):
    """A 1-block ViT-S/14 depth encoder written like `mv3dad pretrain-depth` does."""
    import torch

    from mv3dad.encoders.vit import create_vit, save_encoder

    torch.manual_seed(seed)
    kw = {"in_chans": 1, "depth": 1}
    vit = create_vit("vit_small_patch14_dinov2", 112, kw)
    return save_encoder(path, vit, arch="vit_small_patch14_dinov2", modality="depth", img_size=112, timm_kwargs=kw)


# ------------------------------------------------------------------------------------------- 1 relocatable runs
def test_run_is_relocatable_with_its_encoder_copied_inside(bench, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    _tiny_depth_encoder(work / "dd")
    fit_args = ["-c", "vase", "--method", "knn", "--image-encoder", "texture", "--image-size", "112"]
    _cli("fit", bench, "--out", "run", "--depth-encoder", "dd", *fit_args)
    rec = json.loads((work / "run" / "run.json").read_text())
    assert rec["encoder_files"]["depth"]["stored"] == "encoders/depth"
    assert len(rec["encoder_files"]["depth"]["sha256"]) == 64
    # move the run to another machine-like place, delete the encoder, predict from another folder
    moved = tmp_path / "elsewhere" / "run_moved"
    moved.parent.mkdir()
    shutil.move(str(work / "run"), moved)
    shutil.rmtree(work / "dd")
    monkeypatch.chdir(tmp_path)
    _cli("predict", moved, bench, "--out", tmp_path / "pred")
    assert (tmp_path / "pred" / "scores.json").is_file()


def test_run_without_copy_finds_its_encoder_by_option_and_checks_the_hash(bench, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _tiny_depth_encoder(tmp_path / "dd")
    _cli("fit", bench, "--out", "run", "--depth-encoder", "dd", "--no-copy-encoders", "-c", "vase", "--method",
         "knn", "--image-encoder", "texture", "--image-size", "112")
    shutil.move(str(tmp_path / "dd"), tmp_path / "moved_dd")
    r = _cli("predict", "run", bench, "--out", "p1", code=2)
    assert "--depth-encoder" in r.output and "not found" in r.output
    _cli("predict", "run", bench, "--out", "p2", "--depth-encoder", "moved_dd")
    _tiny_depth_encoder(tmp_path / "other", seed=1)
    r = _cli("predict", "run", bench, "--out", "p3", "--depth-encoder", "other", code=2)
    assert "sha256" in r.output and "differ" in r.output


# --------------------------------------------------------------------------------- 2 evaluate on the wrong data
def test_evaluate_refuses_another_dataset_with_the_same_instance_ids(bench, run, tmp_path):
    other = _synth(tmp_path / "other", seed=1)
    _cli("predict", run, bench, "--out", tmp_path / "pred")
    rec = json.loads((tmp_path / "pred" / "scores.json").read_text())
    assert rec["dataset"]["path"] == str(bench.resolve())
    assert all(len(e["digest"]) == 16 for e in rec["scores"]["vase"].values())
    _cli("evaluate", tmp_path / "pred", "--data", bench)
    r = _cli("evaluate", tmp_path / "pred", "--data", other, code=2)
    assert str(bench.resolve()) in r.output and str(other) in r.output


# ---------------------------------------------------------------------------------------- 3 a finished run
def test_fit_refuses_to_overwrite_a_finished_run(bench, run):
    before = (run / "run.json").read_bytes()
    r = _cli("fit", bench, "-c", "vase", "--out", run, *KNN, code=2)
    assert "finished run" in r.output and "--overwrite" in r.output
    assert (run / "run.json").read_bytes() == before
    _cli("fit", bench, "-c", "vase", "--out", run, *KNN, "--overwrite")


# ----------------------------------------------------------------------------------- 4 unwritable outputs
def test_unwritable_outputs_are_one_line_naming_the_path(bench, run, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    pred = tmp_path / "pred"
    _cli("predict", run, bench, "--out", pred)
    for args in (["fit", bench, "-c", "vase", "--out", blocker / "run", *KNN],
                 ["predict", run, bench, "--out", blocker / "pred"],
                 ["pretrain-depth", "--out", blocker / "pt", "--synthetic", "--steps", "1"],
                 ["evaluate", pred, "--data", bench, "--json", blocker / "r.json"],
                 ["evaluate", pred, "--data", bench, "--markdown", blocker / "r.md"]):
        r = _cli(*args, code=1)
        assert r.output.count("error:") == 1 and f"{blocker} is a file" in r.output, args


def test_synth_checks_memory_before_writing(tmp_path):
    r = _cli("synth", tmp_path / "b", "--categories", "vase", "--views", "6", "--image-size", "96",
             "--voxel-size", "0.05", "--no-preview", "--no-progress", code=2)
    assert "--voxel-size 0.05" in r.output and "GiB" in r.output
    assert not (tmp_path / "b").exists()


# ------------------------------------------------------------------------ 5 one bad scan never costs the batch
def _corrupt_copy(bench, dst):
    shutil.copytree(bench, dst)
    d = dst / "vase" / "test" / "001" / "views" / "000_depth.npy"
    a = np.load(d)
    a[10:20, 10:20] = np.nan
    np.save(d, a)
    return dst


def test_predict_skips_a_corrupt_sample_records_it_and_resumes(bench, run, tmp_path):
    data = _corrupt_copy(bench, tmp_path / "data")
    pred = tmp_path / "pred"
    r = _cli("predict", run, data, "--out", pred, code=1)
    assert "FAILED vase/001" in r.output and "NaN" in r.output and "2/3 samples scored" in r.output
    scores = json.loads((pred / "scores.json").read_text())["scores"]["vase"]
    assert scores["001"]["error"] and scores["001"]["score"] is None
    assert np.isfinite(scores["000"]["score"]) and np.isfinite(scores["002"]["score"])
    assert (pred / "vase" / "000.npz").is_file() and not (pred / "vase" / "001.npz").exists()
    mtime = (pred / "vase" / "000.npz").stat().st_mtime_ns
    r = _cli("predict", run, data, "--out", pred, code=1)  # the rerun keeps the scored samples
    assert "2 kept" in r.output and (pred / "vase" / "000.npz").stat().st_mtime_ns == mtime
    r = _cli("evaluate", pred, "--data", data, code=2)
    assert "001" in r.output
    _cli("predict", run, data, "--out", pred, "--fuse", "mean", code=1)  # other options: recomputed
    assert (pred / "vase" / "000.npz").stat().st_mtime_ns != mtime


def test_a_sample_missing_a_view_is_scored_with_the_views_it_has(bench, run, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(bench, data)
    for f in (data / "vase" / "test" / "002" / "views").glob("003_*"):
        f.unlink()
    r = _cli("predict", run, data, "--out", tmp_path / "pred")
    assert "vase/002: scored with the 5 views it has" in r.output and "missing rig views [3]" in r.output
    e = json.loads((tmp_path / "pred" / "scores.json").read_text())["scores"]["vase"]["002"]
    assert e["views_scored"] == [0, 1, 2, 4, 5] and np.isfinite(e["score"])


# ---------------------------------------------------------------------------------------- 6 a killed synth
def test_an_interrupted_synth_is_refused_or_read_with_a_warning_and_a_rerun_cleans_up(tmp_path, monkeypatch):
    from mv3dad.data import layout
    from mv3dad.data.scene import DataError
    from mv3dad.synth.generate import SynthConfig, generate_benchmark

    cfg = SynthConfig(categories=("vase",), views=6, image_size=96, test_instances=2, preview=False)
    real = layout.write_sample
    calls = []

    def killed(*a, **k):
        if len(calls) == 2:
            tmp = tmp_path / "b" / "vase" / "test" / ".tmp-001-999999999"
            (tmp / "views").mkdir(parents=True)  # what a kill -9 during the third instance leaves
            raise KeyboardInterrupt
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(layout, "write_sample", killed)
    with pytest.raises(KeyboardInterrupt):
        generate_benchmark(tmp_path / "b", cfg)
    monkeypatch.setattr(layout, "write_sample", real)
    with pytest.raises(DataError, match="incomplete.*--allow-incomplete"):
        open_dataset(tmp_path / "b")
    with pytest.warns(UserWarning, match="incomplete"):
        ds = open_dataset(tmp_path / "b", allow_incomplete=True)
    assert len(ds["vase"].test) == 1
    r = _cli("fit", tmp_path / "b", "-c", "vase", "--out", tmp_path / "run", *KNN, code=2)
    assert "incomplete" in r.output
    generate_benchmark(tmp_path / "b", cfg)  # the rerun finishes it and removes its temporary folders
    assert not list((tmp_path / "b").rglob(".tmp-*"))
    assert json.loads((tmp_path / "b" / "benchmark.json").read_text())["complete"] is True
    assert len(open_dataset(tmp_path / "b")["vase"].test) == 2


# ------------------------------------------------------------------------------ 9 validate before loading
def test_inputs_are_checked_before_encoders_load_and_before_outputs_exist(bench, run, tmp_path, monkeypatch):
    import mv3dad.pipeline.fit as fit_mod
    import mv3dad.pipeline.predict as predict_mod

    def no_encoders(*a, **k):
        raise AssertionError("encoders loaded before the inputs were checked")

    monkeypatch.setattr(fit_mod, "load_encoders", no_encoders)
    monkeypatch.setattr(predict_mod, "load_encoders", no_encoders)
    r = _cli("fit", bench, "-c", "nosuch", "--out", tmp_path / "run", *KNN, code=2)
    assert "no category 'nosuch'" in r.output and not (tmp_path / "run").exists()
    r = _cli("fit", bench, "-c", "vase", "--views", "9", "--out", tmp_path / "run", *KNN, code=2)
    assert "--views" in r.output and not (tmp_path / "run").exists()
    r = _cli("predict", run, tmp_path / "nodata", "--out", tmp_path / "pred", code=2)
    assert "dataset folder is missing" in r.output and not (tmp_path / "pred").exists()
    r = _cli("predict", run, bench, "--out", tmp_path / "pred", "--format", "xyz", code=2)
    assert "--format" in r.output and not (tmp_path / "pred").exists()


# ------------------------------------------------------------------------------------------ 10 smaller items
def test_summaries_modes_compression_and_maps_picture(bench, run, tmp_path):
    for f in [run / "memory.safetensors", *(run / "features").glob("*")]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~_umask(), f
    pred = tmp_path / "pred"
    r = _cli("predict", run, bench, "--out", pred, "--save-maps")
    assert "3/3 samples scored" in r.output and "next: mv3dad evaluate" in r.output
    npz = pred / "vase" / "000.npz"
    from mv3dad.export import load_volume

    vol = load_volume(npz)
    assert npz.stat().st_size < 0.5 * vol.values.nbytes  # compressed
    _cli("render-maps", pred / "vase" / "000_maps.npz", "--out", tmp_path / "maps.png")
    assert (tmp_path / "maps.png").read_bytes()[:4] == b"\x89PNG"
    r = _cli("export", npz, tmp_path / "y.vdb", "--to", "npz", code=2)
    assert "y.npz" in r.output and not (tmp_path / "y.vdb").exists()


def _umask():
    m = os.umask(0o022)
    os.umask(m)
    return m


def test_fit_summary_says_the_encoder_is_untrained(bench, tmp_path):
    r = _cli("fit", bench, "-c", "vase", "--out", tmp_path / "run", "--method", "knn", "--random-init",
             "--image-encoder", "vit_small_patch14_dinov2", "--depth-encoder", "geometric", "--image-size", "112")
    assert "image encoder is UNTRAINED" in r.output and "method knn" in r.output


def test_pretraining_never_sees_test_instances_and_image_has_no_synthetic(bench):
    from mv3dad.data.corpus import find_depth_files

    files = find_depth_files([bench])
    assert files and not any("/test/" in str(f) for f in files)
    r = _cli("pretrain-image", "--help")
    assert "--synthetic" not in r.output
