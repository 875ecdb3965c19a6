"""Run a sweep: Ray Tune over whole continual sequences, Optuna choosing, MLflow tracking.

`run_sweep` validates nothing itself (the SweepConfig it gets is already valid); it lays out the
output directory, opens the MLflow parent run, connects to Ray (RAY_ADDRESS or a Ray job's
cluster, else a fresh local Ray), runs the Tuner (or restores it with --resume), then prints
the end-of-sweep summary (the frontier over the sweep's objectives).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import pyarrow.fs
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from cl_sweeps import records
from cl_sweeps.config import ConfigError
from cl_sweeps.constraints import Constraint, constraints_from
from cl_sweeps.credentials import redact_uri
from cl_sweeps.errors import ensure_writable
from cl_sweeps.frontier.tracking import log_sweep_metrics
from cl_sweeps.metrics import is_known_metric
from cl_sweeps.prefix_store import PrefixStore
from cl_sweeps.records import SweepLayout
from cl_sweeps.results import atomic_write
from cl_sweeps.sweep import budget as budgets
from cl_sweeps.sweep import warm_start
from cl_sweeps.sweep.budget_stop import budget_stopper
from cl_sweeps.sweep.console import QuietConsole, quiet_logs, quiet_ray_output
from cl_sweeps.sweep.constraints import judge_configuration
from cl_sweeps.sweep.context import SweepContext, crash_at_task_from_env, divergence
from cl_sweeps.sweep.dashboard import SweepDashboard, ended_trials
from cl_sweeps.sweep.databases import database_errors
from cl_sweeps.sweep.driver_lock import hold_driver_lock
from cl_sweeps.sweep.entry import run_trial
from cl_sweeps.sweep.extend import grow_output
from cl_sweeps.sweep.heartbeat import BEAT_EVERY_S, write_beat
from cl_sweeps.sweep.layout import base_directory, with_absolute_paths
from cl_sweeps.sweep.moasha import MOASHA, MOASHAScheduler, rung_levels
from cl_sweeps.sweep.plan import SweepPlan
from cl_sweeps.sweep.prior import Prior
from cl_sweeps.sweep.schema import SweepConfig, store_uri_problems
from cl_sweeps.sweep.searcher import build_searcher
from cl_sweeps.sweep.signals import StopSignals, kill_point
from cl_sweeps.sweep.space import SearchSpace
from cl_sweeps.sweep.tracking import (
    TRACKING_ENV,
    SweepTracker,
    is_local_store,
    move_tracking_credentials,
    resolve_tracking_uri,
    start_sweep_run,
)

log = logging.getLogger(__name__)


# --- per-trial records on the driver --------------------------------------------------------


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


# --- output directory and state -------------------------------------------------------------


def resolved_config(sweep: SweepConfig) -> dict[str, Any]:
    """The sweep as it runs (after --set, defaults filled, paths absolute), as plain data."""
    return sweep.model_dump(mode="json")


def _canonical_hash(data: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def changed_keys(saved: dict[str, Any], resolved: dict[str, Any]) -> list[str]:
    """Top-level keys in which a resumed sweep differs from the saved one. A key the saved
    sweep lacks (added to the schema after it started) counts only if it is not at its
    default: a sweep started by an earlier version resumes."""
    defaults = {name: field.get_default(call_default_factory=True)
                for name, field in SweepConfig.model_fields.items()}
    changed = []
    for key in sorted({*saved, *resolved}):
        if key not in saved and key in defaults:
            default = defaults[key]
            default = default.model_dump(mode="json") if hasattr(default, "model_dump") else default
            if resolved.get(key) == default:
                continue
        if saved.get(key) != resolved.get(key):
            changed.append(key)
    return changed


def refuse_existing_sweep(layout: SweepLayout) -> None:
    """A fresh sweep never writes into another sweep's output_dir, nor into a directory that
    holds anything else (checked first, so this is the message a repeated start gets, before
    its Optuna study is looked at)."""
    if layout.state.is_file() or (layout.trials.is_dir() and any(layout.trials.iterdir())):
        raise ConfigError(
            f"output_dir: {layout.root} already holds a sweep; continue it with --resume, or "
            "choose another `name`/`output_dir` (or delete the directory)"
        )
    refuse_foreign_directory(layout)


def refuse_foreign_directory(layout: SweepLayout) -> None:
    """output_dir must be absent, empty or a cl-sweeps sweep: a sweep never writes among a
    user's other files (the driver's own lock and heartbeat do not count)."""
    own = {layout.lock.name, layout.driver.name}
    others = sorted(p.name for p in layout.root.iterdir() if p.name not in own) if (
        layout.root.is_dir() and not layout.state.is_file()) else []
    if others:
        shown = ", ".join(others[:5]) + (f", ... ({len(others)} entries)" if len(others) > 5 else "")
        raise ConfigError(
            f"output_dir: {layout.root} is not empty and holds no cl-sweeps sweep ({shown}); "
            "allowed: an empty or new directory, or a sweep's output_dir with --resume"
        )


def prepare_output(
    layout: SweepLayout,
    sweep: SweepConfig,
    space: SearchSpace,
    file_text: str,
    overrides: list[str],
    resume: bool,
) -> dict[str, Any]:
    """Check the output_dir against --resume; write sweep.yaml (as submitted), the resolved
    sweep config (what every later reader uses) and search_space.json; return the saved sweep
    state (the MLflow parent run id once known)."""
    resolved = resolved_config(sweep)
    digest = _canonical_hash(resolved)
    if resume:
        if not layout.state.is_file():
            raise ConfigError(
                f"--resume: {layout.root} holds no sweep to resume (no {layout.state.name}); "
                "start it without --resume"
            )
        state = json.loads(layout.state.read_text())
        if state.get("config_hash") != digest:
            saved = records.read_yaml_mapping(layout.resolved) or {}
            changed = changed_keys(saved, resolved)
            if not changed:  # only keys newer than the saved sweep, at their defaults
                return state
            raise ConfigError(
                f"--resume: the sweep (file with --set overrides) differs from the one that "
                f"started it, saved in {layout.resolved}, in: {', '.join(changed) or '?'}; "
                "resume with the same file and --set options"
            )
        return state
    layout.root.mkdir(parents=True, exist_ok=True)  # refuse_existing_sweep ran under the lock
    text = file_text
    if overrides:
        text += "\n# applied with --set: " + " ".join(overrides) + "\n"
    atomic_write(layout.sweep_file, lambda tmp: tmp.write_text(text))
    records.write_yaml(layout.resolved, resolved)
    records.write_json(layout.search_space, space.describe())
    state = {"name": sweep.name, "config_hash": digest, "created": time.time(),
             "parent_run_id": None}
    records.write_json(layout.state, state)
    return state


@contextmanager
def undone_if_failed(layout: SweepLayout, fresh: bool) -> Iterator[None]:
    """A fresh start that fails before any trial ran (the tracking server does not answer)
    takes back what it wrote, so that starting again is not refused as 'already holds a
    sweep'. The directory held nothing else: refuse_existing_sweep checked it under the lock."""
    try:
        yield
    except BaseException:
        if fresh:
            for path in layout.root.iterdir():
                if path.is_dir():
                    shutil.rmtree(path)
                elif path != layout.lock:
                    path.unlink(missing_ok=True)
        raise


def check_optuna_study(sweep: SweepConfig, resume: bool) -> None:
    """The study's database can be used (one line otherwise), and a fresh sweep does not
    silently continue an older study of the same name."""
    if sweep.optuna_storage is None:
        return
    sqlite = sweep.optuna_storage.removeprefix("sqlite:///")
    if sqlite != sweep.optuna_storage and not Path(sqlite).exists():
        return  # a new database: no study yet (and do not create it here)
    with database_errors("optuna_storage", sweep.optuna_storage):
        names = optuna.study.get_all_study_names(storage=sweep.optuna_storage)
    if not resume and sweep.name in names:
        raise ConfigError(
            f"optuna_storage: {redact_uri(sweep.optuna_storage)} already has a study named "
            f"{sweep.name!r}; resume the sweep with --resume, choose another `name`, or delete it "
            f"(optuna delete-study --study-name {sweep.name} --storage URL)"
        )


# --- Ray ------------------------------------------------------------------------------------


def init_ray(address: str | None, verbose: bool = True) -> None:
    """RAY_ADDRESS (set inside a Ray job) or --address: that cluster; else a new local Ray
    (never an unrelated cluster that happens to run on this machine)."""
    target = address or os.environ.get("RAY_ADDRESS") or "local"
    log.info("Ray: %s", "starting a local instance" if target == "local" else f"joining {target}")
    ray.init(address=target, ignore_reinit_error=True, log_to_driver=True,
             logging_level=logging.INFO if verbose else logging.WARNING)


def warn_if_storage_not_shared(sweep: SweepConfig, uri: str) -> None:
    """On a multi-node cluster, SQLite and local directories are only on the driver's machine:
    trials on other nodes would track and checkpoint into their own copies."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) <= 1:
        return
    if is_local_store(uri):
        log.warning(
            "MLflow tracks into %s on this machine, but this Ray cluster has %d nodes: set "
            "mlflow.tracking_uri or MLFLOW_TRACKING_URI to a tracking server "
            "(clusters/README.md)", redact_uri(uri), len(nodes),
        )
    if "://" not in (sweep.storage_path or ""):
        log.warning(
            "storage_path %s is a local directory; on a multi-node cluster use storage all "
            "nodes reach (s3://, gs://, or a shared file system)", sweep.storage_path,
        )


def make_scheduler(plan: SweepPlan) -> ASHAScheduler | MOASHAScheduler | None:
    """ASHA or MO-ASHA with time = task index; rungs end before the last task so a trial is
    never cut short of its final evaluation, model and MLflow run end."""
    sweep = plan.sweep
    if sweep.scheduler is None:
        return None
    tasks = plan.base_tasks
    if sweep.scheduler.type == "moasha":
        pairs = plan.scheduler_objectives
        levels = rung_levels(
            sweep.scheduler.grace_period, sweep.scheduler.reduction_factor, tasks - 2
        )
        core = MOASHA(
            [m for m, _ in pairs], [mode for _, mode in pairs], levels,
            sweep.scheduler.reduction_factor,
        )
        return MOASHAScheduler(core, records.config_key)
    metric, mode = plan.scheduler
    return ASHAScheduler(
        time_attr="task",
        metric=metric,
        mode=mode,
        max_t=tasks - 2,
        grace_period=sweep.scheduler.grace_period,
        reduction_factor=sweep.scheduler.reduction_factor,
        stop_last_trials=False,
    )


def trial_dirname(trial: Any) -> str:
    return trial.trial_id


def trial_name(trial: Any) -> str:
    """`<strategy>_<trial id>` in Ray's tables (the id alone names folders and MLflow runs)."""
    return f"{trial.config.get('strategy.name', 'trial')}_{trial.trial_id}"


def make_tuner(
    plan: SweepPlan, context: SweepContext, resume: bool, prior: Prior | None = None
) -> tune.Tuner:
    """Tune restored (--resume), or a new Tuner whose searcher starts from `prior`, the pairs
    the records already hold (a fresh sweep: none; --extend and warm_start: sweep/prior.py)."""
    sweep = plan.sweep
    prior = prior or Prior()
    resources = {"cpu": sweep.resources_per_trial.cpu, "gpu": sweep.resources_per_trial.gpu}
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, context=context), resources
    )
    experiment = f"{sweep.storage_path.rstrip('/')}/{sweep.name}"
    if resume and tune.Tuner.can_restore(experiment):
        return tune.Tuner.restore(
            experiment, trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    if resume:
        log.info("--resume: no Ray Tune experiment at %s yet; starting it", experiment)
    tune_config = tune.TuneConfig(
        search_alg=build_searcher(sweep, plan.space, prior),
        scheduler=make_scheduler(plan),
        num_samples=prior.trials_to_run(plan.configurations, list(plan.seeds)),
        max_concurrent_trials=sweep.max_concurrent_trials,
        reuse_actors=sweep.reuse_actors,
        trial_dirname_creator=trial_dirname,
        trial_name_creator=trial_name,
    )
    console = [] if context.verbose else [QuietConsole(plan)]
    run_config = tune.RunConfig(
        name=sweep.name,
        storage_path=sweep.storage_path,
        failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
        stop=budget_stopper(sweep),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[
            DriverHeartbeat(context.layout, started=time.time()),
            OwnCheckpointFallback(),
            TrialRecorder(context, plan, constraints_from(sweep.constraints), len(plan.seeds)),
            SweepDashboard(context.tracking, sweep.objectives, context.output_dir),
            *console,
        ],
        verbose=2 if context.verbose else 0,  # quiet: Ray's reporter off, QuietConsole instead
    )
    return tune.Tuner(trainable, tune_config=tune_config, run_config=run_config)


# --- the sweep ------------------------------------------------------------------------------


def quiet_known_noise() -> None:
    """Silence warnings that say nothing about the user's sweep: Tune's snapshot-rate warning
    (a checkpoint per task is by design), tensorboardX on inf FIDs of forgotten tasks, Optuna's
    'experimental' notes on multivariate/grouped TPE."""
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    logging.getLogger("tensorboardX.x2num").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def mlflow_ui_command(uri: str, experiment_id: str | None = None) -> str:
    """How to open the sweep in the MLflow UI. The page link carries workflowType=
    machine_learning: MLflow 3.x UIs open on their GenAI pages otherwise."""
    page = "" if experiment_id is None else (
        f"#/experiments/{experiment_id}?workflowType=machine_learning"
    )
    if uri.startswith("sqlite:"):
        command = f"mlflow ui --backend-store-uri {uri}"
        return f"{command}, then open http://127.0.0.1:5000/{page}" if page else command
    return f"open {redact_uri(uri).rstrip('/')}/{page} in a browser"


def run_sweep(
    sweep: SweepConfig,
    file_text: str,
    *,
    overrides: list[str] | None = None,
    resume: bool = False,
    extend: bool = False,
    address: str | None = None,
    verbose: bool = False,
) -> int:
    """Run (or resume, or grow: sweep/extend.py) a validated sweep to the end; print and return
    an exit status. Quiet by default (sweep/console.py); `verbose` shows Ray's full output and
    every INFO log."""
    if not verbose:
        quiet_logs()
        quiet_ray_output()
    stop = StopSignals()
    stop.install()
    move_tracking_credentials()  # before any MLflow client or Ray worker exists
    sweep = with_absolute_paths(sweep, base_directory())
    plan = SweepPlan(sweep)
    layout = plan.layout
    check_tracking_environment(sweep)
    fresh = not resume and not extend
    if fresh:
        refuse_foreign_directory(layout)
    ensure_writable(layout.root, "output_dir")
    _lock = hold_driver_lock(layout)  # held until run_sweep returns or the process dies
    if fresh:
        refuse_existing_sweep(layout)
    write_beat(layout, time.time())  # names this driver to a second one
    if "://" not in sweep.storage_path:
        ensure_writable(sweep.storage_path, "storage_path")
    check_optuna_study(sweep, not fresh)
    sources = warm_start.check_sources(sweep) if fresh else []  # before anything is written
    if extend:
        resolved = resolved_config(sweep)
        state = grow_output(layout, sweep, plan.space, resolved, _canonical_hash(resolved),
                            file_text, overrides or [])
    else:
        state = prepare_output(layout, sweep, plan.space, file_text, overrides or [], resume)
    if sources:
        print(warm_start.warm_start_line(warm_start.import_trials(sweep, layout, sources)),
              flush=True)
    prior = Prior.from_records(layout, sweep, state.get("study_name"))
    trials = state.get("trials_to_run", plan.trials) if resume else prior.trials_to_run(
        plan.configurations, list(plan.seeds))
    done = f" ({prior.pairs()} trials already done)" if prior.pairs() and not resume else ""
    uri, source = resolve_tracking_uri(sweep, layout)
    print(f"sweep {sweep.name!r}: {trials} trials{done} -> {layout.root}", flush=True)
    with undone_if_failed(layout, fresh=fresh), database_errors(tracking_field(source), uri):
        tracking = start_sweep_run(sweep, layout, state.get("parent_run_id"))
    print(f"MLflow: {mlflow_ui_command(uri, tracking.experiment_id)}", flush=True)
    records.write_json(layout.state, {**state, "parent_run_id": tracking.parent_run_id,
                                      "experiment_id": tracking.experiment_id,
                                      "trials_to_run": trials})
    tracker = SweepTracker.for_sweep(tracking, layout)
    if resume and tracker.adopt_pending_trials():
        print("MLflow: sending what the interrupted sweep had not sent yet", flush=True)
    context = SweepContext(
        name=sweep.name,
        output_dir=str(layout.root),
        base=plan.base,
        seed_keys=plan.seed_keys,
        cpus_per_trial=sweep.resources_per_trial.cpu,
        gpus_per_trial=sweep.resources_per_trial.gpu,
        tracking=tracking,
        display_metrics=plan.display_metrics(),
        crash_at_task=crash_at_task_from_env(),
        prefix_dir=plan.prefix_dir,
        verbose=verbose,
    )
    quiet_known_noise()
    write_beat(layout, time.time())  # a resumed sweep is alive again before Ray is up
    if trials == 0 and not resume:  # the records hold every pair: no Ray, only the summary
        build_searcher(sweep, plan.space, prior)  # the Optuna study learns the known ones
        return finish(plan, tracker, uri, interrupted=False)
    init_ray(address, verbose)
    kill_point("ray_started")  # tests only (sweep/signals.py)
    stop.install()  # again: Ray installs its own SIGTERM handler
    warn_if_storage_not_shared(sweep, uri)
    stop.graceful = True
    try:
        results = make_tuner(plan, context, resume, prior).fit()
    except KeyboardInterrupt:  # a second stop signal: at once
        tracker.finish("KILLED", {}, None)
        close_tracking(tracker, layout)
        print_resume_hint(layout)
        return stop.exit_code(130)
    except BaseException:
        tracker.finish("FAILED", {}, None)
        close_tracking(tracker, layout)
        raise
    kill_point("experiment_end")
    ended = results.num_terminated + results.num_errors
    by_budget = sweep.budget is not None and budgets.read_state(layout).get("ended")
    interrupted = ended < len(results) or (len(results) < trials and not by_budget)
    interrupted = interrupted or left_running(layout)  # Tune's graceful stop counts them ended
    code = finish(plan, tracker, uri, interrupted)
    return stop.exit_code(code) if interrupted else code


def tracking_field(source: str) -> str:
    """How an error names the tracking URI: the variable it came from, or the sweep's key."""
    return TRACKING_ENV if source == TRACKING_ENV else "mlflow.tracking_uri"


def left_running(layout: SweepLayout) -> bool:
    """A trial record still RUNNING after the Tuner returned: a stop signal ended the sweep
    (Ray Tune may count a trial it stopped gracefully as terminated)."""
    return any(record.status == records.RUNNING for record in records.read_trials(layout.trials))


def check_tracking_environment(sweep: SweepConfig) -> None:
    """MLFLOW_TRACKING_URI, when the sweep file sets none, obeys the sweep file's rules (its
    credentials aside: they were moved into the client's variables), before any compute."""
    uri = os.environ.get(TRACKING_ENV)
    if sweep.mlflow.tracking_uri or not uri:
        return
    problems = store_uri_problems(TRACKING_ENV, uri, from_environment=True)
    if problems:
        raise ConfigError(problems[0])


def print_resume_hint(layout: SweepLayout) -> None:
    print(
        "interrupted: continue with  cl-sweeps sweep FILE --resume  (the same file and "
        f"--set options; a copy of the file is in {layout.sweep_file})", flush=True,
    )


def report_compute(
    plan: SweepPlan, trials: list[records.TrialRecord], tracker: SweepTracker
) -> dict[str, Any]:
    """What the sweep spent on training versus what its trials report (task-0 prefixes count
    once), with the prefixes it shared; printed and logged on the parent run."""
    spent = records.compute_spent(trials)
    directory = plan.prefix_dir
    prefixes = PrefixStore(directory).manifests() if directory else []
    print(
        f"\ntraining compute: trials report {spent['sweep_train_tflops_reported']:.4g} TFLOPs; "
        f"the sweep spent {spent['sweep_train_tflops_spent']:.4g} (saved "
        f"{spent['sweep_train_tflops_saved']:.4g} by {int(spent['prefix_reuses'])} reuses of "
        f"{len(prefixes)} shared task-0 prefixes{f' in {directory}' if prefixes else ''})",
        flush=True,
    )
    for manifest in prefixes:
        print(f"  prefix {manifest['key']}: seed {manifest['seed']}, "
              f"{manifest['train_tflops']:.4g} TFLOPs, computed by {manifest['strategy']}",
              flush=True)
    log_sweep_metrics(tracker.as_client(), tracker.target.parent_run_id, spent)
    return {**spent, "prefixes": prefixes}


def close_tracking(tracker: SweepTracker, layout: SweepLayout) -> None:
    """Wait (bounded) for MLflow to receive everything; say so if some of it must wait."""
    left = tracker.close()
    if left:
        print(f"MLflow: {left} operations not sent yet (tracking server unreachable: "
              f"{tracker.sender.last_error}); they are kept on disk; send them with  "
              f"cl-sweeps sync {layout.root}", flush=True)


def print_summary(
    sweep: SweepConfig, layout: SweepLayout, tracker: SweepTracker, extra: dict[str, Any]
) -> None:
    """The end-of-sweep summary: the frontier of the sweep's records over its own objectives,
    written to <output_dir>/frontier and best_trials.json (with `extra`, e.g. the compute
    spent) and spooled for the parent run. A failure here is reported, never fatal: the trials
    are saved."""
    from cl_sweeps.frontier import sweep_end_summary

    objectives = [o.metric for o in sweep.objectives]
    modes = [o.mode for o in sweep.objectives]
    try:
        step = ended_trials(records.read_trials(layout.trials))  # the dashboard's step
        text = sweep_end_summary(
            layout.root, tracker.as_client(), tracker.target.parent_run_id, objectives, modes, extra,
            step=step,
        )
    except Exception as error:  # noqa: BLE001 - the sweep's results must survive a plot failure
        print(f"summary not written ({type(error).__name__}: {error}); run "
              f"`cl-sweeps frontier --sweep-dir {layout.root}`", flush=True)
        return
    print(f"\n{text}", flush=True)


def finish(plan: SweepPlan, tracker: SweepTracker, uri: str, interrupted: bool) -> int:
    """Print the trial counts and the end-of-sweep summary, attach it to the parent run, end it
    (KILLED if the sweep was interrupted: it can be resumed)."""
    sweep, layout = plan.sweep, plan.layout
    trials = records.read_trials(layout.trials)
    counts = Counter(record.status for record in trials)
    listed = ", ".join(f"{n} {status.lower()}" for status, n in sorted(counts.items()))
    print(f"\nSweep {sweep.name!r}: {len(trials)} trials ({listed or 'none'})", flush=True)
    compute = report_compute(plan, warm_start.spent_here(trials, layout), tracker)
    warm = warm_start.read_summary(layout)
    budget = budgets.sweep_summary(sweep, layout)
    if budget is not None:
        print(f"\n{budgets.summary_line(budget)}", flush=True)
    print_summary(sweep, layout, tracker, {"compute": compute,
                                           **({"budget": budget} if budget else {}),
                                           **({"warm_start": warm} if warm else {})})
    tags = {f"trials_{k.lower()}": str(v) for k, v in counts.items()}
    tracker.finish("KILLED" if interrupted else "FINISHED", tags, layout.best)
    close_tracking(tracker, layout)
    print(f"\nresults: {layout.trials} (per trial), {layout.best}", flush=True)
    if is_local_store(uri):
        print(f"MLflow UI: {mlflow_ui_command(uri, tracker.target.experiment_id)}", flush=True)
    if sweep.optuna_storage:
        print(f"Optuna dashboard: optuna-dashboard {redact_uri(sweep.optuna_storage)}", flush=True)
    failed = counts[records.FAILED]
    if failed:
        print(f"warning: {failed} trial(s) failed; see trials/<id>/status.json", flush=True)
    if interrupted:
        print_resume_hint(layout)
        return 130
    return 0 if counts[records.COMPLETED] else 1
