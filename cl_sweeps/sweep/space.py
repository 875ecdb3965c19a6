"""The search space of a sweep: how many trials it runs, Optuna's define-by-run, the sampler,
and the trial config each sampled point becomes.

Optuna parameter names are the search keys; trials receive trial-config keys (`field`). The
conditions, order and grid come from sweep/search_params.py; Optuna is imported only when a
search runs.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cl_sweeps.config import TrialConfig, num_tasks_of, parse_trial_config, set_dotted
from cl_sweeps.records import SEED_PARAM
from cl_sweeps.sweep.search_params import (
    condition_holds,
    conditions,
    grid,
    mapped_value,
    search_order,
)

if TYPE_CHECKING:
    import optuna

    from cl_sweeps.sweep.schema import SweepConfig


def num_configurations(sweep: SweepConfig) -> int:
    """Configurations to try: num_samples (default 10); for a grid, every grid point."""
    if not sweep.search:
        return 1
    if sweep.search_algorithm.name == "grid":
        return len(grid(sweep))
    return sweep.num_samples or 10


def num_trials(sweep: SweepConfig) -> int:
    """Trials the sweep runs: every configuration once per seed."""
    return num_configurations(sweep) * len(sweep.seed_list())


class SearchSpace:
    """Samples a point of the search space; picklable, so Tune can checkpoint the searcher."""

    def __init__(self, sweep: SweepConfig):
        self.sweep = sweep
        self.order = search_order(sweep)
        self.conditions = {key: conditions(sweep, key) for key in self.order}

    def __call__(self, trial: optuna.Trial) -> None:
        """Define-by-run for OptunaSearch: suggest every parameter whose conditions hold."""
        sampled: dict[str, Any] = {}
        for key in self.order:
            param = self.sweep.search[key]
            if condition_holds(self.conditions[key], sampled):
                sampled[key] = (
                    mapped_value(param, sampled) if param.type == "map"
                    else suggest(trial, key, param)
                )

    def to_fields(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """Optuna's sampled values (search key -> value) to the trial's fields (trial-config
        key -> value), mapped parameters filled in, in search order."""
        values: dict[str, Any] = {}
        for key in self.order:
            param = self.sweep.search[key]
            if param.type == "map":
                if condition_holds(self.conditions[key], values):
                    values[key] = mapped_value(param, values)
            elif key in sampled:
                values[key] = sampled[key]
        return {self.sweep.field_of(k): v for k, v in values.items()}

    def grid_points(self) -> list[dict[str, Any]]:
        """The grid to enqueue for search_algorithm: grid (sampled parameters only)."""
        mapped = {k for k, p in self.sweep.search.items() if p.type == "map"}
        return [{k: v for k, v in p.items() if k not in mapped} for p in grid(self.sweep)]

    def describe(self) -> dict[str, Any]:
        """The resolved search space, as written to search_space.json."""
        sweep = self.sweep
        parameters = {}
        for key in self.order:
            param = sweep.search[key]
            spec = param.model_dump(exclude={"when", "field"}, exclude_none=True)
            spec["field"] = sweep.field_of(key)
            spec["when"] = self.conditions[key]
            spec["when_inferred"] = param.when is None and bool(self.conditions[key])
            parameters[key] = spec
        scheduler = sweep.scheduler_metric()
        return {
            "sweep": sweep.name,
            "parameters": parameters,
            "order": self.order,
            "objectives": [o.model_dump() for o in sweep.objectives],
            "search_algorithm": sweep.search_algorithm.model_dump(),
            "num_samples": num_configurations(sweep),
            "seeds": sweep.seed_list(),
            "seed_keys": sweep.seed_keys,
            "trials": num_trials(sweep),
            "scheduler": None if scheduler is None else {
                **sweep.scheduler.model_dump(), "metric": scheduler[0], "mode": scheduler[1],
                "time_attr": "task",
            },
        }


def suggest(trial: optuna.Trial, key: str, param: Any) -> Any:
    if param.type == "choice":
        return trial.suggest_categorical(key, param.values)
    if param.type == "int":
        return trial.suggest_int(key, param.low, param.high, step=param.step, log=param.log)
    if param.type == "float":
        return trial.suggest_float(
            key, float(param.low), float(param.high), step=param.step, log=param.log
        )
    raise TypeError(f"unknown search parameter type {type(param).__name__}")


def trial_config_for(
    base: dict[str, Any], params: dict[str, Any], seed_keys: list[str], output_dir: Path
) -> TrialConfig:
    """The TrialConfig of one trial: the base, its sampled fields, its seed, its folder."""
    data = copy.deepcopy(base)
    for field, value in params.items():
        if field == SEED_PARAM:
            for seed_key in seed_keys:
                set_dotted(data, seed_key, value)
        else:
            set_dotted(data, field, value)
    data["output_dir"] = str(output_dir)
    return parse_trial_config(data)


def expected_tasks(base: dict[str, Any], params: dict[str, Any], seed_keys: list[str]) -> int:
    """How many tasks a trial with these parameters runs (to tell finished from stopped)."""
    return num_tasks_of(trial_config_for(base, params, seed_keys, Path(".")))


def make_sampler(sweep: SweepConfig) -> optuna.samplers.BaseSampler:
    """TPE (multivariate, grouped for conditional spaces) for one objective and its
    multi-objective form for several; NSGA-II or GP on request; random for random and grid
    (the grid itself is enqueued)."""
    import optuna

    algorithm = sweep.search_algorithm
    seed = algorithm.seed
    if algorithm.name in ("random", "grid"):
        return optuna.samplers.RandomSampler(seed=seed)
    startup = {} if algorithm.n_startup_trials is None else {
        "n_startup_trials": algorithm.n_startup_trials
    }
    if algorithm.sampler == "nsga2":
        size = {} if algorithm.population_size is None else {
            "population_size": algorithm.population_size
        }
        return optuna.samplers.NSGAIISampler(seed=seed, **size)
    if algorithm.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed, **startup)
    with warnings.catch_warnings():  # multivariate/group are "experimental" since 2.2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, constant_liar=True, **startup
        )


def optuna_storage(sweep: SweepConfig) -> optuna.storages.BaseStorage | None:
    """The RDB storage of the study (credentials from the environment), or None (in memory)."""
    if sweep.optuna_storage is None:
        return None
    import optuna

    return optuna.storages.RDBStorage(sweep.optuna_storage)
