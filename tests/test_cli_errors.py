"""One exception base (``mv3dad.errors.Mv3dadError``) and one command-line error handler: ``error: <message>``,
exit 2 for bad input, 1 for other failures, a traceback only with ``--debug`` / ``MV3DAD_DEBUG=1``."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mv3dad import errors
from mv3dad.cli.main import app
from mv3dad.errors import (CalibrationError, CorpusError, DataError, EncoderError, ExportError, GridTooLargeError,
                           Mv3dadError, exit_status)

REPO = Path(__file__).resolve().parents[1]


def test_every_project_exception_subclasses_the_base_and_keeps_its_builtin_base():
    bases = {DataError: ValueError, CorpusError: DataError, CalibrationError: ValueError, ExportError: OSError,
             GridTooLargeError: (MemoryError, ValueError), EncoderError: RuntimeError}
    for cls, builtin in bases.items():
        assert issubclass(cls, Mv3dadError) and issubclass(cls, builtin), cls
    # the modules that raised them first re-export the same classes
    for module, name in [("mv3dad.data.scene", "DataError"), ("mv3dad.data", "DataError"),
                         ("mv3dad.data.corpus", "CorpusError"), ("mv3dad.geometry.camera", "CalibrationError"),
                         ("mv3dad.export.atomic", "ExportError"), ("mv3dad.export", "ExportError"),
                         ("mv3dad.io", "ExportError"), ("mv3dad.volume.accumulate", "GridTooLargeError")]:
        assert getattr(importlib.import_module(module), name) is getattr(errors, name), (module, name)


def test_every_exception_class_defined_in_the_package_subclasses_the_base():
    """Scan the source: a new ``class XError(...)`` anywhere must derive from Mv3dadError."""
    found = []
    for path in sorted((REPO / "mv3dad").rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        text = path.read_text()
        if "Error(" not in text or module.endswith("__main__"):
            continue
        for line in text.splitlines():
            if line.startswith("class ") and ("Error(" in line or "Exception(" in line):
                name = line.split()[1].split("(")[0]
                cls = getattr(importlib.import_module(module), name)
                if issubclass(cls, BaseException):
                    found.append(cls)
    assert Mv3dadError in found and DataError in found
    # encoders/vit.py still defines its own EncoderError until it imports mv3dad.errors' one (issue 12)
    missing = [c for c in found if not issubclass(c, Mv3dadError) and c.__module__ != "mv3dad.encoders.vit"]
    assert not missing


def test_exit_status_two_for_bad_input_one_otherwise():
    for exc in (DataError("x"), CorpusError("x"), CalibrationError("x"), GridTooLargeError("x"), ValueError("x"),
                FileNotFoundError("x"), IsADirectoryError("x")):
        assert exit_status(exc) == 2, exc
    for exc in (ExportError("x"), PermissionError("x"), EncoderError("x"), RuntimeError("x"), MemoryError("x")):
        assert exit_status(exc) == 1, exc


def test_read_json_and_yaml_name_the_file(tmp_path):
    from mv3dad.io import read_json, read_yaml

    (tmp_path / "a.json").write_text('{"k": 1}')
    assert read_json(tmp_path / "a.json") == {"k": 1}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match=r"bad\.json: cannot read run record"):
        read_json(tmp_path / "bad.json", "run record")
    with pytest.raises(DataError, match=r"none\.yaml: config not found"):
        read_yaml(tmp_path / "none.yaml", "config")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(DataError, match="must hold a mapping"):
        read_yaml(tmp_path / "list.yaml")
    assert read_yaml(tmp_path / "list.yaml", mapping=False) == [1]
    with pytest.raises(CalibrationError):
        read_yaml(tmp_path / "none.yaml", error=CalibrationError)


def test_bad_input_through_the_cli_is_one_line_and_exit_2(tmp_path):
    r = CliRunner().invoke(app, ["synth", str(tmp_path / "x"), "--categories", "teapot"])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [r.output.strip()] and r.output.startswith("error: unknown category")
    assert "Traceback" not in r.output
    r = CliRunner().invoke(app, ["export", str(tmp_path / "missing.npz"), str(tmp_path / "o.vdb")])
    assert r.exit_code == 2 and "missing.npz: no such file" in r.output


def test_other_failures_exit_1(tmp_path, monkeypatch):
    import mv3dad.synth.generate as generate

    def boom(*args, **kwargs):
        raise PermissionError(f"{tmp_path}: not allowed")

    monkeypatch.setattr(generate, "generate_benchmark", boom)
    r = CliRunner().invoke(app, ["synth", str(tmp_path / "x")])
    assert r.exit_code == 1 and r.output.strip() == f"error: {tmp_path}: not allowed"


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    r = CliRunner().invoke(app, ["--debug", "synth", str(tmp_path / "x"), "--categories", "teapot"])
    assert r.exit_code != 0 and isinstance(r.exception, ValueError)  # let through, not turned into one line
    monkeypatch.setenv("MV3DAD_DEBUG", "1")
    r = CliRunner().invoke(app, ["synth", str(tmp_path / "x"), "--categories", "teapot"])
    assert isinstance(r.exception, ValueError)


def test_python_dash_m_mv3dad_is_the_cli(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MV3DAD_DEBUG"}
    r = subprocess.run([sys.executable, "-m", "mv3dad", "synth", str(tmp_path / "x"), "--categories", "teapot"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith("error: unknown category")
    r = subprocess.run([sys.executable, "-m", "mv3dad", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "synth" in r.stdout and "--debug" in r.stdout


def test_fit_reads_the_packaged_default_config_and_never_guesses(monkeypatch, tmp_path):
    import mv3dad.config as config

    assert config.default_config("modmap.yaml").is_file()
    monkeypatch.setattr(config, "package_path", lambda rel: tmp_path / rel)
    with pytest.raises(FileNotFoundError, match="modmap.yaml"):
        config.default_config("modmap.yaml")


def test_a_relative_config_path_falls_back_to_the_package(tmp_path, monkeypatch):
    from mv3dad.config import load_config
    from mv3dad.synth.generate import SynthConfig

    monkeypatch.chdir(tmp_path)
    assert load_config(SynthConfig, "configs/synth.yaml").views == 12  # the packaged file
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "synth.yaml").write_text(json.dumps({"views": 3}))
    assert load_config(SynthConfig, "configs/synth.yaml").views == 3  # the user's own file wins
