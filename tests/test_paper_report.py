"""`cl-sweeps report --paper`: one row per (strategy, teacher steps, λ), mean ± SEM, three formats
and per-task FID curves (on the hand-made sweep; tests/test_sweep_frontier.py runs it on a real
sweep's output)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest
from test_frontier_fakes import GD, GR, write_sweep_dir

from cl_sweeps.cli import main
from cl_sweeps.frontier import compute_frontier, read_sweep_dir
from cl_sweeps.frontier.paper import fid_curves, paper_latex, paper_markdown, paper_table


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory):
    root = write_sweep_dir(tmp_path_factory.mktemp("p") / "sweep")
    trials = compute_frontier(read_sweep_dir(root)).trials
    return root, trials, paper_table(trials)


def test_one_row_per_strategy_teacher_steps_and_lambda(swept) -> None:
    _, _, table = swept
    keys = list(zip(*(table.column(c).to_pylist() for c in ("strategy", "teacher_steps",
                                                              "lambd"))))
    # both GD λ at k=2 are rows (the old report kept only the best); naive reads neither knob
    assert keys == [("naive", None, None), ("cumulative", None, None), ("er", None, None),
                    (GR, 1, 1.0), (GR, 2, 1.0), (GD, 2, 0.75), (GD, 2, 1.5), (GD, 10, 0.75)]


def test_values_are_mean_and_the_papers_sem(swept) -> None:
    _, _, table = swept
    rows = {(r["strategy"], r["teacher_steps"], r["lambd"]): r for r in table.to_pylist()}
    naive = rows[("naive", None, None)]
    assert naive["n"] == 3 and naive["fid_final_mean"] == 82.0
    assert naive["fid_final_sem"] == pytest.approx(np.std([80, 82, 84]) / math.sqrt(3))
    gd = rows[(GD, 2, 0.75)]
    assert gd["fid_final_sem"] == pytest.approx(np.std([20.0, 40.0]) / math.sqrt(2))  # = 7.07
    assert rows[("cumulative", None, None)]["n"] == 2  # complete trials only
    assert rows[(GR, 1, 1.0)]["fid_final_mean"] == math.inf  # a diverged seed is shown


def test_markdown_bolds_the_best_and_says_what_the_spread_is(swept) -> None:
    _, _, table = swept
    text = paper_markdown(table)
    lines = text.splitlines()
    assert lines[0] == "| strategy | teacher steps | λ | n | FID | KLD | train TFLOPs |"
    cumulative = next(line for line in lines if line.startswith("| cumulative |"))
    assert "| **20.5 ± 0.3536** | **0.055 ± 0.003536** |" in cumulative  # lowest FID and KLD
    naive = next(line for line in lines if line.startswith("| naive |"))
    assert naive.endswith("| **1 ± 0** |")  # the cheapest
    gd = next(line for line in lines if line.startswith(f"| {GD} | 2 | 0.75 |"))
    assert "| 30 ± 7.071 |" in gd and "**" not in gd
    assert "mean ± SEM over seeds (n = 2..3); SEM = std (ddof 0) / √n" in text


def test_latex_is_a_tabular_with_bold_best(swept) -> None:
    _, _, table = swept
    tex = paper_latex(table)
    assert tex.startswith(r"\begin{tabular}{lrrrrrr}") and r"\end{tabular}" in tex
    assert r"\textbf{20.5 $\pm$ 0.3536}" in tex and r"generative\_distillation" in tex
    assert tex.count(r"\\") == 1 + table.num_rows  # header and one line per row


def test_fid_curves_have_a_sem_band_per_row(swept) -> None:
    _, trials, table = swept
    fig = fid_curves(trials, table)
    ax = fig.axes[0]
    assert len(ax.lines) == table.num_rows and len(ax.collections) == table.num_rows
    assert "bands: ± = SEM = std (ddof 0) / √n over seeds, n = 2..3" in ax.get_title()
    naive = ax.lines[0]
    assert list(naive.get_xdata()) == [0, 1, 2]
    # tasks 0 and 1: 100 + 10 t + seed over seeds 0, 1, 2 -> mean 101 + 10 t
    assert list(naive.get_ydata())[:2] == pytest.approx([101.0, 111.0])


def test_cli_writes_the_three_formats_and_the_plot(swept, tmp_path: Path, capsys) -> None:
    root, _, table = swept
    assert main(["report", "--paper", "--sweep-dir", str(root), "--out", str(tmp_path),
                 "--no-log"]) == 0
    printed = capsys.readouterr().out
    assert "| strategy | teacher steps | λ | n |" in printed
    for name in ("paper.md", "paper.csv", "paper.tex", "paper_fid_per_task.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    csv = pacsv.read_csv(tmp_path / "paper.csv")
    assert csv.column("fid_final_sem").to_pylist()[0] == pytest.approx(
        table.column("fid_final_sem").to_pylist()[0])


def test_class_histograms_average_the_seeds_of_each_row(tmp_path: Path) -> None:
    from cl_sweeps.frontier.paper import class_histograms
    from cl_sweeps.results import write_class_histograms

    root = write_sweep_dir(tmp_path / "sweep")
    trials = compute_frontier(read_sweep_dir(root)).trials
    table = paper_table(trials)
    last = 2  # the fake sweep's 3 tasks
    true = [0.1] * 10
    for trial_id, generated in (("t00", [1.0] + [0.0] * 9), ("t01", [0.0, 1.0] + [0.0] * 8)):
        write_class_histograms(root / "trials" / trial_id / "samples", last, true, generated)
    assert class_histograms(trials, table.slice(1), root / "trials") is None  # none wrote any
    fig = class_histograms(trials, table, root / "trials")
    ax = fig.axes[0]  # naive: the only row with histograms
    assert len(fig.axes) == 1 and "naive (mean of n=2)" in ax.get_title()
    true_bars, generated_bars = ax.containers
    assert [b.get_height() for b in generated_bars][:3] == pytest.approx([0.5, 0.5, 0.0])
    assert [b.get_height() for b in true_bars] == pytest.approx(true)


def test_the_classifier_accuracy_is_a_column_and_its_best_is_the_highest(tmp_path: Path) -> None:
    from test_frontier_fakes import FakeTrial

    naive, gd = {"strategy.name": "naive"}, {"strategy.name": GD, "strategy.teacher_steps": 2,
                                             "strategy.lambd": 0.75}
    trials = [FakeTrial(f"a{i}", params, seed, 1.0, 50.0, extra={"accuracy_final": acc})
              for i, (params, seed, acc) in enumerate(
                  [(naive, 0, 0.2), (naive, 1, 0.3), (gd, 0, 0.8), (gd, 1, 0.6)])]
    table = paper_table(compute_frontier(read_sweep_dir(write_sweep_dir(tmp_path, trials))).trials)
    lines = paper_markdown(table).splitlines()
    assert lines[0].endswith("| FID | KLD | accuracy | train TFLOPs |")
    assert "| **0.7 ± 0.07071** |" in lines[3] and "| 0.25 ± 0.03536 |" in lines[2]


def test_every_plus_minus_says_what_it_is(swept) -> None:
    """Frontier table and plots: ± is the std (ddof 1), with the seeds behind it."""
    from cl_sweeps.frontier import frontier_table_text
    from cl_sweeps.frontier.plots import frontier_figure, per_task_figure

    root, _, _ = swept
    frontier = compute_frontier(read_sweep_dir(root))

    def label(ns: list[int]) -> str:
        low, high = min(ns), max(ns)
        return f"± = std (ddof 1) over seeds, n = {low}" + (f"..{high}" if high > low else "")

    every = frontier.configs.column("n").to_pylist()
    assert label(every) == "± = std (ddof 1) over seeds, n = 1..3"  # one config kept one seed
    assert label(every) in frontier_table_text(frontier, all_configs=True)
    assert f"error bars: {label(every)}" in frontier_figure(frontier).axes[0].get_title()
    front = frontier.pareto_configs().column("n").to_pylist()
    assert f"error bars: {label(front)}" in per_task_figure(frontier).axes[0].get_title()


def test_configurations_differing_in_another_key_are_rows_of_their_own(tmp_path: Path) -> None:
    from test_frontier_fakes import FakeTrial

    def gr(ratio: float) -> dict:
        return {"strategy.name": GR, "strategy.teacher_steps": 2, "strategy.lambd": 1.0,
                "strategy.replay_ratio": ratio}

    trials = [FakeTrial(f"b{i}", gr(ratio), seed, 1.0, fid)
              for i, (ratio, seed, fid) in enumerate(
                  [(0.25, 0, 40.0), (0.25, 1, 42.0), (0.5, 0, 30.0), (0.5, 1, 34.0)])]
    table = paper_table(compute_frontier(read_sweep_dir(write_sweep_dir(tmp_path, trials))).trials)
    assert table.column("settings").to_pylist() == ["replay_ratio=0.25", "replay_ratio=0.5"]
    assert table.column("fid_final_mean").to_pylist() == [41.0, 32.0]
    lines = paper_markdown(table).splitlines()
    assert lines[0].startswith("| strategy | teacher steps | λ | settings | n | FID |")
    assert lines[3].startswith(f"| {GR} | 2 | 1 | replay_ratio=0.5 | 2 | **32 ± 1.414** |")


def test_a_key_set_per_strategy_names_no_row(tmp_path: Path) -> None:
    """classifier_replay.mode follows strategy.name in the paper files: no settings column."""
    from test_frontier_fakes import FakeTrial

    trials = [FakeTrial(f"c{i}", {"strategy.name": name, "classifier_replay.mode": mode}, seed,
                        1.0, 30.0)
              for i, (name, mode, seed) in enumerate(
                  [("naive", "naive", 0), ("naive", "naive", 1),
                   ("cumulative", "cumulative", 0), ("cumulative", "cumulative", 1)])]
    table = paper_table(compute_frontier(read_sweep_dir(write_sweep_dir(tmp_path, trials))).trials)
    assert table.column("settings").to_pylist() == ["", ""]
    assert "settings" not in paper_markdown(table).splitlines()[0]
