"""Shared tiny synthetic data for the synth tests (generated once per session)."""

import pytest

from mv3dad.synth.generate import SynthConfig, generate_benchmark


def tiny_config(**kw) -> SynthConfig:
    """A benchmark small enough for tests: one category, 12 views, 48 px, two test instances."""
    base = dict(categories=("container",), image_size=48, test_instances=2, preview=False, seed=3)
    base.update(kw)
    return SynthConfig(**base)


@pytest.fixture(name="tiny_config")
def _tiny_config():
    """The :func:`tiny_config` factory."""
    return tiny_config


@pytest.fixture(scope="session")
def tiny_benchmark(tmp_path_factory):
    """(root, config) of a tiny real2real benchmark."""
    cfg = tiny_config()
    root = tmp_path_factory.mktemp("synth") / "bench"
    generate_benchmark(root, cfg)
    return root, cfg
