"""The ``mv3dad`` command: a thin typer layer; each command group lives in its own module.

Errors are handled once, here: an expected failure of any command (:class:`~mv3dad.errors.Mv3dadError`, or a
builtin ``ValueError``, ``OSError``, ``MemoryError`` or ``RuntimeError`` with a message) prints one red line
``error: <message>`` on stderr and exits with :func:`mv3dad.errors.exit_status`: 2 for bad input, 1 otherwise.
``mv3dad --debug ...`` or ``MV3DAD_DEBUG=1`` lets the exception through with its traceback.
"""

from __future__ import annotations

import os

import typer
from typer.core import TyperGroup

from mv3dad.cli import demo, modmap, pretrain, study, synth, volume
from mv3dad.errors import Mv3dadError, exit_status

EXPECTED_ERRORS: tuple[type[BaseException], ...] = (Mv3dadError, ValueError, OSError, MemoryError, RuntimeError)
"""Failures shown as one ``error:`` line (``OSError`` covers FileNotFoundError, PermissionError and the like)."""

_CONTROL_FLOW: tuple[type[BaseException], ...] = (
    typer.Exit, typer.Abort, next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"))
"""The command line's own control flow (``typer.Exit`` and ``Abort`` are RuntimeErrors): never a failure."""


def debug_enabled(ctx: typer.Context | None = None) -> bool:
    """Whether tracebacks are wanted: the ``--debug`` global option or ``MV3DAD_DEBUG`` set to a true value."""
    if ctx is not None and ctx.meta.get("mv3dad.debug"):
        return True
    return os.environ.get("MV3DAD_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


class _ErrorHandlingGroup(TyperGroup):
    """The command group whose invocation turns expected failures into one line and an exit status."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except _CONTROL_FLOW:
            raise
        except EXPECTED_ERRORS as exc:
            if debug_enabled(ctx):
                raise
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(exit_status(exc)) from None


app = typer.Typer(cls=_ErrorHandlingGroup,
                  help="mv3dad: multiview, multimodal 3D anomaly detection of industrial parts.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

for _module in (synth, volume, pretrain, modmap, demo, study):
    _module.register(app)


@app.callback()
def _main(ctx: typer.Context,
          debug: bool = typer.Option(False, "--debug", help="Show the full traceback of a failure "
                                                            "(also MV3DAD_DEBUG=1).")) -> None:
    """mv3dad: multiview, multimodal 3D anomaly detection of industrial parts."""
    ctx.meta["mv3dad.debug"] = debug


def main() -> None:
    """Run the command line (the ``mv3dad`` console script and ``python -m mv3dad``)."""
    app(prog_name="mv3dad")


if __name__ == "__main__":
    main()
