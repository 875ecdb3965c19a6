"""Is the sweep's driver still running? A trial's record says RUNNING until the driver writes its
end, so after a killed driver only a heartbeat tells a reader (`cl-sweeps status`) that those
trials are interrupted, not running.

The driver writes `<output_dir>/driver.json` (host, pid, last beat) from its Tune loop at most
every BEAT_EVERY_S seconds, and marks it ended when the sweep ends. A reader takes the driver
for gone when the sweep ended, when the pid no longer exists on the reader's own host, or when
the last beat is older than STALE_AFTER_S.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from cl_sweeps.records import SweepLayout, write_json

BEAT_EVERY_S = 10.0
STALE_AFTER_S = 90.0  # well above BEAT_EVERY_S: a busy driver loop may beat late


def driver_file(layout: SweepLayout) -> Path:
    return layout.root / "driver.json"


def write_beat(layout: SweepLayout, started: float, ended: bool = False) -> None:
    write_json(driver_file(layout), {
        "host": socket.gethostname(), "pid": os.getpid(), "started": started,
        "beat": time.time(), "ended": ended,
    })


class DriverHeartbeat(tune.Callback):
    """Beats from the Tune loop (on_step), so a hung or killed driver stops beating."""

    def __init__(self, layout: SweepLayout):
        self.layout = layout
        self.started = time.time()
        self._last = 0.0

    def on_step(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if now - self._last >= BEAT_EVERY_S:
            self._last = now
            write_beat(self.layout, self.started)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        write_beat(self.layout, self.started, ended=True)


@dataclass(frozen=True)
class DriverState:
    """What a reader knows of the driver: alive or not, and how long since its last beat."""

    alive: bool
    since_beat: float
    ended: bool


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def driver_state(layout: SweepLayout, now: float | None = None) -> DriverState | None:
    """The driver's state from driver.json; None if the sweep wrote none (nothing is known)."""
    try:
        beat = json.loads(driver_file(layout).read_text())
    except (OSError, ValueError):
        return None
    now = time.time() if now is None else now
    since = max(0.0, now - float(beat.get("beat", 0.0)))
    gone = (
        bool(beat.get("ended"))
        or since > STALE_AFTER_S
        or (beat.get("host") == socket.gethostname() and not _pid_exists(int(beat["pid"])))
    )
    return DriverState(alive=not gone, since_beat=since, ended=bool(beat.get("ended")))
