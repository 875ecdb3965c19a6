"""Errors the user can fix, reported by the command line as one line with exit code 2."""

from __future__ import annotations

import os
from pathlib import Path


class UsageError(RuntimeError):
    """An anticipated problem with the environment the user gave (a tracking server that does
    not answer, an absent accelerator, storage that cannot be written): one line, no traceback."""


def ensure_writable(path: str | Path, field: str) -> None:
    """Create the directory if needed and prove it takes a file; UsageError naming the field
    otherwise (before any trial starts, not as a traceback from inside one)."""
    directory = Path(path)
    probe = directory / f".write-test-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise UsageError(
            f"{field}: cannot write to {directory} ({error.strerror or error}); choose a "
            "directory this user can write"
        ) from None
