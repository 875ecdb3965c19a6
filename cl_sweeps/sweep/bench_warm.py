"""`cl-sweeps bench-search --warm-start-dir DIR`: what a cheaper earlier sweep buys a search.

The source is a finished grid sweep of the same search space that trained fewer iterations per
task (e.g. bench_digits.yaml with `--set base.train.iterations_per_task=15`): its base may differ
from the grid's only in train.iterations_per_task / train.epochs_per_task, the seeds and inert
keys (paths, device), and its `search:` must be the grid's. The model-based searchers (TPE,
NSGA-II, MO-ASHA + TPE) are told every configuration the source finished, with the values the
source measured (its own objectives and constraint values, as a warm-started sweep's Optuna
study is told prior trials: sweep/prior.py), before they replay on the grid. TPE counts them
among its startup trials; NSGA-II takes them as its generation 0 (it ignores a trial without a
generation), so its first own trials are bred from them. The source's training TFLOPs are
reported on their own: what the warm start cost, once.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from cl_sweeps.config import ConfigError
from cl_sweeps.constraints import constraint_values
from cl_sweeps.records import SweepLayout
from cl_sweeps.sweep.bench_table import Table, load_table, resolved_sweep
from cl_sweeps.sweep.extend import INERT_KEYS, differences, under
from cl_sweeps.sweep.prior import as_first_generation, optuna_params

if TYPE_CHECKING:
    import optuna

    from cl_sweeps.sweep.space import SearchSpace

FIDELITY_KEYS = ("train.iterations_per_task", "train.epochs_per_task")


def check_source(grid: Table, source_dir: Path) -> None:
    """ConfigError naming the first key in which the source cannot warm-start this grid."""
    source = resolved_sweep(SweepLayout(Path(source_dir)))
    where = f"--warm-start-dir: {source_dir}"
    if list(source.seed_keys) != list(grid.sweep.seed_keys):
        raise ConfigError(f"{where} set seed_keys {source.seed_keys}, the grid "
                          f"{grid.sweep.seed_keys}; allowed: the grid's seed_keys")
    free = (*FIDELITY_KEYS, *INERT_KEYS, *grid.sweep.seed_keys)
    base = differences(source.base.model_dump(mode="json"), grid.sweep.base.model_dump(mode="json"))
    for key, old, new in base:
        if not under(key, free):
            raise ConfigError(f"{where} ran base.{key} = {old!r}, the grid has {new!r}; allowed "
                              f"to differ: {', '.join(FIDELITY_KEYS)}, seeds, paths and device")
    search = differences(
        {k: v.model_dump(mode="json") for k, v in source.search.items()},
        {k: v.model_dump(mode="json") for k, v in grid.sweep.search.items()})
    for key, old, new in search:
        raise ConfigError(f"{where} searched search.{key} = {old!r}, the grid {new!r}; allowed: "
                          "the grid's search space")


def load_source(grid: Table, source_dir: Path) -> Table:
    """The checked source sweep as a table (every configuration of the grid's space)."""
    check_source(grid, source_dir)
    return load_table(Path(source_dir))


def prior_trials(
    source: Table, space: SearchSpace, objectives: list[str]
) -> list[optuna.trial.FrozenTrial]:
    """A finished Optuna trial per configuration the source finished: the source's values of
    `objectives`, and its constraint values for the grid's constraints (`source.constraints`)."""
    import optuna

    trials = []
    for key in source.order:
        found = optuna_params(space, source.fields[key])
        last = source.last(key)
        values = [last.get(name, math.nan) for name in objectives]
        if found is None or source.final(key) is None or not all(map(math.isfinite, values)):
            continue
        params, distributions = found
        attrs = {f"constraints:{name}": value for name, value in
                 constraint_values(list(source.constraints), last).items()
                 if not math.isnan(value)}
        trials.append(optuna.trial.create_trial(
            params=params, distributions=distributions, values=values, system_attrs=attrs,
            user_attrs={"cl_sweeps.prior": True}))
    return trials


def tell_prior(study: optuna.Study, source: Table, space: SearchSpace, objectives: list[str]) -> int:
    """Add the source's configurations to the study (NSGA-II: as its generation 0); the count."""
    trials = prior_trials(source, space, objectives)
    as_first_generation(study, trials)
    study.add_trials(trials)
    return len(trials)
