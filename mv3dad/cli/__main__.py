"""``python -m mv3dad.cli``: the same as the ``mv3dad`` command (and ``python -m mv3dad``)."""

from mv3dad.cli.main import main

main()
