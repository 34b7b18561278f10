"""Shared by the tools that write a generated section into a docs page (``quality_report.py``, ``bench_predict.py``).

The tools run as ``python tools/<name>.py``, which puts this folder on ``sys.path``: import with
``from _docs import write_section``.
"""

from __future__ import annotations

from pathlib import Path

QUALITY_TITLE = "Quality and speed of ModMap on the synthetic benchmark"  # of docs/quality.md, the tools' default page


def write_section(doc: Path, section: str, begin: str, end: str, title: str) -> None:
    """Replace the text from ``begin`` to ``end`` in ``doc`` with ``section`` (create the page / section when missing).

    ``section`` should itself start with ``begin`` and end with ``end``; a new page starts with ``# title``.
    The page is written atomically.
    """
    from mv3dad.io import atomic_write

    text = doc.read_text() if doc.is_file() else f"# {title}\n\n"
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    atomic_write(doc, text)
