"""SIGTERM stops a sweep as Ctrl+C does. `kill`, Slurm and Kubernetes send SIGTERM; Ray Tune
stops gracefully only on SIGINT (its experiment state saved, trials stopped, callbacks ended),
and Ray's own SIGTERM handler exits from inside its threads. So the driver turns SIGTERM into
SIGINT for Tune: the first signal is a graceful stop, a second one stops at once (Tune restores
the default SIGINT handler after the first). The exit code then says which signal it was:
128 + the signal's number (130 for SIGINT, 143 for SIGTERM), as a shell reports it.

Fault injection (tests only): with CL_SWEEPS_KILL_AT=<point> in the driver's environment, the
process that reaches `kill_point(<point>)` sends SIGKILL to the driver's process group, the driver
and its local Ray alike (a lost machine): `ray_started` (Ray is up, no trial has started),
`task_saved` (a trial saved a task's checkpoint and spooled its metrics, Tune has not recorded
it), `experiment_end` (Tune's run ended, the summary and the parent run's end not yet done).
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from types import FrameType

KILL_ENV = "CL_SWEEPS_KILL_AT"
KILL_POINTS = ("ray_started", "task_saved", "experiment_end")


class StopSignals:
    """Installs the SIGTERM handler (main thread only; install again after a library such as
    Ray replaced it) and remembers which stop signal arrived. Until `graceful` is set (the
    Tuner runs) there is nothing to stop gracefully: SIGTERM exits at once, with 143."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.graceful = False

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        if not self.graceful:
            raise SystemExit(128 + signum)
        signal.raise_signal(signal.SIGINT)  # Tune's graceful stop, or KeyboardInterrupt

    def exit_code(self, default: int) -> int:
        """128 + the signal that stopped the sweep; `default` when none did."""
        return 128 + self.received if self.received is not None else default


def kill_point(point: str, driver_json: Path | None = None) -> None:
    """If CL_SWEEPS_KILL_AT names `point` (tests only): SIGKILL the driver's process group (the
    driver and its local Ray), then this process (a Ray worker runs in a group of its own). A
    worker names the driver through its driver.json."""
    assert point in KILL_POINTS, point
    if os.environ.get(KILL_ENV) != point:
        return
    pid = int(json.loads(driver_json.read_text())["pid"]) if driver_json else os.getpid()
    os.killpg(os.getpgid(pid), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
