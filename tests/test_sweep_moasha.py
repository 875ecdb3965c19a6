"""A real sweep with MO-ASHA: two configurations × two seeds, one at a time. Both spend the same
evaluation compute; replay 1.0 spends more training compute than replay 0.25, so at the rung
(task index 1) its point is dominated: MO-ASHA stops it, and its second seed at its first
report. Both of its trials are PRUNED in status.json, MLflow and Optuna."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna
import pytest
from helpers import child_env, events, run, tiny_sweep, write_yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

pytestmark = pytest.mark.e2e  # real Ray, servers or sweeps

CLI = str(Path(sys.executable).parent / "cl-sweeps")


def test_moasha_prunes_the_dominated_configuration_with_its_replicas(tmp_path: Path) -> None:
    out = tmp_path / "out"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    sweep = tiny_sweep(
        "mo", out, num_samples=None, search_algorithm="grid", max_concurrent_trials=1,
        seeds=[0, 1], objectives={"train_tflops": "min", "eval_tflops": "min"},
        optuna_storage=storage,
        scheduler={"type": "moasha", "grace_period": 1, "reduction_factor": 2},
    )
    sweep["search"] = {
        "strategy.name": ["generative_distillation"], "strategy.replay_ratio": [0.25, 1.0]
    }
    path = write_yaml(tmp_path / "mo.yaml", sweep)
    code, log = run([CLI, "sweep", str(path)], child_env(tmp_path / "cache"),
                    tmp_path / "sweep.log", timeout_s=600)
    assert code == 0, log[-5000:]

    tasks_by_trial = {}
    for directory in sorted((out / "trials").iterdir()):
        params = json.loads((directory / "params.json").read_text())
        status = json.loads((directory / "status.json").read_text())["status"]
        rows = (directory / "metrics.jsonl").read_text().splitlines()
        key = (params["params"]["strategy.replay_ratio"], params["seed"])
        tasks_by_trial[key] = (status, [json.loads(r)["task"] for r in rows])
    assert tasks_by_trial == {
        (0.25, 0): ("COMPLETED", [0, 1, 2]),
        (0.25, 1): ("COMPLETED", [0, 1, 2]),
        (1.0, 0): ("PRUNED", [0, 1]),  # dominated at the rung after task index 1
        (1.0, 1): ("PRUNED", [0]),  # its configuration was stopped: stops at its first report
    }
    study = optuna.load_study(study_name="mo", storage=storage)
    states = {t.params["strategy.replay_ratio"]: t.state for t in study.trials}
    assert states == {0.25: TrialState.COMPLETE, 1.0: TrialState.PRUNED}
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mo")
    runs = client.search_runs([experiment.experiment_id], "tags.`cl_sweeps.role` = 'trial'")
    by_ratio: dict[str, set] = {}
    for r in runs:
        by_ratio.setdefault(r.data.params["strategy.replay_ratio"], set()).add(
            (r.info.status, r.data.tags["status"]))
    assert by_ratio == {"0.25": {("FINISHED", "COMPLETED")}, "1.0": {("KILLED", "PRUNED")}}
    parent = client.search_runs([experiment.experiment_id], "tags.`cl_sweeps.role` = 'sweep'")[0]
    assert parent.data.params["scheduler"] == "moasha:train_tflops:min,eval_tflops:min"
    assert "2 pruned" in log
    pids = {e["pid"] for d in (out / "trials").iterdir() for e in events(d)
            if e["event"] == "attempt"}
    assert len(pids) < 4, "reuse_actors (the default): a worker that ended a trial runs the next"
