"""Every script of examples/ runs on tiny settings (one shared tiny benchmark where a script takes DATA)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def _run(cmd, timeout=240, **env):
    res = subprocess.run([str(c) for c in cmd], env={**ENV, **{k: str(v) for k, v in env.items()}},
                         capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("examples")
    data = root / "data"
    _run(["mv3dad", "synth", data, "--categories", "vase", "--views", "6", "--image-size", "160",
          "--test-instances", "3", "--seed", "0", "--save-meshes", "--no-preview", "--no-progress"])
    return root, data


@pytest.fixture(scope="module")
def cad(bench):
    root, data = bench
    out = root / "cad"
    stdout = _run(["bash", EXAMPLES / "compare_with_cad.sh"], DATA=data, CAT="vase", OUT=out)
    assert "max deviation" in stdout and "fitness" in stdout
    return out


def test_every_example_is_tested():
    tested = {"quickstart.sh", "pretrain_depth_own_folders.sh", "compare_with_cad.sh", "export_overlay.py",
              "study_views.sh", "sim3d_fit_predict.py"}
    assert {p.name for p in EXAMPLES.iterdir() if p.suffix in (".sh", ".py")} == tested


def test_quickstart_is_the_demo():
    assert "mv3dad demo" in _run(["bash", EXAMPLES / "quickstart.sh", "out/x", "--help"]).replace("\n", " ")


def test_compare_with_cad(cad):
    assert (cad / "results.md").is_file() and (cad / "pred" / "scores.json").is_file()
    assert json.loads((cad / "run" / "deviation.json").read_text())["config"]["reference_mesh"]


def test_export_overlay(bench, cad):
    _, data = bench
    scores = json.loads((cad / "pred" / "scores.json").read_text())["scores"]["vase"]
    iid = max((v["score"], k) for k, v in scores.items() if v["label"] == "anomalous")[1]
    out = cad / "export"
    _run([sys.executable, EXAMPLES / "export_overlay.py", cad / "pred" / "vase" / f"{iid}.npz", "--mesh",
          data / "vase" / "test" / iid / "mesh.ply", "--out", out, "--views", "1"])
    for suffix in (".vdb", ".npy", ".npy.json", ".png"):
        assert (out / f"vase_{iid}{suffix}").is_file(), suffix


def test_study_views(cad):
    out = cad / "study"
    _run(["bash", EXAMPLES / "study_views.sh"], RUN=cad / "run", DATA=cad.parent / "data", OUT=out, VIEWS="3",
         SEEDS="1", SOURCES="1")
    assert all((out / f).is_file() for f in ("study.csv", "study.md", "study.png"))


def test_pretrain_depth_on_own_folders(bench):
    root, data = bench
    out = root / "dd"
    _run(["bash", EXAMPLES / "pretrain_depth_own_folders.sh"], DEPTH_DIRS=data, OUT=out, STEPS=1, IMAGE_SIZE=56,
         BATCH=2)
    assert (out / "encoder.safetensors").is_file() and (out / "encoder.json").is_file()


def test_sim3d_fit_predict(bench, tmp_path):
    out = tmp_path / "out"
    _run([sys.executable, EXAMPLES / "sim3d_fit_predict.py", tmp_path / "sim3d", "--make-tiny", "--tiny-from", bench[1],
          "--out", out])
    assert (tmp_path / "sim3d" / "calib" / "plastic_vase.yaml").is_file()
    assert (tmp_path / "sim3d" / "plastic_vase" / "plastic_vase_real" / "rgb").is_dir()
    assert "plastic_vase" in (out / "results.md").read_text()
