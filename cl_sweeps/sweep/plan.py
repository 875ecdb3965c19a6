"""The sweep file resolved once: what the driver's parts (scheduler, trial records, status,
console, summary) read instead of re-deriving it from the `SweepConfig` each time.

The costly fact is a trial's task count: it needs the trial's whole config built and validated
(the sampled values may change `data.num_tasks` or `data.tasks`), so `tasks_of` computes it once
per trial config and keeps it. Everything else is computed when the plan is made, from a sweep
whose paths are already absolute (sweep/paths.py).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from cl_sweeps.config import num_tasks_of
from cl_sweeps.metrics import per_task_form
from cl_sweeps.records import SweepLayout
from cl_sweeps.sweep.schema import SweepConfig
from cl_sweeps.sweep.space import SearchSpace, expected_tasks, num_configurations

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedObjective:
    """An objective, its mode, and the form reported after every task (fid_final -> fid)."""

    metric: str
    mode: str
    per_task: str


class SweepPlan:
    """One sweep's resolved facts (see the module doc); picklable, as Tune checkpoints what
    holds it."""

    def __init__(self, sweep: SweepConfig):
        self.sweep = sweep
        self.name = sweep.name
        self.space = SearchSpace(sweep)
        self.base: dict[str, Any] = sweep.base.model_dump(mode="json")
        self.seeds: tuple[int, ...] = tuple(sweep.seed_list())
        self.seed_keys: tuple[str, ...] = tuple(sweep.seed_keys)
        self.objectives = tuple(
            PlannedObjective(o.metric, o.mode, per_task_form(o.metric)) for o in sweep.objectives
        )
        self.scheduler = sweep.scheduler_metric()  # (metric, mode) of ASHA or MO-ASHA's first
        self.scheduler_objectives: tuple[tuple[str, str], ...] = (
            tuple(sweep.scheduler_objectives())
            if sweep.scheduler is not None and sweep.scheduler.type == "moasha" else ()
        )
        self.base_tasks = num_tasks_of(sweep.base)
        self.configurations = num_configurations(sweep)
        self.trials = self.configurations * len(self.seeds)
        self._tasks: dict[str, int] = {}

    @property
    def layout(self) -> SweepLayout:
        """The sweep's files; its output_dir must be resolved (sweep/paths.py)."""
        if self.sweep.output_dir is None:
            raise ValueError("output_dir: not resolved; plan a sweep made absolute by "
                             "sweep/paths.py with_absolute_paths")
        return SweepLayout(Path(self.sweep.output_dir))

    @cached_property
    def prefix_dir(self) -> str | None:
        """Where the sweep's task-0 prefixes live: beside its Ray experiment in storage_path
        (so they are shared like checkpoints); None if share_prefix is off or storage is a
        cloud URI (prefixes need a file system all nodes share: warned once)."""
        sweep = self.sweep
        if not sweep.share_prefix:
            return None
        if sweep.storage_path is None:
            raise ValueError("storage_path: not resolved; plan a sweep made absolute by "
                             "sweep/paths.py with_absolute_paths")
        if "://" in sweep.storage_path:
            log.warning("share_prefix needs a (shared) file system; storage_path %s is a URI, "
                        "so every trial trains its own task 0", sweep.storage_path)
            return None
        return str(Path(sweep.storage_path) / f"{sweep.name}-prefixes")

    def tasks_of(self, params: dict[str, Any]) -> int:
        """How many tasks the trial with these parameters runs (to tell finished from
        stopped); built and validated once per trial config."""
        key = json.dumps(params, sort_keys=True, default=str)
        if key not in self._tasks:
            self._tasks[key] = expected_tasks(self.base, params, list(self.seed_keys))
        return self._tasks[key]

    def display_metrics(self) -> tuple[str, ...]:
        """task, then the ASHA metric, MO-ASHA's metrics, and each objective's per-task and
        final form: what the console and the trial's own log show."""
        names = ["task"]
        if self.scheduler is not None:
            names.append(self.scheduler[0])
        names += [metric for metric, _ in self.scheduler_objectives]
        for objective in self.objectives:
            names += [objective.per_task, objective.metric]
        return tuple(dict.fromkeys(names))

