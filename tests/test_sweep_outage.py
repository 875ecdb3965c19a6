"""Tracking-server outages during a real sweep: a real `mlflow server` (SQLite backend) is stopped
and started again on the same port while a tiny sweep trains on CPU.

(a) down for a while mid-sweep: training keeps its pace (tasks train while it is down, and
    between two tasks the trial spends under OVERHEAD_S outside its own training and evaluation,
    measured by the trial itself, so the bound holds on a loaded machine too), and once the
    server is back every metric is in MLflow exactly once;
(b) down until the sweep has finished: the sweep still completes, and `cl-sweeps sync` afterwards
    sends every metric once (a second sync sends nothing).
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from helpers import (
    background,
    child_env,
    free_port,
    mlflow_server,
    run,
    tiny_sweep,
    wait_until,
    write_yaml,
)
from mlflow.tracking import MlflowClient

from cl_sweeps.metrics import AFTER_LAST_TASK, METRICS, TASK_PREFIXES

pytestmark = pytest.mark.e2e  # real Ray, servers or sweeps

CLI = str(Path(sys.executable).parent / "cl-sweeps")
FINAL_ONLY = {spec.name for spec in METRICS if spec.when == AFTER_LAST_TASK}
OVERHEAD_S = 3.0  # per task: checkpoint, report, spooling; waiting on a server would take longer


def one_trial_sweep(name: str, out: Path, uri: str, tasks: int, iterations: int) -> dict:
    """One naive trial (a grid of one point), `tasks` tasks of `iterations` iterations."""
    sweep = tiny_sweep(name, out, num_samples=None, search_algorithm="grid",
                       objectives=["fid_final"], mlflow={"tracking_uri": uri})
    sweep["search"] = {"strategy.name": ["naive"]}
    sweep["base"]["data"]["tasks"] = [[k] for k in range(tasks)]  # one class each: up to 10
    sweep["base"]["train"]["iterations_per_task"] = iterations
    return sweep


def task_times(out: Path) -> list[float]:
    """When each task finished training and evaluating (the trial's events.jsonl)."""
    times = []
    for events in (out / "trials").glob("*/events.jsonl"):
        for line in events.read_text().splitlines():
            event = json.loads(line)
            if event["event"] == "task_trained":
                times.append(event["time"])
    return sorted(times)


def overheads(out: Path) -> list[float]:
    """Per task after the first: wall time between two tasks minus the training and evaluation
    seconds the trial measured in it (what it spent on anything else)."""
    (trial,) = (out / "trials").glob("*/metrics.jsonl")
    work = [r["train_seconds"] + r["eval_seconds"]
            for r in map(json.loads, trial.read_text().splitlines())]
    times = task_times(out)
    return [(times[k] - times[k - 1]) - (work[k] - work[k - 1]) for k in range(1, len(times))]


def assert_every_step_once(uri: str, name: str, tasks: int) -> None:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags["cl_sweeps.role"] == "sweep"]
    trials = [r for r in runs if r.data.tags["cl_sweeps.role"] == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(trials) == 1, [r.data.tags for r in trials]
    trial = trials[0]
    assert trial.info.status == "FINISHED" and trial.data.tags["status"] == "COMPLETED"
    assert {"fid", "denoise_loss", "train_tflops", "fid_final"} <= set(trial.data.metrics)
    for key in trial.data.metrics:
        steps = sorted(m.step for m in client.get_metric_history(trial.info.run_id, key))
        expected = list(range(tasks))
        if key in FINAL_ONLY:
            expected = [tasks - 1]
        for prefix in TASK_PREFIXES:
            if key.startswith(prefix):
                expected = expected[int(key[len(prefix):]):]
        assert steps == expected, (key, steps)
    samples = {a.path for a in client.list_artifacts(trial.info.run_id, "samples")}
    assert samples == {f"samples/task_{k}.png" for k in range(tasks)}
    assert client.list_artifacts(trial.info.run_id, "model/unet")
    parent_files = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"sweep.yaml", "search_space.json", "best_trials.json", "frontier"} <= parent_files


def test_training_keeps_its_pace_while_the_tracking_server_is_down(tmp_path: Path) -> None:
    tasks = 6
    # a slow restart of the server (a loaded machine) must not outlast the bounded wait at the end
    env = child_env(tmp_path / "cache", CL_SWEEPS_TRACKING_DRAIN_S="300")
    port, root, out = free_port(), tmp_path / "mlflow", tmp_path / "out"
    uri = f"http://127.0.0.1:{port}"
    path = write_yaml(tmp_path / "sweep.yaml", one_trial_sweep("outage", out, uri, tasks, 60))
    driver_log = tmp_path / "sweep.log"
    with ExitStack() as server:
        server.enter_context(mlflow_server(root, env, port))  # up before the sweep starts
        with background([CLI, "sweep", str(path)], env, driver_log) as driver:
            wait_until(lambda: len(task_times(out)) >= 1 or driver.poll() is not None, 400,
                       "the first task")
            assert driver.poll() is None, driver_log.read_text()[-3000:]
            stopped, before = time.time(), len(task_times(out))  # tasks may end while it stops
            server.close()
            # the server stays down while two more tasks train
            wait_until(lambda: len(task_times(out)) >= before + 2 or driver.poll() is not None,
                       400, "two tasks during the outage")
            server.enter_context(mlflow_server(root, env, port))
            restarted = time.time()
            code = driver.wait(timeout=400)
        log = driver_log.read_text()
        assert code == 0, log[-5000:]
        assert_every_step_once(uri, "outage", tasks)
    times = task_times(out)
    assert len(times) == tasks
    assert sum(stopped < t < restarted for t in times) >= 2  # tasks trained during the outage
    spent_elsewhere = overheads(out)
    print(f"outage {restarted - stopped:.1f}s; per task outside training and evaluation "
          f"{[round(o, 2) for o in spent_elsewhere]}s")
    assert max(spent_elsewhere) < OVERHEAD_S < restarted - stopped, spent_elsewhere
    assert "MLflow unreachable" in log  # the sender saw the outage
    assert "send them with" not in log  # and caught up before the sweep ended


def test_sweep_finishes_without_the_server_and_sync_sends_everything_once(tmp_path: Path) -> None:
    tasks = 3
    env = child_env(tmp_path / "cache", CL_SWEEPS_TRACKING_DRAIN_S="1")
    port, root, out = free_port(), tmp_path / "mlflow", tmp_path / "out"
    uri = f"http://127.0.0.1:{port}"
    path = write_yaml(tmp_path / "sweep.yaml", one_trial_sweep("down", out, uri, tasks, 3))
    with ExitStack() as server:
        server.enter_context(mlflow_server(root, env, port))  # up before the sweep starts
        with background([CLI, "sweep", str(path)], env, tmp_path / "sweep.log") as driver:
            wait_until(lambda: len(task_times(out)) >= 1 or driver.poll() is not None, 400,
                       "the first task")
            server.close()  # down until the sweep has ended
            code = driver.wait(timeout=400)
    log = (tmp_path / "sweep.log").read_text()
    assert code == 0, log[-5000:]
    assert "operations not sent yet" in log and f"send them with  cl-sweeps sync {out}" in log
    assert json.loads(next((out / "trials").glob("*/status.json")).read_text())["status"] == (
        "COMPLETED"
    )

    code, text = run([CLI, "sync", str(out), "--timeout", "5"], env, tmp_path / "sync0.log", 120)
    assert code == 1 and "operations not sent" in text  # still down: nothing lost, told so

    with mlflow_server(root, env, port):
        code, text = run([CLI, "sync", str(out)], env, tmp_path / "sync1.log", 300)
        assert code == 0 and "MLflow is up to date" in text, text[-3000:]
        assert_every_step_once(uri, "down", tasks)
        code, text = run([CLI, "sync", str(out)], env, tmp_path / "sync2.log", 300)
        assert code == 0 and "0 operations sent" in text, text[-3000:]
        assert_every_step_once(uri, "down", tasks)
