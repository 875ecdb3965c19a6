"""Failures and early stopping: a trial that crashes in its third task resumes there
(FailureConfig + checkpoint), a trial ASHA stops early reaches Optuna as PRUNED, and a sweep
whose driver was killed continues with `--resume`. Evidence that finished tasks are
not retrained comes from each trial's events.jsonl (one line per task trained); MLflow must hold
every metric step exactly once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

import optuna
import pytest
from helpers import (
    TINY_TASKS,
    background,
    child_env,
    events,
    run,
    tiny_sweep,
    wait_until,
    write_yaml,
)
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from cl_sweeps.checkpoint_files import META_FILE, latest_checkpoint, task_checkpoint_dir
from cl_sweeps.metrics import AFTER_LAST_TASK, METRICS, TASK_PREFIXES
from cl_sweeps.sweep.signals import KILL_ENV
from cl_sweeps.sweep.trainable import resume_point, unreported_tasks

CLI = str(Path(sys.executable).parent / "cl-sweeps")
STEPS = list(range(TINY_TASKS))
FINAL_ONLY = {spec.name for spec in METRICS if spec.when == AFTER_LAST_TASK}



def trials_of(out: Path) -> list[Path]:
    return sorted(p for p in (out / "trials").iterdir() if (p / "params.json").is_file())


def expected_steps(metric: str, tasks: int = TINY_TASKS) -> list[int]:
    """Steps at which a metric is logged: every task, from task k on for `*_task_<k>`, or the
    last task only for the final metrics."""
    steps = list(range(tasks))
    if metric in FINAL_ONLY:
        return [STEPS[-1]] if tasks == TINY_TASKS else []
    for prefix in TASK_PREFIXES:
        if metric.startswith(prefix):
            return steps[int(metric[len(prefix):]):]
    return steps


def mlflow_runs(uri: str, experiment: str) -> tuple[list, list]:
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    parents = [r for r in runs if r.data.tags["cl_sweeps.role"] == "sweep"]
    nested = [r for r in runs if r.data.tags["cl_sweeps.role"] == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in nested)
    return parents, nested


def fake_checkpoint(directory: Path, task: int) -> Path:
    """The metadata of a checkpoint after `task` (all that choosing a resume point reads)."""
    directory.mkdir(parents=True)
    history = [{"task": k, "fid": 10.0 + k} for k in range(task + 1)]
    (directory / META_FILE).write_text(json.dumps({"task_index": task, "history": history}))
    return directory


def test_a_restart_continues_from_the_newer_checkpoint_and_reports_what_tune_missed(
    tmp_path: Path,
) -> None:
    trial = tmp_path / "trial"
    assert resume_point(None, trial) is None  # nothing saved: start afresh
    from_tune = fake_checkpoint(tmp_path / "tune" / "checkpoint_000001", 1)
    assert resume_point(from_tune, trial) == from_tune  # own checkpoints absent (another node)

    fake_checkpoint(task_checkpoint_dir(trial, 0), 0)
    fake_checkpoint(task_checkpoint_dir(trial, 1), 1)
    assert resume_point(from_tune, trial) == from_tune  # as new as Tune's: Tune's
    assert unreported_tasks(from_tune, from_tune) == []

    own = fake_checkpoint(task_checkpoint_dir(trial, 2), 2)  # saved, never reported to Tune
    assert resume_point(from_tune, trial) == own
    assert [row["task"] for row in unreported_tasks(own, from_tune)] == [2]
    assert resume_point(None, trial) == own  # the driver died before Tune saved any
    assert [row["task"] for row in unreported_tasks(own, None)] == [0, 1, 2]


def assert_each_step_once(uri: str, run_, tasks: int = TINY_TASKS) -> None:
    client = MlflowClient(uri)
    for key in run_.data.metrics:
        steps = [m.step for m in client.get_metric_history(run_.info.run_id, key)]
        assert sorted(steps) == expected_steps(key, tasks), (key, steps)


@pytest.mark.e2e
def test_crashed_trial_resumes_at_its_task_and_early_stopped_trial_is_pruned(
    tmp_path: Path,
) -> None:
    """Two grid points, one at a time: replay 1.0 crashes once in task index 2, after saving
    its checkpoint and before reporting it to Tune, and resumes from that checkpoint: the task
    is reported again, not retrained; replay 0.25 spends less compute per task, so ASHA (on task_train_tflops, max)
    stops it after task index 1, and Optuna records it as PRUNED, not COMPLETE."""
    out = tmp_path / "out"
    env = child_env(tmp_path / "cache", CL_SWEEPS_CRASH_AT_TASK="2")
    sweep = tiny_sweep(
        "crash", out, num_samples=None, search_algorithm="grid", max_concurrent_trials=1,
        objectives=["fid_final"], optuna_storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        scheduler={"type": "asha", "metric": "task_train_tflops", "mode": "max",
                   "grace_period": 1, "reduction_factor": 2},
    )
    sweep["search"] = {
        "strategy.name": ["generative_distillation"], "strategy.replay_ratio": [1.0, 0.25]
    }
    path = write_yaml(tmp_path / "crash.yaml", sweep)
    code, log = run([CLI, "sweep", str(path)], env, tmp_path / "sweep.log", timeout_s=600)
    assert code == 0, log[-5000:]
    assert "injected crash in task 2" in log

    by_ratio = {
        json.loads((t / "params.json").read_text())["params"]["strategy.replay_ratio"]: t
        for t in trials_of(out)
    }
    crashed, stopped = by_ratio[1.0], by_ratio[0.25]

    # the crashed trial: every task trained once; the restart began after task index 2, which
    # Tune's checkpoint (task index 1) does not hold but the trial's own does
    assert (crashed / ".crash_injected").is_file()
    log_lines = events(crashed)
    attempts = [e for e in log_lines if e["event"] == "attempt"]
    assert len(attempts) == 2 and attempts[0]["resume_from"] is None
    assert Path(attempts[1]["resume_from"]) == crashed / "checkpoints" / "task_2"
    assert [e["task"] for e in log_lines if e["event"] == "task_trained"] == STEPS
    assert json.loads((crashed / "status.json").read_text())["status"] == "COMPLETED"
    full = [json.loads(line) for line in (crashed / "metrics.jsonl").read_text().splitlines()]
    assert [r["task"] for r in full] == STEPS

    # the stopped trial: two tasks, PRUNED everywhere
    assert json.loads((stopped / "status.json").read_text())["status"] == "PRUNED"
    rows = [json.loads(line) for line in (stopped / "metrics.jsonl").read_text().splitlines()]
    assert [r["task"] for r in rows] == [0, 1]
    study = optuna.load_study(study_name="crash", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    states = {t.params["strategy.replay_ratio"]: t.state for t in study.trials}
    assert states == {1.0: TrialState.COMPLETE, 0.25: TrialState.PRUNED}
    assert study.best_value == pytest.approx(full[-1]["fid_final"])

    # MLflow: one run per trial, every step once (the crashed task logged once)
    uri = f"sqlite:///{out / 'mlflow.db'}"
    _, nested = mlflow_runs(uri, "crash")
    runs = {r.data.params["strategy.replay_ratio"]: r for r in nested}
    assert len(nested) == 2
    assert runs["1.0"].info.status == "FINISHED" and runs["1.0"].data.tags["restarts"] == "1"
    assert runs["1.0"].data.tags["status"] == "COMPLETED"
    assert_each_step_once(uri, runs["1.0"])
    assert runs["0.25"].info.status == "KILLED" and runs["0.25"].data.tags["status"] == "PRUNED"
    assert_each_step_once(uri, runs["0.25"], tasks=2)
    assert "1 of 1 configurations on the Pareto frontier over (fid_final)" in log
    assert "excluded: 1 pruned" in log


@pytest.mark.e2e
def test_sweep_continues_with_resume_after_its_driver_died(tmp_path: Path) -> None:
    """SIGKILL of the driver with its local Ray at four points, each followed by --resume:
    while Ray starts (no trial yet), after a first task was reported, right after a trial saved
    a task that Ray Tune never recorded, and after Tune's run ended but before the summary (the
    last three points through CL_SWEEPS_KILL_AT, sweep/signals.py). Every configuration ends
    COMPLETED under its first trial id, every task trained exactly once."""
    out = tmp_path / "out"
    env = child_env(tmp_path / "cache")
    sweep = tiny_sweep("resumed", out, num_samples=2)
    sweep["base"]["train"]["iterations_per_task"] = 15  # seconds per task: time to kill
    path = write_yaml(tmp_path / "resumed.yaml", sweep)

    def killed_at(point: str, *options: str) -> str:
        code, log = run([CLI, "sweep", str(path), *options], {**env, KILL_ENV: point},
                        tmp_path / f"{point}.log", timeout_s=600)
        assert code == -signal.SIGKILL, log[-5000:]
        return log

    killed_at("ray_started")
    assert not (out / "trials").is_dir() or not any((out / "trials").iterdir())

    def a_task_reported() -> bool:
        return (out / "trials").is_dir() and any(
            (t / "metrics.jsonl").is_file() for t in (out / "trials").iterdir()
        )

    def driver_recorded(pid: int) -> bool:  # the killed driver's driver.json is still there
        try:
            return json.loads((out / "driver.json").read_text())["pid"] == pid
        except (OSError, ValueError, KeyError):
            return False

    start = [CLI, "sweep", str(path), "--resume"]
    with background(start, env, tmp_path / "first.log") as driver:
        # a second driver is refused while the first one starts (before any task is trained,
        # so that a fast machine cannot finish the sweep before the kill below)
        wait_until(lambda: driver_recorded(driver.pid) or driver.poll() is not None, 300,
                   "driver.json")
        for second in ([CLI, "sweep", str(path), "--resume"], [CLI, "sweep", str(path)]):
            code, log = run(second, env, tmp_path / "second.log", timeout_s=120)
            assert code == 2 and "in use by another driver" in log, log[-3000:]
            assert f"pid {driver.pid})" in log and "Traceback" not in log, log[-3000:]
        wait_until(lambda: a_task_reported() or driver.poll() is not None, 420, "a task")
        assert driver.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and its local Ray die at once
        driver.wait()
    statuses = [json.loads((t / "status.json").read_text())["status"] for t in trials_of(out)]
    assert "RUNNING" in statuses
    ids = {t.name for t in trials_of(out)}
    # Tune's state names checkpoints that are gone (as when Tune deleted one it still named):
    # the trial continues from its own checkpoints instead of failing.
    deleted = [c for c in sorted((out / "ray" / "resumed").glob("*/checkpoint_*"))
               if latest_checkpoint(out / "trials" / c.parent.name) is not None][:1]
    for checkpoint in (deleted[0].parent.glob("checkpoint_*") if deleted else []):
        shutil.rmtree(checkpoint)
    code, status = run([CLI, "status", str(out)], env, tmp_path / "status.log", timeout_s=120)
    assert code == 0 and "INTERRUPTED" in status and "driver is not running" in status, status

    killed_at("task_saved", "--resume")
    saved = max(((t, e) for t in trials_of(out) for e in events(t) if e["event"] == "task_trained"),
                key=lambda pair: pair[1]["time"])  # the task Tune never heard of
    killed_at("experiment_end", "--resume")
    code, log = run(
        [CLI, "sweep", str(path), "--resume"], env, tmp_path / "resume.log", timeout_s=600
    )
    assert code == 0, log[-5000:]
    trials = trials_of(out)
    assert len(trials) == 2 and ids <= {t.name for t in trials}
    for trial in trials:
        assert json.loads((trial / "status.json").read_text())["status"] == "COMPLETED"
        trained = [e["task"] for e in events(trial) if e["event"] == "task_trained"]
        assert trained == STEPS, (trial.name, trained)  # each task once, in order
    trial, event = saved
    later = [e for e in events(trial) if e["event"] == "attempt" and e["time"] > event["time"]]
    assert later[0]["resume_from"] == str(task_checkpoint_dir(trial, event["task"])), later
    if deleted:  # the trial whose Tune checkpoints were deleted used its own
        attempts = [e for e in events(out / "trials" / deleted[0].parent.name)
                    if e["event"] == "attempt"]
        assert any("/trials/" in (a["resume_from"] or "") for a in attempts[1:]), attempts
    uri = f"sqlite:///{out / 'mlflow.db'}"
    _, nested = mlflow_runs(uri, "resumed")
    assert len(nested) == 2, "a resumed trial must continue its MLflow run, not open another"
    for run_ in nested:
        assert run_.info.status == "FINISHED" and run_.data.tags["status"] == "COMPLETED"
        assert_each_step_once(uri, run_)
    assert "configurations on the Pareto frontier over" in log

    (out / "mlflow.db").unlink()  # the tracking store is lost: the records rebuild it
    code, log = run([CLI, "sync", str(out), "--rebuild"], env, tmp_path / "rebuild.log",
                    timeout_s=300)
    assert code == 0 and "MLflow is up to date" in log, log[-3000:]
    _, nested = mlflow_runs(uri, "resumed")
    assert len(nested) == 2
    for run_ in nested:
        assert run_.info.status == "FINISHED" and run_.data.tags["status"] == "COMPLETED"
        assert_each_step_once(uri, run_)

    code, log = run([CLI, "sweep", str(path)], env, tmp_path / "again.log", timeout_s=120)
    assert code == 2 and "already holds a sweep" in log


@pytest.mark.e2e
def test_sigterm_is_a_clean_stop_and_resume_retrains_nothing(tmp_path: Path) -> None:
    """`kill` (SIGTERM, as Slurm and Kubernetes send) to the driver alone: exit 143 with the
    resume hint, parent run KILLED; --resume ends every trial under its own id, no recorded
    task trained twice."""
    out = tmp_path / "out"
    env = child_env(tmp_path / "cache")
    sweep = tiny_sweep("stopped", out, num_samples=2)
    sweep["base"]["train"]["iterations_per_task"] = 15  # seconds per task: time to stop
    path = write_yaml(tmp_path / "stopped.yaml", sweep)

    def recorded() -> dict[str, list[int]]:
        return {t.name: [json.loads(line)["task"] for line in
                         (t / "metrics.jsonl").read_text().splitlines() if line.strip()]
                for t in trials_of(out) if (t / "metrics.jsonl").is_file()} if (
            out / "trials").is_dir() else {}

    with background([CLI, "sweep", str(path)], env, tmp_path / "first.log") as driver:
        wait_until(lambda: recorded() or driver.poll() is not None, 420, "a task")
        assert driver.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        os.kill(driver.pid, signal.SIGTERM)
        code = driver.wait(timeout=300)
    log = (tmp_path / "first.log").read_text()
    assert code == 143, log[-5000:]
    assert "cl-sweeps sweep FILE --resume" in log and "Traceback" not in log, log[-5000:]
    before = recorded()
    ids = {t.name for t in trials_of(out)}
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("stopped").experiment_id
    parent = client.search_runs([experiment], "tags.`cl_sweeps.role` = 'sweep'")[0]
    assert parent.info.status == "KILLED"

    code, log = run(
        [CLI, "sweep", str(path), "--resume"], env, tmp_path / "resume.log", timeout_s=600
    )
    assert code == 0, log[-5000:]
    after = {t.name for t in trials_of(out)}
    assert ids <= after and len(after) == 2  # no configuration again under a new id
    for trial in trials_of(out):
        assert json.loads((trial / "status.json").read_text())["status"] == "COMPLETED"
        trained = [e["task"] for e in events(trial) if e["event"] == "task_trained"]
        assert sorted(set(trained)) == STEPS
        for task in before.get(trial.name, []):
            assert trained.count(task) == 1, (trial.name, trained, before)
    mlflow_runs(f"sqlite:///{out / 'mlflow.db'}", "stopped")  # the parent FINISHED again
