"""A write that fails (a full disk: ENOSPC, injected at the write) in a checkpoint, a prefix, a
record or a spool names the file in its message and leaves nothing half-written that a resume
would trust: the older files stay as they were and no temporary file is left behind."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from diffusers import DDIMScheduler
from test_reliability_integrity import tiny_unet, two_checkpoints

from cl_sweeps import records
from cl_sweeps.checkpoint import save_checkpoint
from cl_sweeps.checkpoint_files import latest_checkpoint, task_checkpoint_dir
from cl_sweeps.errors import WriteFailed
from cl_sweeps.prefix_store import PrefixStore


def full_disk(write: Any) -> Any:
    """`write` that gets half of its bytes to the file, then fails as a full disk does."""

    def failing(*args: Any, **kwargs: Any) -> None:
        write(*args, **kwargs)
        target = next(a for a in args if isinstance(a, (str, Path)) or hasattr(a, "truncate"))
        if isinstance(target, (str, Path)):
            Path(target).write_bytes(Path(target).read_bytes()[:7])
        else:
            target.truncate(7)
        raise OSError(errno.ENOSPC, "No space left on device")

    return failing


def assert_names(error: pytest.ExceptionInfo, path: Path) -> None:
    message = str(error.value)
    assert message.startswith(f"cannot write {path}: No space left on device (")
    assert "MiB free there); free space, then --resume" in message


@pytest.mark.parametrize("where", ["weights", "state.pt"])
def test_a_checkpoint_that_cannot_be_written_leaves_the_older_ones(
    tmp_path: Path, monkeypatch, where: str
) -> None:
    two_checkpoints(tmp_path)
    if where == "weights":
        monkeypatch.setattr(safetensors.torch, "save_file", full_disk(safetensors.torch.save_file))
    else:
        monkeypatch.setattr(torch, "save", full_disk(torch.save))
    target = task_checkpoint_dir(tmp_path, 2)
    with pytest.raises(WriteFailed) as error:
        save_checkpoint(target, tiny_unet(), 2, {"step": 2}, [], DDIMScheduler(num_train_timesteps=10))
    assert_names(error, target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["task_0", "task_1"]  # no tmp
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path) == task_checkpoint_dir(tmp_path, 1)  # intact, checked


def test_a_prefix_that_cannot_be_written_is_not_published(tmp_path: Path) -> None:
    store = PrefixStore(tmp_path)

    def write_payload(path: Path) -> None:
        with path.open("wb") as handle:
            handle.write(b"half a payload")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteFailed) as error:
        store.publish("k", write_payload, {"key": "k"})
    assert_names(error, store.path("k"))
    assert store.payload("k") is None and [p.name for p in tmp_path.iterdir()] == []
    assert store.publish("k", lambda path: torch.save({"a": 1}, path), {"key": "k"})  # space again


def test_a_record_that_cannot_be_written_keeps_the_old_one(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "trial" / "status.json"
    records.write_json(path, {"status": "RUNNING"})
    monkeypatch.setattr(Path, "write_text", full_disk(Path.write_text))
    with pytest.raises(WriteFailed) as error:
        records.write_json(path, {"status": "COMPLETED", "padding": "x" * 100})
    monkeypatch.undo()
    assert_names(error, path)
    assert json.loads(path.read_text()) == {"status": "RUNNING"}
    assert [p.name for p in path.parent.iterdir()] == ["status.json"]  # no temporary file


def test_a_spool_line_cut_short_is_taken_back(tmp_path: Path, monkeypatch) -> None:
    from cl_sweeps import results as writer  # Spool.append writes through append_json_line
    from cl_sweeps.sweep.spool import Spool

    spool = Spool(tmp_path / "mlflow_spool.jsonl")
    spool.append({"op": "log_metrics", "step": 0})
    before = spool.path.read_bytes()
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        return real_write(fd, data[: len(data) // 2])  # a short write: the disk filled up

    monkeypatch.setattr(writer.os, "write", half_then_full)
    with pytest.raises(WriteFailed) as error:
        spool.append({"op": "log_metrics", "step": 1})

    def no_space(fd: int, data: bytes) -> int:
        real_write(fd, data[:5])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer.os, "write", no_space)
    with pytest.raises(WriteFailed):
        spool.append({"op": "log_metrics", "step": 1})
    monkeypatch.undo()
    assert_names(error, spool.path)
    assert spool.path.read_bytes() == before
    spool.append({"op": "log_metrics", "step": 1})  # space again: the next line is whole
    assert [op["step"] for op in spool.operations()] == [0, 1]
