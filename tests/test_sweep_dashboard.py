"""The parent run's live dashboard, fed from trial records into a real MLflow store (SQLite),
without Ray: metrics at step = ended trials, frontier files refreshed under a throttle."""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from cl_sweeps import records
from cl_sweeps.records import SweepLayout
from cl_sweeps.sweep.dashboard import SweepDashboard, sweep_metrics
from cl_sweeps.sweep.schema import Objective, parse_sweep_config
from cl_sweeps.sweep.status import sweep_status
from cl_sweeps.sweep.tracking import SweepTracker, TrackingTarget

OBJECTIVES = [Objective(metric="fid_final", mode="min"), Objective(metric="train_tflops", mode="min")]


def _sweep(root: Path, **sweep: Any) -> None:
    """The resolved sweep config, as the sweep saves it."""
    resolved = parse_sweep_config(sweep).model_dump(mode="json")
    records.write_yaml(records.SweepLayout(root).resolved, resolved)


def _trial(root: Path, trial_id: str, params: dict[str, Any], status: str,
           rows: list[dict[str, float]], tasks: int = 2) -> None:
    directory = root / "trials" / trial_id
    records.write_params(directory, trial_id, {**params, "seed": 0}, tasks)
    for row in rows:
        records.record_task(directory, row)
    records.write_status(directory, status)


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _frontier_html(client: MlflowClient, run_id: str, tmp: Path) -> str:
    return Path(client.download_artifacts(run_id, "frontier/frontier.html", str(tmp))).read_text()


def _sent(dashboard: SweepDashboard) -> None:
    """The dashboard spools; wait until its operations are in MLflow."""
    tracker = SweepTracker.for_sweep(dashboard.target, SweepLayout(Path(dashboard.output_dir)))
    assert tracker.sender.drain(60) == 0


def test_dashboard_logs_sweep_metrics_per_ended_trial_and_throttles_files(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    _sweep(root, name="dash", base={"data": {"dataset": "digits", "num_tasks": 2}})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("dash", (tmp_path / "artifacts").as_uri())
    parent = client.create_run(experiment).info.run_id
    dashboard = SweepDashboard(TrackingTarget(uri, experiment, parent, "dash"), OBJECTIVES,
                               str(root), artifacts_every_s=3600)

    _trial(root, "a", {"strategy.name": "naive"}, "COMPLETED", [
        {"task": 0, "fid": 10.0, "train_tflops": 0.5},
        {"task": 1, "fid": 30.0, "fid_final": 30.0, "train_tflops": 1.0},
    ])
    dashboard.refresh()
    _sent(dashboard)
    first = _frontier_html(client, parent, tmp_path / "d1")
    _trial(root, "b", {"strategy.name": "generative_replay"}, "PRUNED",
           [{"task": 0, "fid": 50.0, "train_tflops": 0.7}])
    _trial(root, "c", {"strategy.name": "generative_distillation"}, "RUNNING",
           [{"task": 0, "fid": 12.0, "train_tflops": 0.6}])
    dashboard.refresh()
    _trial(root, "c", {"strategy.name": "generative_distillation"}, "COMPLETED",
           [{"task": 1, "fid": 20.0, "fid_final": 20.0, "train_tflops": 2.0}])
    dashboard.refresh()
    _sent(dashboard)
    throttled = _frontier_html(client, parent, tmp_path / "d2")
    dashboard.close()  # the sweep ended: files refreshed whatever the throttle
    _sent(dashboard)
    final = _frontier_html(client, parent, tmp_path / "d3")

    assert _history(client, parent, "sweep/trials_completed") == [(1, 1), (2, 1), (3, 2)]
    assert _history(client, parent, "sweep/trials_pruned") == [(1, 0), (2, 1), (3, 1)]
    assert _history(client, parent, "sweep/trials_failed") == [(1, 0), (2, 0), (3, 0)]
    assert _history(client, parent, "sweep/best_fid_final") == [(1, 30), (2, 30), (3, 20)]
    assert _history(client, parent, "sweep/best_train_tflops") == [(1, 1), (2, 1), (3, 1)]
    assert _history(client, parent, "sweep/pareto_size") == [(1, 1), (2, 1), (3, 2)]
    spent = _history(client, parent, "sweep/train_tflops_spent")
    assert [s for s, _ in spent] == [1, 2, 3]
    assert [round(v, 6) for _, v in spent] == [1.0, 2.3, 3.7]  # running and pruned count too
    hypervolume = _history(client, parent, "sweep/hypervolume")
    assert [s for s, _ in hypervolume] == [1, 2, 3] and hypervolume[-1][1] > 0
    assert "generative_distillation" not in first and throttled == first
    assert "generative_distillation" in final
    names = {a.path for a in client.list_artifacts(parent, "frontier")}
    assert names == {"frontier/frontier.png", "frontier/frontier.html"}


def test_dashboard_survives_pickling_with_its_thread_running(tmp_path: Path) -> None:
    target = TrackingTarget(f"sqlite:///{tmp_path / 'm.db'}", "0", "run", "dash")
    dashboard = SweepDashboard(target, OBJECTIVES, str(tmp_path), artifacts_every_s=1)
    dashboard.wake()
    copy = pickle.loads(pickle.dumps(dashboard))
    dashboard._stop.set()
    assert copy.output_dir == str(tmp_path) and copy._thread is None


def test_sweep_metrics_with_no_finished_configuration() -> None:
    trial = records.TrialRecord("t", "k", 0, "FAILED", "boom", final={"train_tflops": 2.0},
                                tasks_done=1)
    metrics = sweep_metrics([trial], OBJECTIVES)
    assert metrics == {
        "sweep/trials_completed": 0, "sweep/trials_pruned": 0, "sweep/trials_failed": 1,
        "sweep/pareto_size": 0, "sweep/train_tflops_spent": 2,
    }


def test_status_table_of_a_running_sweep_from_its_records(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    _sweep(  # as resolved after --set max_concurrent_trials=2
        root, name="watch", base={"data": {"dataset": "digits", "tasks": [[0, 1], [2, 3], [4, 5], [6, 7]]}},
        search={"strategy.name": ["naive", "cumulative", "generative_replay"]},
        search_algorithm={"name": "grid"}, max_concurrent_trials=2,
    )
    timing = {"train_seconds": 0.0, "eval_seconds": 0.0}

    def row(task: int, **metrics: float) -> dict[str, float]:
        timing["train_seconds"] = 8.0 * (task + 1)
        timing["eval_seconds"] = 2.0 * (task + 1)
        return {"task": task, "train_tflops": task + 1.0, **timing, **metrics}

    _trial(root, "a", {"strategy.name": "naive"}, "COMPLETED",
           [row(k, fid=20.0 + k) for k in range(3)] + [row(3, fid=30.0, fid_final=30.0)], 4)
    _trial(root, "b", {"strategy.name": "cumulative"}, "RUNNING", [row(0, fid=9.0)], 4)
    text, done = sweep_status(root, now=time.time())

    assert not done
    assert "2 running" not in text and "1/3 trials ended (1 completed" in text
    lines = {line.split()[0]: line.split() for line in text.splitlines()
             if line.startswith(("a ", "b "))}
    assert lines["a"][1:5] == ["naive", "COMPLETED", "4/4", "30"]
    assert lines["b"][1:5] == ["cumulative", "RUNNING", "1/4", "9"]  # fid so far
    assert lines["b"][-1] == "0m30s"  # 3 tasks left at the 10 s per task measured
    assert "ETA 0m40s" in text  # c (40 s, like a) starts now in the second slot (--set)
    assert "1 of 1 configurations on the Pareto frontier over (fid_final, train_tflops)" in text


def test_status_tells_a_killed_driver_from_a_running_one(tmp_path: Path) -> None:
    """driver.json (the driver's heartbeat) decides whether a RUNNING record still runs."""
    import json
    import socket
    import subprocess
    import sys

    from cl_sweeps.sweep.heartbeat import STALE_AFTER_S, write_beat

    root = tmp_path / "sweep"
    _sweep(root, name="killed", base={"data": {"dataset": "digits", "num_tasks": 2}},
           search={"strategy.name": ["naive", "cumulative"]}, search_algorithm={"name": "grid"})
    _trial(root, "a", {"strategy.name": "naive"}, "RUNNING",
           [{"task": 0, "train_tflops": 1.0, "train_seconds": 5.0, "fid": 20.0}], 2)
    layout = SweepLayout(root)

    write_beat(layout, started=time.time())  # this process: alive, fresh beat
    text, done = sweep_status(root)
    assert not done and "1 running" in text and "INTERRUPTED" not in text

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    beat = json.loads(layout.driver.read_text())
    records.write_json(layout.driver, {**beat, "pid": dead.pid})
    text, done = sweep_status(root)
    assert done, "a sweep whose driver is gone changes no more: --watch stops"
    row = next(line.split() for line in text.splitlines() if line.startswith("a "))
    assert row[2] == "INTERRUPTED" and row[-1] == "-"
    assert "driver is not running" in text and "1 interrupted" in text
    assert "cl-sweeps sweep FILE --resume" in text

    # another host's driver: only the age of its last beat tells
    records.write_json(layout.driver, {**beat, "host": socket.gethostname() + "-other"})
    assert "INTERRUPTED" not in sweep_status(root)[0]
    text, done = sweep_status(root, now=beat["beat"] + STALE_AFTER_S + 1)
    assert "INTERRUPTED" in text and not done, "silent, not surely dead: --watch goes on"
    layout.driver.write_text("{not json")
    assert "1 running" in sweep_status(root)[0]  # unreadable: nothing is known


def test_status_needs_neither_ray_nor_mlflow() -> None:
    import subprocess
    import sys

    code = ("import sys, cl_sweeps.sweep.status; "
            "print(sorted({'ray', 'mlflow', 'torch', 'optuna'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
