"""`atomic_write` and `append_json_line`: how the package writes files a reader may open at any
moment (whole files replaced by rename; append-only logs in whole lines)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from cl_sweeps.results import atomic_write


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    atomic_write(path, lambda tmp: tmp.write_text("old"))

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_the_file_gets_the_usual_mode_not_a_private_temporary_one(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    path = atomic_write(tmp_path / "a" / "weights.pt", lambda tmp: tmp.write_bytes(b"x"),
                        durable=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def run_concurrently(write, writers: int = 4) -> list[BaseException]:
    """`write(index)` in `writers` threads at once; the errors they raised."""
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            write(index)
        except BaseException as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_concurrent_writers_of_one_file_never_share_a_temporary(tmp_path: Path) -> None:
    path = tmp_path / "state.json"

    def writer(index: int) -> None:
        for _ in range(50):
            atomic_write(path, lambda tmp: tmp.write_text(str(index) * 1000))

    assert not run_concurrently(writer)
    text = path.read_text()
    assert len(set(text)) == 1 and len(text) == 1000


def test_a_torn_last_line_is_skipped_counted_and_closed_before_the_next(tmp_path: Path) -> None:
    """A trial killed mid-write (or a machine that lost power) leaves a partial last line of
    events.jsonl: readers skip and count it, and the next append starts a line of its own."""
    from cl_sweeps.records import append_event, read_events

    append_event(tmp_path, "attempt", pid=1)
    append_event(tmp_path, "task_trained", task=0)
    events = tmp_path / "events.jsonl"
    with events.open("ab") as handle:
        handle.write('{"event": "task_trained", "note": "é'.encode()[:-1])  # cut mid-character
    found = read_events(tmp_path)
    assert [e["event"] for e in found.records] == ["attempt", "task_trained"] and found.torn == 1
    append_event(tmp_path, "task_trained", task=1)
    found = read_events(tmp_path)
    assert [e.get("task") for e in found.records] == [None, 0, 1] and found.torn == 1
    assert read_events(tmp_path / "absent").records == []


def test_two_writers_append_whole_lines(tmp_path: Path) -> None:
    from cl_sweeps.results import append_json_line, read_json_lines

    path = tmp_path / "events.jsonl"

    def writer(index: int) -> None:
        for line in range(25):
            append_json_line(path, {"writer": index, "line": line, "pad": "x" * 100_000})

    assert not run_concurrently(writer)
    found = read_json_lines(path)
    assert found.torn == 0 and len(found.records) == 100
    for index in range(4):
        assert [r["line"] for r in found.records if r["writer"] == index] == list(range(25))


def test_events_reach_the_disk_before_the_trial_goes_on(tmp_path: Path, monkeypatch) -> None:
    from cl_sweeps import results
    from cl_sweeps.records import append_event
    from cl_sweeps.sweep.spool import Spool

    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(results.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    append_event(tmp_path, "task_trained", task=0)
    assert len(synced) == 1
    Spool(tmp_path / "mlflow_spool.jsonl").append({"op": "log_metrics"})  # resent if lost
    assert len(synced) == 1
