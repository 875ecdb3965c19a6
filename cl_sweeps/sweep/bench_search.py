"""How fast does a search find the frontier? Searchers replayed on a finished grid sweep.

`cl-sweeps bench-search --grid-dir DIR` takes a grid sweep of a finite space (e.g.
search_spaces/bench_digits.yaml) as a table of every configuration's per-task results (seed means
when it ran several seeds, at the cost of all of them: sweep/bench_table.py), and runs
each searcher on it: grid (in the sweep's order: the reference), random, multi-objective TPE,
NSGA-II, and MO-ASHA + TPE. A searcher proposes configurations with the sweep's own Optuna
samplers (sweep/space.py) and is told the outcome the grid measured for that configuration; MO-ASHA
(sweep/moasha.py) sees the configuration's per-task results one task at a time and may stop it,
in which case only the training TFLOPs up to that task count as spent. Trials are deterministic
on CPU (the prefix tests check bit-identity), so a configuration proposed by any searcher would
have produced exactly the grid's numbers: replaying is measuring, at the price of one grid.
Trials run one after another (one worker), and a configuration proposed again costs nothing.

After each trial, the hypervolume of the finished configurations' (train_tflops, fid_final)
front is taken against one reference point for all searchers (the rule of
frontier/hypervolume.py over every configuration of the grid). Output: for each searcher, the
training TFLOPs spent until it first reaches 90/95/99 % of the grid's final hypervolume (median
over repeats with different sampler seeds), the fraction reached with a third of the grid's
TFLOPs, a plot of hypervolume versus TFLOPs spent, and everything as JSON.

With constraints (`--constraint train_tflops<=3`, cl_sweeps/constraints.py), a configuration
is feasible when its last task's values keep them; only feasible ones add to the hypervolume
(and fix its reference point), and TPE, NSGA-II and MO-ASHA+TPE are told the constraint values
as a constrained sweep tells them (random and the grid order ignore them).

With `--warm-start-dir` (a grid of the same space at fewer iterations per task,
sweep/bench_warm.py), TPE, NSGA-II and MO-ASHA+TPE run a second time, as `tpe+warm`, ...: told the
source's results as prior trials first. Their rows count only what they spend on the grid; the
source's own training TFLOPs are stated apart (paid once, whatever the searcher).
"""

from __future__ import annotations

import logging
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from cl_sweeps import records
from cl_sweeps.constraints import Constraint, constraint_values
from cl_sweeps.frontier.hypervolume import hypervolume, reference_point
from cl_sweeps.records import config_key
from cl_sweeps.sweep.bench_table import OBJECTIVES, Table, load_table
from cl_sweeps.sweep.bench_warm import load_source, tell_prior
from cl_sweeps.sweep.moasha import MOASHA, rung_levels
from cl_sweeps.sweep.schema import SearchAlgorithmConfig, SweepConfig
from cl_sweeps.sweep.space import SearchSpace, make_sampler

__all__ = ["Table", "format_table", "load_table", "run_bench_search", "write_outputs"]

log = logging.getLogger(__name__)

PER_TASK = {"train_tflops": "train_tflops", "fid_final": "fid"}  # what MO-ASHA compares
LEVELS = (0.90, 0.95, 0.99)
METHODS = ("grid", "random", "tpe", "nsga2", "moasha_tpe")
MODEL_BASED = ("tpe", "nsga2", "moasha_tpe")  # the searchers a warm start can tell
WARM = "+warm"  # suffix of a warm-started searcher's method name
MAX_ASKS_FACTOR = 6  # a searcher stops after this many proposals per grid configuration


@dataclass
class Curve:
    """One searcher's run: training TFLOPs spent and hypervolume after each trial."""

    method: str
    seed: int | None
    spent: list[float] = field(default_factory=list)
    volume: list[float] = field(default_factory=list)
    trials: int = 0
    stopped: int = 0  # trials MO-ASHA stopped early

    def to_reach(self, target: float) -> float | None:
        for spent, volume in zip(self.spent, self.volume):
            if volume >= target:
                return spent
        return None

    def volume_at(self, budget: float) -> float:
        reached = [v for s, v in zip(self.spent, self.volume) if s <= budget]
        return max(reached, default=0.0)


class Replay:
    """Runs one searcher against the table, recording its hypervolume curve."""

    def __init__(self, table: Table, reference: np.ndarray, method: str, seed: int | None):
        self.table = table
        self.reference = reference
        self.curve = Curve(method, seed)
        self.done: dict[str, tuple[float, float] | None] = {}  # key -> final values or pruned
        self.total = 0.0

    def record(self, key: str, spent: float, values: tuple[float, float] | None) -> None:
        self.done[key] = values
        self.total += spent
        points = np.array([v for k, v in self.done.items()
                           if v is not None and self.table.feasible(k)] or np.zeros((0, 2)))
        self.curve.spent.append(self.total)
        self.curve.volume.append(hypervolume(points, self.reference) if len(points) else 0.0)
        self.curve.trials += 1

    def finished(self) -> bool:
        return len(self.done) == len(self.table.order)


def replay_grid(table: Table, reference: np.ndarray) -> Curve:
    replay = Replay(table, reference, "grid", None)
    for key in table.order:
        replay.record(key, table.spent(key), table.final(key))
    return replay.curve


def replay_optuna(
    table: Table, reference: np.ndarray, method: str, seed: int, budget: float,
    warm: Table | None = None,
) -> Curve:
    """random / tpe / nsga2 / moasha_tpe with sampler seed `seed`, until every configuration
    ran, `budget` TFLOPs were spent, or MAX_ASKS_FACTOR proposals per configuration; told the
    `warm` table's results first (method name with WARM), if given."""
    sweep = table.sweep
    sampler_name = {"random": "auto", "tpe": "tpe", "nsga2": "nsga2", "moasha_tpe": "tpe"}[method]
    algorithm = SearchAlgorithmConfig(
        name="random" if method == "random" else "optuna", sampler=sampler_name, seed=seed,
        population_size=max(4, len(table.order) // 4) if method == "nsga2" else None,
    )
    sampler = make_sampler(sweep.model_copy(update={"search_algorithm": algorithm}))
    directions = ["minimize" if o.mode == "min" else "maximize" for o in sweep.objectives]
    study = optuna.create_study(directions=directions, sampler=sampler)
    space = SearchSpace(sweep)
    if warm is not None:
        tell_prior(study, warm, space, [o.metric for o in sweep.objectives])
    scheduler = _moasha(table) if method == "moasha_tpe" else None
    replay = Replay(table, reference, method + (WARM if warm is not None else ""), seed)
    for ask in range(MAX_ASKS_FACTOR * len(table.order)):
        if replay.finished() or replay.total >= budget:
            break
        trial = study.ask()
        space(trial)
        key = config_key(space.to_fields(trial.params))
        if key in replay.done:  # a repeat: its known outcome, for free
            _tell(study, trial, replay.done[key], sweep, table, key)
            continue
        spent, values = _run(table, key, scheduler, f"t{ask}")
        if values is None and table.final(key) is not None:
            replay.curve.stopped += 1
        replay.record(key, spent, values)
        _tell(study, trial, values, sweep, table, key)
    return replay.curve


def _moasha(table: Table) -> MOASHA:
    scheduler = table.sweep.scheduler
    grace = scheduler.grace_period if scheduler else 1
    factor = scheduler.reduction_factor if scheduler else 2.0
    metrics = [PER_TASK[o] for o in OBJECTIVES]
    return MOASHA(metrics, ["min", "min"], rung_levels(grace, factor, table.tasks - 2), factor)


def _run(
    table: Table, key: str, scheduler: MOASHA | None, trial_id: str
) -> tuple[float, tuple[float, float] | None]:
    """(TFLOPs spent, final values or None if stopped/failed) of one trial of `key`."""
    if scheduler is None:
        return table.spent(key), table.final(key)
    for row in table.rows.get(key) or []:
        values = {m: float(row[m]) for m in scheduler.metrics}
        if not scheduler.on_result(trial_id, key, int(row["task"]), values):
            return table.spent(key, int(row["task"])), None
    return table.spent(key), table.final(key)


def _tell(
    study: optuna.Study, trial: optuna.Trial, values: Any, sweep: SweepConfig, table: Table,
    key: str,
) -> None:
    if values is None:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return
    for name, value in constraint_values(list(table.constraints), table.last(key)).items():
        trial.set_constraint(name, value)
    by_metric = dict(zip(OBJECTIVES, values))
    study.tell(trial, [by_metric[o.metric] for o in sweep.objectives])


def run_bench_search(
    grid_dir: Path, repeats: int = 5, extra_dirs: Sequence[Path] = (),
    constraints: Sequence[Constraint] = (), warm_start_dir: Path | None = None,
) -> dict[str, Any]:
    """Every method's curves (random/TPE/NSGA-II/MO-ASHA+TPE `repeats` times) and the table;
    with `constraints`, over the feasible configurations; with `warm_start_dir`, the
    model-based searchers again, warm-started from it (see the module doc)."""
    table = load_table(grid_dir, extra_dirs)
    table.constraints = tuple(constraints)
    warm = load_source(table, warm_start_dir) if warm_start_dir is not None else None
    if warm is not None:
        warm.constraints = table.constraints
    if {o.metric for o in table.sweep.objectives} != set(OBJECTIVES):
        raise ValueError(f"bench-search needs the objectives {OBJECTIVES}")
    finals = [table.final(k) for k in table.order if table.feasible(k)]
    if not any(v is not None for v in finals):
        raise ValueError("no configuration of the grid keeps the constraints "
                         f"{', '.join(c.describe() for c in constraints)}")
    points = np.array([v for v in finals if v is not None])
    reference = reference_point(points)
    grid = replay_grid(table, reference)
    target = grid.volume[-1]
    budget = grid.spent[-1]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    curves = [grid]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for method in METHODS[1:]:
            for seed in range(repeats):
                curves.append(replay_optuna(table, reference, method, seed, budget))
        for method in MODEL_BASED if warm is not None else ():
            for seed in range(repeats):
                curves.append(replay_optuna(table, reference, method, seed, budget, warm))
    methods = list(dict.fromkeys(curve.method for curve in curves))
    return {
        "grid_dir": str(grid_dir),
        "configurations": len(table.order),
        "seeds": table.seeds,
        "warm_start": None if warm is None else {
            "dir": str(warm_start_dir), "configurations": len(warm.order),
            "per_task": fidelity(warm.sweep),
            "train_tflops": warm.total(),
        },
        "constraints": [c.describe() for c in constraints],
        "feasible_configurations": sum(table.feasible(k) for k in table.order),
        "reference": reference.tolist(),
        "grid_hypervolume": target,
        "grid_train_tflops": budget,
        "repeats": repeats,
        "summary": summarise(curves, target, budget, methods),
        "curves": [curve.__dict__ for curve in curves],
    }


def fidelity(sweep: SweepConfig) -> str:
    """'15 iterations' or '2 epochs': how long a sweep trained each task."""
    train = sweep.base.train
    if train.iterations_per_task is not None:
        return f"{train.iterations_per_task} iterations"
    return f"{train.epochs_per_task:g} epochs"


def summarise(
    curves: list[Curve], target: float, budget: float, methods: Sequence[str] = METHODS
) -> list[dict[str, Any]]:
    """Per method: median TFLOPs to each level (over the repeats that reached it) and the
    median fraction of the grid's hypervolume reached with a third of its TFLOPs."""
    rows = []
    for method in methods:
        mine = [c for c in curves if c.method == method]
        row: dict[str, Any] = {"method": method, "runs": len(mine)}
        for level in LEVELS:
            reached = [c.to_reach(level * target) for c in mine]
            hits = [r for r in reached if r is not None]
            row[f"tflops_to_{round(level * 100)}"] = statistics.median(hits) if hits else None
            row[f"runs_reaching_{round(level * 100)}"] = len(hits)
        row["hv_fraction_at_third"] = statistics.median(
            c.volume_at(budget / 3) / target for c in mine
        )
        row["trials"] = statistics.median(c.trials for c in mine)
        row["stopped"] = statistics.median(c.stopped for c in mine)
        rows.append(row)
    return rows


def format_table(result: dict[str, Any]) -> str:
    """The Markdown table for the README."""
    budget = result["grid_train_tflops"]
    header = (
        "| searcher | TFLOPs to 90 % HV | to 95 % | to 99 % | HV at 1/3 of grid TFLOPs "
        "| trials | stopped early |"
    )
    lines = [header, "|---|---|---|---|---|---|---|"]
    for row in result["summary"]:
        cells = [row["method"]]
        for level in (90, 95, 99):
            value, hits = row[f"tflops_to_{level}"], row[f"runs_reaching_{level}"]
            if value is None:
                cells.append(f"not reached (0/{row['runs']})")
            else:
                share = f"{value / budget:.0%} of grid"
                runs = f", {hits}/{row['runs']} runs" if row["runs"] > 1 else ""
                cells.append(f"{value:.3g} ({share}{runs})")
        cells.append(f"{row['hv_fraction_at_third']:.1%}")
        cells.append(f"{row['trials']:g}")
        cells.append(f"{row['stopped']:g}")
        lines.append("| " + " | ".join(cells) + " |")
    warm = result.get("warm_start")
    if warm:
        lines.append(
            f"\n`+warm`: told first the {warm['configurations']} configurations of "
            f"{warm['dir']} ({warm['per_task']} per task); that sweep's own "
            f"{warm['train_tflops']:.3g} training TFLOPs ({warm['train_tflops'] / budget:.0%} of "
            "the grid's) are paid once and not counted in the rows.")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """Hypervolume (fraction of the grid's) versus training TFLOPs spent, every run; with a
    warm start, the warm-started searchers in a second panel beside the cold ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [row["method"] for row in result["summary"]]
    warm = result.get("warm_start")
    panels = [[m for m in methods if not m.endswith(WARM)]]
    if warm:
        panels.append(["grid", *(m for m in methods if m.endswith(WARM))])
    figure, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.2), sharey=True,
                                squeeze=False)
    for axis, shown in zip(axes[0], panels):
        _draw(axis, result, shown)
    seeds = result.get("seeds", 1)
    axes[0][0].set_ylabel("hypervolume / grid's final hypervolume")
    axes[0][0].set_title(
        f"{result['configurations']} configurations, {seeds} seed{'s' if seeds > 1 else ''} "
        f"({result['repeats']} sampler seeds per searcher)", fontsize=10)
    if warm:
        axes[0][1].set_title(f"warm-started: told the grid at {warm['per_task']} per task first"
                             f"\n(its {warm['train_tflops']:.3g} training TFLOPs not counted)",
                             fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def _draw(axis: Any, result: dict[str, Any], methods: list[str]) -> None:
    colours = dict(zip(METHODS, ("black", "tab:gray", "tab:blue", "tab:green", "tab:red")))
    target = result["grid_hypervolume"]
    for method in methods:
        mine = [c for c in result["curves"] if c["method"] == method]
        for index, curve in enumerate(mine):
            axis.step(
                [0.0, *curve["spent"]], [0.0, *(v / target for v in curve["volume"])],
                where="post", color=colours[method.removesuffix(WARM)],
                alpha=0.9 if method == "grid" else 0.45, linewidth=2 if method == "grid" else 1,
                linestyle="--" if method.endswith(WARM) else "-",
                label=method if index == 0 else None,
            )
    axis.axhline(0.95, color="tab:purple", linestyle=":", linewidth=1, label="95 % of grid HV")
    axis.axvline(result["grid_train_tflops"] / 3, color="tab:purple", linestyle="--",
                 linewidth=1, label="1/3 of grid TFLOPs")
    axis.set_xlabel("training TFLOPs spent by the search")
    axis.legend(loc="lower right", fontsize=8)


def write_outputs(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "bench_search.json",
        "table": out_dir / "bench_search.md",
        "plot": out_dir / "bench_search.png",
    }
    records.write_json(paths["json"], result)
    paths["table"].write_text(format_table(result) + "\n")
    plot(result, paths["plot"])
    return paths
