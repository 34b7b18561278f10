"""The project's exceptions: one base, :class:`Mv3dadError`, and one subclass per kind of failure.

Every subclass also keeps the builtin base that callers catch (``ValueError`` for bad data and calibration,
``OSError`` for unwritable outputs, ``MemoryError`` for oversized grids, ``RuntimeError`` for encoders), so
``except ValueError`` keeps working. The modules that raised them first re-export them
(``from mv3dad.data.scene import DataError`` is the same class as ``from mv3dad.errors import DataError``).

The command line (:mod:`mv3dad.cli.main`) prints any of these as one ``error: <message>`` line and exits with
:func:`exit_status`: 2 for bad input (:data:`BAD_INPUT_ERRORS`), 1 for any other failure.

This module imports nothing from the package: every layer may import it.
"""

from __future__ import annotations


class Mv3dadError(Exception):
    """Base of every exception the package raises on purpose; the message names the file or object and why."""


class DataError(Mv3dadError, ValueError):
    """Input data is malformed; the message names the file (or object) and the problem."""


class CorpusError(DataError):
    """A corpus is empty, has too many bad files, or a file cannot be read (the message names it)."""


class CalibrationError(Mv3dadError, ValueError):
    """A camera's parameters are not physically valid."""


class ExportError(Mv3dadError, OSError):
    """An output could not be written; the message names the path and the reason."""


class GridTooLargeError(Mv3dadError, MemoryError, ValueError):
    """A volume would need more memory than allowed; raised before anything is allocated."""


class EncoderError(Mv3dadError, RuntimeError):
    """An encoder cannot be built, loaded or applied; the message says why and what to do."""


BAD_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    DataError, CalibrationError, GridTooLargeError, ValueError, FileNotFoundError, FileExistsError,
    IsADirectoryError, NotADirectoryError)
"""Exceptions that mean the user's input (a file, a folder, an option value) is wrong: exit status 2."""


def exit_status(exc: BaseException) -> int:
    """The command-line exit status of ``exc``: 2 for bad input (:data:`BAD_INPUT_ERRORS`), else 1."""
    return 2 if isinstance(exc, BAD_INPUT_ERRORS) else 1


__all__ = ["BAD_INPUT_ERRORS", "CalibrationError", "CorpusError", "DataError", "EncoderError", "ExportError",
           "GridTooLargeError", "Mv3dadError", "exit_status"]
