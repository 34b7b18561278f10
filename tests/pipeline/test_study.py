"""``mv3dad study-views``: the sweep's settings, its outputs, the feature cache, and reruns that reuse."""

import csv
import json

import pytest

from mv3dad.pipeline.study import StudyConfig, cross_view, parse_list, settings


def _cli(*args):
    from typer.testing import CliRunner

    from mv3dad.cli.main import app

    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output + repr(r.exception)
    return r


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    data = root / "data"
    _cli("synth", data, "--categories", "vase", "--views", "6", "--image-size", "160", "--test-instances", "4",
         "--seed", "0", "--no-preview", "--no-progress")
    return root, data


def test_parse_list():
    assert parse_list("3,6,12", "views") == [3, 6, 12]
    assert parse_list("1,all", "sources") == [1, None]
    assert parse_list(None, "views") is None
    with pytest.raises(ValueError, match="--sources"):
        parse_list("1,x", "sources")
    with pytest.raises(ValueError, match=">= 1"):
        parse_list("0", "views")


def test_settings_of_a_cross_view_method():
    assert cross_view("modmap") and cross_view("modmap_lb3m")
    assert not cross_view("cfm") and not cross_view("deviation") and not cross_view("knn")
    s = settings(12, StudyConfig(views=[3, 6, 12], sources=[1, 3], seeds=2), "modmap")
    names = [x.name for x in s]
    assert len(names) == len(set(names))
    # K=3 on N=3 is every source; the all-views all-sources point is drawn once
    assert names[0] == "N12_Kall_s0" and "N12_Kall_s1" not in names
    assert {x.name for x in s if x.n == 3} == {"N3_K1_s0", "N3_K1_s1", "N3_Kall_s0", "N3_Kall_s1"}
    for x in s:
        assert len(x.ids) == x.n and len(set(x.ids)) == x.n and max(x.ids) < 12
    subsets = {tuple(x.ids) for x in s if x.n == 6 and x.k == 1}
    assert len(subsets) == 2  # one random subset per seed
    with pytest.raises(ValueError, match="1..12"):
        settings(12, StudyConfig(views=[13]), "modmap")


def test_settings_of_a_per_view_method_ignore_sources():
    s = settings(12, StudyConfig(views=[6], sources=[1, 3], seeds=2), "deviation")
    assert [x.name for x in s] == ["N12_Kall_s0", "N6_Kall_s0", "N6_Kall_s1"]  # the reference always measured
    s = settings(12, StudyConfig(view_sets=[[0, 4, 8]], seeds=1), "deviation")
    assert [(x.name, x.ids) for x in s] == [("N12_Kall_s0", list(range(12))), ("N3_Kall_s0", [0, 4, 8])]


def test_deviation_study_writes_table_and_plot_and_reuses(bench):
    root, data = bench
    run, out = root / "run_dev", root / "study_dev"
    _cli("fit", data, "--category", "vase", "--out", run, "--method", "deviation")
    res = _cli("study-views", run, data, "--out", out, "--views", "3,6", "--sources", "1,3", "--seeds", "2",
             "--no-progress")
    for name in ("study.csv", "study.md", "study.png", "study_runs.csv"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "study.csv")))
    assert [(r["n_views"], r["sources"], r["seeds"]) for r in rows] == [("3", "all", "2"), ("6", "all", "1")]  # 6 = all views
    for r in rows:
        assert float(r["seconds_per_sample_mean"]) > 0 and float(r["peak_memory_mib_mean"]) > 0
        assert 0 <= float(r["i_auroc_mean"]) <= 1
    md = (out / "study.md").read_text()
    assert "does not change it" in md and "all views, all pairs" in md and "I-AUROC" in res.output
    assert not list((out / "pred").glob("*/vase/*.npz"))  # volumes removed once evaluated
    before = (out / "study_runs.csv").read_text()
    _cli("study-views", run, data, "--out", out, "--views", "3,6", "--sources", "1,3", "--seeds", "2",
         "--no-progress")
    assert (out / "study_runs.csv").read_text() == before  # every setting reused, same figures


@pytest.mark.slow
def test_modmap_study_sweeps_sources_with_cached_features(bench):
    root, data = bench
    run, out = root / "run_mm", root / "study_mm"
    _cli("fit", data, "--category", "vase", "--out", run, "--image-encoder", "texture", "--depth-encoder",
         "geometric", "--image-size", "56", "--epochs", "2")
    _cli("study-views", run, data, "--out", out, "--views", "3,6", "--sources", "1,all", "--seeds", "1",
         "--no-progress")
    rows = list(csv.DictReader(open(out / "study.csv")))
    assert {(r["n_views"], r["sources"]) for r in rows} == {("3", "all"), ("6", "all"), ("3", "1"), ("6", "1")}
    assert any((out / "features").rglob("*")), "the feature cache is filled"
    assert "Feature extraction measured once" in (out / "study.md").read_text()
    runs = {r["setting"]: r for r in csv.DictReader(open(out / "study_runs.csv"))}
    assert json.loads((out / "pred" / "N6_K1_s0" / "scores.json").read_text())["job"]["sources"] == 1
    assert runs["N6_K1_s0"]["views"] == "0 1 2 3 4 5"
