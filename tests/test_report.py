"""The paper-style report: strategy (and teacher steps) × metrics, mean ± std over seeds."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.csv as pacsv
import pytest
from test_frontier_fakes import GD, GR, write_sweep_dir

from cl_sweeps.frontier import compute_frontier, read_sweep_dir, report_markdown, write_report
from cl_sweeps.frontier.report import reads_teacher_steps, report_table
from cl_sweeps.records import SweepSource, TrialRecord, base_value


def uses_steps(name: str) -> bool:
    return name.startswith("generative")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    source = read_sweep_dir(write_sweep_dir(tmp_path_factory.mktemp("r") / "sweep"))
    return report_table(compute_frontier(source).trials, uses_teacher_steps=uses_steps)


def test_rows_in_paper_order_split_by_teacher_steps(report) -> None:
    keys = list(zip(report.column("strategy").to_pylist(),
                    report.column("teacher_steps").to_pylist()))
    assert keys == [("naive", None), ("cumulative", None), ("er", None), (GR, 1), (GR, 2),
                    (GD, 2), (GD, 10)]


def test_values_are_mean_std_over_complete_seeds(report) -> None:
    rows = {(r["strategy"], r["teacher_steps"]): r for r in report.to_pylist()}
    naive = rows[("naive", None)]
    assert naive["n"] == 3 and naive["fid_final_mean"] == 82.0
    assert naive["fid_final_std"] == pytest.approx(2.0) and naive["forgetting_mean"] == 4.0
    assert rows[("cumulative", None)]["n"] == 2  # the incomplete third seed does not count
    assert rows[("er", None)]["n"] == 2  # nor does the running one
    gr2 = rows[(GR, 2)]
    assert gr2["n"] == 3 and gr2["fid_final_n"] == 2 and gr2["fid_final_mean"] == 119.0
    gr1 = rows[(GR, 1)]
    assert gr1["fid_final_mean"] == math.inf and gr1["kld_mean"] == 0.5  # diverged seed shown


def test_best_configuration_per_row_is_chosen_by_fid(report) -> None:
    gd2 = {(r["strategy"], r["teacher_steps"]): r for r in report.to_pylist()}[(GD, 2)]
    assert gd2["configurations"] == 2 and gd2["settings"] == "lambd=0.75"
    assert gd2["fid_final_mean"] == 30.0 and gd2["n"] == 2


def test_markdown_and_csv(report, tmp_path: Path) -> None:
    text = report_markdown(report)
    lines = text.splitlines()
    assert lines[0] == ("| strategy | teacher steps | n | fid_final | kld | forgetting | "
                        "train TFLOPs | settings (of configurations tried) |")
    assert lines[2].startswith("| naive | – | 3 | 82 ± 2 |")
    assert any(line.startswith(f"| {GR} | 1 | 2 | inf |") for line in lines)
    paths = write_report(report, tmp_path)
    assert paths["markdown"].read_text() == text
    csv = pacsv.read_csv(paths["csv"])
    assert csv.num_rows == 7 and {"fid_final_mean", "fid_final_std", "fid_final_n"} <= set(
        csv.column_names)


def test_single_seed_renders_a_dash_for_the_spread() -> None:
    record = TrialRecord("a", "k", 0, "COMPLETED", params={"strategy.name": "naive"},
                         final={"train_tflops": 1.0, "fid_final": 40.0}, tasks_done=1)
    table = report_table(compute_frontier(SweepSource([record])).trials,
                         uses_teacher_steps=uses_steps)
    assert "| naive | – | 1 | 40 ± – | – | – | 1 ± – |" in report_markdown(table)


def test_teacher_steps_knob_comes_from_the_strategy_registry() -> None:
    assert reads_teacher_steps("generative_distillation") is True
    assert reads_teacher_steps("naive") is False and reads_teacher_steps("er") is False
    assert reads_teacher_steps("some_future_strategy") is True


def test_teacher_steps_not_searched_come_from_the_resolved_sweep_base(tmp_path: Path) -> None:
    resolved = read_sweep_dir(write_sweep_dir(tmp_path / "sweep")).resolved
    assert base_value(resolved, "strategy.teacher_steps") == 2  # the default, filled in
    assert base_value({"base": {"strategy": {"teacher_steps": 10}}}, "strategy.teacher_steps") == 10
    assert base_value(resolved, "no.such_field") is None
    records = [
        TrialRecord(f"t{i}", name, 0, "COMPLETED", params={"strategy.name": name},
                    final={"train_tflops": 1.0, "fid_final": 9.0}, tasks_done=1)
        for i, name in enumerate(["naive", GD])
    ]
    table = report_table(compute_frontier(SweepSource(records)).trials,
                         uses_teacher_steps=uses_steps, default_teacher_steps=10)
    assert table.column("teacher_steps").to_pylist() == [None, 10]


def test_clog_summaries_are_shown_where_trials_reported_them() -> None:
    from cl_sweeps.frontier.report import report_selection

    def trials(final: dict[str, float]):
        records = [TrialRecord(f"t{seed}", "k", seed, "COMPLETED",
                               params={"strategy.name": "lora"},
                               final={"train_tflops": 1.0, "fid_final": 40.0 + seed, **final},
                               tasks_done=1) for seed in (0, 1)]
        return compute_frontier(SweepSource(records)).trials

    older = trials({})
    assert report_selection(older)[0] == ("fid_final", "kld", "forgetting", "train_tflops")
    newer = trials({"aiq": 30.0, "afq": 41.0, "fr": 2.5})
    metrics, select_by = report_selection(newer)
    assert metrics[-3:] == ("aiq", "afq", "fr") and select_by == "fid_final"
    text = report_markdown(report_table(newer, metrics, select_by), metrics, select_by)
    assert "| train TFLOPs | aiq | afq | fr |" in text
    assert "| lora | – | 2 | 40.5 ± 0.7071 | – | – | 1 ± 0 | 30 ± 0 | 41 ± 0 | 2.5 ± 0 |" in text
