"""Tools and the command line: ``intdeploy`` and its sub-commands, synthesis, performance.

What the sub-command modules share: :class:`UsageError` (a user mistake the command line reports
in one line, status 2) and :func:`display_path`.
"""

from pathlib import Path

__all__ = ["UsageError", "display_path", "pct"]


class UsageError(Exception):
    """A user mistake: ``intdeploy`` prints ``intdeploy: error: <message>`` and exits with 2."""


def display_path(path):
    """``path`` relative to the working directory when it lies below it (stable in result files)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def pct(v):
    """A fraction as a fixed-width percentage: ``' 98.89 %'``."""
    return f"{100 * v:6.2f} %"
