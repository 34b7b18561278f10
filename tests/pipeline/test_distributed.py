"""Predict across processes: sharded samples, one merged scores.json, the same scores as one process."""

import json
import os
import shutil
import subprocess

import pytest

from mv3dad.pipeline.distributed import merge_shards, shard_scores_name, world_size
from mv3dad.pipeline.predict import PredictJob, run_predict


def _cli(*args):
    from typer.testing import CliRunner

    from mv3dad.cli.main import app

    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output + repr(r.exception)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    data, run = root / "data", root / "run"
    _cli("synth", data, "--categories", "vase", "--views", "6", "--image-size", "160", "--test-instances", "5",
         "--seed", "0", "--no-preview", "--no-progress")
    _cli("fit", data, "--category", "vase", "--out", run, "--method", "deviation")
    single = root / "single"
    run_predict(PredictJob(str(run), str(data), str(single)), progress=False)
    return data, run, json.loads((single / "scores.json").read_text())


def _scores(record):
    return {c: {i: {k: v for k, v in r.items() if k != "seconds"} for i, r in s.items()}
            for c, s in record["scores"].items()}


def test_world_size_reads_the_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert world_size() == 3
    monkeypatch.delenv("WORLD_SIZE")
    assert world_size() == 1


def test_shards_cover_every_sample_once_and_merge_to_the_single_process_record(bench, tmp_path):
    data, run, single = bench
    out = tmp_path / "pred"
    job = PredictJob(str(run), str(data), str(out))
    for rank in range(3):
        run_predict(job, progress=False, shard=(rank, 3))
    parts = [json.loads((out / shard_scores_name(r)).read_text())["scores"]["vase"] for r in range(3)]
    ids = [i for p in parts for i in p]
    assert sorted(ids) == sorted(single["scores"]["vase"]) and len(ids) == len(set(ids))
    assert [len(p) for p in parts] == [2, 2, 1]  # 5 samples: 0,3 | 1,4 | 2
    merge_shards(out, 3)
    merged = json.loads((out / "scores.json").read_text())
    assert _scores(merged) == _scores(single)
    assert list(merged["scores"]["vase"]) == list(single["scores"]["vase"])  # dataset order
    assert not list(out.glob("scores.rank*.json"))


def test_merge_names_a_missing_part(bench, tmp_path):
    data, run, _ = bench
    out = tmp_path / "pred"
    run_predict(PredictJob(str(run), str(data), str(out)), progress=False, shard=(0, 2))
    with pytest.raises(Exception, match="scores.rank1.json"):
        merge_shards(out, 2)


@pytest.mark.slow
def test_torchrun_two_gloo_processes_equal_one_process(bench, tmp_path):
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not on PATH")
    data, run, single = bench
    out = tmp_path / "pred"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "mv3dad", "predict", str(run), str(data),
           "--out", str(out)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    merged = json.loads((out / "scores.json").read_text())
    assert merged["world_size"] == 2
    assert _scores(merged) == _scores(single)
    assert sorted(p.name for p in (out / "vase").iterdir()) == sorted(  # volumes and per-sample records
        f"{i}.{ext}" for i in single["scores"]["vase"] for ext in ("npz", "json"))
    assert not list(out.glob("scores.rank*.json"))
