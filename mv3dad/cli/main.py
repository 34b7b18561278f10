"""The ``mv3dad`` command: a thin typer layer; each command group lives in its own module."""

import typer

from mv3dad.cli import modmap, pretrain, synth, volume

app = typer.Typer(help="mv3dad: multiview, multimodal 3D anomaly detection of industrial parts.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

for _module in (synth, volume, pretrain, modmap):
    _module.register(app)


@app.callback()
def _main() -> None:
    """mv3dad: multiview, multimodal 3D anomaly detection of industrial parts."""
