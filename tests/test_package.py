"""An installed (non-editable) copy works from any folder: the rigs and configs ship in the wheel, and
``python -m mv3dad`` is the command line."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(cmd, cwd, env=None, timeout=120):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(site, wheel)``: the wheel built from a copy of the source tree and installed into a plain folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # build from a copy, so that no build/ or egg-info lands in the working tree
    src.mkdir()
    shutil.copy2(REPO / "pyproject.toml", src)
    shutil.copy2(REPO / "README.md", src)
    shutil.copytree(REPO / "mv3dad", src / "mv3dad",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    dist, site = tmp / "dist", tmp / "site"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), "."],
         cwd=src, timeout=300)
    (wheel,) = dist.glob("mv3dad-*.whl")
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], cwd=tmp)
    return site, wheel


def _env(site: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MV3DAD_DEBUG")}
    env["PYTHONPATH"] = str(site)
    return env


def test_wheel_holds_the_rigs_and_configs(installed):
    _, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("mv3dad/calib/hemisphere12.yaml", "mv3dad/calib/hemisphere36.yaml", "mv3dad/calib/README.md",
                 "mv3dad/configs/modmap.yaml", "mv3dad/configs/synth.yaml", "mv3dad/configs/pretrain_depth.yaml",
                 "mv3dad/__main__.py", "mv3dad/errors.py", "mv3dad/io/atomic.py"):
        assert name in names, name


@pytest.mark.slow
def test_installed_copy_runs_from_another_folder(installed, tmp_path):
    site, _ = installed
    env = _env(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import mv3dad, sys; from mv3dad.data.rig import builtin_rig; from mv3dad.config import default_config; "
            "assert len(builtin_rig('hemisphere12')) == 12; default_config('modmap.yaml'); print(mv3dad.__file__)")
    r = _run([sys.executable, "-c", code], cwd=elsewhere, env=env)
    assert Path(r.stdout.strip()).is_relative_to(site)  # the installed copy, not the source tree
    out = elsewhere / "bench"
    r = _run([sys.executable, "-m", "mv3dad", "synth", str(out), "--categories", "vase", "--views", "2",
              "--image-size", "16", "--train-instances", "1", "--test-instances", "0", "--no-preview",
              "--no-progress", "--config", "configs/synth.yaml"], cwd=elsewhere, env=env)
    assert "1 categories" in r.stdout and (out / "benchmark.json").is_file()
