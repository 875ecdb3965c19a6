"""The `search:` section as a search space: conditions, order, grid, and Optuna's define-by-run.

A parameter is sampled only when its conditions hold (e.g. `strategy.teacher_steps` only for the
strategies that generate with the teacher), so Optuna never models a value that had no effect.
Optuna parameter names are the search keys; trials receive trial-config keys (`field`).

The functions here work on a validated `SweepConfig` (sweep/schema.py, which uses them for its
checks) and know parameters by their `type` tag, so this module imports neither the schema nor,
until a search runs, Optuna.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cl_sweeps.config import ConfigError, TrialConfig, num_tasks_of, parse_trial_config, set_dotted
from cl_sweeps.records import SEED_PARAM
from cl_sweeps.strategies.catalog import strategy_knobs

if TYPE_CHECKING:
    import optuna

    from cl_sweeps.sweep.schema import MappedParam, SweepConfig

MAX_GRID_POINTS = 100_000


def value_in(value: Any, allowed: list[Any]) -> bool:
    """`value` is one of `allowed`, comparing numbers by value but never bools with numbers."""
    return any(type(a) is type(value) and a == value for a in allowed) or (
        not isinstance(value, bool) and any(
            isinstance(a, int | float) and not isinstance(a, bool) and a == value for a in allowed
        )
    )


def condition_holds(conditions: dict[str, list[Any]], point: dict[str, Any]) -> bool:
    """True if every conditioning parameter is present in `point` with an allowed value."""
    return all(k in point and value_in(point[k], allowed) for k, allowed in conditions.items())


def knobs_of(name: Any) -> tuple[str, ...]:
    """The knobs strategy `name` reads; () for a name that is not a strategy."""
    try:
        return strategy_knobs(name)
    except ValueError:
        return ()


def strategy_name_key(sweep: SweepConfig) -> str | None:
    """The search parameter that sets strategy.name, if the strategy is searched."""
    for key in sweep.search:
        if sweep.field_of(key) == "strategy.name":
            return key
    return None


def conditions(sweep: SweepConfig, key: str) -> dict[str, list[Any]]:
    """When `key` is sampled: {search parameter: allowed values}; {} means always.
    Strategy knobs without `when` are sampled only for the strategies that read them."""
    param = sweep.search[key]
    if param.type == "map":
        return {param.depends_on: list(param.values)}
    if param.when is not None:
        return {k: v if isinstance(v, list) else [v] for k, v in param.when.items()}
    field = sweep.field_of(key)
    name_key = strategy_name_key(sweep)
    if not field.startswith("strategy.") or name_key is None or name_key == key:
        return {}
    choices = sweep.search[name_key].candidates()
    readers = [s for s in choices if field.split(".", 1)[1] in knobs_of(s)]
    return {} if len(readers) == len(choices) else {name_key: readers}


def search_order(sweep: SweepConfig) -> list[str]:
    """Search keys ordered so that every condition's parameters come first (stable)."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(key: str) -> None:
        if key in order:
            return
        if key in visiting:
            raise ConfigError(f"search.{key}.when: conditions form a cycle through {key!r}")
        visiting.add(key)
        for parent in conditions(sweep, key):
            if parent in sweep.search:
                visit(parent)
        visiting.discard(key)
        order.append(key)

    for key in sweep.search:
        visit(key)
    return order


def grid(sweep: SweepConfig) -> list[dict[str, Any]]:
    """Every combination of the search space (search key -> value), conditions respected,
    in file order; each parameter must have a finite grid."""
    points: list[dict[str, Any]] = [{}]
    for key in search_order(sweep):
        param = sweep.search[key]
        when = conditions(sweep, key)
        if param.type == "map":
            points = [
                {**p, key: mapped_value(param, p)} if condition_holds(when, p) else p
                for p in points
            ]
            continue
        values = param.grid()
        if values is None:
            raise ConfigError(f"search.{key}: grid search needs choice, int, or float with step")
        expanded = []
        for point in points:
            if condition_holds(when, point):
                expanded.extend({**point, key: v} for v in values)
            else:
                expanded.append(point)
            if len(expanded) > MAX_GRID_POINTS:
                raise ConfigError(f"search: the grid has more than {MAX_GRID_POINTS} points")
        points = expanded
    return points


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


def mapped_value(param: MappedParam, values: dict[str, Any]) -> Any:
    return param.value_for(values[param.depends_on])


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
