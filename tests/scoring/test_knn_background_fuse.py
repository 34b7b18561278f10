import numpy as np
import pytest
import torch

from mv3dad.geometry import Camera
from mv3dad.mapping import FeatureSet
from mv3dad.scoring import build_memory, foreground_mask, fuse, greedy_coreset, knn_score_views


def _sets(n_inst=3, n=2, c_img=4, c_dep=3, h=3, w=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_inst):
        valid = torch.rand(n, h, w, generator=g) > 0.3
        img, dep = torch.randn(n, c_img, h, w, generator=g), torch.randn(n, c_dep, h, w, generator=g)
        out.append(FeatureSet(img, dep, valid))
    return out


def test_knn_equals_brute_force():
    sets = _sets()
    bank = build_memory(sets)
    g = torch.Generator().manual_seed(5)
    qi, qd = torch.randn(2, 4, 3, 4, generator=g), torch.randn(2, 3, 3, 4, generator=g)
    s_img, s_dep = knn_score_views(bank, qi, qd)
    for v in range(2):
        mem_i = torch.cat([fs.img[v].flatten(1).T[fs.valid[v].flatten()] for fs in sets])
        mem_d = torch.cat([fs.dep[v].flatten(1).T[fs.valid[v].flatten()] for fs in sets])
        bi = ((qi[v].flatten(1).T[:, None] - mem_i[None]) ** 2).sum(-1).sqrt().amin(1)
        bd = ((qd[v].flatten(1).T[:, None] - mem_d[None]) ** 2).sum(-1).sqrt().amin(1)
        torch.testing.assert_close(s_img[v].flatten(), bi, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(s_dep[v].flatten(), bd, atol=1e-4, rtol=1e-4)
    cat = build_memory(sets, mode="concat")
    c_img, c_dep = knn_score_views(cat, qi, qd)
    assert torch.equal(c_img, c_dep) and (c_img >= s_img - 1e-4).all()  # joint distance >= either part
    with pytest.raises(ValueError, match="got 1 views but the memory bank was built from 2 views"):
        knn_score_views(bank, qi[:1], qd[:1])
    training_token = sets[0].img[1][:, sets[0].valid[1]][:, :1, None]  # a memory token scores 0
    assert knn_score_views(bank, training_token[None].expand(2, -1, -1, -1),
                           sets[0].dep[1][:, sets[0].valid[1]][:, :1, None][None].expand(2, -1, -1, -1),
                           view_ids=[1, 1])[0][0, 0, 0] < 1e-3


def test_coreset_is_greedy_k_center():
    x = torch.tensor([[0.0, 0], [0.1, 0], [10, 0], [0, 5], [9.9, 0.1]])
    sel = greedy_coreset(x, 3, proj_dim=8, seed=0)  # proj_dim >= C: exact distances
    first = sel[0].item()
    far = torch.cdist(x[first:first + 1], x)[0].argmax().item()
    assert sel[1].item() == far and len(set(sel.tolist())) == 3
    bank = build_memory(_sets(), coreset=0.5)
    full = build_memory(_sets())
    assert all(len(a) == max(1, round(0.5 * len(b))) for a, b in zip(bank.img, full.img))


def test_foreground_mask_drops_specks_and_second_blob():
    d = np.zeros((40, 50), np.float32)
    d[5:25, 5:30] = 500.0  # the part
    d[30:36, 40:46] = 480.0  # a smaller second blob
    d[2, 45] = 450.0  # a noise speck
    d[25, 17] = 500.0  # one-pixel spur, removed by the opening
    m = foreground_mask(d)
    expected = np.zeros_like(m)
    expected[5:25, 5:30] = True
    assert np.array_equal(m, expected)
    assert foreground_mask(d, largest=False)[30:36, 40:46].all()
    assert not foreground_mask(np.zeros((4, 4))).any()


def test_support_plane_removal():
    h, w = 60, 80
    K = np.array([[100.0, 0, 40], [0, 100.0, 30], [0, 0, 1]])
    cam = Camera(K, np.eye(4), w, h)
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([(u - 40) / 100, (v - 30) / 100, np.ones_like(u)], -1)
    n, dist = np.array([0.0, -0.5, 1.0]) / np.linalg.norm([0, -0.5, 1]), 600.0  # tilted table: n . X = dist
    depth = (dist / (rays @ n)).astype(np.float32)
    box = np.zeros((h, w), bool)
    box[20:40, 30:55] = True
    depth[box] -= 40.0  # the part sticks out of the table towards the camera
    assert foreground_mask(depth).all()  # without plane removal the table is foreground
    m = foreground_mask(depth, camera=cam, remove_plane=True, plane_distance_mm=2.0)
    assert np.array_equal(m, box)
    with pytest.raises(ValueError, match="camera"):
        foreground_mask(depth, remove_plane=True)


@pytest.mark.parametrize("how,expected", [("max", [3, 4]), ("min", [1, 2]), ("mean", [2, 3]), ("prod", [3, 8])])
def test_fuse(how, expected):
    a, b = np.array([1.0, 4.0]), np.array([3.0, 2.0])
    assert fuse(a, b, how).tolist() == expected
    assert fuse(torch.tensor(a), torch.tensor(b), how).tolist() == expected
    with pytest.raises(ValueError):
        fuse(a, b[:1], how)
