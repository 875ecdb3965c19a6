"""`budget.hard: true`: a Tune Stopper that ends a running trial at the task boundary where its
next task would pass a TFLOP or wall-clock limit (sweep/budget.py decides). The trial ends
PRUNED; the reason is written beside its records (records.write_stop_reason) for the
TrialRecorder to put into status.json."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ray import tune

from cl_sweeps import records
from cl_sweeps.metrics import is_known_metric
from cl_sweeps.records import SweepLayout
from cl_sweeps.sweep import budget as budgets


class BudgetStopper(tune.Stopper):
    """Asked by Tune after every reported task, before the records hold that report."""

    def __init__(self, budget: budgets.BudgetConfig, output_dir: str, default_strategy: str):
        self.budget = budget
        self.output_dir = output_dir
        self.default_strategy = default_strategy

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        layout = SweepLayout(Path(self.output_dir))
        trials = records.read_trials(layout.trials)
        row = {k: v for k, v in result.items() if is_known_metric(k)}
        trial = budgets.with_result(trials, trial_id, row)
        if trial.num_tasks is None or trial.tasks_done >= trial.num_tasks:
            return False  # its last task ended: nothing left to stop
        reason = budgets.hard_stop(self.budget, trials, trial, wall_now(layout))
        if reason is None:
            return False
        records.write_stop_reason(layout.trial(trial_id), reason)
        return True

    def stop_all(self) -> bool:
        return False  # the searcher ends the sweep; this only stops trials


def wall_now(layout: SweepLayout) -> float:
    """The driver's wall clock now: budget.json's, plus the time since it was written."""
    state = budgets.read_state(layout)
    seconds = float(state.get("wall_seconds") or 0.0)
    return seconds + max(0.0, time.time() - float(state.get("at") or time.time()))


def budget_stopper(sweep: Any) -> BudgetStopper | None:
    """The stopper of a sweep with a hard budget, else None."""
    if sweep.budget is None or not sweep.budget.hard:
        return None
    return BudgetStopper(sweep.budget, str(sweep.output_dir), sweep.base.strategy.name)
