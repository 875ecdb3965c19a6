"""Run a sweep: Ray Tune over whole continual sequences, Optuna choosing, MLflow tracking.

`run_sweep` validates nothing itself (the SweepConfig it gets is already valid); it resolves
the sweep once (sweep/plan.py), lays out the output directory (sweep/output_dir.py), opens the
MLflow parent run, connects to Ray (RAY_ADDRESS or a Ray job's cluster, else a fresh local Ray),
runs the Tuner with the driver's callbacks (sweep/callbacks.py), or restores it with --resume,
then prints the end-of-sweep summary (the frontier over the sweep's objectives).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections import Counter
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from cl_sweeps import records
from cl_sweeps.config import ConfigError
from cl_sweeps.constraints import constraints_from
from cl_sweeps.credentials import redact_uri
from cl_sweeps.errors import ensure_writable
from cl_sweeps.frontier.mlflow_runs import log_sweep_metrics
from cl_sweeps.hashing import content_hash
from cl_sweeps.prefix_store import PrefixStore
from cl_sweeps.records import SweepLayout
from cl_sweeps.sweep import budget as budgets
from cl_sweeps.sweep import warm_start
from cl_sweeps.sweep.budget_stop import budget_stopper
from cl_sweeps.sweep.callbacks import DriverHeartbeat, OwnCheckpointFallback, TrialRecorder
from cl_sweeps.sweep.console import QuietConsole, quiet_logs, quiet_ray_output
from cl_sweeps.sweep.context import SweepContext, crash_at_task_from_env
from cl_sweeps.sweep.dashboard import SweepDashboard, ended_trials
from cl_sweeps.sweep.databases import database_errors
from cl_sweeps.sweep.driver_lock import hold_driver_lock
from cl_sweeps.sweep.entry import run_trial
from cl_sweeps.sweep.extend import grow_output
from cl_sweeps.sweep.heartbeat import write_beat
from cl_sweeps.sweep.moasha import MOASHA, MOASHAScheduler, rung_levels
from cl_sweeps.sweep.output_dir import (
    check_optuna_study,
    prepare_output,
    refuse_existing_sweep,
    refuse_foreign_directory,
    resolved_config,
    undone_if_failed,
)
from cl_sweeps.sweep.paths import base_directory, with_absolute_paths
from cl_sweeps.sweep.plan import SweepPlan
from cl_sweeps.sweep.prior import Prior
from cl_sweeps.sweep.schema import SweepConfig, store_uri_problems
from cl_sweeps.sweep.searcher import build_searcher
from cl_sweeps.sweep.searcher_state import check_saved_searcher
from cl_sweeps.sweep.signals import StopSignals, kill_point
from cl_sweeps.sweep.tracking import (
    TRACKING_ENV,
    SweepTracker,
    is_local_store,
    move_tracking_credentials,
    resolve_tracking_uri,
    start_sweep_run,
)

log = logging.getLogger(__name__)


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


def experiment_path(sweep: SweepConfig) -> str:
    """The sweep's Ray Tune experiment (what --resume restores)."""
    return f"{sweep.storage_path.rstrip('/')}/{sweep.name}"


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
    experiment = experiment_path(sweep)
    if resume and tune.Tuner.can_restore(experiment):
        return tune.Tuner.restore(
            experiment, trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    if resume:
        log.info("--resume: no Ray Tune experiment at %s yet; starting it", experiment)
    tune_config = tune.TuneConfig(
        search_alg=build_searcher(plan, prior),
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
        state = grow_output(layout, sweep, plan.space, resolved, content_hash(resolved),
                            file_text, overrides or [])
    else:
        state = prepare_output(layout, sweep, plan.space, file_text, overrides or [], resume)
    if resume:  # an earlier release's searcher state: upgraded, or refused before Ray starts
        check_saved_searcher(experiment_path(sweep))
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
        build_searcher(plan, prior)  # the Optuna study learns the known ones
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
