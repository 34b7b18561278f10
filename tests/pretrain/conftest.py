import numpy as np
import pytest

from mv3dad.pretrain.config import PretrainConfig

TINY = dict(vit_depth=2, embed_dim=48, num_heads=3, image_size=28, local_size=14, n_local_crops=2, batch_size=2,
            n_prototypes=64, head_hidden_dim=32, head_bottleneck_dim=16, checkpoint_every=2, drop_path_rate=0.1)


def tiny_config(**kw) -> PretrainConfig:
    return PretrainConfig(**{**TINY, **kw})


def write_depth_corpus(root, n=6, seed=0):
    """n depth maps in the mv3dad layout (views/*_depth.npy), with invalid pixels; plus images beside them."""
    views = root / "inst" / "views"
    views.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:40, :56]
    for i in range(n):
        d = (500 + 30 * np.sin(xx / 6 + i) + 15 * np.cos(yy / 4 + 2 * i)).astype(np.float32)
        d[rng.random(d.shape) < 0.1] = 0
        d[:3] = np.inf
        np.save(views / f"{i:03d}_depth.npy", d)
        np.save(views / f"{i:03d}_normals.npy", np.zeros((40, 56, 3), np.float32))  # not depth: ignored
    return root


@pytest.fixture
def depth_corpus(tmp_path):
    return write_depth_corpus(tmp_path / "corpus")


@pytest.fixture
def make_cfg():
    """Factory of tiny PretrainConfigs (fields override the tiny defaults)."""
    return tiny_config


@pytest.fixture
def tiny_fields():
    return dict(TINY)
