"""One Ray Tune trial: a whole continual sequence (run_sequence) with one sampled configuration.

After every task the reporter spools the task's metrics and sample grid for the trial's MLflow run
(sent in the background: training never waits for the tracking server) and reports the metrics
and the task's checkpoint to Tune. A trial restarted after a failure
(FailureConfig) or after the driver died (`--resume`) continues at the next task from its last
checkpoint; tasks already learned are not retrained. That checkpoint is Tune's
(`tune.get_checkpoint()`), or the trial's own newer one in trials/<id>/checkpoints/ when the
trial saved a task that Tune never recorded (it failed before reporting, or the driver died
before saving its experiment state); such tasks are reported again, without training.

A trial that diverges (non-finite loss, samples or FID features: numerics.NonFiniteError) would
diverge again from the same checkpoint, so it is not trained again: the reason is kept in
trials/<id>/divergence.json and every restart Ray Tune makes (max_failures) fails at once with it.

Fault injection (tests only): with CL_SWEEPS_CRASH_AT_TASK=k in the driver's environment, every
trial raises once in task k, after spooling that task for MLflow and before reporting it to Tune
(the worst moment), remembering that it did with a marker file in its folder.
"""

from __future__ import annotations

import logging
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from cl_sweeps import metrics as M
from cl_sweeps import records
from cl_sweeps.checkpoint_files import (
    CorruptCheckpoint,
    check_checkpoint,
    checkpoint_task,
    latest_checkpoint,
    read_history,
)
from cl_sweeps.config import TrialConfig, num_tasks_of
from cl_sweeps.numerics import NonFiniteError
from cl_sweeps.prefix_store import PrefixStore
from cl_sweeps.sequence import resolve_device, run_sequence
from cl_sweeps.sweep.console import quiet_logs
from cl_sweeps.sweep.context import (
    CRASH_ENV,
    CRASH_MARKER,
    SweepContext,
    divergence,
)
from cl_sweeps.sweep.signals import kill_point
from cl_sweeps.sweep.space import trial_config_for
from cl_sweeps.sweep.tracking import TrialTracker
from cl_sweeps.throughput import Throughput, release_memory

log = logging.getLogger(__name__)

class InjectedFault(RuntimeError):
    """The test-only crash of CL_SWEEPS_CRASH_AT_TASK."""


def sample_grids(directory: Path, task: int) -> list[Path]:
    """The sample grid the evaluation wrote for this task, if any."""
    grid = directory / "samples" / f"task_{task}.png"
    return [grid] if grid.is_file() else []


def trial_tags(params: dict[str, Any], trial: Any) -> dict[str, str]:
    return {
        records.CONFIG_KEY_TAG: records.config_key(params),
        records.STRATEGY_TAG: trial.strategy.name,
        records.SEED_TAG: str(params[records.SEED_PARAM]),
        records.NUM_TASKS_TAG: str(num_tasks_of(trial)),
    }


def resolved_throughput(trial: TrialConfig) -> dict[str, str]:
    """What the trial runs with on this worker (precision after `auto`, CUDA switches), as
    `throughput.*` params."""
    return Throughput.resolve(trial.train, resolve_device(trial.device)).params()


def resume_point(from_tune: Path | None, directory: Path) -> Path | None:
    """The newer of Tune's checkpoint and the trial's own latest one (None: start afresh).
    The trial's own may be missing (another node, output_dir not shared) or behind."""
    own = latest_checkpoint(directory)
    if own is None or (from_tune is not None and checkpoint_task(from_tune) >= checkpoint_task(own)):
        return from_tune
    return own


def readable_or_none(from_tune: Path | None) -> Path | None:
    """Tune's checkpoint, unless a file of it fails its checksum or its record cannot be read
    (named in a warning): the trial then continues from its own checkpoints, as if Tune had
    none."""
    if from_tune is None:
        return None
    try:
        check_checkpoint(from_tune)
    except CorruptCheckpoint as error:
        log.warning("Tune's checkpoint: %s; continuing from the trial's own", error)
        return None
    return from_tune


def unreported_tasks(resume_dir: Path | None, from_tune: Path | None) -> list[dict[str, Any]]:
    """The metric rows of tasks the resume point holds and Tune's checkpoint does not."""
    if resume_dir is None or resume_dir == from_tune:
        return []
    known = checkpoint_task(from_tune) if from_tune is not None else -1
    return [row for row in read_history(resume_dir) if int(row[M.TASK]) > known]


def train_sequence(config: dict[str, Any], context: SweepContext) -> None:
    """The function trainable: run (or continue) the trial's sequence, reporting every task."""
    torch.set_num_threads(max(1, int(context.cpus_per_trial)))
    if not context.verbose:
        quiet_logs()
    trial_id = tune.get_context().get_trial_id()
    directory = context.layout.trial(trial_id)
    reason = divergence(directory)
    if reason is not None:  # deterministic: a restart would only diverge again
        raise NonFiniteError(f"{reason} (not retried: it would diverge again)")
    params = dict(config)
    trial = trial_config_for(context.base, params, list(context.seed_keys), directory)
    checkpoint = tune.get_checkpoint()
    run = TrialTracker(context.tracking, directory, trial_id)
    try:
        with ExitStack() as stack:
            from_tune = (
                Path(stack.enter_context(checkpoint.as_directory())) if checkpoint else None
            )
            from_tune = readable_or_none(from_tune)
            resume_dir = resume_point(from_tune, directory)
            run.open({**params, **resolved_throughput(trial)}, trial_tags(params, trial))
            records.append_event(
                directory, "attempt", resume_from=str(resume_dir) if resume_dir else None,
                node=ray.get_runtime_context().get_node_id(), pid=os.getpid())
            if resume_dir is None:
                run.log_config(trial)
            last = [resume_dir]

            def to_tune(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
                ordered = {k: metrics[k] for k in context.display_metrics if k in metrics}
                ordered.update(metrics)  # Ray's table shows the first few: task and objectives
                saved = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
                tune.report(ordered, checkpoint=saved)

            def reporter(task: int, metrics: dict[str, float], checkpoint_dir: Path) -> None:
                records.append_event(directory, "task_trained", task=task)
                run.log_task(task, metrics, sample_grids(directory, task))
                maybe_crash(context, directory, task)
                kill_point("task_saved", context.layout.driver)  # tests only (signals.py)
                to_tune(metrics, checkpoint_dir)
                last[0] = checkpoint_dir

            unreported = unreported_tasks(resume_dir, from_tune)
            for row in unreported:  # MLflow keeps each step once: logging again is harmless
                run.log_task(int(row[M.TASK]), row, sample_grids(directory, int(row[M.TASK])))
                to_tune(row, resume_dir if row is unreported[-1] else None)

            prefixes = PrefixStore(context.prefix_dir) if context.prefix_dir else None
            try:
                run_sequence(
                    trial, reporter, resume_from=resume_dir, progress=False, prefixes=prefixes,
                    accelerators_held=context.gpus_per_trial,
                )
            except NonFiniteError as error:
                records.append_event(directory, "diverged", error=str(error))
                records.write_json(records.TrialLayout(directory).divergence,
                                   {"error": str(error)})
                raise
            if last[0] is not None:
                run.log_model(last[0])
        run.finish()
    finally:
        run.close()
        release_memory()


def maybe_crash(context: SweepContext, directory: Path, task: int) -> None:
    """Raise once at task `crash_at_task` (tests only; see the module doc)."""
    if context.crash_at_task != task:
        return
    marker = directory / CRASH_MARKER
    if marker.exists():
        return
    marker.write_text(str(task))
    raise InjectedFault(f"injected crash in task {task} ({CRASH_ENV})")
