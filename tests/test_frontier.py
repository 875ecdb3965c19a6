"""Pareto set, seed aggregation, exclusions and the trials table, from hand-made data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_frontier_fakes import (
    EXPECTED_EXCLUDED,
    GD,
    GR,
    NUM_TASKS,
    assert_tables_equal,
    write_sweep_dir,
)

from cl_sweeps.formatting import fmt_mean_std
from cl_sweeps.frontier import (
    best_per_strategy,
    best_per_strategy_text,
    compute_frontier,
    frontier_table_text,
    objectives_for,
    pareto_mask,
    read_sweep_dir,
)
from cl_sweeps.frontier.pareto import frontier_order
from cl_sweeps.frontier.table import aggregate_configs, mean_sem, mean_std, trials_table
from cl_sweeps.records import SweepSource, TrialRecord

# ---------------------------------------------------------------- Pareto on hand-made points


def test_pareto_basic_two_objectives() -> None:
    points = np.array([[1.0, 9.0], [2.0, 5.0], [3.0, 6.0], [4.0, 1.0], [5.0, 1.0]])
    assert pareto_mask(points).tolist() == [True, True, False, True, False]


def test_pareto_ties_and_duplicates_are_all_kept() -> None:
    # identical vectors do not dominate each other: both copies of (1, 2) stay on the frontier
    points = np.array([[1.0, 2.0], [1.0, 2.0], [2.0, 1.0], [3.0, 3.0]])
    assert pareto_mask(points).tolist() == [True, True, True, False]


def test_pareto_duplicates_of_a_dominated_point_are_all_dominated() -> None:
    points = np.array([[1.0, 1.0], [2.0, 2.0], [2.0, 2.0]])
    assert pareto_mask(points).tolist() == [True, False, False]


def test_pareto_equal_in_one_objective_worse_in_the_other_is_dominated() -> None:
    points = np.array([[1.0, 1.0], [1.0, 2.0], [0.5, 3.0]])
    assert pareto_mask(points).tolist() == [True, False, True]


def test_pareto_three_objectives() -> None:
    points = np.array([[1, 2, 3], [2, 1, 3], [2, 2, 1], [3, 3, 3], [1, 2, 4]], dtype=float)
    assert pareto_mask(points).tolist() == [True, True, True, False, False]


def test_pareto_edge_cases() -> None:
    assert pareto_mask(np.zeros((0, 2))).tolist() == []
    assert pareto_mask(np.array([[3.0, 4.0]])).tolist() == [True]
    with pytest.raises(ValueError, match="finite"):
        pareto_mask(np.array([[1.0, math.nan], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="shape"):
        pareto_mask(np.array([1.0, 2.0]))


def test_frontier_order_sorts_by_compute() -> None:
    points = np.array([[4.0, 1.0], [1.0, 9.0], [3.0, 6.0], [2.0, 5.0]])
    assert frontier_order(points).tolist() == [1, 3, 0]


def _record(trial_id: str, key: str, seed: int, compute: float, fid: float,
            status: str = "COMPLETED", tasks: int = 2) -> TrialRecord:
    return TrialRecord(
        trial_id=trial_id, config_key=key, seed=seed, status=status,
        params={"strategy.name": key.split("-")[0], "strategy.lambd": 1.0},
        final={"train_tflops": compute, "fid_final": fid, "kld": 0.1},
        series={"fid": {t: fid + t for t in range(tasks)}}, tasks_done=tasks,
    )


def test_dominated_point_with_lower_variance_is_still_dominated() -> None:
    records = [
        _record("a0", "wide", 0, 1.0, 10.0), _record("a1", "wide", 1, 1.0, 50.0),  # 30 ± 28
        _record("b0", "tight", 0, 1.0, 30.9), _record("b1", "tight", 1, 1.0, 31.1),  # 31 ± 0.1
    ]
    frontier = compute_frontier(SweepSource(records))
    pareto = dict(zip(frontier.configs.column("config_key").to_pylist(),
                      frontier.configs.column("pareto").to_pylist()))
    assert pareto == {"tight": False, "wide": True}


def test_duplicate_configurations_with_equal_means_are_both_on_the_frontier() -> None:
    records = [_record("a0", "x-1", 0, 2.0, 20.0), _record("b0", "y-1", 0, 2.0, 20.0),
               _record("c0", "z-1", 0, 3.0, 25.0)]
    frontier = compute_frontier(SweepSource(records))
    assert frontier.configs.column("pareto").to_pylist() == [True, True, False]


# ---------------------------------------------------------------- seed aggregation


def test_mean_std_uses_ddof_1_and_reports_n() -> None:
    mean, std, n = mean_std([1.0, 2.0, 3.0, 4.0])
    assert (mean, n) == (2.5, 4)
    assert std == pytest.approx(np.std([1, 2, 3, 4], ddof=1))


def test_mean_std_single_seed_has_no_spread_and_renders_a_dash() -> None:
    mean, std, n = mean_std([7.0])
    assert (mean, n) == (7.0, 1) and math.isnan(std)
    assert fmt_mean_std(mean, std) == "7 ± –"


def test_mean_std_skips_missing_and_nan_keeps_inf() -> None:
    assert mean_std([1.0, None, math.nan, 3.0])[::2] == (2.0, 2)
    mean, std, n = mean_std([1.0, math.inf])
    assert mean == math.inf and math.isnan(std) and n == 2
    assert fmt_mean_std(mean, std) == "inf"
    assert mean_std([])[2] == 0 and fmt_mean_std(*mean_std([])[:2]) == "–"


def test_mean_sem_is_the_reference_reports_standard_error() -> None:
    """The paper's ± : np.std (ddof=0) / sqrt(n), as in its utils/generate_report_cl.py."""
    values = [21.3, 25.0, 30.1]
    mean, sem, n = mean_sem(values)
    assert (mean, n) == (pytest.approx(np.mean(values)), 3)
    assert sem == pytest.approx(np.std(values) / np.sqrt(3))  # numpy's default ddof is 0
    assert sem == pytest.approx(np.std(values, ddof=1) * np.sqrt(2 / 3) / np.sqrt(3))
    assert sem == pytest.approx(0.4714 * mean_std(values)[1], rel=1e-3)
    assert math.isnan(mean_sem([7.0])[1]) and math.isnan(mean_sem([1.0, math.inf])[1])


def test_aggregate_configs_groups_seed_replicas() -> None:
    records = [_record("a0", "gd-1", 0, 1.0, 10.0), _record("a1", "gd-1", 1, 3.0, 20.0),
               _record("a2", "gd-1", 2, 2.0, 30.0), _record("b0", "er-1", 5, 4.0, 8.0)]
    configs = aggregate_configs(trials_table(records)).to_pylist()
    er, gd = configs  # sorted by config_key
    assert gd["config_key"] == "gd-1" and gd["n"] == 3 and gd["seeds"] == [0, 1, 2]
    assert gd["fid_final_mean"] == 20.0 and gd["fid_final_std"] == pytest.approx(10.0)
    assert gd["train_tflops_mean"] == 2.0 and gd["fid@task1_mean"] == 21.0
    assert gd["strategy.name"] == "gd" and gd["strategy.lambd"] == 1.0
    assert er["n"] == 1 and math.isnan(er["fid_final_std"])


# ---------------------------------------------------------------- a sweep directory


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sweep_dir(tmp_path_factory.mktemp("frontier") / "sweep")


def test_trials_table_has_one_row_per_trial_with_dotted_params(sweep_dir: Path) -> None:
    trials = compute_frontier(read_sweep_dir(sweep_dir)).trials
    assert trials.num_rows == 22
    names = set(trials.column_names)
    assert {"trial_id", "config_key", "seed", "status", "num_tasks_done", "included",
            "excluded_reason", "strategy.name", "strategy.teacher_steps", "strategy.lambd",
            "fid_final", "fid_avg", "forgetting", "kld", "train_tflops",
            "fid@task0", "fid@task2", "fid_task_2"} <= names
    assert "seed" not in {c for c in names if "." in c} and "task" not in names
    row = {r["trial_id"]: r for r in trials.to_pylist()}["t07"]
    assert row["strategy.teacher_steps"] == 2 and row["strategy.name"] == GD
    assert row["num_tasks_done"] == NUM_TASKS and row["num_tasks"] == NUM_TASKS
    assert row["fid@task0"] == 100.0 and row["fid@task2"] == row["fid_final"] == 20.0
    assert trials.schema.field("strategy.teacher_steps").type == "int64"


def test_failed_and_nan_trials_are_excluded_and_counted(sweep_dir: Path) -> None:
    frontier = compute_frontier(read_sweep_dir(sweep_dir))
    assert frontier.excluded == EXPECTED_EXCLUDED
    reasons = dict(zip(frontier.trials.column("trial_id").to_pylist(),
                       frontier.trials.column("excluded_reason").to_pylist()))
    assert reasons["t15"] == "failed" and reasons["t18"] == "incomplete"
    assert reasons["t19"] == "nan" and reasons["t20"] == "inf" and reasons["t00"] is None
    # seed replicas are aggregated over included trials only
    n_by_key = dict(zip(frontier.configs.column("config_key").to_pylist(),
                        frontier.configs.column("n").to_pylist()))
    assert sum(n_by_key.values()) == 22 - sum(EXPECTED_EXCLUDED.values())
    text = frontier_table_text(frontier)
    assert "excluded: 1 failed, 1 pruned, 1 running, 1 incomplete, 1 nan, 1 inf" in text


def test_sweep_frontier_is_the_expected_set(sweep_dir: Path) -> None:
    frontier = compute_frontier(read_sweep_dir(sweep_dir))
    front = {(r["strategy.name"], r["strategy.teacher_steps"], r["strategy.lambd"])
             for r in frontier.pareto_configs().to_pylist()}
    assert front == {("naive", None, None), ("er", None, None), (GD, 2, 0.75),
                     ("cumulative", None, None)}
    cheapest_first = frontier.pareto_configs().column("strategy.name").to_pylist()
    assert cheapest_first == ["naive", "er", GD, "cumulative"]
    with_kld = compute_frontier(read_sweep_dir(sweep_dir), objectives_for("kld"))
    assert with_kld.objectives == ("train_tflops", "fid_final", "kld")
    assert with_kld.pareto_configs().num_rows == 4


def test_frontier_text_lists_frontier_with_mean_std(sweep_dir: Path) -> None:
    text = frontier_table_text(compute_frontier(read_sweep_dir(sweep_dir)))
    lines = text.splitlines()
    assert lines[0].startswith("4 of 8 configurations on the Pareto frontier")
    assert "teacher_steps" in lines[1] and "fid_final" in lines[1]
    assert any(line.startswith("cumulative") and "20.5 ± 0.7071" in line for line in lines)
    assert len(lines) == 2 + 4 + 2 and lines[-1].startswith("seed noise: ")
    assert lines[-2] == "± = std (ddof 1) over seeds, n = 2..3"  # what every ± is


def test_best_configuration_of_each_strategy_ranks_on_quality(sweep_dir: Path) -> None:
    """Default objectives (train_tflops, fid_final): ranked on fid_final, the cost axis skipped;
    dominated strategies (GR) are listed too, with their Pareto mark."""
    frontier = compute_frontier(read_sweep_dir(sweep_dir))
    best = best_per_strategy(frontier).to_pylist()
    assert [(r["strategy.name"], r["fid_final_mean"]) for r in best] == [
        ("cumulative", 20.5), (GD, 25.5), ("er", 51.0), ("naive", 82.0), (GR, 119.0)
    ]
    assert [r["strategy.teacher_steps"] for r in best if r["strategy.name"] == GD] == [10]
    text = best_per_strategy_text(frontier).splitlines()
    assert text[0].startswith("Best configuration of each strategy by fid_final (min")
    assert len(text) == 2 + len({r["strategy.name"] for r in best}) + 1
    assert text[-1].startswith("best (cumulative) and runner-up (generative_distillation) are "
                               "separable on fid_final")
    gr_line = next(line for line in text if line.startswith(best[-1]["strategy.name"]))
    mark = text[1].index(" pareto ") + 1  # the Pareto mark's column
    assert gr_line[mark] == " "  # dominated: no Pareto mark
    assert text[2][mark] == "*"  # cumulative is on the frontier


def test_best_per_strategy_breaks_ties_on_cost_and_names_strategies_without_results() -> None:
    records = [_record("a", "naive-1", 0, 1.0, 30.0), _record("b", "gd-1", 0, 3.0, 20.0),
               _record("c", "gd-2", 0, 2.0, 20.0), _record("d", "gr-1", 0, 2.0, 50.0, "FAILED")]
    frontier = compute_frontier(SweepSource(records))
    best = best_per_strategy(frontier).to_pylist()
    assert [(r["config_key"], r["train_tflops_mean"]) for r in best] == [
        ("gd-2", 2.0), ("naive-1", 1.0)]
    assert best_per_strategy_text(frontier).endswith(
        "no complete trial with finite objectives: gr")


def test_a_trial_dir_without_parquet_falls_back_to_jsonl(sweep_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(sweep_dir, copy)
    (copy / "trials" / "t00" / "metrics.parquet").unlink()
    (copy / "trials" / "t01" / "status.json").unlink()
    trials = compute_frontier(read_sweep_dir(copy)).trials
    rows = {r["trial_id"]: r for r in trials.to_pylist()}
    assert rows["t00"]["fid_final"] == 80.0 and rows["t00"]["included"]
    assert rows["t01"]["status"] == "UNKNOWN" and rows["t01"]["excluded_reason"] == "unknown"


def test_missing_sweep_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="output_dir"):
        read_sweep_dir(tmp_path)


def test_trials_table_roundtrips_through_parquet(sweep_dir: Path, tmp_path: Path) -> None:
    from cl_sweeps.results import atomic_write_table

    trials = compute_frontier(read_sweep_dir(sweep_dir)).trials
    atomic_write_table(trials, tmp_path / "t.parquet")
    assert_tables_equal(pq.read_table(tmp_path / "t.parquet"), trials)
