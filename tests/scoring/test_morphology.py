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


@pytest.mark.parametrize("shape", [(23, 31), (7, 9, 11)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_neighbour_max_and_window_minimum_match_scipy(shape, dtype):
    from mv3dad.scoring.morphology import neighbour_max, window_reduce

    rng = np.random.default_rng(4)
    x = rng.normal(size=shape).astype(dtype)
    x[rng.random(shape) < 0.2] = -np.inf
    fp = np.ones((3,) * len(shape), bool)
    fp[(1,) * len(shape)] = False
    assert np.array_equal(neighbour_max(x), ndimage.maximum_filter(x, footprint=fp, mode="constant", cval=-np.inf))
    assert np.array_equal(window_reduce(x, 3, np.minimum, 1), ndimage.minimum_filter(x, size=3, mode="nearest"))
    spike = np.zeros(shape, dtype)
    spike[(3,) * len(shape)] = 5.0
    assert neighbour_max(spike)[(3,) * len(shape)] == 0.0  # its own value is left out


def test_line_opening_keeps_runs_of_three_in_any_of_four_directions():
    from mv3dad.scoring.morphology import line_opening

    m = np.zeros((12, 12), bool)
    m[1, 1:4] = True  # a row run
    m[4:7, 9] = True  # a column run
    m[[9, 10, 11], [2, 1, 0]] = True  # an anti-diagonal run
    m[8, 8] = m[9, 9] = True  # a diagonal pair
    m[5, 4] = True  # a lone pixel
    out = line_opening(m, 3)
    assert out[1, 1:4].all() and out[4:7, 9].all() and out[[9, 10, 11], [2, 1, 0]].all()
    assert not out[8, 8] and not out[9, 9] and not out[5, 4] and out.sum() == 9
    assert np.array_equal(line_opening(m, 1), m)
