"""``mv3dad demo`` on tiny settings: every stage runs once, the outputs exist, a rerun reuses them."""

import json

import numpy as np
import pytest

from mv3dad.pipeline.demo import DemoConfig, plan, run_demo

TINY = DemoConfig(categories=("vase",), views=6, image_size=160, test_instances=2, pretrain_steps=1,
                  pretrain_image_size=56, modmap_image_size=56, modmap_epochs=2)


def _cli(*args):
    from typer.testing import CliRunner

    from mv3dad.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_help_names_the_stages():
    r = _cli("demo", "--help")
    assert r.exit_code == 0 and "deviation" in r.output and "out/demo" in r.output


def test_config_is_checked():
    with pytest.raises(ValueError, match="multiple of 14"):
        DemoConfig(modmap_image_size=100)
    with pytest.raises(ValueError, match="modmap categories"):
        DemoConfig(categories=("stool",), modmap_categories=("vase",))


@pytest.mark.slow
def test_tiny_demo_runs_every_stage_and_reuses_on_rerun(tmp_path):
    out = tmp_path / "demo"
    res = run_demo(out, TINY, progress=False)
    assert not res.skipped
    assert [r["configuration"] for r in res.rows] == ["deviation, CAD reference", "deviation, measured scan",
                                                      "ModMap (texture + DINO-Depth, brief)"]
    for r in res.rows:
        assert 0.0 <= r["i_auroc"] <= 1.0 and r["seconds_per_sample"] > 0
    assert "| deviation, CAD reference | vase |" in res.table
    assert (out / "results.md").read_text().strip() == res.table
    assert (out / "dino_depth" / "encoder.safetensors").is_file()
    exported = {p.suffix for p in (out / "export").glob("vase_*")}
    assert {".vdb", ".npy", ".ply"} <= exported
    from mv3dad.export import load_volume

    iid = (out / "export" / "vase.done").read_text().strip()
    a = load_volume(out / "export" / f"vase_{iid}.vdb").values
    b = load_volume(out / "pred" / "deviation_cad_vase" / "vase" / f"{iid}.npz").values
    assert np.isfinite(a).sum() == np.isfinite(b).sum()  # the VDB keeps the observed voxels (its box is theirs)
    assert np.nanmax(a) == pytest.approx(float(np.nanmax(b)), rel=1e-6)
    png = out / "picture_vase.png"
    assert png.is_file() and png.stat().st_size > 10_000
    assert all(v for v in res.outputs.values())
    # a rerun makes nothing again
    again = run_demo(out, TINY, progress=False)
    assert len(again.skipped) == len(plan(out, TINY)) and again.rows == res.rows
    # other settings in the same folder are refused instead of mixing outputs
    with pytest.raises(Exception, match="other settings"):
        run_demo(out, DemoConfig(categories=("vase",), views=6, image_size=192), progress=False)
    assert json.loads((out / "demo.json").read_text())["image_size"] == 160
