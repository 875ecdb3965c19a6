"""A real 4-trial Optuna sweep on the embedded digits, tiny model, CPU, logging to a real
`mlflow server` (SQLite backend) started here; read back with the MLflow client."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from helpers import (
    TINY_TASKS,
    child_env,
    mlflow_server,
    run,
    tiny_sweep,
    write_yaml,
)
from mlflow.tracking import MlflowClient

CLI = str(Path(sys.executable).parent / "cl-sweeps")
STEPS = list(range(TINY_TASKS))


def test_optuna_sweep_logs_every_trial_to_an_mlflow_server(tmp_path: Path) -> None:
    env = child_env(tmp_path / "cache")
    with mlflow_server(tmp_path / "mlflow", env) as uri:
        out = tmp_path / "out"
        sweep = tiny_sweep("server-sweep", out, num_samples=4, mlflow={"tracking_uri": uri})
        path = write_yaml(tmp_path / "sweep.yaml", sweep)
        started = time.monotonic()
        code, log = run([CLI, "sweep", str(path)], env, tmp_path / "sweep.log", timeout_s=600)
        assert code == 0, log[-5000:]
        print(f"sweep wall time: {time.monotonic() - started:.0f}s")

        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("server-sweep")
        runs = client.search_runs([experiment.experiment_id])
        parents = [r for r in runs if r.data.tags.get("cl_sweeps.role") == "sweep"]
        trials = [r for r in runs if r.data.tags.get("cl_sweeps.role") == "trial"]
        assert len(parents) == 1 and len(trials) == 4, [r.data.tags for r in runs]
        parent = parents[0]
        assert parent.info.run_name == "server-sweep" and parent.info.status == "FINISHED"
        parent_files = {a.path for a in client.list_artifacts(parent.info.run_id)}
        assert {"sweep.yaml", "sweep_resolved.yaml", "search_space.json", "best_trials.json"} \
            <= parent_files

        for trial in trials:
            run_id, tags, params = trial.info.run_id, trial.data.tags, trial.data.params
            assert tags["mlflow.parentRunId"] == parent.info.run_id
            assert tags["cl_sweeps.sweep"] == "server-sweep" and tags["status"] == "COMPLETED"
            assert tags["strategy"] == params["strategy.name"] and tags["seed"] == params["seed"]
            assert {"strategy.name", "strategy.teacher_steps", "strategy.replay_ratio"} <= set(
                params
            )
            for metric in ("fid", "train_tflops", "denoise_loss", "kld"):
                steps = [m.step for m in client.get_metric_history(run_id, metric)]
                assert steps == STEPS, (metric, steps)
            assert [m.step for m in client.get_metric_history(run_id, "fid_final")] == [STEPS[-1]]
            files = {a.path for a in client.list_artifacts(run_id)}
            assert {"model", "samples", "trial_config.yaml"} <= files
            samples = {a.path for a in client.list_artifacts(run_id, "samples")}
            assert samples == {f"samples/task_{k}.png" for k in STEPS}
            model = {a.path for a in client.list_artifacts(run_id, "model/unet")}
            assert "model/unet/config.json" in model
            assert trial.info.status == "FINISHED"

            directory = out / "trials" / tags["trial_id"]
            record = json.loads((directory / "params.json").read_text())
            assert record["config_key"] == tags["config_key"]
            searched = {k: v for k, v in params.items() if not k.startswith("throughput.")}
            assert {k: str(v) for k, v in record["params"].items()} == searched
            assert params["throughput.precision"] == "fp32"  # resolved on the worker (CPU)
            assert json.loads((directory / "status.json").read_text())["status"] == "COMPLETED"
            table = pq.read_table(directory / "metrics.parquet")
            assert table.column("task").to_pylist() == STEPS
    assert "configurations on the Pareto frontier over (fid_final, train_tflops)" in log
    assert not (out / "mlflow.db").exists()  # everything went to the server
