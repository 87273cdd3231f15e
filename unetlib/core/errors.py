"""Exceptions for expected failures.

Every failure a user can cause (a missing file, a mask that is all background, a model
that does not match the data) raises a subclass of :class:`UnetlibError` whose message
names the file, what was wrong and what to do about it. The CLI prints that message on
one line and exits non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from os import PathLike


class UnetlibError(Exception):
    """Base class of every expected, user-facing failure in unetlib."""


class InputError(UnetlibError, ValueError):
    """An input file or folder is missing, unreadable or not what the step needs."""


class OutputError(UnetlibError, OSError):
    """An output cannot be written, or writing it would overwrite the user's work."""


class ParameterError(UnetlibError, ValueError):
    """A parameter is outside its valid range.

    Messages start with ``name=value is invalid`` (the Python name); the CLI rewrites that
    to its own flag (``--patch-size 100000 is invalid``).
    """


class Interrupted(UnetlibError):
    """The user interrupted a step (Ctrl-C); the message says what was kept and how to go on."""


def describe(path: str | PathLike[str], problem: str, fix: str = "") -> str:
    """Format the one-line message of an expected failure: ``<path>: <problem>. <fix>``."""
    message = f"{path}: {problem}"
    if fix:
        message = f"{message.rstrip('.')}. {fix}"
    return message


class UnetlibWarning(UserWarning):
    """Something the user should know that does not stop the step (dropped frames, ...)."""
