"""A real sweep sharing task 0: naive, ER and generative distillation with one seed agree on
everything task 0 depends on, so it is trained and evaluated once and reused twice. Every trial
still reports its full train_tflops; the sweep reports what it actually spent."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import child_env, run, tiny_sweep, write_yaml
from mlflow.tracking import MlflowClient

CLI = str(Path(sys.executable).parent / "cl-sweeps")


def test_sweep_trains_a_shared_task_zero_once_and_reports_compute_spent(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sweep = tiny_sweep("prefix", out, num_samples=None, search_algorithm="grid",
                       max_concurrent_trials=2)
    sweep["search"] = {"strategy.name": ["naive", "er", "generative_distillation"]}
    path = write_yaml(tmp_path / "prefix.yaml", sweep)
    code, log = run([CLI, "sweep", str(path)], child_env(tmp_path / "cache"),
                    tmp_path / "sweep.log", timeout_s=600)
    assert code == 0, log[-5000:]

    finals = []
    for directory in sorted((out / "trials").iterdir()):
        rows = [json.loads(r) for r in (directory / "metrics.jsonl").read_text().splitlines()]
        finals.append(rows[-1])
    reused = sorted(row["reused_train_tflops"] for row in finals)
    assert reused[0] == 0.0 and reused[1] == reused[2] > 0  # one computed it, two reused it
    compute = json.loads((out / "best_trials.json").read_text())["compute"]
    reported = sum(row["train_tflops"] for row in finals)
    assert compute["sweep_train_tflops_reported"] == pytest.approx(reported)
    assert compute["sweep_train_tflops_saved"] == pytest.approx(2 * reused[2])
    assert compute["sweep_train_tflops_spent"] == pytest.approx(reported - 2 * reused[2])
    assert [p["train_tflops"] for p in compute["prefixes"]] == pytest.approx([reused[2]])
    assert Path(compute["prefixes"][0]["path"]).parent == out / "ray" / "prefix-prefixes"
    assert "training compute: trials report" in log and "prefix " in log

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("prefix")
    parent = client.search_runs([experiment.experiment_id], "tags.`cl_sweeps.role` = 'sweep'")[0]
    assert parent.data.metrics["sweep_train_tflops_spent"] == pytest.approx(
        compute["sweep_train_tflops_spent"])
    assert parent.data.metrics["sweep_train_tflops_saved"] > 0
