"""Options defined once: the CLI's help and defaults come from the config dataclasses' docstrings and fields."""

import dataclasses

import pytest
import typer

from mv3dad.cli.main import app
from mv3dad.config import default_config, field_default, field_docs, field_help, read_yaml
from mv3dad.mapping.fit import FitConfig
from mv3dad.metrics import MetricsConfig
from mv3dad.pipeline.features import EncoderConfig
from mv3dad.pipeline.fit import FitJob
from mv3dad.scoring.methods.deviation import DeviationConfig

CONFIGS = (FitConfig, EncoderConfig, FitJob, DeviationConfig, MetricsConfig)


def _options(command: str) -> dict[str, "typer.core.click.Option"]:
    cmd = typer.main.get_command(app).commands[command]
    return {decl: p for p in cmd.params for decl in p.opts}


def _mirrors(cls, command: str) -> dict[str, tuple[str, object]]:
    """{field: (option help, option)} of the fields of ``cls`` that ``command`` has as --field or --no-field."""
    opts, out = _options(command), {}
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        for decl in (flag, "--no-" + flag[2:], "--no-" + flag[2:].removesuffix("-features")):
            if decl in opts:
                out[f.name] = (opts[decl].help, opts[decl])
    return out


@pytest.mark.parametrize("cls", CONFIGS)
def test_every_field_is_documented(cls):
    assert set(field_docs(cls)) == {f.name for f in dataclasses.fields(cls)}
    ref = f"{cls.__module__}:{cls.__name__}"  # read from source (the CLI's way) = read from the class
    assert field_docs(ref) == field_docs(cls)


def test_fit_config_fields_help_is_the_docstring():
    mirrored = _mirrors(FitConfig, "fit")
    assert {"mapper", "modulation", "multi_class", "epochs", "device"} <= set(mirrored)
    for name, (help_text, opt) in mirrored.items():
        assert help_text.endswith(field_help(FitConfig, name)), name
        if not opt.is_flag:  # an override: unset = the config file's value, else the dataclass default shown
            assert opt.default is None and opt.show_default == str(field_default(FitConfig, name)), name


@pytest.mark.parametrize("cls,command,expected", [
    (EncoderConfig, "fit", {"image_size", "image_encoder", "image_weights", "depth_encoder", "random_init"}),
    (FitJob, "fit", {"views", "setup", "method", "coreset", "resume", "cache_features"}),
    (DeviationConfig, "fit", {"reference_mesh", "registration"}),
    (MetricsConfig, "evaluate", {"evaluate", "mode"}),
])
def test_other_mirrored_options(cls, command, expected):
    mirrored = _mirrors(cls, command)
    assert expected <= set(mirrored)
    mirrored.pop("device", None) if cls is EncoderConfig else None  # --device sets both; its help is FitConfig's
    for name, (help_text, opt) in mirrored.items():
        assert help_text.endswith(field_help(cls, name)), name
        if cls in (FitJob, DeviationConfig, MetricsConfig) and not opt.is_flag and not opt.required:
            assert opt.default == field_default(cls, name), name


def test_modmap_yaml_only_overrides():
    doc = read_yaml(default_config("modmap.yaml"))
    defaults = dataclasses.asdict(FitConfig())
    assert set(doc) <= set(defaults)
    assert [k for k, v in doc.items() if v == defaults[k]] == []


def test_field_help_parsing():
    @dataclasses.dataclass
    class C:
        """Doc.

        Attributes:
            a: first line
                continued with :func:`~x.y` and ``code``.
            b (int): typed entry.

        Other text.
        """

        a: int = 1
        b: int = dataclasses.field(default_factory=lambda: 2)

    assert field_help(C, "a") == "first line continued with `x.y` and `code`."
    assert field_help(C, "b") == "typed entry."
    assert field_default(C, "b") == 2
    with pytest.raises(ValueError, match="'c'"):
        field_help(C, "c")
