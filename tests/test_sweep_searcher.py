"""The seed replicator over a real OptunaSearch: each configuration runs once per seed, Optuna
gets the seeds' mean, and a trial stopped before its last task reaches Optuna as PRUNED (never
as COMPLETE with early metrics). The end-of-sweep summary averages seeds, finds the Pareto set."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from helpers import TINY_TASKS, tiny_sweep

from cl_sweeps import records
from cl_sweeps.sweep.plan import SweepPlan
from cl_sweeps.sweep.schema import parse_sweep_config
from cl_sweeps.sweep.searcher import build_searcher
from cl_sweeps.sweep.space import num_configurations

LAST = TINY_TASKS - 1


def searcher_for(**keys):
    sweep = parse_sweep_config(tiny_sweep("replicas", Path("/tmp/replicas"), **keys))
    return build_searcher(SweepPlan(sweep))


def study_of(searcher) -> optuna.Study:
    return searcher.inner._ot_study


def finished(fid: float, tflops: float, task: int = LAST) -> dict:
    return {"task": task, "fid": fid, "fid_final": fid, "train_tflops": tflops}


def test_each_configuration_runs_once_per_seed_and_optuna_gets_the_mean() -> None:
    searcher = searcher_for(seeds=[1, 2, 3])
    configs = [searcher.suggest(f"t{i}") for i in range(6)]
    assert [c["seed"] for c in configs] == [1, 2, 3, 1, 2, 3]
    strip = [{k: v for k, v in c.items() if k != "seed"} for c in configs]
    assert strip[0] == strip[1] == strip[2] and strip[3] == strip[4] == strip[5]
    assert "strategy.teacher_steps" in configs[0] and "strategy.replay_ratio" in configs[0]
    for trial_id, fid in zip(["t0", "t1"], [10.0, 20.0]):
        searcher.on_trial_complete(trial_id, finished(fid, 1.0))
    assert len(study_of(searcher).get_trials(states=[optuna.trial.TrialState.COMPLETE])) == 0
    searcher.on_trial_complete("t2", finished(30.0, 4.0))
    done = study_of(searcher).get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert [t.values for t in done] == [[20.0, 2.0]]


def test_early_stopped_trial_reaches_optuna_as_pruned() -> None:
    searcher = searcher_for(scheduler={"type": "asha", "metric": "fid", "grace_period": 1})
    for trial_id in ("a", "b", "c"):
        searcher.suggest(trial_id)
    searcher.on_trial_result("a", finished(5.0, 1.0, task=1))
    searcher.on_trial_complete("a", finished(5.0, 1.0, task=1))  # ASHA stopped it after task 1
    searcher.on_trial_complete("b", finished(7.0, 2.0))
    searcher.on_trial_complete("c", None, error=True)
    states = [t.state for t in study_of(searcher).trials]
    assert states == [
        optuna.trial.TrialState.PRUNED,
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.FAIL,
    ]
    front = study_of(searcher).best_trials
    assert [t.values for t in front] == [[7.0, 2.0]]


def test_single_objective_and_save_restore(tmp_path: Path) -> None:
    searcher = searcher_for(objectives=["fid_final"])
    config = searcher.suggest("x")
    searcher.save(str(tmp_path / "state.pkl"))
    restored = searcher_for(objectives=["fid_final"])
    restored.restore(str(tmp_path / "state.pkl"))
    restored.on_trial_complete("x", finished(3.0, 1.0))
    assert study_of(restored).best_value == pytest.approx(3.0)
    assert study_of(restored).best_trial.params == {
        k: v for k, v in config.items() if k != "seed"
    }


def test_grid_enqueues_every_point_with_mapped_values() -> None:
    data = tiny_sweep("grid", Path("/tmp/grid"), search_algorithm="grid", num_samples=None)
    data["search"] = {
        "strategy.name": ["generative_replay", "generative_distillation"],
        "strategy.teacher_steps": [1, 2],
        "strategy.lambd": {"depends_on": "strategy.name",
                           "values": {"generative_distillation": 0.75}},
    }
    sweep = parse_sweep_config(data)
    searcher = build_searcher(SweepPlan(sweep))
    points = [searcher.suggest(str(i)) for i in range(num_configurations(sweep))]
    keyed = {(p["strategy.name"], p["strategy.teacher_steps"]): p for p in points}
    assert len(keyed) == 4
    assert keyed[("generative_distillation", 2)]["strategy.lambd"] == 0.75
    assert "strategy.lambd" not in keyed[("generative_replay", 1)]


def test_a_repeated_configuration_is_not_run_again() -> None:
    data = tiny_sweep("repeats", Path("/tmp/r"), search_algorithm={"name": "random", "seed": 3})
    data["search"] = {"strategy.name": ["generative_replay"], "strategy.teacher_steps": [1, 2]}
    sweep = parse_sweep_config(data)
    searcher = build_searcher(SweepPlan(sweep))
    first = searcher.suggest("t0")
    second = searcher.suggest("t1")  # t0 still running: its repeats are told FAIL
    assert first != second
    searcher.on_trial_complete("t0", finished(4.0, 1.0))
    searcher.on_trial_complete("t1", finished(6.0, 1.0))
    third = searcher.suggest("t2")  # both finished: a repeat is told the known outcome
    assert third in (first, second)  # only two configurations exist: after 20 repeats, run it
    trials = study_of(searcher).trials
    fails = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    completes = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert all(t.params == {k: v for k, v in first.items() if k != "seed"} for t in fails)
    for trial in completes:
        steps = trial.params["strategy.teacher_steps"]
        assert trial.values[0] == (4.0 if steps == first["strategy.teacher_steps"] else 6.0)
    assert len(completes) >= 20


def write_record(root: Path, trial_id: str, key: str, seed: int, fid: float, tflops: float,
                 status: str = "COMPLETED") -> None:
    """A two-task trial written as the sweep driver writes it."""
    directory = records.SweepLayout(root).trial(trial_id)
    records.write_params(directory, trial_id, {"strategy.name": key, "seed": seed}, 2)
    for row in ({"task": 0, "fid": fid * 2},
                {"task": 1, "fid": fid, "fid_final": fid, "train_tflops": tflops}):
        records.record_task(directory, row)
    records.write_status(directory, status)


def strict_json(path: Path) -> dict:
    def refuse(constant: str) -> None:
        raise ValueError(f"{path} holds a bare {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_end_of_sweep_summary_uses_the_sweeps_objectives(tmp_path: Path) -> None:
    """Seeds averaged, Pareto set over the sweep's own objectives and modes, best_trials.json
    strict JSON (one seed has no spread: null, not NaN)."""
    from cl_sweeps.frontier import sweep_end_summary

    for args in (("a1", "naive", 1, 10.0, 1.0), ("a2", "naive", 2, 12.0, 1.0),  # cheap, worse
                 ("b1", "er", 1, 5.0, 3.0), ("b2", "er", 2, 5.0, 3.0),          # better, dearer
                 ("c1", "cumulative", 1, 20.0, 3.0),                            # dominated
                 ("d1", "ewc", 1, 1.0, 0.1, "PRUNED")):                         # not finished
        write_record(tmp_path, *args)
    text = sweep_end_summary(tmp_path, objectives=["fid_final", "train_tflops"])
    assert "2 of 3 configurations" in text and "1 pruned" in text
    best = strict_json(tmp_path / "best_trials.json")
    assert best["selection"] == "pareto"
    assert [c["params"]["strategy.name"] for c in best["configurations"]] == ["er", "naive"]
    naive = best["configurations"][1]
    assert naive["mean"]["fid_final"] == pytest.approx(11.0) and naive["n"] == 2
    assert naive["std"]["fid_final"] == pytest.approx(2 ** 0.5)
    # maximising compute (a made-up goal) flips which configurations are optimal
    sweep_end_summary(tmp_path, objectives=["fid_final", "train_tflops"], modes=["min", "max"])
    best = strict_json(tmp_path / "best_trials.json")
    assert [c["params"]["strategy.name"] for c in best["configurations"]] == ["er"]
    assert best["objectives"][1] == {"metric": "train_tflops", "mode": "max"}
    sweep_end_summary(tmp_path, objectives=["fid_final"])
    best = strict_json(tmp_path / "best_trials.json")
    assert best["selection"] == "best" and len(best["configurations"]) == 1
    er = [c for c in best["configurations"] if c["params"]["strategy.name"] == "er"]
    assert er and er[0]["std"]["fid_final"] == 0.0
