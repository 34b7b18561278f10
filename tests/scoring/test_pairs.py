import pytest
import torch

from mv3dad.mapping import ModMapModel
from mv3dad.scoring import all_sources, diagonal_sources, random_sources, score_views

cuda = torch.cuda.is_available()


def _model(mapper, n=4, c_img=6, c_dep=5, seed=0, **kw):
    torch.manual_seed(seed)
    model = ModMapModel(n, c_img, c_dep, mapper=mapper, **kw)
    if model.film_img is not None:  # make the modulation non-trivial (it is the identity at init)
        for film in (model.film_img, model.film_dep):
            torch.nn.init.normal_(film.mlp[-1].weight, std=0.3)
            torch.nn.init.normal_(film.mlp[-1].bias, std=0.3)
    return model.eval()


def _feats(n=4, c_img=6, c_dep=5, h=3, w=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c_img, h, w, generator=g), torch.randn(n, c_dep, h, w, generator=g)


def _pair_maps(model, img, dep, s, t, ids=None):
    """Brute force, written out: modulate, map, cosine distance, for one pair; (h, w) image and depth maps."""
    ms, mt = (s, t) if ids is None else (ids[s], ids[t])
    xi, xd = img[s].flatten(1).T, dep[s].flatten(1).T
    if model.modulation:
        gi, bi = model.film_img.params(torch.tensor([ms]), torch.tensor([mt]))
        gd, bd = model.film_dep.params(torch.tensor([ms]), torch.tensor([mt]))
        xi, xd = xi * gi + bi, xd * gd + bd
    yi, yd = img[t].flatten(1).T, dep[t].flatten(1).T
    d = lambda p, y: 1 - torch.nn.functional.cosine_similarity(p, y, dim=1)  # noqa: E731
    m = model.mapper
    if m.name == "cfm":
        si, sd = d(m.dep_to_img(xd), yi), d(m.img_to_dep(xi), yd)
    else:
        zi, zd = m.enc_img(xi), m.enc_dep(xd)
        g = (d(m.dec_dep(zi), yd) * d(m.dec_img(zd), yi) * d(m.dec_img(zi), yi) * d(m.dec_dep(zd), yd)).clamp_min(0)
        si = sd = g ** 0.25
    h, w = img.shape[2:]
    return si.view(h, w), sd.view(h, w)


def _brute(model, img, dep, sources, ids=None):
    n = img.shape[0]
    with torch.no_grad():
        maps = [[_pair_maps(model, img, dep, s, t, ids) for s in sources[t]] for t in range(n)]
    return (torch.stack([torch.stack([m[0] for m in row]).amin(0) for row in maps]),
            torch.stack([torch.stack([m[1] for m in row]).amin(0) for row in maps]))


@pytest.mark.parametrize("mapper", ["cfm", "lb3m"])
@pytest.mark.parametrize("batch_pairs", [1, 3, None])
def test_streamed_min_equals_brute_force(mapper, batch_pairs, device):
    model = _model(mapper)
    img, dep = _feats()
    s_img, s_dep = score_views(model, img, dep, batch_pairs=batch_pairs, device=device)
    model.cpu()  # score_views moved it to ``device``; the brute force runs on the CPU
    b_img, b_dep = _brute(model, img, dep, all_sources(4))
    assert s_img.shape == s_dep.shape == (4, 3, 5)
    tol = 1e-5 if device == "cpu" else 1e-4
    torch.testing.assert_close(s_img.cpu(), b_img, atol=tol, rtol=tol)
    torch.testing.assert_close(s_dep.cpu(), b_dep, atol=tol, rtol=tol)


def test_sources_subsets_and_view_ids():
    model = _model("cfm")
    img, dep = _feats()
    diag = score_views(model, img, dep, sources=diagonal_sources(4), device="cpu")
    torch.testing.assert_close(diag, _brute(model, img, dep, diagonal_sources(4)), atol=1e-5, rtol=1e-5)
    full = score_views(model, img, dep, device="cpu")
    assert (full[0] <= diag[0] + 1e-6).all()  # more sources can only lower the min
    srcs = random_sources(4, 2, seed=3)
    torch.testing.assert_close(score_views(model, img, dep, sources=srcs, device="cpu"),
                               _brute(model, img, dep, srcs), atol=1e-5, rtol=1e-5)
    mixed = [[0], [0, 1], [2, 3], [1, 2, 3]]  # different numbers of sources per target, chunks of 2 pairs
    torch.testing.assert_close(score_views(model, img, dep, sources=mixed, batch_pairs=2, device="cpu"),
                               _brute(model, img, dep, mixed), atol=1e-5, rtol=1e-5)
    # two of the rig's views, given in another order, mapped onto the model's views 3 and 1
    sub = score_views(model, img[[3, 1]], dep[[3, 1]], view_ids=[3, 1], device="cpu")
    torch.testing.assert_close(sub, _brute(model, img[[3, 1]], dep[[3, 1]], all_sources(2), ids=[3, 1]),
                               atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"sources\[1\]"):
        score_views(model, img, dep, sources=[[0], [], [2], [3]], device="cpu")
    with pytest.raises(ValueError, match="distinct model views"):
        score_views(model, img[:2], dep[:2], view_ids=[0, 4], device="cpu")


def test_diagonal_model_defaults_to_diagonal_sources():
    model = _model("cfm", modulation=False, train_pairs="diagonal")
    img, dep = _feats()
    torch.testing.assert_close(score_views(model, img, dep, device="cpu"),
                               _brute(model, img, dep, diagonal_sources(4)), atol=1e-5, rtol=1e-5)


def test_random_sources_semantics():
    s = random_sources(9, 4, seed=7)
    assert s == random_sources(9, 4, seed=7) and s != random_sources(9, 4, seed=8)
    assert all(len(x) == 4 and t in x and len(set(x)) == 4 for t, x in enumerate(s))
    assert random_sources(5, 1) == diagonal_sources(5)
    assert random_sources(5, 5) == random_sources(5, 9) == all_sources(5)
    with pytest.raises(ValueError):
        random_sources(5, 0)


@pytest.mark.skipif(not cuda, reason="needs CUDA")
def test_cuda_matches_cpu():
    model = _model("lb3m")
    img, dep = _feats()
    a = score_views(model, img, dep, device="cpu")
    b = score_views(model, img, dep, device="cuda")
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
