"""``python -m mv3dad.cli``: the same as the ``mv3dad`` command."""

from mv3dad.cli.main import app

app()
