"""MO-ASHA: asynchronous successive halving that stops what is dominated, with tasks as time.

The algorithm follows Schmucker et al. (2021) and Salinas et al. (2021), as in Syne Tune's MOASHA:
rungs at task indices grace_period · reduction_factor^k (up to the second-to-last task, so a
trial that passes the last rung always reaches its final evaluation). When a trial finishes a
rung's task, its objective vector (the per-task forms of the sweep's objectives, e.g. fid and
train_tflops so far) joins the rung, and every configuration recorded there is ordered by
non-dominated sorting (front by front; within a front, by crowding distance, extremes first).
The trial continues if its configuration is in the top 1/reduction_factor of that order, or on
the rung's first front: a configuration that would be on the frontier if the sequence ended at
this task is never stopped. Otherwise it is stopped.

Seed replicas decide together: a configuration's point in a rung is the mean over its replicas
that reached the rung so far, so one lucky or unlucky seed does not decide alone (the frontier
and Optuna use seed means too). Once a configuration is stopped, every replica of it stops at its
next report: Optuna is told PRUNED for the configuration anyway, so a surviving replica would
be compute for nothing.

`MOASHA` is plain Python over a results stream (tests feed it hand-made results);
`MOASHAScheduler` adapts it to Ray Tune, where a stopped trial ends before its last task and is
therefore recorded as PRUNED (status.json, MLflow, Optuna) exactly like an ASHA-stopped one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from cl_sweeps.frontier.pareto import pareto_mask


def rung_levels(grace_period: int, reduction_factor: float, last_level: int) -> list[int]:
    """Task indices of the rungs: grace_period · rf^k (rounded, distinct) up to last_level."""
    levels: list[int] = []
    level = float(grace_period)
    while round(level) <= last_level:
        if not levels or round(level) > levels[-1]:
            levels.append(round(level))
        level *= reduction_factor
    return levels


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each point within its front (extremes: infinite)."""
    n, dims = points.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, math.inf)
    for j in range(dims):
        order = np.argsort(points[:, j], kind="stable")
        span = points[order[-1], j] - points[order[0], j]
        distance[order[0]] = distance[order[-1]] = math.inf
        if span > 0:
            gaps = (points[order[2:], j] - points[order[:-2], j]) / span
            distance[order[1:-1]] += gaps
    return distance


def nondominated_order(points: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Row indices best first (non-dominated sorting, crowding distance within a front, ties
    by index), and the mask of the first front. Rows with a non-finite value come last."""
    points = np.asarray(points, dtype=float)
    finite = np.isfinite(points).all(axis=1)
    remaining = np.flatnonzero(finite)
    order: list[int] = []
    first = np.zeros(len(points), dtype=bool)
    while len(remaining):
        mask = pareto_mask(points[remaining])
        front = remaining[mask]
        if not order:
            first[front] = True
        crowd = crowding_distance(points[front])
        order += [int(front[i]) for i in sorted(range(len(front)), key=lambda i: -crowd[i])]
        remaining = remaining[~mask]
    order += [int(i) for i in np.flatnonzero(~finite)]
    return order, first


class MOASHA:
    """The decisions of MO-ASHA over a stream of (trial, configuration, task, objectives)."""

    def __init__(
        self,
        metrics: Sequence[str],
        modes: Sequence[str],
        levels: Sequence[int],
        reduction_factor: float,
    ):
        if len(metrics) != len(modes) or not metrics:
            raise ValueError("one mode per metric, at least one metric")
        self.metrics = list(metrics)
        self.signs = [1.0 if mode == "min" else -1.0 for mode in modes]
        self.levels = sorted(levels)
        self.reduction_factor = reduction_factor
        # rung level -> configuration -> trial -> signed objective vector
        self.rungs: dict[int, dict[str, dict[str, list[float]]]] = {lv: {} for lv in self.levels}
        self.stopped: dict[str, int] = {}  # configuration -> rung level that stopped it

    def on_result(self, trial_id: str, config: str, task: int, values: dict[str, float]) -> bool:
        """Record a trial's result after `task`; True to continue, False to stop it."""
        if config in self.stopped:
            return False
        for level in reversed(self.levels):
            if task < level:
                continue
            rung = self.rungs[level]
            if trial_id in rung.get(config, {}):
                return True  # already judged at this rung (a trial restarted from a checkpoint)
            point = [sign * float(values[m]) for m, sign in zip(self.metrics, self.signs)]
            rung.setdefault(config, {})[trial_id] = point
            if not self._keeps(rung, config):
                self.stopped[config] = level
                return False
            return True
        return True

    def _keeps(self, rung: dict[str, dict[str, list[float]]], config: str) -> bool:
        configs = list(rung)
        if len(configs) == 1:
            return True
        points = np.array([np.mean(list(rung[c].values()), axis=0) for c in configs])
        order, first_front = nondominated_order(points)
        index = configs.index(config)
        position = order.index(index)
        return bool(first_front[index]) or position < len(configs) / self.reduction_factor


class MOASHAScheduler(FIFOScheduler):
    """Ray Tune's face of MOASHA: time = the `task` a result reports."""

    def __init__(self, core: MOASHA, config_of: Callable[[dict[str, Any]], str]):
        super().__init__()
        self.core = core
        self.config_of = config_of

    def set_search_properties(self, metric: Any, mode: Any, **spec: Any) -> bool:
        return True  # the objectives come from the sweep file, not from TuneConfig

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if "task" not in result or any(m not in result for m in self.core.metrics):
            return TrialScheduler.CONTINUE
        values = {m: result[m] for m in self.core.metrics}
        keep = self.core.on_result(
            trial.trial_id, self.config_of(trial.config), int(result["task"]), values
        )
        return TrialScheduler.CONTINUE if keep else TrialScheduler.STOP

    def debug_string(self) -> str:
        return f"MO-ASHA: {len(self.core.stopped)} configurations stopped"
