"""The budget's decisions on hand-made records (tests/test_frontier_fakes.py): what was spent,
what a configuration will cost, when the searcher stops proposing and why, when a hard budget
stops a running trial, and what `cl-sweeps status` says."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna
import pytest
from helpers import TINY_TASKS, child_env, run, tiny_sweep, write_yaml
from mlflow.tracking import MlflowClient
from test_frontier_fakes import fake_trials, write_sweep_dir

from cl_sweeps import records
from cl_sweeps.config import ConfigError
from cl_sweeps.sweep import budget as budgets
from cl_sweeps.sweep.budget_stop import BudgetStopper
from cl_sweeps.sweep.plan import SweepPlan
from cl_sweeps.sweep.schema import parse_sweep_config
from cl_sweeps.sweep.searcher import build_searcher
from cl_sweeps.sweep.status import sweep_status

CLI = str(Path(sys.executable).parent / "cl-sweeps")
ER_RUNNING = "t17"  # er, RUNNING after 1 of 3 tasks: 0.5 TFLOPs at its pace


def reported_tflops() -> float:
    return sum(t.history()[-1]["train_tflops"] for t in fake_trials())


@pytest.fixture
def fake(tmp_path: Path) -> tuple[records.SweepLayout, list[records.TrialRecord]]:
    layout = records.SweepLayout(write_sweep_dir(tmp_path))
    return layout, records.read_trials(layout.trials)


def test_spent_counts_every_trial_and_running_ones_are_committed(fake) -> None:
    _, trials = fake
    now = budgets.spending(trials, wall_seconds=7200, trials_started=0, default_strategy="naive")
    assert now.spent["train_tflops"] == pytest.approx(reported_tflops())
    assert now.spent["trials"] == len(fake_trials())
    assert now.spent["wall_hours"] == 2.0
    assert now.committed["train_tflops"] == pytest.approx(0.5 - 0.5 / 3)  # t17's two tasks


def test_a_configuration_is_estimated_from_its_strategy_then_from_any(fake) -> None:
    _, trials = fake
    assert budgets.estimate_trial(trials, "er", "naive")["train_tflops"] == pytest.approx(1.5)
    gr = budgets.estimate_trial(trials, "generative_replay", "naive")["train_tflops"]
    assert gr == pytest.approx((2.0 + 2.0 + 2.0 + 1.8 + 1.8) / 5)  # NaN/inf trials cost too
    unknown = budgets.estimate_trial(trials, "lwf", "naive")["train_tflops"]
    completed = [t for t in fake_trials() if t.status == "COMPLETED" and t.tasks == 3]
    assert unknown == pytest.approx(sum(t.compute for t in completed) / len(completed))
    running_only = [t for t in trials if t.trial_id == ER_RUNNING]
    extrapolated = budgets.estimate_trial(running_only, "er", "naive")["train_tflops"]
    assert extrapolated == pytest.approx(0.5)
    assert budgets.estimate_trial([], "er", "naive") is None


def test_the_next_configuration_starts_only_if_it_fits(fake) -> None:
    _, trials = fake
    used = reported_tflops() + (0.5 - 0.5 / 3)
    fits = budgets.BudgetConfig(train_tflops=used + 2 * 1.0)  # naive: 1 TFLOP per trial
    assert budgets.why_not(fits, trials, "naive", 2, 0.0, 0, "naive") is None
    short = budgets.BudgetConfig(train_tflops=used + 2 * 1.0 - 0.01)
    reason = budgets.why_not(short, trials, "naive", 2, 0.0, 0, "naive")
    assert reason.startswith("budget train_tflops: 44.87 + ~0.3333 for running trials of 47.19 spent")
    assert "the next configuration needs ~2 (naive, 2 seed(s))" in reason
    by_count = budgets.BudgetConfig(trials=len(fake_trials()) + 1)
    assert budgets.why_not(by_count, trials, "er", 1, 0.0, 0, "naive") is None
    assert "budget trials: 22 of 23 spent" in budgets.why_not(by_count, trials, "er", 2, 0, 0,
                                                               "naive")
    clock = budgets.BudgetConfig(wall_hours=1.0)
    assert "budget wall_hours: 1 of 1 spent" in budgets.why_not(clock, [], "er", 1, 3600, 0, "er")
    assert budgets.why_not(clock, [], "er", 1, 3599, 0, "er") is None  # nothing known: it starts


def test_a_hard_budget_stops_a_trial_whose_next_task_would_pass_it(fake) -> None:
    layout, _ = fake
    spent = reported_tflops()
    hard = budgets.BudgetConfig(train_tflops=spent + 0.1, hard=True)  # t17's next task: 0.167
    stopper = BudgetStopper(hard, str(layout.root), "naive")
    assert stopper("t17", {"task": 0, "train_tflops": 0.5 / 3}) is True
    reason = records.read_stop_reason(layout.trial("t17"))
    assert reason.startswith("budget train_tflops (hard): 44.87 of 44.97 spent; the next task")
    roomy = BudgetStopper(hard.model_copy(update={"train_tflops": spent + 0.2}), str(layout.root),
                          "naive")
    assert roomy("t17", {"task": 0, "train_tflops": 0.5 / 3}) is False
    soft = BudgetStopper(budgets.BudgetConfig(train_tflops=1.0), str(layout.root), "naive")
    assert soft("t17", {"task": 0, "train_tflops": 0.5 / 3}) is False  # soft: trials finish
    last = {"task": 2, "train_tflops": 0.5}
    assert stopper("t17", last) is False  # its last task ended: nothing to stop


@pytest.mark.parametrize("budget", [{}, {"trials": 0}, {"hard": True}, {"train_tflop": 1}])
def test_bad_budgets_name_the_field(budget) -> None:
    with pytest.raises(ConfigError, match="budget"):
        parse_sweep_config(tiny_sweep("b", Path("/tmp/b"), budget=budget))


def finished(fid: float) -> dict:
    return {"task": TINY_TASKS - 1, "fid": fid, "fid_final": fid, "train_tflops": 1.0}


def test_the_searcher_stops_proposing_with_the_reason_and_resumes_with_it(tmp_path) -> None:
    sweep = parse_sweep_config(tiny_sweep("budget", tmp_path, seeds=[1, 2], num_samples=5,
                                          budget={"trials": 5}))
    searcher = build_searcher(SweepPlan(sweep))
    layout = records.SweepLayout(tmp_path)
    for trial_id in ("a", "b", "c", "d"):
        assert isinstance(searcher.suggest(trial_id), dict)
    assert searcher.suggest("e") == "FINISHED"  # 4 started + 2 seeds > 5
    state = budgets.read_state(layout)
    assert state["trials_started"] == 4
    assert state["ended"].startswith("budget trials: 4 of 5 spent; the next configuration "
                                     "needs ~2 (")
    assert state["ended"].endswith(", 2 seed(s))")
    study: optuna.Study = searcher.inner._ot_study
    assert [t.state for t in study.trials][-1] == optuna.trial.TrialState.FAIL  # never ran
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = build_searcher(SweepPlan(sweep))
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.suggest("f") == "FINISHED" and restored.ended == searcher.ended
    assert restored.wall_seconds() >= searcher._wall_before


def test_status_shows_spent_left_and_why_the_budget_ended_the_sweep(tmp_path) -> None:
    layout = records.SweepLayout(write_sweep_dir(tmp_path))
    resolved = records.read_yaml_mapping(layout.resolved)
    resolved["budget"] = {"trials": 24, "train_tflops": 50.0}
    records.write_yaml(layout.resolved, resolved)
    budgets.write_state(layout, 60.0, 22, "budget trials: 22 of 24 spent; ...")
    records.write_status(layout.trial(ER_RUNNING), records.COMPLETED)
    text, done = sweep_status(layout.root)
    assert done and "ended by its budget" in text
    expected = f"train_tflops {reported_tflops():.4g} of 50 spent ({50 - reported_tflops():.4g}"
    assert "; trials 22 of 24 spent (2 left)" in text and f"budget: {expected}" in text
    assert "ended by the budget: budget trials: 22 of 24 spent" in text


@pytest.mark.e2e
def test_a_real_sweep_ends_by_its_budget_and_resume_honours_it(tmp_path: Path) -> None:
    """Three configurations asked for, a budget of two trials: two run, the third is never
    started, the sweep ends (exit 0) saying why; --resume starts nothing. A constraint no
    configuration keeps marks both infeasible in the records, MLflow and best_trials.json."""
    out = tmp_path / "out"
    env = child_env(tmp_path / "cache")
    sweep = tiny_sweep("budgeted", out, num_samples=3, max_concurrent_trials=1,
                       budget={"trials": 2}, constraints={"train_tflops": {"max": 1e-9}})
    path = write_yaml(tmp_path / "budgeted.yaml", sweep)
    code, log = run([CLI, "sweep", str(path)], env, tmp_path / "sweep.log", timeout_s=600)
    assert code == 0, log[-5000:]
    layout = records.SweepLayout(out)
    trials = records.read_trials(layout.trials)
    assert len(trials) == 2 and all(t.status == records.COMPLETED for t in trials)
    assert "ended by the budget: budget trials: 2 of 2 spent; the next configuration" in log
    best = json.loads(layout.best.read_text())
    assert best["budget"]["trials"] == {"budget": 2, "spent": 2, "left": 0}
    assert best["budget"]["ended"].startswith("budget trials: 2 of 2 spent")
    assert best["configurations"] == [] and len(best["infeasible"]) == 2
    assert "2 configurations infeasible" in log and "(no feasible configuration" in log
    assert all(t.violations and t.violations[0].startswith("train_tflops ") for t in trials)
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("budgeted")
    nested = client.search_runs([experiment.experiment_id], "tags.`cl_sweeps.role` = 'trial'")
    assert sorted(r.data.tags.get("feasible") for r in nested) == ["false", "false"]
    text, done = sweep_status(out)
    assert done and "ended by its budget" in text and "trials 2 of 2 spent (0 left)" in text

    code, log = run([CLI, "sweep", str(path), "--resume"], env, tmp_path / "resume.log",
                    timeout_s=600)
    assert code == 0, log[-5000:]
    assert len(records.read_trials(layout.trials)) == 2
    assert "ended by the budget: budget trials: 2 of 2 spent" in log


def test_the_parent_run_gets_the_share_of_the_tightest_limit(fake) -> None:
    layout, _ = fake
    resolved = records.read_yaml_mapping(layout.resolved)
    assert budgets.parent_metrics(resolved, layout.root) == {}
    resolved["budget"] = {"train_tflops": 4 * reported_tflops(), "trials": 44}
    assert budgets.parent_metrics(resolved, layout.root) == pytest.approx(
        {"sweep/budget_used": 0.5, "sweep/budget_left": 0.5})  # 22 of 44 trials


def test_trials_imported_by_a_warm_start_are_reused_not_spent(tmp_path) -> None:
    layout = records.SweepLayout(write_sweep_dir(tmp_path))
    before = records.read_trials(layout.trials)
    imported = [t for t in before if t.status == records.COMPLETED][:2]
    for trial in imported:  # as sweep/warm_start.py copies a trial from another sweep
        records.write_json(records.TrialLayout(layout.trial(trial.trial_id)).origin,
                           {"sweep": "/elsewhere", "trial_id": trial.trial_id})
    trials = records.read_trials(layout.trials)
    assert {t.trial_id for t in trials if t.imported} == {t.trial_id for t in imported}
    elsewhere = sum(t.final["train_tflops"] for t in imported)
    now = budgets.spending(trials, 0.0, 0, "naive")
    assert now.spent["train_tflops"] == pytest.approx(reported_tflops() - elsewhere)
    assert now.spent["trials"] == len(trials) - 2
    assert budgets.estimate_trial(trials, "er", "naive") == budgets.estimate_trial(
        before, "er", "naive")  # their costs still estimate the next configuration's
    room = budgets.BudgetConfig(trials=len(trials))  # 2 left once the imported are not counted
    assert budgets.why_not(room, trials, "er", 2, 0.0, 0, "naive") is None

    resolved = records.read_yaml_mapping(layout.resolved)
    resolved["budget"] = {"train_tflops": 50.0}
    records.write_yaml(layout.resolved, resolved)
    summary = budgets.summary(budgets.BudgetConfig(train_tflops=50.0), layout, "naive")
    assert summary["train_tflops"]["spent"] == pytest.approx(reported_tflops() - elsewhere)
    assert summary["reused"]["trials"] == 2
    assert summary["reused"]["train_tflops"] == pytest.approx(elsewhere)
    line = budgets.summary_line(summary)
    assert (f"reused, not spent: 2 trials imported by the warm start ({elsewhere:.4g} training "
            "TFLOPs)") in line
    text, _ = sweep_status(layout.root)
    assert "reused, not spent: 2 trials" in text
    used = budgets.parent_metrics(resolved, layout.root)["sweep/budget_used"]
    assert used == pytest.approx((reported_tflops() - elsewhere) / 50.0)
