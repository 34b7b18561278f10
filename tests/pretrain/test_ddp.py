import json
import os
import shutil
import subprocess

import pytest
import yaml


@pytest.mark.slow
def test_torchrun_two_cpu_processes_end_with_identical_weights(tmp_path, depth_corpus, tiny_fields):
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({**tiny_fields, "batch_size": 2, "num_workers": 0}))
    out = tmp_path / "ddp_run"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    cmd = ["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "mv3dad", "pretrain-depth",
           "--out", str(out), "--data", str(depth_corpus), "--config", str(cfg), "--steps", "3"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=170)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    h0 = json.loads((out / "ddp" / "rank0.json").read_text())
    h1 = json.loads((out / "ddp" / "rank1.json").read_text())
    assert h0 == h1 and h0["teacher"]
    meta = json.loads((out / "encoder.json").read_text())
    assert meta["training"]["world_size"] == 2 and meta["training"]["global_batch"] == 4
    assert meta["training"]["weights_hash"] == h0["teacher"]
