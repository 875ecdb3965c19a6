"""Checksums of what a run saves and loads again (task checkpoints, task-0 prefixes), so that a
truncated or damaged file is caught before it is used (and before Ray Tune is told about it),
named, and replaced by the previous intact copy or recomputed. Torch-free: the sweep's driver
checks checkpoints too.

A directory's checksums live in `checksums.json` (relative path -> size and SHA-256 of every
other file), written last: a directory that holds it was written completely. Directories written
before checksums existed hold none; they are trusted as before.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

CHECKSUMS_FILE = "checksums.json"
_CHUNK = 1 << 20


class CorruptFile(ValueError):
    """A saved file that is missing, truncated or changed since it was written; names it."""


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in chunks (weights can be large)."""
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def file_entry(path: Path) -> dict[str, int | str]:
    """What a checksum records of one file: its size (a cheap first test) and its SHA-256."""
    return {"size": Path(path).stat().st_size, "sha256": file_sha256(path)}


def verify_file(path: Path, size: int, sha256: str) -> None:
    """Raise CorruptFile naming `path` unless it has this size and SHA-256."""
    path = Path(path)
    if not path.is_file():
        raise CorruptFile(f"{path} is missing")
    found = path.stat().st_size
    if found != size:
        raise CorruptFile(f"{path} has {found} bytes, {size} were written (truncated?)")
    if file_sha256(path) != sha256:
        raise CorruptFile(f"{path} does not match the checksum written with it (damaged)")


def write_checksums(directory: Path) -> Path:
    """Record every file under `directory` in its checksums.json (call it last)."""
    directory = Path(directory)
    entries = {
        str(path.relative_to(directory)): file_entry(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != CHECKSUMS_FILE
    }
    target = directory / CHECKSUMS_FILE
    target.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
    return target


def verify_checksums(directory: Path) -> bool:
    """Raise CorruptFile naming the first file under `directory` that does not match its
    checksum; True when every file matched, False when the directory has no checksums (written
    before they existed)."""
    directory = Path(directory)
    manifest = directory / CHECKSUMS_FILE
    if not manifest.is_file():
        return False
    try:
        entries = json.loads(manifest.read_text())
        items = [(str(name), int(e["size"]), str(e["sha256"])) for name, e in entries.items()]
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as error:
        raise CorruptFile(f"{manifest} cannot be read ({type(error).__name__})") from None
    for name, size, sha256 in items:
        verify_file(directory / name, size, sha256)
    return True
