"""What a sweep already holds before its searcher starts: the (configuration, seed) pairs with an
ended record, so a grown sweep (--extend) or a warm-started one (warm_start:) trains only the
pairs it lacks.

A configuration of the records is kept with each ended seed's outcome (as the searcher would have
computed it). The searcher (sweep/searcher.py) first runs the seeds of the sweep's `seeds:` that a
known configuration lacks (top-ups), then asks Optuna for as many new configurations as
`num_samples` leaves; a configuration Optuna proposes again is told what it had. Optuna learns the
known configurations from its own study (--extend: the same storage, the same study) or, for one
it does not hold yet (warm_start:), as a finished `FrozenTrial` added with `study.add_trial`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cl_sweeps import records
from cl_sweeps.constraints import constraint_metrics, constraint_values, constraints_from
from cl_sweeps.records import COMPLETED, FAILED, PRUNED, SweepLayout, TrialRecord

if TYPE_CHECKING:
    import optuna

    from cl_sweeps.sweep.schema import SweepConfig
    from cl_sweeps.sweep.space import SearchSpace

Outcome = str | dict[str, float]


@dataclass
class KnownConfiguration:
    """One configuration of the records and the outcome of each of its ended seeds."""

    fields: dict[str, Any]
    outcomes: dict[int, Outcome] = field(default_factory=dict)

    def outcome(self) -> Outcome:
        """FAILED or PRUNED if a seed was, else the seeds' mean of every value."""
        values = list(self.outcomes.values())
        for status in (FAILED, PRUNED):
            if status in values:
                return status
        names = set.intersection(*(set(v) for v in values)) if values else set()
        return {m: sum(v[m] for v in values) / len(values) for m in sorted(names)}


def record_outcome(record: TrialRecord, metrics: list[str], extra: list[str]) -> Outcome:
    """What the searcher was (or would have been) told for this ended trial."""
    if record.status in (FAILED, PRUNED):
        return record.status
    values = {m: record.final.get(m) for m in metrics}
    if any(v is None for v in values.values()):
        return PRUNED
    return {**{m: float(record.final.get(m, math.nan)) for m in extra},
            **{m: float(v) for m, v in values.items()}}


@dataclass
class Prior:
    """The configurations a sweep's records hold, keyed by config key."""

    configurations: dict[str, KnownConfiguration] = field(default_factory=dict)
    study_name: str | None = None  # the Optuna study, when not the sweep's name (sweep/extend.py)

    @classmethod
    def from_records(
        cls, layout: SweepLayout, sweep: SweepConfig, study_name: str | None = None
    ) -> Prior:
        """Every ended trial of the records whose seed is one of the sweep's seeds."""
        metrics = [o.metric for o in sweep.objectives]
        extra = constraint_metrics(constraints_from(sweep.constraints))
        seeds = set(sweep.seed_list())
        prior = cls(study_name=study_name)
        for record in records.read_trials(layout.trials):
            if record.status not in (COMPLETED, PRUNED, FAILED) or record.seed not in seeds:
                continue
            known = prior.configurations.setdefault(
                record.config_key, KnownConfiguration(dict(record.params)))
            known.outcomes[record.seed] = record_outcome(record, metrics, extra)
        return prior

    def key_of(self, fields: dict[str, Any]) -> str | None:
        key = records.config_key(fields)
        return key if key in self.configurations else None

    def missing(self, seeds: list[int]) -> list[tuple[str, int]]:
        """(config key, seed) of every seed a known configuration has not run yet."""
        return [(key, seed) for key, known in self.configurations.items()
                for seed in seeds if seed not in known.outcomes]

    def trials_to_run(self, configurations: int, seeds: list[int]) -> int:
        """Trials Tune must start: the top-ups, then every seed of each new configuration."""
        new = max(0, configurations - len(self.configurations))
        return len(self.missing(seeds)) + new * len(seeds)

    def pairs(self) -> int:
        return sum(len(known.outcomes) for known in self.configurations.values())


def optuna_params(space: SearchSpace, fields: dict[str, Any]) -> tuple[dict, dict] | None:
    """The Optuna parameters and distributions of a configuration given by its trial fields,
    or None if this sweep's search space cannot propose it (a value outside a range or
    choice, a parameter it lacks)."""
    wanted = {key: fields[space.sweep.field_of(key)] for key in space.order
              if space.sweep.search[key].type != "map" and space.sweep.field_of(key) in fields}
    trial = walked_trial(space, wanted)
    if trial is None or set(trial.params) != set(wanted) or space.to_fields(trial.params) != fields:
        return None
    return dict(trial.params), dict(trial.distributions)


def walked_trial(space: SearchSpace, wanted: dict[str, Any]) -> optuna.trial.FixedTrial | None:
    """The search space walked with the `wanted` values, or None if it cannot propose them."""
    import optuna

    trial = optuna.trial.FixedTrial(wanted)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FixedTrial only warns on a value outside a range
        try:
            space(trial)
        except (ValueError, UserWarning):
            return None
    return trial


def frozen_trial(
    space: SearchSpace, known: KnownConfiguration, sweep: SweepConfig
) -> optuna.trial.FrozenTrial | None:
    """A finished Optuna trial for a known configuration (None if the space cannot hold it)."""
    import optuna

    found = optuna_params(space, known.fields)
    if found is None:
        return None
    params, distributions = found
    outcome = known.outcome()
    if outcome == FAILED:
        return optuna.trial.create_trial(params=params, distributions=distributions,
                                         state=optuna.trial.TrialState.FAIL)
    if outcome == PRUNED:
        return optuna.trial.create_trial(params=params, distributions=distributions,
                                         state=optuna.trial.TrialState.PRUNED)
    assert isinstance(outcome, dict)
    values = [outcome[o.metric] for o in sweep.objectives]
    if any(math.isnan(v) for v in values):
        return None
    constraints = constraints_from(sweep.constraints)
    attrs = {f"constraints:{name}": value
             for name, value in constraint_values(constraints, outcome).items()
             if not math.isnan(value)} if constraints else {}
    return optuna.trial.create_trial(params=params, distributions=distributions, values=values,
                                     system_attrs=attrs, user_attrs={"cl_sweeps.prior": True})


def as_first_generation(study: optuna.Study, trials: list[optuna.trial.FrozenTrial]) -> None:
    """NSGA-II reads a trial only by its generation and leaves one without any out of every
    population: known trials told to an NSGA-II study that has no generation yet become its
    generation 0, so that its first own trials are bred from them. Other samplers: unchanged."""
    import optuna

    sampler = study.sampler
    if not isinstance(sampler, optuna.samplers.NSGAIISampler):
        return
    key = sampler._get_generation_key()  # where NSGA-II keeps a trial's generation
    if any(key in t.system_attrs for t in study.get_trials(deepcopy=False)):
        return  # the study's own generations go on
    for trial in trials:
        trial.system_attrs[key] = 0


def teach_study(study: optuna.Study, space: SearchSpace, prior: Prior, sweep: SweepConfig) -> int:
    """Add to the study every known configuration it does not hold (by parameters); the count."""
    held = [t.params for t in study.get_trials(deepcopy=False)]
    new = []
    for known in prior.configurations.values():
        trial = frozen_trial(space, known, sweep)
        if trial is None or trial.params in held:
            continue
        new.append(trial)
        held.append(trial.params)
    as_first_generation(study, new)
    study.add_trials(new)
    return len(new)
