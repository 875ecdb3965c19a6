"""Per-task checkpoints: everything needed to continue a sequence at the next task exactly.

Layout of `<output_dir>/checkpoints/task_<k>/`: a complete diffusers DDIMPipeline directory
(`model_index.json`, `unet/`, `scheduler/` with the noise schedule the run trained with, so
`DDIMPipeline.from_pretrained(path)` samples as the run did), `state.pt` (the rest of the
engine's snapshot, `Engine.snapshot()`: optimizer, RNG states, strategy state, compute counters;
loaded with weights_only=True) and
`state.json` (task index and the metric history), and `checksums.json` (every other file's size
and SHA-256, written last: cl_sweeps/integrity.py). A checkpoint directory appears only complete:
it is written under a temporary name and renamed; loading it checks every file first.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import DDIMPipeline, DDIMScheduler, UNet2DModel

from cl_sweeps.checkpoint_files import META_FILE, STATE_FILE, UNET_DIR, check_checkpoint
from cl_sweeps.errors import named_write_errors
from cl_sweeps.integrity import write_checksums

MODEL_WEIGHTS = "model"  # the snapshot's UNet weights: stored in unet/, not in state.pt


@dataclass
class Checkpoint:
    """A loaded checkpoint: the task it completed, its tensors and its metric history."""

    task_index: int
    state: dict[str, Any]
    history: list[dict[str, float]]
    path: Path


def save_checkpoint(
    directory: Path,
    model: UNet2DModel,
    task_index: int,
    state: dict[str, Any],
    history: list[dict[str, float]],
    scheduler: DDIMScheduler,
) -> Path:
    """Write a checkpoint atomically to `directory` (replacing an older one there). `state` is
    the engine's snapshot; its UNet weights are written as `model`'s diffusers directory.
    `scheduler` is the object the run trained and sampled with, saved as is (never rebuilt).
    A write that fails (a full disk) raises WriteFailed naming `directory` and leaves the older
    checkpoints as they were. A directory, not one file: written whole, then renamed."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    try:
        with named_write_errors(directory):
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
            DDIMPipeline(unet=model, scheduler=scheduler).save_pretrained(
                tmp, safe_serialization=True)
            save_torch({k: v for k, v in state.items() if k != MODEL_WEIGHTS}, tmp / STATE_FILE)
            meta = json.dumps({"task_index": task_index, "history": history})
            (tmp / META_FILE).write_text(meta)
            write_checksums(tmp)
            if directory.exists():
                shutil.rmtree(directory)
            os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed write leaves no partial checkpoint
    return directory


def save_torch(obj: Any, path: Path) -> None:
    """torch.save through a Python file: a full disk is then an OSError (ENOSPC), not torch's
    RuntimeError that names neither the file nor the cause."""
    with Path(path).open("wb") as handle:
        torch.save(obj, handle)


def load_checkpoint(directory: Path, model: UNet2DModel) -> Checkpoint:
    """Load weights into `model` in place and return the checkpoint, its state a snapshot
    again (the weights under MODEL_WEIGHTS). CorruptCheckpoint names a file that fails its
    checksum."""
    directory = Path(directory)
    meta = check_checkpoint(directory)
    trained = UNet2DModel.from_pretrained(directory / UNET_DIR)
    model.load_state_dict(trained.state_dict())
    state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
    state[MODEL_WEIGHTS] = model.state_dict()
    return Checkpoint(meta["task_index"], state, meta["history"], directory)
