"""A checkpoint's file layout and metadata, read without torch (what the files hold
and how they are written: cl_sweeps/checkpoint.py). The driver of a sweep and `cl-sweeps run --resume` find and read
checkpoints through here."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from cl_sweeps.integrity import CorruptFile, verify_checksums

log = logging.getLogger(__name__)

UNET_DIR = "unet"
PIPELINE_FILES = ("model_index.json", UNET_DIR, "scheduler")  # what DDIMPipeline loads
STATE_FILE = "state.pt"
META_FILE = "state.json"


def task_checkpoint_dir(output_dir: Path, task_index: int) -> Path:
    return output_dir / "checkpoints" / f"task_{task_index}"


class CorruptCheckpoint(CorruptFile):
    """A checkpoint's record cannot be read (a truncated or damaged file); names the file."""


def read_meta(directory: Path) -> dict[str, Any]:
    """A checkpoint's state.json: `task_index` (the task it completed) and `history`."""
    path = Path(directory) / META_FILE
    try:
        meta = json.loads(path.read_text())
        int(meta["task_index"])
        list(meta["history"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise CorruptCheckpoint(f"{path} cannot be read ({type(error).__name__}: {error})") from None
    return meta


def check_checkpoint(directory: Path) -> dict[str, Any]:
    """A checkpoint's record after checking every file against its checksums (weights,
    state.pt, state.json, the scheduler); CorruptCheckpoint names the first that fails."""
    try:
        verify_checksums(directory)
    except CorruptFile as error:
        raise CorruptCheckpoint(str(error)) from None
    return read_meta(directory)


def checkpoint_task(directory: Path) -> int:
    """The index of the task a checkpoint completed."""
    return int(read_meta(directory)["task_index"])


def read_history(directory: Path) -> list[dict[str, float]]:
    """The per-task metrics stored with a checkpoint (all tasks up to it)."""
    return read_meta(directory)["history"]


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The checkpoint of the highest completed task under `output_dir` whose files match their
    checksums and whose record reads, if any. One that does not is named in a warning and set
    aside (renamed, not deleted), and the previous one is used: a damaged file costs one task,
    not the trial."""
    root = Path(output_dir) / "checkpoints"
    done = [
        p for p in root.glob("task_*")
        if p.is_dir() and p.name[5:].isdigit() and (p / META_FILE).is_file()
    ]
    for candidate in sorted(done, key=lambda p: int(p.name[5:]), reverse=True):
        try:
            check_checkpoint(candidate)
        except CorruptCheckpoint as error:
            aside = candidate.with_name(f"{candidate.name}.corrupt-{int(time.time())}")
            candidate.rename(aside)
            log.warning("%s; set aside as %s, using the previous checkpoint", error, aside.name)
            continue
        return candidate
    return None
