import numpy as np
import pytest

from mv3dad.geometry.grid import VoxelGrid


@pytest.fixture
def make_volume():
    """Random score volume: float32 scores in [0, 1), a fraction of voxels NaN (unobserved), some exact 0s."""

    def make(shape=(13, 7, 5), origin=(-12.5, 3.25, 0.0), voxel_size=1.5, nan_frac=0.4, seed=0, name="anomaly"):
        rng = np.random.default_rng(seed)
        v = rng.random(shape).astype(np.float32)
        v[rng.random(shape) < nan_frac] = np.nan
        v.flat[1] = 0.0  # a real score of 0 must stay distinct from "unobserved"
        return VoxelGrid(origin, voxel_size, shape).to_dataarray(v, name=name)

    return make
