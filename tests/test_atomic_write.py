"""`atomic_write`, the one way the package writes a file a reader may open at any moment."""

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


def test_concurrent_writers_of_one_file_never_share_a_temporary(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        try:
            for _ in range(50):
                atomic_write(path, lambda tmp: tmp.write_text(str(index) * 1000))
        except BaseException as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    text = path.read_text()
    assert len(set(text)) == 1 and len(text) == 1000
