"""The sweep -> frontier/report hand-off on a real sweep that shares task 0: `cl-sweeps sweep`
with a `--set` that changes the number of tasks and one that holds out a validation split, then
`cl-sweeps frontier` and `cl-sweeps report` on its output directory.

- naive, ER and generative distillation with one seed agree on everything task 0 depends on,
  so it is trained and evaluated once and reused twice; every trial still reports its full
  train_tflops, and the sweep reports what it actually spent (summary, MLflow parent run);
- frontier and report read the resolved sweep config the sweep saved, so they see the same
  complete trials and the same Pareto set the sweep printed at its end;
- with the validation split, Optuna, the frontier and the report choose on fid_final_val and
  show the test metrics beside it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import child_env, run, tiny_sweep, write_yaml
from mlflow.tracking import MlflowClient

from cl_sweeps import records

pytestmark = pytest.mark.e2e  # real Ray, servers or sweeps

CLI = str(Path(sys.executable).parent / "cl-sweeps")
STRATEGIES = ["naive", "er", "generative_distillation"]


def test_a_sweep_sharing_task_zero_hands_off_to_frontier_and_report_after_set(
    tmp_path: Path,
) -> None:
    env = child_env(tmp_path / "cache")
    out = tmp_path / "out"
    sweep = tiny_sweep("handoff", out, num_samples=None, search_algorithm="grid",
                       max_concurrent_trials=2)
    sweep["search"] = {"strategy.name": STRATEGIES}
    sweep["base"]["data"].pop("tasks")
    sweep["base"]["data"]["num_tasks"] = 5  # the file says 5; --set makes it 2
    path = write_yaml(tmp_path / "handoff.yaml", sweep)
    code, log = run(
        [CLI, "sweep", str(path), "--set", "base.data.num_tasks=2",
         "--set", "base.data.validation_per_class=5"], env,
        tmp_path / "sweep.log", timeout_s=900,
    )
    assert code == 0, log[-5000:]

    layout = records.SweepLayout(out)
    resolved = records.read_yaml_mapping(layout.resolved)
    assert resolved is not None and resolved["base"]["data"]["num_tasks"] == 2
    trials = records.read_trials(layout.trials)
    assert len(trials) == len(STRATEGIES) and all(t.num_tasks == 2 for t in trials)
    assert all(t.status == records.COMPLETED and t.tasks_done == 2 for t in trials)
    assert_task_zero_was_shared(out, log)
    assert_chosen_on_validation(out, resolved, trials)

    best = json.loads(layout.best.read_text(), parse_constant=lambda c: 1 / 0)
    printed = {c["config_key"] for c in best["configurations"]}
    assert printed, log[-3000:]
    code, text = run([CLI, "frontier", "--sweep-dir", str(out), "--out", str(tmp_path / "f"),
                      "--no-log"], env, tmp_path / "frontier.log", timeout_s=300)
    assert code == 0, text[-3000:]
    assert "chosen on the validation split (fid_final_val)" in text and "fid_final " in text
    summary = json.loads((tmp_path / "f" / "summary.json").read_text())
    assert summary["objectives"] == ["train_tflops", "fid_final_val"]
    assert set(summary["pareto_config_keys"]) == printed
    assert summary["configurations"] == len(trials)  # every finished trial counted
    on_front = f"{len(printed)} of {summary['configurations']} configurations on the Pareto"
    assert on_front in log and on_front in text

    code, text = run([CLI, "report", "--sweep-dir", str(out), "--out", str(tmp_path / "r"),
                      "--no-log"], env, tmp_path / "report.log", timeout_s=300)
    assert code == 0, text[-3000:]
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert {row.split("|")[1].strip() for row in rows[1:]} == set(STRATEGIES)
    headers = [cell.strip() for cell in rows[0].split("|")]
    assert {"fid_final_val", "kld_val", "fid_final", "kld"} <= set(headers)
    assert "lowest mean fid_final_val" in text

    code, text = run([CLI, "report", "--paper", "--sweep-dir", str(out), "--out",
                      str(tmp_path / "p"), "--no-log"], env, tmp_path / "paper.log", timeout_s=300)
    assert code == 0, text[-3000:]
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| strategy | teacher steps | λ | n | FID | KLD | ARD |")
    assert [row.split("|")[1].strip() for row in rows[1:]] == ["naive", "er", STRATEGIES[2]]
    assert "mean ± SEM over seeds (n = 1)" in text
    for name in ("paper.md", "paper.csv", "paper.tex", "paper_fid_per_task.png",
                 "paper_class_histograms.png"):
        assert (tmp_path / "p" / name).stat().st_size > 0, name

    # a sweep trial's checkpoint knows its trial config: no run file needed
    checkpoint = min((out / "trials").iterdir()) / "checkpoints" / "task_1"
    code, text = run([CLI, "fid-vs-steps", str(checkpoint), "--steps", "1,2", "--n-samples", "8",
                      "--out", str(tmp_path / "steps")], env, tmp_path / "steps.log",
                     timeout_s=300)
    assert code == 0, text[-3000:]
    points = json.loads((tmp_path / "steps" / "fid_vs_steps.json").read_text())["results"]
    assert [p["unet_forwards"] for p in points] == [8, 16]


def assert_chosen_on_validation(
    out: Path, resolved: dict, trials: list[records.TrialRecord]
) -> None:
    """With base.data.validation_per_class the objectives are the validation metrics; Optuna
    was told each configuration's fid_final_val (one seed: its value), not its test FID."""
    import optuna

    assert [o["metric"] for o in resolved["objectives"]] == ["fid_final_val", "train_tflops"]
    for trial in trials:
        assert {"fid_final_val", "fid_val", "kld_val", "fid_final"} <= set(trial.final)
    for directory in (out / "trials").iterdir():  # after every task, task 0's shared ones too
        rows = [json.loads(r) for r in (directory / "metrics.jsonl").read_text().splitlines()]
        assert all({"fid_val", "kld_val"} <= set(row) for row in rows) and len(rows) == 2
    study = optuna.load_study(study_name="handoff", storage=f"sqlite:///{out / 'optuna.db'}")
    told = sorted(t.values[0] for t in study.get_trials(states=[optuna.trial.TrialState.COMPLETE]))
    assert told == pytest.approx(sorted(t.final["fid_final_val"] for t in trials))
    assert told != pytest.approx(sorted(t.final["fid_final"] for t in trials))


def assert_task_zero_was_shared(out: Path, log: str) -> None:
    """One trial computed task 0, two reused it; trials report it, the sweep spent it once."""
    finals = []
    for directory in sorted((out / "trials").iterdir()):
        rows = [json.loads(r) for r in (directory / "metrics.jsonl").read_text().splitlines()]
        finals.append(rows[-1])
    reused = sorted(row["reused_train_tflops"] for row in finals)
    assert reused[0] == 0.0 and reused[1] == reused[2] > 0
    compute = json.loads((out / "best_trials.json").read_text())["compute"]
    reported = sum(row["train_tflops"] for row in finals)
    assert compute["sweep_train_tflops_reported"] == pytest.approx(reported)
    assert compute["sweep_train_tflops_saved"] == pytest.approx(2 * reused[2])
    assert compute["sweep_train_tflops_spent"] == pytest.approx(reported - 2 * reused[2])
    assert [p["train_tflops"] for p in compute["prefixes"]] == pytest.approx([reused[2]])
    assert Path(compute["prefixes"][0]["path"]).parent == out / "ray" / "handoff-prefixes"
    assert "training compute: trials report" in log and "prefix " in log

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("handoff")
    parent = client.search_runs([experiment.experiment_id], "tags.`cl_sweeps.role` = 'sweep'")[0]
    assert parent.data.metrics["sweep_train_tflops_spent"] == pytest.approx(
        compute["sweep_train_tflops_spent"])
    assert parent.data.metrics["sweep_train_tflops_saved"] > 0
