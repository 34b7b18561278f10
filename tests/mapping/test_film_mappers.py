import pytest
import torch

from mv3dad.mapping import FiLM, ModMapModel, build_mapper, list_mappers
from mv3dad.mapping.mappers import cosine_distance, geometric_mean


def _linear_shapes(seq):
    return [(m.in_features, m.out_features) for m in seq if isinstance(m, torch.nn.Linear)]


def test_film_is_identity_at_init_and_learns_a_constant_for_one_view():
    film = FiLM(n_views=4, channels=8)
    x = torch.randn(5, 7, 8)
    src, tgt = torch.tensor([0, 1, 2, 3, 0]), torch.tensor([3, 2, 1, 0, 0])
    torch.testing.assert_close(film(x, src, tgt), x)
    g, b = film.params(src, tgt)
    assert g.shape == b.shape == (5, 8)
    torch.testing.assert_close(g, torch.ones(5, 8))
    torch.testing.assert_close(b, torch.zeros(5, 8))
    one = FiLM(n_views=1, channels=3)
    assert one.code(torch.tensor([0]), torch.tensor([0])).tolist() == [[1.0, 1.0]]


def test_film_category_code_and_errors():
    film = FiLM(n_views=2, channels=4, n_categories=3)
    code = film.code(torch.tensor([1, 0]), torch.tensor([0, 0]), torch.tensor(2))
    assert code.tolist() == [[0, 1, 1, 0, 0, 0, 1], [1, 0, 1, 0, 0, 0, 1]]
    with pytest.raises(ValueError, match="category"):
        film.params(torch.tensor([0]), torch.tensor([1]))


def test_cfm_widths_match_the_paper():
    m = build_mapper("cfm", 768, 384)
    assert _linear_shapes(m.img_to_dep) == [(768, 576), (576, 576), (576, 384)]  # paper: [768, 576, 384]
    assert _linear_shapes(m.dep_to_img) == [(384, 576), (576, 576), (576, 768)]
    assert sum(isinstance(x, torch.nn.GELU) for x in m.img_to_dep) == 2
    assert isinstance(m.img_to_dep[-1], torch.nn.Linear)  # no activation after the last layer


def test_lb3m_widths_loss_and_geometric_mean():
    m = build_mapper("lb3m", 12, 6, recon_weight=0.5)
    assert m.latent == 9
    assert _linear_shapes(m.enc_img) == [(12, 10), (10, 9)] and _linear_shapes(m.dec_dep) == [(9, 7), (7, 6)]
    x_i, x_d = torch.randn(10, 12), torch.randn(10, 6)
    y_i = torch.nn.functional.normalize(torch.randn(10, 12), dim=1)
    y_d = torch.nn.functional.normalize(torch.randn(10, 6), dim=1)
    t = m.terms(x_i, x_d, y_i, y_d)
    cos = torch.nn.functional.cosine_similarity
    i2d = 1 - cos(m.dec_dep(m.enc_img(x_i)), y_d, dim=1)
    d2d = 1 - cos(m.dec_dep(m.enc_dep(x_d)), y_d, dim=1)
    d2i = 1 - cos(m.dec_img(m.enc_dep(x_d)), y_i, dim=1)
    i2i = 1 - cos(m.dec_img(m.enc_img(x_i)), y_i, dim=1)
    for k, v in {"i2d": i2d, "d2d": d2d, "d2i": d2i, "i2i": i2i}.items():
        torch.testing.assert_close(t[k], v, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(m.loss_rows(t), i2d + d2i + 0.5 * (i2i + d2d), atol=1e-5, rtol=1e-5)
    s_img, s_dep = m.score_rows(t)
    torch.testing.assert_close(s_img, (i2d * d2i * i2i * d2d) ** 0.25, atol=1e-5, rtol=1e-5)
    assert torch.equal(s_img, s_dep)
    assert geometric_mean([torch.tensor([2.0]), torch.tensor([8.0])]).item() == pytest.approx(4.0)


def test_cfm_scores_are_the_crossmodal_distances():
    m = build_mapper("cfm", 5, 3)
    x_i, x_d = torch.randn(4, 5), torch.randn(4, 3)
    y_i = torch.nn.functional.normalize(torch.randn(4, 5), dim=1)
    y_d = torch.nn.functional.normalize(torch.randn(4, 3), dim=1)
    t = m.terms(x_i, x_d, y_i, y_d)
    s_img, s_dep = m.score_rows(t)
    torch.testing.assert_close(s_img, cosine_distance(m.dep_to_img(x_d), y_i))  # image map: image predicted from depth
    torch.testing.assert_close(s_dep, cosine_distance(m.img_to_dep(x_i), y_d))


def test_registry_and_model_config_roundtrip():
    assert {"cfm", "lb3m"} <= set(list_mappers())
    with pytest.raises(ValueError, match="unknown mapper 'nope'"):
        build_mapper("nope", 4, 4)
    model = ModMapModel(3, 6, 4, mapper="lb3m", mapper_kwargs={"recon_weight": 2.0}, categories=["a", "b"],
                        views_per_category=[3, 2])
    again = ModMapModel(**model.config())
    assert again.config() == model.config()
    assert model.expected_views("b") == 2
    with pytest.raises(ValueError, match="'c' is not in this multi-class model"):
        model.category_index("c")
    assert ModMapModel(2, 4, 4, modulation=False).film_img is None
