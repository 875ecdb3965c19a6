"""Frontier plots and output files: written, non-empty, with axis labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_frontier_fakes import write_sweep_dir

from cl_sweeps.frontier import Frontier, compute_frontier, read_sweep_dir, write_frontier_outputs
from cl_sweeps.frontier.plots import (
    frontier_figure,
    frontier_plotly,
    per_task_figure,
    points_of,
    step_line,
)
from cl_sweeps.records import SweepSource, TrialRecord


@pytest.fixture(scope="module")
def frontier(tmp_path_factory: pytest.TempPathFactory) -> Frontier:
    return compute_frontier(read_sweep_dir(write_sweep_dir(tmp_path_factory.mktemp("p") / "s")))


def test_frontier_figure_axes(frontier: Frontier) -> None:
    ax = frontier_figure(frontier).axes[0]
    assert ax.get_xlabel().startswith("training compute") and ax.get_xscale() == "log"
    assert ax.get_ylabel().startswith("FID")
    legend = {t.get_text() for t in ax.get_legend().get_texts()}
    assert {"naive", "er", "cumulative", "generative_distillation", "frontier"} <= legend
    labels = {t.get_text() for t in ax.texts}
    assert {"k=1", "k=2", "k=10"} <= labels  # replay ratio is 1 throughout: not labelled


def test_step_line_runs_through_the_frontier_cheapest_first(frontier: Frontier) -> None:
    xs, ys = step_line(points_of(frontier))
    assert xs == [1.0, 1.5, 2.5, 3.0, 5.0]  # last step extended to the largest compute
    assert ys == [82.0, 51.0, 30.0, 20.5, 20.5]


def test_per_task_figure_axes(frontier: Frontier) -> None:
    ax = per_task_figure(frontier).axes[0]
    assert ax.get_xlabel().startswith("task") and ax.get_ylabel().startswith("fid after each task")
    assert len(ax.get_legend().get_texts()) == 4  # the four frontier configurations
    assert list(ax.get_xticks()) == [0, 1, 2]


def test_outputs_written_non_empty_with_labels(frontier: Frontier, tmp_path: Path) -> None:
    paths = write_frontier_outputs(frontier, tmp_path)
    assert set(paths) == {"trials", "frontier", "summary", "png", "per_task_png", "html"}
    for path in paths.values():
        assert path.stat().st_size > 0, path
    for key in ("png", "per_task_png"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = paths["html"].read_text()
    assert "training compute [TFLOPs" in html and "FID after the last task" in html
    assert "plotly" in html and len(html) > 1_000_000  # plotly.js embedded: works offline
    summary = json.loads(paths["summary"].read_text())
    assert summary["excluded"]["failed"] == 1 and len(summary["pareto_config_keys"]) == 4
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporaries


def test_plotly_figure_axes(frontier: Frontier) -> None:
    fig = frontier_plotly(frontier)
    assert fig.layout.xaxis.type == "log"
    assert fig.layout.xaxis.title.text.startswith("training compute")
    assert fig.layout.yaxis.title.text.startswith("FID")


def test_empty_frontier_still_plots(tmp_path: Path) -> None:
    empty = compute_frontier(SweepSource([]))
    paths = write_frontier_outputs(empty, tmp_path)
    assert all(p.stat().st_size > 0 for p in paths.values())
    assert frontier_figure(empty).axes[0].get_xlabel().startswith("training compute")


def test_sweep_end_summary_writes_outputs_and_returns_text(tmp_path: Path) -> None:
    from cl_sweeps.frontier import sweep_end_summary

    root = write_sweep_dir(tmp_path / "sweep")
    text = sweep_end_summary(root)
    assert text.startswith("4 of 8 configurations") and "frontier files:" in text
    assert (root / "frontier" / "frontier.png").stat().st_size > 0
    assert sweep_end_summary(tmp_path / "empty").startswith("no trials")


def test_labels_name_the_replay_ratio_when_the_sweep_varies_it() -> None:

    records = [
        TrialRecord(f"t{i}", f"c{i}", 0, "COMPLETED",
                    params={"strategy.name": "er", "strategy.replay_ratio": ratio},
                    final={"train_tflops": 1.0 + i, "fid_final": 9.0 - i}, tasks_done=1)
        for i, ratio in enumerate([0.5, 1.0])
    ]
    labels = [p.label for p in points_of(compute_frontier(SweepSource(records)))]
    assert labels == ["r=0.5", "r=1"]
