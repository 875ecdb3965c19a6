"""Constraints on final metrics: the sweep file's checks, the one feasibility rule, and Optuna
told the constraint values so that its samplers search the feasible region."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import optuna
import pytest
from helpers import TINY_TASKS, tiny_sweep
from test_frontier_fakes import GD, write_sweep_dir

from cl_sweeps import records
from cl_sweeps.config import ConfigError
from cl_sweeps.constraints import (
    FEASIBLE_COLUMN,
    VIOLATIONS_COLUMN,
    Constraint,
    constraint_values,
    violations,
)
from cl_sweeps.frontier import compute_frontier, read_sweep_dir
from cl_sweeps.frontier.build import P_PARETO, best_per_strategy, frontier_table_text
from cl_sweeps.frontier.hypervolume import hypervolume, reference_point
from cl_sweeps.frontier.outputs import best_trials, summary_dict
from cl_sweeps.frontier.plots import INFEASIBLE, frontier_figure, frontier_plotly
from cl_sweeps.sweep.constraints import judge_configuration
from cl_sweeps.sweep.dashboard import frontier_of, sweep_metrics
from cl_sweeps.sweep.plan import SweepPlan
from cl_sweeps.sweep.schema import Objective, parse_sweep_config
from cl_sweeps.sweep.searcher import build_searcher

LAST = TINY_TASKS - 1


def sweep_with(**keys):
    return parse_sweep_config(tiny_sweep("constrained", Path("/tmp/constrained"), **keys))


def test_the_rule_judges_every_bound_and_breaks_on_a_missing_value() -> None:
    rules = [Constraint("train_tflops", max=3.0), Constraint("kld", min=0.1, max=1.0)]
    assert violations(rules, {"train_tflops": 3.0, "kld": 0.5}) == []
    assert violations(rules, {"train_tflops": 4.5, "kld": 0.05}) == [
        "train_tflops 4.5 > max 3", "kld 0.05 < min 0.1",
    ]
    assert violations(rules, {"train_tflops": 1.0}) == ["kld not reported"]
    values = constraint_values(rules, {"train_tflops": 4.5, "kld": 0.5})
    assert values == {"train_tflops<=3": 1.5, "kld>=0.1": pytest.approx(-0.4), "kld<=1": -0.5}
    missing = constraint_values(rules, {"train_tflops": 1.0, "kld": math.nan})
    assert missing["kld<=1"] > 0 and math.isfinite(missing["kld<=1"])


@pytest.mark.parametrize(("constraints", "expected"), [
    ({"train_tfl": {"max": 3}}, "constraints.train_tfl: unknown metric; allowed:"),
    ({"kld": {}}, "constraints.kld: no bound; allowed: {max: x}, {min: y} or both"),
    ({"kld": {"max": 1, "min": 2}}, "constraints.kld: min 2 is above max 1"),
    ({"kld": {"max": "low"}}, "constraints.kld.max: Input should be a valid number"),
    ({"kld": {"below": 1}}, "constraints.kld.below: unknown key"),
    ({"fid_task_7": {"max": 50}}, "constraints.fid_task_7: 'fid_task_7' names task 7"),
])
def test_bad_constraints_name_the_field(constraints, expected) -> None:
    with pytest.raises(ConfigError) as error:
        sweep_with(constraints=constraints)
    assert expected in str(error.value)


@pytest.mark.parametrize("algorithm", ["random", "grid"])
def test_a_sampler_that_cannot_honour_constraints_is_refused(algorithm) -> None:
    data = tiny_sweep("c", Path("/tmp/c"), search_algorithm=algorithm, num_samples=None,
                      constraints={"train_tflops": {"max": 3}})
    data["search"] = {"strategy.name": ["generative_replay", "generative_distillation"]}
    with pytest.raises(ConfigError, match=f"search_algorithm {algorithm!r} .* cannot honour"):
        parse_sweep_config(data)


def finished(fid: float, tflops: float, kld: float | None = None) -> dict:
    result = {"task": LAST, "fid": fid, "fid_final": fid, "train_tflops": tflops}
    return result if kld is None else {**result, "kld": kld}


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "gp"])
def test_optuna_is_told_the_seed_means_as_constraint_values(sampler) -> None:
    sweep = sweep_with(seeds=[1, 2], constraints={"kld": {"max": 1.0}},
                       search_algorithm={"name": "optuna", "sampler": sampler, "seed": 0})
    searcher = build_searcher(SweepPlan(sweep))
    for trial_id in ("a", "b", "c", "d"):
        searcher.suggest(trial_id)
    searcher.on_trial_complete("a", finished(10.0, 1.0, kld=0.5))
    searcher.on_trial_complete("b", finished(12.0, 1.0, kld=1.7))  # mean 1.1: infeasible
    searcher.on_trial_complete("c", finished(20.0, 1.0, kld=0.9))
    searcher.on_trial_complete("d", finished(22.0, 1.0))  # kld not reported: infeasible
    study: optuna.Study = searcher.inner._ot_study
    told = [t.constraints for t in study.trials]
    assert told[0] == {"kld<=1": pytest.approx(0.1)}
    assert told[1]["kld<=1"] > 1e100
    assert [g.violations for g in searcher._groups.values()] == [
        ["kld 1.1 > max 1"], ["kld not reported"],
    ]
    assert study.best_trials == []  # no feasible configuration: none is best


def test_a_feasible_configuration_is_the_only_best() -> None:
    sweep = sweep_with(objectives=["fid_final"], constraints={"train_tflops": {"max": 2.0}})
    searcher = build_searcher(SweepPlan(sweep))
    searcher.suggest("cheap")
    searcher.suggest("costly")
    searcher.on_trial_complete("cheap", finished(30.0, 1.0))
    searcher.on_trial_complete("costly", finished(5.0, 9.0))  # better FID, over budget
    study: optuna.Study = searcher.inner._ot_study
    assert study.best_trial.values == [30.0]
    assert [g.violations for g in searcher._groups.values()] == [[], ["train_tflops 9 > max 2"]]


# --- records, frontier and plots on a hand-made sweep directory (tests/test_frontier_fakes.py) --

def constrained_dir(root: Path) -> Path:
    """The fake sweep with constraints: cumulative (3 TFLOPs), GD k=10 (5) and naive
    (kld 2.2) break them; er and GD k=2 are the feasible front."""
    write_sweep_dir(root)
    layout = records.SweepLayout(root)
    resolved = records.read_yaml_mapping(layout.resolved)
    resolved["constraints"] = {"train_tflops": {"max": 2.6}, "kld": {"max": 1.0}}
    records.write_yaml(layout.resolved, resolved)
    return root


def by_strategy(configs, column: str) -> dict[tuple, object]:
    return {(r["strategy.name"], r.get("strategy.teacher_steps"), r.get("strategy.lambd")):
            r[column] for r in configs.to_pylist()}


def test_infeasible_configurations_are_marked_and_kept_off_the_pareto_set(tmp_path) -> None:
    frontier = compute_frontier(read_sweep_dir(constrained_dir(tmp_path)))
    feasible = by_strategy(frontier.configs, FEASIBLE_COLUMN)
    assert {k for k, ok in feasible.items() if not ok} == {
        ("cumulative", None, None), (GD, 10, 0.75), ("naive", None, None),
    }
    broken = by_strategy(frontier.configs, VIOLATIONS_COLUMN)
    assert broken[("naive", None, None)] == "kld 2.2 > max 1"
    assert broken[(GD, 10, 0.75)] == "train_tflops 5 > max 2.6"
    front = {(r["strategy.name"], r.get("strategy.teacher_steps"))
             for r in frontier.pareto_configs().to_pylist()}
    assert front == {("er", None), (GD, 2)}
    rows = [r for r in frontier.configs.to_pylist() if r[FEASIBLE_COLUMN]]
    points = np.array([[r["train_tflops_mean"], r["fid_final_mean"]] for r in rows])
    assert frontier.hypervolume == pytest.approx(hypervolume(points, reference_point(points)))
    unconstrained = compute_frontier(read_sweep_dir(tmp_path), constraints=[])
    assert unconstrained.hypervolume != pytest.approx(frontier.hypervolume)
    assert all(r[FEASIBLE_COLUMN] for r in unconstrained.configs.to_pylist())
    infeasible_p = [r[P_PARETO] for r in frontier.configs.to_pylist() if not r[FEASIBLE_COLUMN]]
    assert infeasible_p == [0.0, 0.0, 0.0]
    text = frontier_table_text(frontier, all_configs=True)
    assert "3 configurations infeasible" in text and "train_tflops 5 > max 2.6" in text
    strategies = best_per_strategy(frontier).column("strategy.name").to_pylist()
    assert "cumulative" not in strategies and "naive" not in strategies


def test_outputs_and_plots_show_infeasible_configurations_apart(tmp_path) -> None:
    frontier = compute_frontier(read_sweep_dir(constrained_dir(tmp_path)))
    best = best_trials(frontier)
    assert best["constraints"] == {"train_tflops": {"max": 2.6}, "kld": {"max": 1.0}}
    assert sorted(best["infeasible"].values()) == [
        "kld 2.2 > max 1", "train_tflops 3 > max 2.6", "train_tflops 5 > max 2.6",
    ]
    assert summary_dict(frontier)["infeasible"] == best["infeasible"]
    ax = frontier_figure(frontier).axes[0]
    crosses = [c for c in ax.collections if c.get_label() == INFEASIBLE]
    assert len(crosses) == 1 and len(crosses[0].get_offsets()) == 3
    step = next(line for line in ax.get_lines() if line.get_label() == "frontier")
    assert max(step.get_xdata()) <= 2.6  # the staircase runs over feasible points only
    traces = {t.name: t for t in frontier_plotly(frontier).data}
    assert len(traces[INFEASIBLE].x) == 3


def test_the_verdict_is_written_into_every_replica_once_all_ended(tmp_path) -> None:
    root = write_sweep_dir(tmp_path)
    layout = records.SweepLayout(root)
    naive = records.read_trial(layout.trial("t00"))
    rules = [Constraint("kld", max=1.0)]
    assert judge_configuration(layout.trials, naive.config_key, 4, rules) is None  # 3 of 4
    verdict = judge_configuration(layout.trials, naive.config_key, 3, rules)
    assert verdict.trial_ids == ["t00", "t01", "t02"]
    assert verdict.violations == ["kld 2.2 > max 1"]
    assert verdict.tags() == {"feasible": "false", "violations": "kld 2.2 > max 1"}
    assert records.read_trial(layout.trial("t01")).violations == ["kld 2.2 > max 1"]
    er = records.read_trial(layout.trial("t03"))  # its third seed (t17) is still RUNNING
    assert judge_configuration(layout.trials, er.config_key, 3, rules) is None
    assert records.read_trial(layout.trial("t03")).violations is None
    gd = records.read_trial(layout.trial("t07"))  # t15 failed: judged on the completed two
    assert judge_configuration(layout.trials, gd.config_key, 3, rules).violations == []
    assert records.read_trial(layout.trial("t15")).violations == []


def test_the_dashboards_best_is_the_best_feasible_configuration(tmp_path) -> None:
    source = read_sweep_dir(constrained_dir(tmp_path))
    objectives = [Objective(metric="fid_final"), Objective(metric="train_tflops")]
    metrics = sweep_metrics(source.records, objectives, frontier_of(source, objectives))
    assert metrics["sweep/best_fid_final"] == pytest.approx(30.0)  # GD k=2; cumulative breaks
    assert metrics["sweep/pareto_size"] == 2
