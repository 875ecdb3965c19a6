"""One driver per sweep: an exclusive lock on `<output_dir>/driver.lock`, held for the driver's
life and released by the operating system when it exits or dies (flock through `filelock`;
it works where the file system supports flock/fcntl locks, NFSv4 included). A second driver,
fresh or --resume, is refused with the live driver's host and pid (from driver.json), before
it writes anything. Plain files: no Ray.
"""

from __future__ import annotations

import json

from filelock import FileLock, Timeout

from cl_sweeps.errors import UsageError
from cl_sweeps.records import SweepLayout


def hold_driver_lock(layout: SweepLayout) -> FileLock:
    """Take the sweep's lock (the directory is created if needed) or raise UsageError naming
    the driver that holds it; the caller keeps the returned lock for as long as it runs."""
    layout.root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(layout.lock, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise UsageError(
            f"output_dir: {layout.root} is in use by another driver ({_holder(layout)}); one "
            "driver runs a sweep: wait for it to end, or stop it (Ctrl+C or kill -TERM) and "
            "then --resume"
        ) from None
    return lock


def _holder(layout: SweepLayout) -> str:
    """'host H, pid P' from driver.json, as far as it can be read."""
    try:
        beat = json.loads(layout.driver.read_text())
        return f"host {beat['host']}, pid {beat['pid']}"
    except (OSError, ValueError, TypeError, KeyError):
        return "host and pid not recorded yet"
