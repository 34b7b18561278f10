"""``python -m mv3dad``: the same as the ``mv3dad`` command."""

from mv3dad.cli.main import main

main()
