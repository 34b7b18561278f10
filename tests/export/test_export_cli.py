"""`mv3dad export VOLUME --to vdb|npy|npz|zarr|ply OUT` through typer's CliRunner."""

import numpy as np
import pytest
from typer.testing import CliRunner

from mv3dad.cli.main import app
from mv3dad.export import load_volume, read_vdb, save_volume

runner = CliRunner()


@pytest.fixture
def volume(tmp_path, make_volume):
    return save_volume(make_volume(shape=(12, 10, 9)), tmp_path / "vol.npz")


@pytest.mark.parametrize("fmt", ["vdb", "npy", "npz", "zarr", "ply"])
def test_export_each_format(tmp_path, volume, fmt):
    out = tmp_path / f"out.{fmt}"
    r = runner.invoke(app, ["export", str(volume), "--to", fmt, str(out)])
    assert r.exit_code == 0, r.output
    assert out.exists() and f"wrote {out}" in r.output
    src = load_volume(volume)
    if fmt == "vdb":
        assert len(read_vdb(out).values) == (~np.isnan(src.values)).sum()
    elif fmt == "ply":
        assert out.read_bytes().startswith(b"ply\n")
    else:
        np.testing.assert_array_equal(load_volume(out).values, src.values)


def test_export_from_zarr_to_vdb_with_isosurface(tmp_path, volume):
    assert runner.invoke(app, ["export", str(volume), str(tmp_path / "v.zarr")]).exit_code == 0  # from suffix
    r = runner.invoke(app, ["export", str(tmp_path / "v.zarr"), "--to", "vdb", str(tmp_path / "v.vdb"),
                            "--threshold", "0.8", "--mesh-format", "stl"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "v_iso.stl").stat().st_size > 84 and "isosurface at 0.8" in r.output


@pytest.mark.parametrize("args, message", [
    (["missing.npz", "--to", "vdb", "o.vdb"], "missing.npz: no such file"),
    (["{vol}", "--to", "tiff", "o.tiff"], "unknown volume format 'tiff'"),
    (["{vol}", "--to", "vdb", "nodir/o.vdb"], "folder nodir does not exist"),
    (["{vol}", "--to", "ply", "o.ply", "--threshold", "7"], "no voxel has a score >= threshold 7"),
    (["{vol}", "--to", "ply", "o.ply", "--threshold", "0.5", "--mesh-format", "obj"], "--mesh-format"),
])
def test_export_errors(tmp_path, volume, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["export", *[a.format(vol=volume) for a in args]])
    assert r.exit_code == (1 if "does not exist" in message else 2)  # 2: bad input; 1: an unwritable output
    assert message in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol.npz"]  # nothing written


def test_export_nan_only_volume_to_vdb_is_refused(tmp_path, make_volume):
    da = make_volume()
    da[:] = np.nan
    save_volume(da, tmp_path / "nan.npz")
    r = runner.invoke(app, ["export", str(tmp_path / "nan.npz"), "--to", "vdb", str(tmp_path / "o.vdb")])
    assert r.exit_code == 2 and "every voxel is NaN" in r.output and not (tmp_path / "o.vdb").exists()


def test_help_lists_options():
    for cmd in ("export", "render"):
        r = runner.invoke(app, [cmd, "--help"])
        assert r.exit_code == 0 and "--threshold" in r.output
