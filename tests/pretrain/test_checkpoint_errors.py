"""A damaged pretraining checkpoint on --resume is one error naming the file (issue 11, points 4 and 7)."""

import pytest

from mv3dad.errors import DataError
from mv3dad.pretrain.trainer import pretrain


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.pt", "state.json"])
def test_a_truncated_checkpoint_file_is_named(tmp_path, depth_corpus, make_cfg, name):
    cfg = make_cfg(steps=2, checkpoint_every=2)
    pretrain(cfg, tmp_path / "run", [depth_corpus], show_progress=False)
    ckpt = next((tmp_path / "run" / "checkpoints").glob("step_*"))
    f = ckpt / name
    f.write_bytes(f.read_bytes()[: max(1, f.stat().st_size // 3)])
    with pytest.raises(DataError, match=str(f)):
        pretrain(cfg, tmp_path / "run", [depth_corpus], resume=True, show_progress=False)
