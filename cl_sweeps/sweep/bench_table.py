"""A finished grid sweep as the lookup table `cl-sweeps bench-search` replays searchers on.

Every configuration of the grid's (finite) search space must have a COMPLETED trial for every
seed of the sweep. With several seeds, a configuration is what a searcher proposes and the sweep
runs on all its seeds: its per-task values are the seeds' means (the point the frontier draws),
and what it costs is the sum of its seeds' training TFLOPs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cl_sweeps import records
from cl_sweeps.constraints import Constraint, violations
from cl_sweeps.records import SweepLayout, TrialRecord
from cl_sweeps.sweep.schema import SweepConfig, parse_sweep_config
from cl_sweeps.sweep.space import SearchSpace

OBJECTIVES = ("train_tflops", "fid_final")  # the hypervolume's axes, both minimised


@dataclass
class Table:
    """A grid sweep as a lookup: configuration key -> per-task rows (seed means), what each
    task cost over all seeds, the configuration's trial fields, and the grid's order."""

    sweep: SweepConfig
    rows: dict[str, list[dict[str, Any]]]
    order: list[str]  # configuration keys in the order the grid ran them
    tasks: int
    constraints: tuple[Constraint, ...] = ()
    cost: dict[str, list[float]] = field(default_factory=dict)  # summed over seeds, per task
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: int = 1

    def last(self, key: str) -> dict[str, float]:
        rows = self.rows.get(key) or [{}]
        return {k: float(v) for k, v in rows[-1].items() if isinstance(v, int | float)}

    def feasible(self, key: str) -> bool:
        """The configuration keeps the constraints (always, without any)."""
        return not violations(list(self.constraints), self.last(key))

    def final(self, key: str) -> tuple[float, float] | None:
        """(train_tflops, fid_final) of a configuration that finished, else None."""
        rows = self.rows.get(key) or []
        if len(rows) < self.tasks:
            return None
        values = tuple(float(rows[-1].get(m, math.nan)) for m in OBJECTIVES)
        return values if all(math.isfinite(v) for v in values) else None

    def spent(self, key: str, task: int | None = None) -> float:
        """Training TFLOPs of the configuration (all its seeds) after `task` (default: its
        last task)."""
        cost = self.cost.get(key)
        if cost is None:  # a table built by hand from rows alone: one seed
            cost = [float(row["train_tflops"]) for row in self.rows.get(key) or []]
        if not cost:
            return 0.0
        return cost[-1] if task is None else cost[min(task, len(cost) - 1)]

    def total(self) -> float:
        """Training TFLOPs of the whole grid."""
        return sum(self.spent(key) for key in self.order)


def resolved_sweep(layout: SweepLayout) -> SweepConfig:
    """The sweep as it ran (its resolved config)."""
    resolved = records.read_yaml_mapping(layout.resolved)
    if resolved is None:
        raise ValueError(f"{layout.resolved} is missing or unreadable: not a sweep's output_dir")
    return parse_sweep_config(resolved)


def seed_mean_rows(per_seed: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per task, the mean over seeds of every numeric value all seeds reported."""
    rows = []
    for task_rows in zip(*per_seed):
        names = set.intersection(*(
            {k for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)}
            for row in task_rows))
        rows.append({name: sum(float(row[name]) for row in task_rows) / len(task_rows)
                     for name in sorted(names)})
    return rows


def load_table(grid_dir: Path, extra_dirs: Sequence[Path] = ()) -> Table:
    """The grid sweep under `grid_dir`: its resolved sweep config and its trials' records.
    Finished trials of `extra_dirs` (sweeps with the same base and seeds that ran part of the
    grid, e.g. on more workers) fill in (configuration, seed) pairs the grid sweep lacks."""
    layout = SweepLayout(Path(grid_dir))
    sweep = resolved_sweep(layout)
    seeds = sweep.seed_list()
    found: dict[tuple[str, int | None], tuple[SweepLayout, TrialRecord]] = {}
    for where in [layout, *map(SweepLayout, map(Path, extra_dirs))]:
        if where is not layout:
            other = resolved_sweep(where)
            if other.base != sweep.base or other.seed_list() != seeds:
                raise ValueError(f"{where.resolved}: base or seeds differ from {layout.resolved}")
        for trial in records.read_trials(where.trials):
            if trial.status == records.COMPLETED:
                found.setdefault((trial.config_key, trial.seed), (where, trial))
    space = SearchSpace(sweep)
    table = Table(sweep, {}, [], 0, seeds=len(seeds))
    for point in space.grid_points():
        fields = space.to_fields(point)
        key = records.config_key(fields)
        per_seed = []
        for seed in seeds:
            if (key, seed) not in found:
                which = f" seed {seed}" if len(seeds) > 1 else ""
                raise ValueError(f"the grid sweep in {grid_dir} has no trial for {point}{which}")
            where, trial = found[key, seed]
            per_seed.append(sorted(records.read_task_metrics(where.trial(trial.trial_id)),
                                   key=lambda r: int(r["task"])))
        table.rows[key] = seed_mean_rows(per_seed)
        table.cost[key] = [sum(float(row["train_tflops"]) for row in task_rows)
                           for task_rows in zip(*per_seed)]
        table.fields[key] = fields
        table.order.append(key)
    table.tasks = max(len(r) for r in table.rows.values())
    return table
