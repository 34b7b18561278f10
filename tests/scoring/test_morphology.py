import numpy as np
import pytest
from scipy import ndimage

from mv3dad.scoring.morphology import dilate, erode, opening


def _mask(seed: int, shape=(37, 53)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    blobs = ndimage.binary_dilation(rng.random(shape) < 0.15, np.ones((3, 3), bool))
    return blobs ^ (rng.random(shape) < 0.05)  # blobs with holes and specks, touching the border


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_square_morphology_matches_scipy(k, seed):
    m = _mask(seed)
    box = np.ones((k, k), bool)
    assert np.array_equal(erode(m, k), ndimage.binary_erosion(m, box))
    assert np.array_equal(dilate(m, k), ndimage.binary_dilation(m, box))
    assert np.array_equal(opening(m, k), ndimage.binary_opening(m, box))


def test_opening_keeps_a_blob_and_drops_a_speck():
    m = np.zeros((20, 20), bool)
    m[3:8, 3:8] = True
    m[15, 15] = True
    out = opening(m, 3)
    assert out[3:8, 3:8].all() and not out[15, 15] and out.sum() == 25
    with pytest.raises(ValueError, match="must be"):
        erode(np.zeros((3, 3, 3), bool), 3)
