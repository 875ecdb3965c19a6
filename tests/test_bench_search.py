"""`cl-sweeps bench-search` on hand-made grid sweeps of five configurations: every searcher runs,
the grid reaches its own hypervolume, MO-ASHA stops the configuration that is dominated at its
rung, and the table, plot and JSON are written; several seeds replay as their means at the cost of
all; a warm start from a cheaper grid of the same space tells the model-based searchers first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
from helpers import tiny_sweep

from cl_sweeps import records
from cl_sweeps.cli import main
from cl_sweeps.constraints import parse_constraint
from cl_sweeps.frontier.hypervolume import hypervolume, reference_point
from cl_sweeps.records import SEED_PARAM
from cl_sweeps.sweep.bench_search import load_table, run_bench_search
from cl_sweeps.sweep.bench_warm import load_source, prior_trials, tell_prior
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


def write_grid(
    root: Path, seeds: tuple[int, ...] = (0,), cost: float = 1.0, fid_scale: float = 1.0,
    **base: object,
) -> Path:
    """RESULTS as a finished grid sweep; seed s adds 2 s to every FID; `cost` scales the TFLOPs
    and `fid_scale` the FIDs (a cheaper, worse grid); `base` sets dotted base keys."""
    sweep = tiny_sweep("bench", root, num_samples=None, search_algorithm="grid",
                       seeds=list(seeds))
    sweep["search"] = {"strategy.name": ["naive", "er", "generative_distillation"],
                       "strategy.replay_ratio": [0.5, 1.0]}
    for dotted, value in base.items():
        section, key = dotted.split("__")
        sweep["base"][section][key] = value
    parsed = parse_sweep_config(sweep)
    records.write_yaml(records.SweepLayout(root).resolved, parsed.model_dump(mode="json"))
    space = SearchSpace(parsed)
    for index, point in enumerate(space.grid_points()):
        for seed in seeds:
            params = {**space.to_fields(point), SEED_PARAM: seed}
            name = params["strategy.name"]
            directory = root / "trials" / f"t{index}_{seed}"
            records.write_params(directory, f"t{index}_{seed}", params, 3)
            results = RESULTS[(name, params.get("strategy.replay_ratio"))]
            for task, (fid, tflops) in enumerate(results):
                row = {"task": task, "fid": fid * fid_scale + 2.0 * seed,
                       "train_tflops": tflops * cost}
                if task == 2:
                    row["fid_final"] = row["fid"]
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


def test_several_seeds_replay_their_means_at_the_cost_of_all(tmp_path: Path, capsys) -> None:
    root = write_grid(tmp_path / "grid", seeds=(0, 1))
    table = load_table(root)
    naive = table.order[0]
    assert table.seeds == 2 and table.fields[naive] == {"strategy.name": "naive"}
    assert table.final(naive) == (3.0, 61.0)  # the seeds' means: FID 60 and 62, 3 TFLOPs each
    assert table.spent(naive) == 6.0 and table.spent(naive, 0) == 2.0  # both seeds' TFLOPs
    assert table.total() == 50.0

    out = tmp_path / "bench"
    assert main(["bench-search", "--grid-dir", str(root), "--repeats", "1", "--out",
                 str(out)]) == 0
    saved = json.loads((out / "bench_search.json").read_text())
    assert saved["seeds"] == 2 and saved["grid_train_tflops"] == 50.0

    (root / "trials" / "t0_1" / "status.json").unlink()  # naive's seed 1 did not finish
    assert main(["bench-search", "--grid-dir", str(root)]) == 2
    err = capsys.readouterr().err
    assert "has no trial for {'strategy.name': 'naive'} seed 1" in err
    assert "Traceback" not in err


def test_a_warm_start_tells_the_model_based_searchers_first(tmp_path: Path, capsys) -> None:
    root = write_grid(tmp_path / "grid")
    cheap = write_grid(tmp_path / "cheap", cost=0.3, fid_scale=1.5, seeds=(5,),
                       train__iterations_per_task=15)
    grid = load_table(root)
    grid.constraints = (parse_constraint("fid_final<=30"),)
    source = load_source(grid, cheap)
    source.constraints = grid.constraints
    told = prior_trials(source, SearchSpace(grid.sweep), ["fid_final", "train_tflops"])
    assert len(told) == 5
    naive = {t.params["strategy.name"]: t for t in told}["naive"]
    assert naive.values == pytest.approx([60 * 1.5 + 10.0, 0.9])  # the source's own values
    assert naive.system_attrs["constraints:fid_final<=30"] == pytest.approx(100.0 - 30)
    nsga2 = optuna.create_study(directions=["minimize"] * 2,
                                sampler=optuna.samplers.NSGAIISampler(population_size=4, seed=0))
    assert tell_prior(nsga2, source, SearchSpace(grid.sweep), ["fid_final", "train_tflops"]) == 5
    SearchSpace(grid.sweep)(nsga2.ask())  # bred from the source: generation 0 is complete
    assert nsga2.trials[-1].system_attrs["NSGAIISampler:generation"] == 1

    result = run_bench_search(root, repeats=2, warm_start_dir=cheap)
    rows = {row["method"]: row for row in result["summary"]}
    assert list(rows)[-3:] == ["tpe+warm", "nsga2+warm", "moasha_tpe+warm"]
    assert rows["tpe+warm"]["runs"] == 2 and rows["tpe"]["runs"] == 2
    assert result["warm_start"] == {"dir": str(cheap), "configurations": 5,
                                    "per_task": "15 iterations", "train_tflops": 7.5}
    for curve in result["curves"]:  # only the grid's TFLOPs count in a warm row
        assert curve["spent"][-1] <= result["grid_train_tflops"] * 1.01
        assert max(curve["volume"]) <= result["grid_hypervolume"] * (1 + 1e-9)

    out = tmp_path / "bench"
    assert main(["bench-search", "--grid-dir", str(root), "--repeats", "1", "--out", str(out),
                 "--warm-start-dir", str(cheap)]) == 0
    table = (out / "bench_search.md").read_text()
    assert "| tpe+warm |" in table and "7.5 training TFLOPs (30% of the grid's)" in table
    assert (out / "bench_search.png").stat().st_size > 0


@pytest.mark.parametrize(("change", "named"), [
    ({"train__lr": 0.5}, "base.train.lr = 0.5, the grid has 0.0002"),
    ({"strategy__teacher_steps": 3}, "base.strategy.teacher_steps"),
])
def test_a_warm_start_source_of_another_base_is_refused(
    tmp_path: Path, capsys, change: dict, named: str,
) -> None:
    root = write_grid(tmp_path / "grid")
    other = write_grid(tmp_path / "other", **change)
    assert main(["bench-search", "--grid-dir", str(root), "--warm-start-dir", str(other)]) == 2
    err = capsys.readouterr().err
    assert named in err and "allowed to differ: train.iterations_per_task" in err
    assert "Traceback" not in err


def test_a_warm_start_source_of_another_space_is_refused(tmp_path: Path, capsys) -> None:
    root = write_grid(tmp_path / "grid")
    other = tmp_path / "other"
    write_grid(other)
    resolved = records.read_yaml_mapping(records.SweepLayout(other).resolved)
    resolved["search"]["strategy.replay_ratio"]["values"] = [0.5]
    records.write_yaml(records.SweepLayout(other).resolved, resolved)
    assert main(["bench-search", "--grid-dir", str(root), "--warm-start-dir", str(other)]) == 2
    assert "searched search.strategy.replay_ratio.values = [0.5]" in capsys.readouterr().err
    assert main(["bench-search", "--grid-dir", str(root), "--warm-start-dir",
                 str(tmp_path / "none")]) == 2
    assert "--warm-start-dir" in capsys.readouterr().err
