"""Errors the user can fix, reported by the command line as one line with exit code 2."""

from __future__ import annotations


class UsageError(RuntimeError):
    """An anticipated problem with the environment the user gave (a tracking server that does
    not answer, an absent accelerator, storage that cannot be written): one line, no traceback."""
