"""Errors the user can fix, reported by the command line as one line with exit code 2."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
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


class WriteFailed(OSError):
    """A file that could not be written (a full disk, a quota, a read-only mount), named with
    its path and, when space ran out, what is free there. Raised after the partial file was
    removed: nothing half-written is left for a resume to trust. An OSError, so callers that
    handle those still do."""

    def __init__(self, path: str | Path, error: OSError):
        super().__init__(error.errno, error.strerror or str(error), str(path))
        self.message = f"cannot write {path}: {error.strerror or error}"
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            self.message += f" ({free_space(Path(path))} free there); free space, then --resume"

    def __str__(self) -> str:
        return self.message


def free_space(path: Path) -> str:
    """The space left on the file system holding `path` (its nearest existing folder)."""
    for folder in (path, *path.parents):
        if folder.exists():
            megabytes = shutil.disk_usage(folder).free / 2**20
            return f"{megabytes:.0f} MiB"
    return "unknown space"


@contextmanager
def named_write_errors(path: str | Path) -> Iterator[None]:
    """Re-raise an OSError of the block as WriteFailed naming `path` (the file the block
    writes, not a temporary name)."""
    try:
        yield
    except WriteFailed:
        raise
    except OSError as error:
        raise WriteFailed(path, error) from None
