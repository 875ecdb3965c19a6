"""Where task-0 prefixes live (cl_sweeps/prefix.py says what they hold and why).

One directory per prefix, `<root>/<key>/`, holding the payload and `prefix.json`. It is written
under a temporary name and renamed into place; a rename onto an existing prefix fails, so the
first writer wins and a killed writer leaves only a temporary directory, never a usable partial
prefix. While one run computes a prefix it holds `<root>/.<key>.lock` (an OS file lock, released
if the process dies). The manifest holds the payload's size and SHA-256: a payload that does not
match (truncated, damaged) is named in a warning, its directory set aside as
`.<key>.corrupt-<time>` (kept, not deleted) and the prefix counts as absent, so the run computes
it again. Torch-free, so that a sweep's driver lists the prefixes without importing the training
stack.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock

from cl_sweeps.errors import WriteFailed
from cl_sweeps.integrity import CorruptFile, file_entry, verify_file

log = logging.getLogger(__name__)

PAYLOAD_FILE = "prefix.pt"
MANIFEST_FILE = "prefix.json"  # written last: a directory without it is not a prefix
PAYLOAD_CHECKSUM = "payload"  # the manifest's key for the payload's size and SHA-256


class PrefixStore:
    """Task-0 prefixes under one directory (a sweep's storage), shared by all its trials."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key

    def payload(self, key: str) -> Path | None:
        """The payload file of the complete prefix `key`, or None if there is none or it fails
        its checksum (then set aside, named in a warning). Call it holding `claim(key)`."""
        directory = self.path(key)
        manifest = directory / MANIFEST_FILE
        if not manifest.is_file():
            return None
        try:
            check_payload(directory)
        except CorruptFile as error:
            aside = self.root / f".{key}.corrupt-{int(time.time())}"
            os.rename(directory, aside)
            log.warning("task-0 prefix: %s; set aside as %s, computing it again", error, aside)
            return None
        return directory / PAYLOAD_FILE

    def publish(
        self, key: str, write_payload: Callable[[Path], Any], manifest: dict[str, Any]
    ) -> bool:
        """Store a prefix atomically (`write_payload(path)` writes its payload); False if
        another writer stored it first."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            write_payload(tmp / PAYLOAD_FILE)
            manifest = {**manifest, PAYLOAD_CHECKSUM: file_entry(tmp / PAYLOAD_FILE)}
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
            os.rename(tmp, self.path(key))
            return True
        except OSError as error:
            if not (self.path(key) / MANIFEST_FILE).is_file():
                raise WriteFailed(self.path(key), error) from None  # a full disk, say
            return False  # the first writer won; ours is the same result
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @contextmanager
    def claim(self, key: str) -> Iterator[None]:
        """Hold the key's lock: runs needing the same prefix wait here while one computes it."""
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / f".{key}.lock")):
            yield

    def manifests(self) -> list[dict[str, Any]]:
        """Every complete prefix's manifest (what the sweep lists), by key."""
        if not self.root.is_dir():
            return []
        found = []
        for directory in sorted(self.root.iterdir()):
            manifest = directory / MANIFEST_FILE
            if directory.is_dir() and not directory.name.startswith(".") and manifest.is_file():
                try:
                    found.append({**json.loads(manifest.read_text()), "path": str(directory)})
                except (ValueError, TypeError, UnicodeDecodeError) as error:
                    log.warning("task-0 prefix: %s cannot be read (%s); not listed", manifest,
                                type(error).__name__)
        return found


def check_payload(directory: Path) -> None:
    """CorruptFile naming the file unless the prefix's manifest reads and its payload matches
    the checksum in it (a prefix stored before checksums existed holds none: trusted)."""
    manifest = directory / MANIFEST_FILE
    try:
        entry = json.loads(manifest.read_text()).get(PAYLOAD_CHECKSUM)
        expected = None if entry is None else (int(entry["size"]), str(entry["sha256"]))
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as error:
        raise CorruptFile(f"{manifest} cannot be read ({type(error).__name__})") from None
    if expected is not None:
        verify_file(directory / PAYLOAD_FILE, *expected)
