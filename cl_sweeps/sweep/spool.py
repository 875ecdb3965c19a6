"""A durable, ordered queue of tracking operations, sent by a background thread.

Training never waits for the tracking server: a trial (or the sweep's driver) appends an
operation to a spool file next to its records and goes on; a sender thread applies the
operations in order and retries through an outage. The operations themselves must be idempotent
(tracking.py makes them so), because a spool may be sent again, in part, by a restarted trial,
by the driver or by `cl-sweeps sync`. Files, for a spool named `<name>.jsonl`:

    <name>.jsonl        the operations, one JSON line each, append-only
    <name>.state.json   how many operations were applied, and what applying them learned
                        (the MLflow run id, the tracking URI)
    <name>.lock         held (flock, non-blocking) while one operation is applied, so two senders
                        of the same spool never apply an operation twice or out of order
"""

from __future__ import annotations

import fcntl
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cl_sweeps.results import append_json_line, atomic_write, read_json_lines

log = logging.getLogger(__name__)

Operation = dict[str, Any]
State = dict[str, Any]
Apply = Callable[[State, Operation], None]
IsPermanent = Callable[[BaseException], bool]

POLL_S = 1.0
MAX_BACKOFF_S = 5.0


class Spool:
    """One run's operations on disk (see the module docstring)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.state_path = self.path.with_suffix(".state.json")
        self.lock_path = self.path.with_suffix(".lock")

    def ensure(self, **initial: Any) -> Spool:
        """Create the state file if new; fill in values it does not hold yet."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock(blocking=True):
            state = self.state()
            missing = {k: v for k, v in initial.items() if state.get(k) is None}
            if missing or not self.state_path.is_file():
                self._write_state({**state, **missing})
        return self

    def append(self, op: Operation) -> None:
        """Add an operation: one whole line, never interleaved with a concurrent append nor
        left partial by a failed write (results.append_json_line; WriteFailed if it fails)."""
        append_json_line(self.path, op)

    def operations(self) -> list[Operation]:
        """Every complete operation (a line cut short by a crash is not one: skipped, and as
        append_json_line closes it before the next line, never counted as sent)."""
        return read_json_lines(self.path).records

    def state(self) -> State:
        if not self.state_path.is_file():
            return {"sent": 0}
        return json.loads(self.state_path.read_text())

    def pending(self) -> int:
        return max(0, len(self.operations()) - int(self.state().get("sent", 0)))

    def send_next(self, apply: Apply, permanent: IsPermanent) -> bool | None:
        """Apply the next operation: True if one was applied (or skipped as permanently
        invalid), False if none is pending, None if another sender holds the spool. A transient
        error propagates, and the operation stays next."""
        with self._lock(blocking=False) as held:
            if not held:
                return None
            state = self.state()
            ops = self.operations()
            sent = int(state.get("sent", 0))
            if sent >= len(ops):
                return False
            try:
                apply(state, ops[sent])
            except Exception as error:
                if not permanent(error):
                    raise
                log.warning("tracking operation %s skipped: %s", ops[sent].get("op"), error)
                state["skipped"] = int(state.get("skipped", 0)) + 1
            state["sent"] = sent + 1
            self._write_state(state)
            return True

    def _write_state(self, state: State) -> None:
        text = json.dumps(state)
        atomic_write(self.state_path, lambda tmp: tmp.write_text(text))

    @contextmanager
    def _lock(self, blocking: bool) -> Iterator[bool]:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock_path.open("a") as handle:
            flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
            try:
                fcntl.flock(handle, flags)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


class Sender:
    """Sends the pending operations of its spools, in order per spool, from a daemon thread
    (or synchronously with `drain`). A transient failure backs the spool off (up to
    MAX_BACKOFF_S) and retries the same operation; nothing is ever dropped for being late."""

    def __init__(self, apply: Apply, permanent: IsPermanent, name: str = "tracking-sender"):
        self.apply = apply
        self.permanent = permanent
        self.name = name
        self._spools: dict[Path, Spool] = {}
        self._retry_at: dict[Path, float] = {}
        self._delay: dict[Path, float] = {}
        self._last_error: str | None = None
        self._failing = False
        self._guard = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, spool: Spool) -> Spool:
        with self._guard:
            self._spools.setdefault(spool.path, spool)
        self.notify()
        return spool

    def notify(self) -> None:
        self._wake.set()

    def start(self) -> Sender:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()
        return self

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def pending(self) -> int:
        with self._guard:
            spools = list(self._spools.values())
        return sum(spool.pending() for spool in spools)

    def send_round(self) -> bool:
        """One pass over the spools that are not backing off; True if anything was sent."""
        with self._guard:
            spools = list(self._spools.values())
        progressed = False
        for spool in spools:
            if self._stop.is_set():
                break
            if time.monotonic() < self._retry_at.get(spool.path, 0.0):
                continue
            try:
                while not self._stop.is_set() and spool.send_next(self.apply, self.permanent):
                    progressed = True
                self._delay.pop(spool.path, None)
                if progressed and self._failing:
                    log.info("MLflow reachable again; sending the spooled operations")
                    self._failing = False
            except Exception as error:  # noqa: BLE001 - transient: the server may be down
                delay = min(MAX_BACKOFF_S, self._delay.get(spool.path, 0.25) * 2)
                self._delay[spool.path] = delay
                self._retry_at[spool.path] = time.monotonic() + delay
                self._last_error = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
                if not self._failing:
                    log.warning("MLflow unreachable; operations are kept in the spool and sent "
                                "when it answers (%s)", self._last_error)
                self._failing = True
        return progressed

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self.send_round():
                self._wake.wait(POLL_S)
                self._wake.clear()

    def drain(self, timeout_s: float) -> int:
        """Wait up to timeout_s for every spool to be sent (sending here if no thread runs);
        return how many operations are left."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = self.pending()
            if left == 0 or time.monotonic() >= deadline:
                return left
            if self._thread is None:
                if not self.send_round():
                    time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            else:
                self.notify()
                time.sleep(0.1)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
