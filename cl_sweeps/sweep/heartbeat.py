"""Is the sweep's driver still running? A trial's record says RUNNING until the driver writes its
end, so after a killed driver only a heartbeat tells a reader (`cl-sweeps status`) that those
trials are interrupted, not running.

The driver writes `<output_dir>/driver.json` (host, pid, last beat) when it starts and then from
its Tune loop (tuner.DriverHeartbeat) at most every BEAT_EVERY_S seconds, and marks it ended
when the sweep ends. A reader takes the driver for gone when the sweep ended or the pid no longer
exists on the reader's own host (certain), or when the last beat is older than STALE_AFTER_S (a
driver on another host, or a hung one). Plain files: no Ray, so `cl-sweeps status` stays light.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass

from cl_sweeps import __version__
from cl_sweeps.records import SweepLayout, write_json

BEAT_EVERY_S = 10.0
STALE_AFTER_S = 90.0  # well above BEAT_EVERY_S: a busy driver loop may beat late


def write_beat(layout: SweepLayout, started: float, ended: bool = False) -> None:
    write_json(layout.driver, {
        "host": socket.gethostname(), "pid": os.getpid(), "started": started,
        "beat": time.time(), "ended": ended, "release": __version__,
    })


@dataclass(frozen=True)
class DriverState:
    """What a reader knows of the driver: alive or not, how long since its last beat, and
    whether it is surely gone (ended, or its pid is dead) rather than silent for a while."""

    alive: bool
    since_beat: float
    certain: bool


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def driver_state(layout: SweepLayout, now: float | None = None) -> DriverState | None:
    """The driver's state from driver.json; None if the sweep wrote none or it cannot be read
    (nothing is known: the records are shown as they are)."""
    try:
        beat = json.loads(layout.driver.read_text())
        since = max(0.0, (time.time() if now is None else now) - float(beat["beat"]))
        pid, host, ended = int(beat["pid"]), beat.get("host"), bool(beat.get("ended"))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    certain = ended or (host == socket.gethostname() and not _pid_exists(pid))
    return DriverState(alive=not (certain or since > STALE_AFTER_S), since_beat=since,
                       certain=certain)
