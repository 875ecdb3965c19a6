"""A real sweep with a validation split, ASHA and classifier replay: what chooses is measured on
validation, what reports is measured on test.

Two configurations (cumulative, then naive) run one after the other over three tiny tasks;
ASHA's one rung is after task index 1, where the second trial is stopped exactly when its
`fid_val` is worse than the first's (reduction factor 2: the median of one recorded value is
that value; on these settings naive is worse there, so the stop is exercised). Optuna is told
the finished trial's `fid_final_val` and the stopped one is PRUNED, the records hold the
validation metrics (the classifier's `accuracy_val` among them) after every task, and the
report shows the validation and the test columns side by side. Validation and test FID of the
same samples rank these two alike, so the scheduler's metric is read from the sweep's MLflow
parent run as well."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna
import pytest
from helpers import child_env, events, run, tiny_sweep, write_yaml
from mlflow.tracking import MlflowClient

from cl_sweeps import records
from cl_sweeps.cli import main

pytestmark = pytest.mark.e2e  # real Ray, servers or sweeps

CLI = str(Path(sys.executable).parent / "cl-sweeps")
RUNG = 1  # the task index of ASHA's rung: grace period 1, before the last task (index 2)


def test_asha_and_optuna_choose_on_validation_and_the_report_shows_test_beside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture,
) -> None:
    env = child_env(tmp_path / "cache")
    out = tmp_path / "out"
    sweep = tiny_sweep("select", out, num_samples=None, search_algorithm="grid",
                       max_concurrent_trials=1,
                       scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2})
    sweep["base"]["data"]["validation_per_class"] = 5
    sweep["base"]["classifier_replay"] = {"mode": "naive", "iterations_per_task": 2,
                                          "batch_size": 8}
    sweep["search"] = {"strategy.name": ["cumulative", "naive"]}
    code, log = run([CLI, "sweep", str(write_yaml(tmp_path / "select.yaml", sweep))], env,
                    tmp_path / "sweep.log", timeout_s=900)
    assert code == 0, log[-5000:]

    resolved = records.read_yaml_mapping(records.SweepLayout(out).resolved)
    assert [o["metric"] for o in resolved["objectives"]] == ["fid_final_val", "train_tflops"]
    trials = sorted((out / "trials").iterdir(), key=lambda d: events(d)[0]["time"])
    rows = {d.name: [json.loads(r) for r in (d / "metrics.jsonl").read_text().splitlines()]
            for d in trials}
    status = {d.name: json.loads((d / "status.json").read_text())["status"] for d in trials}
    for history in rows.values():  # validation and test after every task, classifier included
        assert all({"fid_val", "kld_val", "accuracy_val", "fid", "accuracy"} <= set(row)
                   for row in history)

    # ASHA at its rung: the first trial goes on; the second stops exactly when worse on fid_val
    first, second = (d.name for d in trials)
    worse_on_val = rows[second][RUNG]["fid_val"] > rows[first][RUNG]["fid_val"]
    assert status[first] == "COMPLETED" and len(rows[first]) == 3
    assert status[second] == ("PRUNED" if worse_on_val else "COMPLETED"), (
        [r[RUNG]["fid_val"] for r in rows.values()], [r[RUNG]["fid"] for r in rows.values()])
    assert len(rows[second]) == (RUNG + 1 if worse_on_val else 3)

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("select")
    parent = client.search_runs([experiment.experiment_id], "tags.`cl_sweeps.role` = 'sweep'")[0]
    assert parent.data.params["scheduler"] == "asha:fid_val:min"

    # Optuna was told the validation value of every finished trial, not its test FID
    finished = [rows[name][-1] for name in rows if status[name] == "COMPLETED"]
    assert all({"fid_final_val", "accuracy_final_val", "fid_final"} <= set(r) for r in finished)
    study = optuna.load_study(study_name="select", storage=f"sqlite:///{out / 'optuna.db'}")
    told = sorted(t.values[0] for t in study.get_trials(states=[optuna.trial.TrialState.COMPLETE]))
    assert told == pytest.approx(sorted(r["fid_final_val"] for r in finished))
    assert told != pytest.approx(sorted(r["fid_final"] for r in finished))
    pruned = len(study.get_trials(states=[optuna.trial.TrialState.PRUNED]))
    assert pruned == (1 if worse_on_val else 0)

    # the report chooses on validation and shows the test metrics beside it (in this process:
    # the sweep's files are all it reads)
    code = main(["report", "--sweep-dir", str(out), "--out", str(tmp_path / "r"), "--no-log"])
    text = capsys.readouterr().out
    assert code == 0, text[-3000:]
    table = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    headers = [cell.strip() for cell in table[0].split("|")]
    assert headers.index("fid_final_val") < headers.index("fid_final")
    assert {"kld_val", "accuracy_final_val", "kld", "accuracy_final"} <= set(headers)
    assert "lowest mean fid_final_val" in text and "the other columns are test metrics" in text
