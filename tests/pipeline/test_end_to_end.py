"""fit -> predict -> evaluate on a tiny synthetic benchmark, through the CLI, with untrained encoders."""

import json

import numpy as np
import pytest

from mv3dad.data import open_dataset
from mv3dad.export import load_volume
from mv3dad.geometry.grid import VoxelGrid
from mv3dad.pipeline.evaluate import gt_on_grid

FAST = ["--random-init", "--image-size", "42", "--epochs", "2", "--image-encoder", "vit_small_patch14_dinov2"]


def _cli(*args, ok=True):
    from typer.testing import CliRunner

    from mv3dad.cli.main import app

    r = CliRunner().invoke(app, [str(a) for a in args])
    if ok:
        assert r.exit_code == 0, r.output + repr(r.exception)
    return r


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench") / "data"
    _cli("synth", root, "--categories", "vase", "--views", "6", "--image-size", "64", "--test-instances", "4",
         "--seed", "0", "--no-preview")
    return root


@pytest.fixture(scope="module")
def run(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    _cli("fit", bench, "--category", "vase", "--out", out, *FAST)
    return out


def test_fit_writes_run(run):
    rec = json.loads((run / "run.json").read_text())
    assert rec["method"] == "modmap" and rec["views"] == list(range(6))
    assert (run / "modmap.safetensors").is_file()
    assert rec["encoders"]["image"]["embed_dim"] == 384 and rec["encoders"]["depth"]["modality"] == "depth"


def test_predict_and_evaluate(bench, run, tmp_path):
    pred = tmp_path / "pred"
    _cli("predict", run, bench, "--out", pred, "--format", "vdb", "--save-maps")
    scores = json.loads((pred / "scores.json").read_text())["scores"]["vase"]
    ds = open_dataset(bench)
    tests = list(ds["vase"].test)
    grids = set()
    assert set(scores) == {s.instance_id for s in tests}
    for s in tests:
        vol = load_volume(pred / "vase" / f"{s.instance_id}.npz")
        assert (pred / "vase" / f"{s.instance_id}.vdb").is_file()
        grids.add((vol.shape, tuple(np.round(vol.x.values[:1], 6))))
        if s.gt is not None:  # the category grid holds the whole ground truth, on the same lattice
            assert gt_on_grid(s.gt, VoxelGrid.from_dataarray(vol)).sum() == int(s.gt.values.sum())
        v = vol.values
        assert np.isfinite(v).any() and np.isnan(v).any()  # observed and unobserved voxels
        assert scores[s.instance_id]["score"] == pytest.approx(float(np.nanmax(v)))
        maps = np.load(pred / "vase" / f"{s.instance_id}_maps.npz")["maps"]
        assert maps.shape == (6, 64, 64)
    assert len(grids) == 1  # every sample is scored on the same grid, so instance scores compare
    res_path = tmp_path / "res.json"
    r = _cli("evaluate", pred, "--data", bench, "--json", res_path)
    res = json.loads(res_path.read_text())
    assert set(res) == {"vase", "mean"}
    for k in ("i_auroc", "v_aupro_1", "v_aupro_30"):
        assert 0.0 <= res["vase"][k] <= 1.0
    assert "| vase |" in r.output and "V-AUPRO@1%" in r.output


def test_sources_subset_and_views(bench, run, tmp_path):
    pred = tmp_path / "pred"
    _cli("predict", run, bench, "--out", pred, "--sources", "2", "--views", "0,2,4", "--fuse", "mean")
    assert json.loads((pred / "scores.json").read_text())["job"]["sources"] == 2


def test_knn_baseline(bench, tmp_path):
    out = tmp_path / "knn"
    _cli("fit", bench, "--category", "vase", "--out", out, "--method", "knn", *FAST)
    pred = tmp_path / "pred"
    _cli("predict", out, bench, "--out", pred)
    assert len(json.loads((pred / "scores.json").read_text())["scores"]["vase"]) == 4


def test_mismatched_encoder_is_refused(bench, run, tmp_path):
    rec = json.loads((run / "run.json").read_text())
    rec["encoders"]["depth"]["weights"] = "something-else"
    bad = tmp_path / "badrun"
    bad.mkdir()
    for f in run.iterdir():
        if f.is_file():
            (bad / f.name).write_bytes(f.read_bytes())
    (bad / "run.json").write_text(json.dumps(rec))
    r = _cli("predict", bad, bench, "--out", tmp_path / "p", ok=False)
    assert r.exit_code != 0 and "encoders" in r.output


def test_missing_weights_are_an_error(bench, tmp_path):
    r = _cli("fit", bench, "--category", "vase", "--out", tmp_path / "r", "--epochs", "1", ok=False)
    assert r.exit_code != 0 and "--image-weights" in r.output  # names the local-file way
    r = _cli("fit", bench, "--category", "vase", "--out", tmp_path / "r", "--epochs", "1", "--image-size", "42",
             "--image-encoder", "vit_small_patch14_dinov2", "--image-weights", tmp_path / "none.safetensors", ok=False)
    assert r.exit_code != 0 and "none.safetensors" in r.output


def test_cpir_on_single_view_data(tmp_path):
    data = tmp_path / "sv"
    _cli("synth", data, "--categories", "vase", "--views", "1", "--image-size", "64", "--test-instances", "4",
         "--train-instances", "2", "--seed", "1", "--no-preview")
    run = tmp_path / "run"
    _cli("fit", data, "--category", "vase", "--out", run, "--method", "cpir", *FAST)
    assert json.loads((run / "modmap.json").read_text())["model"]["mapper"] == "lb3m"
    pred = tmp_path / "pred"
    _cli("predict", run, data, "--out", pred)
    res_path = tmp_path / "res.json"
    r = _cli("evaluate", pred, "--data", data, "--json", res_path)
    res = json.loads(res_path.read_text())["vase"]
    assert {"i_auroc", "p_auroc", "aupro_30", "aupro_1"} <= set(res)  # 2D metrics for single-view data
    assert "P-AUROC" in r.output


def test_view_count_mismatch_is_refused(bench, run, tmp_path):
    data = tmp_path / "other"
    _cli("synth", data, "--categories", "vase", "--views", "4", "--image-size", "64", "--test-instances", "2",
         "--seed", "0", "--no-preview")
    r = _cli("predict", run, data, "--out", tmp_path / "p", ok=False)
    assert r.exit_code != 0 and "views" in r.output


def test_samples_missing_a_view_are_mapped_with_views(bench, run, tmp_path):
    from mv3dad.data.layout import write_sample
    from mv3dad.pipeline.fit import select_views

    data = tmp_path / "missing"
    ds = open_dataset(bench)
    for s in ds["vase"].test:
        write_sample(data, select_views(s, [0, 1, 2, 4, 5]), "test")  # view 3 failed on every test scan
    write_sample(data, ds["vase"].train[0], "train")
    r = _cli("predict", run, data, "--out", tmp_path / "p0")  # the view map inferred from the cameras
    assert "scored with the 5 views it has" in r.output and "missing rig views [3]" in r.output
    r = _cli("predict", run, data, "--out", tmp_path / "p1", "--views", "0,1,2,3,4", ok=False)
    assert r.exit_code != 0 and "view 3's camera" in r.output  # a wrong map is caught by the camera check
    _cli("predict", run, data, "--out", tmp_path / "p2", "--views", "0,1,2,4,5")
    rec = json.loads((tmp_path / "p2" / "scores.json").read_text())
    assert rec["rig_views"] == [0, 1, 2, 4, 5] and len(rec["scores"]["vase"]) == len(ds["vase"].test)


def test_non_learned_reference_encoders_need_no_weights(bench, tmp_path):
    run, pred = tmp_path / "run", tmp_path / "pred"
    _cli("fit", bench, "--category", "vase", "--out", run, "--image-encoder", "patch14", "--depth-encoder", "patch14",
         "--image-size", "42", "--epochs", "2")
    _cli("predict", run, bench, "--out", pred)
    rec = json.loads((run / "run.json").read_text())
    assert rec["encoders"]["image"]["embed_dim"] == 588 and rec["encoders"]["depth"]["embed_dim"] == 196
    assert len(json.loads((pred / "scores.json").read_text())["scores"]["vase"]) == 4


def test_a_shared_feature_cache_serves_fit_and_predict(bench, tmp_path):
    from mv3dad.pipeline.features import EncoderConfig
    from mv3dad.pipeline.fit import FitJob, run_fit
    from mv3dad.pipeline.predict import PredictJob, run_predict

    cache = tmp_path / "cache"
    enc = EncoderConfig(image_encoder="texture", depth_encoder="geometric", image_size=112)
    run_fit(FitJob(str(bench), ["vase"], str(tmp_path / "run"), method="knn", encoders=enc,
                   feature_cache=str(cache)), progress=False)
    assert not (tmp_path / "run" / "features").exists()
    n_train = len(list(cache.glob("*.safetensors")))
    assert n_train == 1  # the one training instance
    run_predict(PredictJob(str(tmp_path / "run"), str(bench), str(tmp_path / "pred"), feature_cache=str(cache)),
                progress=False)
    assert len(list(cache.glob("*.safetensors"))) == n_train + 4  # and the four test instances


def test_knn_all_views_bank_holds_every_view_and_never_scores_higher(bench, tmp_path):
    import json

    from mv3dad.pipeline.features import EncoderConfig
    from mv3dad.pipeline.fit import FitJob, run_fit
    from mv3dad.pipeline.predict import PredictJob, Predictor, run_predict

    cache = tmp_path / "cache"
    enc = EncoderConfig(image_encoder="texture", depth_encoder="geometric", image_size=112)
    scores = {}
    for method in ("knn", "knn_all"):
        run = tmp_path / method
        run_fit(FitJob(str(bench), ["vase"], str(run), method=method, encoders=enc, feature_cache=str(cache)),
                progress=False)
        bank = Predictor(run, PredictJob(str(run), str(bench), str(tmp_path / "x"))).method.bank
        if method == "knn_all":
            assert all(len(m) == sum(len(x) for x in per_view) for m in bank.img)
        per_view = bank.img
        run_predict(PredictJob(str(run), str(bench), str(tmp_path / f"pred_{method}"), feature_cache=str(cache)),
                    progress=False)
        rec = json.loads((tmp_path / f"pred_{method}" / "scores.json").read_text())["scores"]["vase"]
        scores[method] = {k: v["score"] for k, v in rec.items()}
    assert all(scores["knn_all"][k] <= scores["knn"][k] + 1e-5 for k in scores["knn"])  # a superset of the bank
