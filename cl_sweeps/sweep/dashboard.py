"""The sweep's live dashboard on its MLflow parent run, so a long sweep can be watched in the UI.

Each time a trial ends, the parent run gets, at step = number of ended trials:
sweep/trials_completed, sweep/trials_pruned, sweep/trials_failed, sweep/best_<objective> (the
best seed-mean of finished configurations), sweep/pareto_size, sweep/train_tflops_spent (training
compute of every trial so far, pruned and failed included, a shared task-0 prefix once) and sweep/hypervolume (of the
frontier); with `budget:`, sweep/budget_used and sweep/budget_left (sweep/budget.py); the frontier PNG/HTML under frontier/ are refreshed at most every
`artifacts_every_s` seconds, and once more when the sweep ends.

All of it runs on a background thread fed from the trial records, never in Tune's loop, and goes
to MLflow through the sweep's spool (tracking.py): a slow or absent tracking server or a plot
does not hold up trials, each step is logged once, and a failure is a warning, never fatal.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from ray import tune

from cl_sweeps import records
from cl_sweeps.constraints import FEASIBLE_COLUMN
from cl_sweeps.records import SweepLayout, SweepSource, TrialRecord
from cl_sweeps.sweep import budget as budgets
from cl_sweeps.sweep.schema import Objective
from cl_sweeps.sweep.tracking import SweepTracker, TrackingTarget

log = logging.getLogger(__name__)

PREFIX = "sweep/"
ARTIFACTS_EVERY_S = 60.0
POLL_S = 5.0
STEP_MARKER = f"{PREFIX}trials_completed"  # logged last at each step: the step is complete


def ended_trials(trials: list[TrialRecord]) -> int:
    """The dashboard's step: trials that completed, were pruned or failed."""
    return sum(t.status in records.ENDED for t in trials)




def frontier_of(source: SweepSource, objectives: list[Objective]) -> Any:
    """The frontier over the sweep's objectives (the one Pareto computation and aggregation)."""
    from cl_sweeps.frontier import compute_frontier

    return compute_frontier(
        source, [o.metric for o in objectives], [o.mode for o in objectives]
    )


def sweep_metrics(
    trials: list[TrialRecord], objectives: list[Objective], frontier: Any = None
) -> dict[str, float]:
    """The parent run's sweep/* metrics from the records (hypervolume comes with the frontier)."""
    frontier = frontier if frontier is not None else frontier_of(SweepSource(trials), objectives)
    metrics = {
        f"{PREFIX}trials_{status.lower()}": float(sum(t.status == status for t in trials))
        for status in records.ENDED
    }
    metrics[f"{PREFIX}pareto_size"] = float(sum(frontier.configs.column("pareto").to_pylist()))
    spent = records.compute_spent(trials)["sweep_train_tflops_spent"]
    metrics[f"{PREFIX}train_tflops_spent"] = spent
    feasible = frontier.configs.filter(frontier.configs.column(FEASIBLE_COLUMN))
    if feasible.num_rows:  # with constraints, the best feasible configuration
        for objective in objectives:
            means = feasible.column(f"{objective.metric}_mean").to_pylist()
            best = min(means) if objective.mode == "min" else max(means)
            metrics[f"{PREFIX}best_{objective.metric}"] = best
    return metrics


class SweepDashboard(tune.Callback):
    """Feeds the parent run from the records on a background thread (see the module doc)."""

    def __init__(
        self,
        target: TrackingTarget,
        objectives: list[Objective],
        output_dir: str,
        artifacts_every_s: float = ARTIFACTS_EVERY_S,
    ):
        self.target = target
        self.objectives = objectives
        self.output_dir = output_dir
        self.artifacts_every_s = artifacts_every_s
        self._reset()

    def _reset(self) -> None:
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._logged_step = -1
        self._frontier_step = -1
        self._frontier = None
        self._last_artifacts = float("-inf")

    def __getstate__(self) -> dict[str, Any]:  # Tune saves its callbacks with the experiment
        keep = ("target", "objectives", "output_dir", "artifacts_every_s")
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    # --- Tune events (driver loop): only wake the thread -------------------------------------
    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.wake()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.wake()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.close()

    def wake(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sweep-dashboard", daemon=True)
            self._thread.start()
        self._wake.set()

    def close(self) -> None:
        """Stop the thread, then a last refresh with the frontier files, whatever the throttle."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
        self.refresh(final=True)

    # --- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=POLL_S)
            self._wake.clear()
            if not self._stop.is_set():
                self.refresh()

    def refresh(self, final: bool = False) -> None:
        """Log the metrics if a trial ended since the last time; the frontier files if they
        are older than the metrics and the throttle (or `final`) allows."""
        with self._lock:
            try:
                self._refresh(final)
            except Exception as error:  # noqa: BLE001 - a dashboard never stops a sweep
                log.warning("sweep dashboard not updated: %s: %s", type(error).__name__, error)

    def _refresh(self, final: bool) -> None:
        source = records.read_sweep_dir(self.output_dir)
        trials = source.records
        step = ended_trials(trials)
        tracker = SweepTracker.for_sweep(self.target, SweepLayout(Path(self.output_dir)))
        if step > self._logged_step:
            frontier = frontier_of(source, self.objectives)
            metrics = sweep_metrics(trials, self.objectives, frontier)
            finished = any(t.status == records.COMPLETED for t in trials)
            self._frontier = frontier if finished else None
            if self._frontier is not None and self._frontier.hypervolume is not None:
                metrics[f"{PREFIX}hypervolume"] = float(self._frontier.hypervolume)
            metrics.update(budgets.parent_metrics(source.resolved, Path(self.output_dir)))
            tracker.log_metrics(step, metrics, marker=STEP_MARKER)  # spooled, sent beside
            self._logged_step = step
        due = final or time.monotonic() - self._last_artifacts >= self.artifacts_every_s
        if self._frontier is not None and self._frontier_step < self._logged_step and due:
            self._log_frontier_files(tracker)
            self._frontier_step = self._logged_step
            self._last_artifacts = time.monotonic()

    def _log_frontier_files(self, tracker: SweepTracker) -> None:
        from cl_sweeps.frontier import write_frontier_outputs
        from cl_sweeps.frontier.outputs import FRONTIER_HTML, FRONTIER_PNG

        paths = write_frontier_outputs(self._frontier, SweepLayout(Path(self.output_dir)).frontier)
        for path in paths.values():
            if path.name in (FRONTIER_PNG, FRONTIER_HTML):
                tracker.log_artifact(path, "frontier")
