"""A lost node costs one task: a real two-node Ray cluster on this machine
(ray.cluster_utils.Cluster: a head without CPUs for the driver, two one-CPU workers), a sweep
driver joined to it, and the node running the trial removed in the middle of a task. The trial
restarts on the other node from its last finished task (storage on a file system both reach),
the sweep completes, and MLflow holds every step once."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import (
    TINY_TASKS,
    background,
    child_env,
    events,
    tiny_sweep,
    wait_until,
    write_yaml,
)
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster

pytestmark = pytest.mark.e2e  # real Ray, servers or sweeps

CLI = str(Path(sys.executable).parent / "cl-sweeps")
STEPS = list(range(TINY_TASKS))



def reported_tasks(trial: Path) -> int:
    """Tasks whose checkpoint Ray Tune has (the driver records a task when Tune reports it)."""
    path = trial / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    env = child_env(tmp_path / "cache")
    for key in ("RAY_AUTH_TOKEN", "CL_SWEEPS_CACHE", "RAY_USAGE_STATS_ENABLED"):
        monkeypatch.setenv(key, env[key])  # the nodes' workers inherit this process's env
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    temp_dir = tempfile.mkdtemp(prefix="rn", dir="/tmp")  # short: Ray's sockets live there
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False, "temp_dir": temp_dir},
    )
    try:
        workers = [cluster.add_node(num_cpus=1, temp_dir=temp_dir) for _ in range(2)]
        cluster.wait_for_nodes()
        yield cluster, workers, env
    finally:
        cluster.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_trial_on_a_removed_node_continues_on_the_other(cluster, tmp_path: Path) -> None:
    cluster, workers, env = cluster
    out = tmp_path / "out"
    sweep = tiny_sweep("two-nodes", out, num_samples=None, search_algorithm="grid",
                       objectives=["fid_final"], max_failures=2)
    sweep["search"] = {"strategy.name": ["generative_distillation"]}
    sweep["base"]["train"]["iterations_per_task"] = 20  # seconds per task: time to remove a node
    path = write_yaml(tmp_path / "nodes.yaml", sweep)
    command = [CLI, "sweep", str(path), "--address", cluster.address]
    with background(command, env, tmp_path / "sweep.log") as driver:

        def trial() -> Path | None:
            found = sorted((out / "trials").glob("*/params.json")) if out.is_dir() else []
            return found[0].parent if found else None

        wait_until(lambda: driver.poll() is not None or (trial() and reported_tasks(trial())),
                   600, "the first task reported")
        assert driver.poll() is None, (tmp_path / "sweep.log").read_text()[-3000:]
        first = next(e for e in events(trial()) if e["event"] == "attempt")
        victim = next(n for n in workers if n.node_id == first["node"])
        cluster.remove_node(victim, allow_graceful=False)  # in the middle of the next task
        code = driver.wait(timeout=600)
    log = (tmp_path / "sweep.log").read_text()
    assert code == 0, log[-5000:]

    directory = trial()
    attempts = [e for e in events(directory) if e["event"] == "attempt"]
    assert len(attempts) == 2, attempts
    assert attempts[1]["node"] != attempts[0]["node"]  # restarted on the other node
    survivor = next(n for n in workers if n is not victim)
    assert attempts[1]["node"] == survivor.node_id
    done_before = int(Path(attempts[1]["resume_from"]).name.split("_")[-1])  # checkpoint_00000k
    trained = [e["task"] for e in events(directory) if e["event"] == "task_trained"]
    assert sorted(set(trained)) == STEPS
    for task in range(done_before + 1):
        assert trained.count(task) == 1, trained  # finished tasks are not retrained
    assert json.loads((directory / "status.json").read_text())["status"] == "COMPLETED"
    rows = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    assert [r["task"] for r in rows] == STEPS

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("two-nodes").experiment_id])
    nested = [r for r in runs if r.data.tags["cl_sweeps.role"] == "trial"]
    assert len(nested) == 1 and nested[0].info.status == "FINISHED"
    assert nested[0].data.tags["restarts"] == "1"
    for key in nested[0].data.metrics:
        steps = sorted(m.step for m in client.get_metric_history(nested[0].info.run_id, key))
        assert len(steps) == len(set(steps)), (key, steps)  # each step once
    task_steps = [m.step for m in client.get_metric_history(nested[0].info.run_id, "task")]
    assert sorted(task_steps) == STEPS
