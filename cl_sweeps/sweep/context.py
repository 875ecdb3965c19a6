"""What the driver hands every trial of a sweep (and reads back from a trial's folder).

Torch-free, like cl_sweeps/sweep/entry.py: the driver of a sweep starts without torch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cl_sweeps.records import SweepLayout, TrialLayout
from cl_sweeps.sweep.tracking import TrackingTarget

CRASH_ENV = "CL_SWEEPS_CRASH_AT_TASK"  # fault injection, tests only (trainable.py)
CRASH_MARKER = ".crash_injected"


@dataclass(frozen=True)
class SweepContext:
    """What every trial of a sweep shares; built on the driver, paths absolute."""

    name: str
    output_dir: str
    base: dict[str, Any]
    seed_keys: tuple[str, ...]
    cpus_per_trial: float
    tracking: TrackingTarget
    gpus_per_trial: float = 0.0  # resources_per_trial.gpu: what accelerator_seconds counts
    display_metrics: tuple[str, ...] = ("task",)
    crash_at_task: int | None = None
    prefix_dir: str | None = None  # where task-0 prefixes are shared; None: no sharing
    verbose: bool = False  # False: trials log warnings and errors only

    @property
    def layout(self) -> SweepLayout:
        return SweepLayout(Path(self.output_dir))


def crash_at_task_from_env() -> int | None:
    value = os.environ.get(CRASH_ENV)
    return int(value) if value not in (None, "") else None


def divergence(directory: Path) -> str | None:
    """The reason a trial diverged for good, if it did (trainable.py's module docstring)."""
    path = TrialLayout(directory).divergence
    return json.loads(path.read_text())["error"] if path.is_file() else None
