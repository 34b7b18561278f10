"""``python -m mv3dad.pretrain`` / ``torchrun -m mv3dad.pretrain``: the mv3dad command line (pretrain-* commands)."""

from mv3dad.cli.main import app

app()
