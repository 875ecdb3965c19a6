"""Smoke test of `cl-sweeps bench-search` on a hand-made grid sweep of five configurations:
every searcher runs, the grid reaches its own hypervolume, MO-ASHA stops the configuration that
is dominated at its rung, and the table, plot and JSON are written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_sweep

from cl_sweeps import records
from cl_sweeps.cli import main
from cl_sweeps.constraints import parse_constraint
from cl_sweeps.frontier.hypervolume import hypervolume, reference_point
from cl_sweeps.records import SEED_PARAM
from cl_sweeps.sweep.bench_search import load_table, run_bench_search
from cl_sweeps.sweep.schema import parse_sweep_config
from cl_sweeps.sweep.space import SearchSpace

# (strategy, replay_ratio) -> (fid, train_tflops) after each of the 3 tasks
RESULTS = {
    ("naive", None): [(40, 1.0), (50, 2.0), (60, 3.0)],
    ("er", 0.5): [(40, 1.0), (30, 2.5), (25, 4.0)],
    ("er", 1.0): [(40, 1.0), (28, 3.0), (20, 5.0)],
    ("generative_distillation", 0.5): [(40, 1.0), (45, 3.5), (55, 6.0)],  # dominated
    ("generative_distillation", 1.0): [(40, 1.0), (20, 4.0), (10, 7.0)],
}


def write_grid(root: Path) -> Path:
    sweep = tiny_sweep("bench", root, num_samples=None, search_algorithm="grid", seeds=[0])
    sweep["search"] = {"strategy.name": ["naive", "er", "generative_distillation"],
                       "strategy.replay_ratio": [0.5, 1.0]}
    parsed = parse_sweep_config(sweep)
    records.write_yaml(records.SweepLayout(root).resolved, parsed.model_dump(mode="json"))
    space = SearchSpace(parsed)
    for index, point in enumerate(space.grid_points()):
        params = {**space.to_fields(point), SEED_PARAM: 0}
        name = params["strategy.name"]
        directory = root / "trials" / f"t{index}"
        records.write_params(directory, f"t{index}", params, 3)
        for task, (fid, tflops) in enumerate(RESULTS[(name, params.get("strategy.replay_ratio"))]):
            row = {"task": task, "fid": float(fid), "train_tflops": tflops}
            if task == 2:
                row["fid_final"] = float(fid)
            records.record_task(directory, row)
        records.write_status(directory, "COMPLETED")
    return root


def test_bench_search_replays_every_searcher(tmp_path: Path, capsys) -> None:
    root = write_grid(tmp_path / "grid")
    assert len(load_table(root).order) == 5
    result = run_bench_search(root, repeats=2)
    rows = {row["method"]: row for row in result["summary"]}
    assert set(rows) == {"grid", "random", "tpe", "nsga2", "moasha_tpe"}
    assert rows["grid"]["tflops_to_99"] <= result["grid_train_tflops"] == 25.0
    assert rows["moasha_tpe"]["stopped"] >= 1  # GD at replay 0.5 is dominated at task 1
    for curve in result["curves"]:
        assert curve["spent"] == sorted(curve["spent"]) and max(curve["volume"]) <= (
            result["grid_hypervolume"] * (1 + 1e-9))

    assert main(["bench-search", "--grid-dir", str(root), "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "| searcher |" in out and "moasha_tpe" in out
    saved = json.loads((root / "bench_search" / "bench_search.json").read_text())
    assert saved["configurations"] == 5
    assert (root / "bench_search" / "bench_search.png").stat().st_size > 0


def test_bench_search_without_a_grid_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["bench-search", "--grid-dir", str(tmp_path)]) == 2
    assert "holds no sweep" in capsys.readouterr().err


def test_part_of_the_grid_from_another_sweep_of_the_same_base(tmp_path: Path) -> None:
    import shutil

    import pytest

    root = write_grid(tmp_path / "grid")
    extra = tmp_path / "extra"
    (extra / "trials").mkdir(parents=True)
    shutil.copy(root / "sweep_resolved.yaml", extra / "sweep_resolved.yaml")
    for directory in sorted((root / "trials").iterdir())[-2:]:  # the two GD trials
        shutil.move(str(directory), extra / "trials" / directory.name)
    with pytest.raises(ValueError, match="has no trial for"):
        load_table(root)
    assert len(load_table(root, [extra]).rows) == 5


def test_a_constrained_replay_counts_only_feasible_configurations(tmp_path: Path, capsys) -> None:
    root = write_grid(tmp_path / "grid")
    result = run_bench_search(root, repeats=1, constraints=[parse_constraint("train_tflops<=5")])
    feasible = np.array([(3.0, 60.0), (4.0, 25.0), (5.0, 20.0)])  # both GD points cost 6 and 7
    assert result["feasible_configurations"] == 3
    assert result["reference"] == pytest.approx(reference_point(feasible).tolist())
    assert result["grid_hypervolume"] == pytest.approx(
        hypervolume(feasible, reference_point(feasible)))
    for curve in result["curves"]:
        assert max(curve["volume"]) <= result["grid_hypervolume"] * (1 + 1e-9)
    rows = {row["method"]: row for row in result["summary"]}
    assert rows["grid"]["tflops_to_99"] == 12.0  # naive + both er: the GD points add nothing

    out = tmp_path / "bench"
    assert main(["bench-search", "--grid-dir", str(root), "--repeats", "1", "--out", str(out),
                 "--constraint", "train_tflops<=5"]) == 0
    assert "constraints train_tflops (max 5): 3 feasible configurations" in capsys.readouterr().out
    assert json.loads((out / "bench_search.json").read_text())["constraints"] == [
        "train_tflops (max 5)"]
    assert main(["bench-search", "--grid-dir", str(root), "--constraint", "tflops<5"]) == 2
    assert "--constraint: 'tflops<5' is not a constraint; allowed: METRIC<=NUMBER" in (
        capsys.readouterr().err)
