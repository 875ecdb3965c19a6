"""SIGTERM stops a sweep as Ctrl+C does. `kill`, Slurm and Kubernetes send SIGTERM; Ray Tune
stops gracefully only on SIGINT (its experiment state saved, trials stopped, callbacks ended),
and Ray's own SIGTERM handler exits from inside its threads. So the driver turns SIGTERM into
SIGINT for Tune: the first signal is a graceful stop, a second one stops at once (Tune restores
the default SIGINT handler after the first). The exit code then says which signal it was:
128 + the signal's number (130 for SIGINT, 143 for SIGTERM), as a shell reports it.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


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
