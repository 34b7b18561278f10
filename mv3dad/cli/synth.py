"""CLI commands: synth (imports of heavy libraries stay inside the commands so that --help is fast)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to app."""
