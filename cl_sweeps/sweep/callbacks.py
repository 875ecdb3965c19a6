"""The Tune callbacks of a sweep's driver: the trial records (params, status, metrics, the
end of each trial in MLflow, constraint verdicts), the fallback when Tune's own checkpoint
is gone, and the driver's heartbeat."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pyarrow.fs
from ray import tune

from cl_sweeps import records
from cl_sweeps.constraints import Constraint
from cl_sweeps.metrics import is_known_metric
from cl_sweeps.records import SweepLayout
from cl_sweeps.sweep.constraints import judge_configuration
from cl_sweeps.sweep.context import SweepContext, divergence
from cl_sweeps.sweep.heartbeat import BEAT_EVERY_S, write_beat
from cl_sweeps.sweep.plan import SweepPlan
from cl_sweeps.sweep.tracking import SweepTracker

log = logging.getLogger(__name__)


class TrialRecorder(tune.Callback):
    """Writes trials/<id>/params.json, status.json and metrics.{jsonl,parquet} as Tune reports,
    and spools the final status of a trial's MLflow run (a stopped trial cannot set it); with
    constraints, the verdict on a configuration whose replicas all ended (sweep/constraints.py)."""

    def __init__(
        self, context: SweepContext, plan: SweepPlan, constraints: list[Constraint] | None = None,
        replicas: int = 1,
    ):
        self.context = context
        self.plan = plan
        self.constraints = constraints or []
        self.replicas = replicas

    def _dir(self, trial: Any) -> Path:
        return self.context.layout.trial(trial.trial_id)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        params = dict(trial.config)
        directory = self._dir(trial)
        tasks = self.plan.tasks_of(params)
        records.write_params(directory, trial.trial_id, params, tasks)
        records.write_status(directory, records.RUNNING)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        row = {k: v for k, v in result.items() if is_known_metric(k)}
        if "task" in row:
            records.record_task(self._dir(trial), row)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        tasks = self.plan.tasks_of(dict(trial.config))
        done = int((trial.last_result or {}).get("task", -1)) >= tasks - 1
        reason = None if done else records.read_stop_reason(self._dir(trial))  # a hard budget
        self._end(trial, records.COMPLETED if done else records.PRUNED, reason)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, records.FAILED, divergence(self._dir(trial)) or _error_text(trial))

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error = _error_text(trial)
        records.write_status(self._dir(trial), records.RUNNING, f"restarting after: {error}")

    def _end(self, trial: Any, status: str, error: str | None) -> None:
        records.write_status(self._dir(trial), status, error)
        tracker = SweepTracker.for_sweep(self.context.tracking, self.context.layout)
        tracker.end_trial(trial.trial_id, status, error)
        key = records.config_key(dict(trial.config))
        verdict = judge_configuration(self.context.layout.trials, key, self.replicas,
                                      self.constraints)
        for trial_id in verdict.trial_ids if verdict else []:
            tracker.tag_trial(trial_id, verdict.tags())


class OwnCheckpointFallback(tune.Callback):
    """Tune's saved experiment state can name a checkpoint Tune had already deleted (the driver
    died after Tune kept a newer one and before it saved its state again); restoring it fails
    every attempt. Tune calls on_trial_start before it restores a trial, so a checkpoint that
    no longer exists is dropped there: the trial then continues from the newest intact
    checkpoint of its own (trainable.resume_point) and reports again the tasks Tune lost."""

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.latest_checkpoint_result
        if result is None or _checkpoint_exists(result.checkpoint):
            return
        log.warning("trial %s: Tune's checkpoint %s no longer exists; it continues from its own "
                    "checkpoints", trial.trial_id, result.checkpoint.path)
        manager = trial.run_metadata.checkpoint_manager
        manager._latest_checkpoint_result = None  # Ray has no public way to forget one
        manager._checkpoint_results = []
        trial._restore_checkpoint_result = None


def _checkpoint_exists(checkpoint: Any) -> bool:
    info = checkpoint.filesystem.get_file_info(checkpoint.path)
    return info.type != pyarrow.fs.FileType.NotFound


class DriverHeartbeat(tune.Callback):
    """Beats into driver.json (sweep/heartbeat.py) from the Tune loop, so a hung or killed
    driver stops beating; a failed write is logged once and never stops the sweep. Wall-clock
    times: Tuner.restore (--resume) brings back a pickled copy in a new process."""

    def __init__(self, layout: SweepLayout, started: float):
        self.layout = layout
        self.started = started
        self._last = 0.0  # beat at the loop's first step: starting Ray may take minutes
        self._warned = False

    def _beat(self, ended: bool = False) -> None:
        try:
            write_beat(self.layout, self.started, ended)
        except OSError as error:
            if not self._warned:
                log.warning("driver heartbeat not written (%s); cl-sweeps status may show "
                            "trials as INTERRUPTED", error)
                self._warned = True

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.time()
        if now - self._last >= BEAT_EVERY_S:
            self._last = now
            self._beat()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._beat(ended=True)


def _error_text(trial: Any) -> str:
    try:
        error = trial.get_error()
    except Exception:  # noqa: BLE001  (the error file may not be readable yet)
        error = None
    lines = [line for line in str(error or "unknown error").splitlines() if line.strip()]
    return "\n".join(lines[-5:])[-2000:]
