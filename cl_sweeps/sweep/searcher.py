"""The searcher: Optuna (via Ray Tune's OptunaSearch) behind a seed replicator.

`SeedReplicator` asks Optuna for one configuration, hands it to Tune once per seed (as separate
trials that may run in parallel), and tells Optuna a single outcome when every replica has ended:
the mean of each objective over the seeds, PRUNED if a replica was stopped before its last task
(ASHA), FAIL if one failed for good. Ray's own `Repeater` does the same for one metric only;
several objectives need this. Optuna never sees intermediate results: a trial stopped early is
never mistaken for a finished one, so the Pareto set holds finished sequences only.

Optuna may propose a configuration again (likely with few categorical choices). A repeat is not
run: it is told the outcome of the configuration it repeats (or FAIL while that one runs, which
TPE ignores) and Optuna is asked again, so `num_samples` counts distinct configurations.

With `constraints:`, the seeds' mean of each constrained metric is told with the objectives, as
Optuna's constraint values (`trial.set_constraint`, cl_sweeps/constraints.py): TPE, NSGA-II and
GP then model the feasible region; the verdict is kept per configuration (`violations`).

With `budget:`, a new configuration is handed to Tune only if it fits what is left
(sweep/budget.py); the first that does not is told FAIL (it never ran) and the searcher is
FINISHED: running trials end, and budget.json says why the sweep ended.

With a `Prior` (sweep/prior.py: the configurations a grown or warm-started sweep already holds),
the seeds a known configuration lacks run first, known configurations are never run again (a
proposal of one is told what it had), and only the configurations `num_samples` leaves are new.
"""

from __future__ import annotations

import logging
import math
import pickle
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from cl_sweeps import __version__, records
from cl_sweeps.constraints import (
    constraint_metrics,
    constraint_values,
    constraints_from,
    violations,
)
from cl_sweeps.records import FAILED, PRUNED, SEED_PARAM, SweepLayout
from cl_sweeps.sweep import budget as budgets
from cl_sweeps.sweep.plan import SweepPlan
from cl_sweeps.sweep.prior import Prior, teach_study
from cl_sweeps.sweep.searcher_state import upgraded
from cl_sweeps.sweep.space import SearchSpace, make_sampler, optuna_storage

log = logging.getLogger(__name__)

MAX_REPEATS = 20


@dataclass
class _Group:
    """One configuration from Optuna and the outcome of each of its seed replicas."""

    fields: dict[str, Any]
    replicas: int
    outcomes: dict[str, str | dict[str, float]] = field(default_factory=dict)
    told: str | dict[str, float] | None = None  # what Optuna was told, once it was
    twin: str | None = None  # the configuration this one repeats (not run again)
    violations: list[str] | None = None  # constraints it breaks, once told (None: not judged)


def trial_outcome(
    result: dict[str, Any] | None, error: bool, metrics: list[str], tasks: int,
    extra: list[str] | tuple[str, ...] = (),
) -> str | dict[str, float]:
    """FAILED, PRUNED (ended before its last task or without its objectives), or the values
    of `metrics` and of `extra` (NaN when not reported: a constraint nothing shows is kept)."""
    if error:
        return FAILED
    if not result or int(result.get("task", -1)) < tasks - 1:
        return PRUNED
    values = {m: result.get(m) for m in metrics}
    missing = [m for m, v in values.items() if v is None]
    if missing:
        log.warning("a finished trial did not report its objectives %s", missing)
        return PRUNED
    found = {m: float(v) for m, v in values.items()}
    return {**{m: float(result.get(m, math.nan)) for m in extra if m not in found}, **found}


class SeedReplicator(Searcher):
    """Replicates each configuration of the inner searcher over seeds (see the module doc)."""

    def __init__(self, inner: OptunaSearch, plan: SweepPlan, prior: Prior | None = None):
        super().__init__(metric=None, mode=None)  # Optuna gets the objectives, not Tune
        sweep = plan.sweep
        self.inner = inner
        self.plan = plan
        self.space = plan.space
        self.seeds = list(plan.seeds)
        self.metrics = [o.metric for o in plan.objectives]
        self.constraints = constraints_from(sweep.constraints)
        self.budget = sweep.budget
        self.layout = SweepLayout(Path(sweep.output_dir)) if sweep.output_dir else None
        self.default_strategy = sweep.base.strategy.name
        self.ended: str | None = None  # why the budget ended the search
        self.release = __version__  # names the release in a refused --resume (searcher_state)
        self._wall_before = 0.0  # the driver's seconds in earlier runs (set_state restores them)
        if self.budget is not None and self.layout is not None:  # a resume before Tune saved
            self._wall_before = float(budgets.read_state(self.layout).get("wall_seconds") or 0.0)
        self._session_start = time.time()
        self._queue: deque[tuple[str, int]] = deque()
        self._groups: dict[str, _Group] = {}
        self._group_of: dict[str, str] = {}
        self._counter = 0
        self._prior: set[str] = set()  # groups of known configurations (told nothing more)
        self._add_prior(prior or Prior())

    def _add_prior(self, prior: Prior) -> None:
        """Known configurations become told groups (a repeat is told their outcome); the seeds
        they lack are queued first."""
        for key, known in prior.configurations.items():
            group_id = f"prior_{key}"
            outcomes = {f"{group_id}/{seed}": o for seed, o in known.outcomes.items()}
            self._groups[group_id] = _Group(dict(known.fields), len(outcomes), outcomes,
                                            told=known.outcome())
            self._prior.add(group_id)
        self._queue.extend((f"prior_{key}", seed) for key, seed in prior.missing(self.seeds))

    def set_search_properties(self, metric: Any, mode: Any, config: dict, **spec: Any) -> bool:
        return not config  # the space comes from the sweep file, never from param_space

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if not self._queue:
            if self.ended is not None:
                return Searcher.FINISHED
            group_id = self._new_configuration()
            if group_id is None or group_id == Searcher.FINISHED:
                return group_id
            if self._over_budget(group_id):
                return Searcher.FINISHED
            self._queue.extend((group_id, seed) for seed in self.seeds)
        group_id, seed = self._queue.popleft()
        self._group_of[trial_id] = group_id
        return {**self._groups[group_id].fields, SEED_PARAM: seed}

    def _new_configuration(self) -> str | None:
        """Ask Optuna for a configuration not run yet. A repeat of a finished one is told that
        one's outcome at once; a repeat of a running one is told FAIL (which TPE ignores). After
        MAX_REPEATS repeats (a small space) the repeat is run."""
        for attempt in range(MAX_REPEATS + 1):
            group_id = f"config_{self._counter:05d}"
            self._counter += 1
            suggestion = self.inner.suggest(group_id)
            if suggestion is None or suggestion == Searcher.FINISHED:
                return suggestion
            fields = self.space.to_fields(suggestion)
            self._groups[group_id] = _Group(fields, len(self.seeds))
            twin = self._twin_of(group_id)
            if twin is None or attempt == MAX_REPEATS:
                return group_id
            self._groups[group_id].twin = twin
            if self._groups[twin].told is not None:
                self._tell(group_id, self._groups[twin])
            else:
                self.inner.on_trial_complete(group_id, None, error=True)
        raise AssertionError("unreachable")

    def wall_seconds(self) -> float:
        """The driver's wall clock over all runs of this sweep."""
        return self._wall_before + time.time() - self._session_start

    def _over_budget(self, group_id: str) -> bool:
        """Whether the new configuration does not fit the budget; if so Optuna is told FAIL
        (it never ran) and the search ends with the reason."""
        if self.budget is None or self.layout is None:
            return False
        strategy = budgets.strategy_of(self._groups[group_id].fields, self.default_strategy)
        reason = budgets.why_not(
            self.budget, records.read_trials(self.layout.trials), strategy, len(self.seeds),
            self.wall_seconds(), len(self._group_of), self.default_strategy,
        )
        if reason is not None:
            self.ended = reason
            self.inner.on_trial_complete(group_id, None, error=True)
            del self._groups[group_id]
            log.warning("no new configuration: %s", reason)
        budgets.write_state(self.layout, self.wall_seconds(), len(self._group_of), self.ended)
        return reason is not None

    def _twin_of(self, group_id: str) -> str | None:
        fields = self._groups[group_id].fields
        for other, group in self._groups.items():
            if other != group_id and group.twin is None and group.fields == fields:
                return other
        return None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Intermediate results stay out of Optuna (see the module doc)."""

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        group_id = self._group_of.get(trial_id)
        if group_id is None:
            return
        group = self._groups[group_id]
        if group_id in self._prior:  # a top-up seed: its Optuna trial ended in an earlier run
            group.outcomes[trial_id] = trial_outcome(
                result, error, self.metrics, self._tasks(group), constraint_metrics(self.constraints))
            return
        extra = constraint_metrics(self.constraints)
        group.outcomes[trial_id] = trial_outcome(result, error, self.metrics, self._tasks(group),
                                                 extra)
        if len(group.outcomes) == group.replicas:
            self._tell(group_id, group)

    def _tasks(self, group: _Group) -> int:
        return self.plan.tasks_of({**group.fields, SEED_PARAM: self.seeds[0]})

    def _tell(self, group_id: str, group: _Group) -> None:
        """Tell Optuna the configuration's outcome (also used for its repeats)."""
        outcomes = list(group.outcomes.values())
        if FAILED in outcomes:
            group.told = FAILED
            self.inner.on_trial_complete(group_id, None, error=True)
        elif PRUNED in outcomes:
            group.told = PRUNED
            self.inner.on_trial_complete(group_id, None, error=False)
        else:
            mean = {m: sum(o[m] for o in outcomes) / len(outcomes) for m in self.metrics}
            if any(math.isnan(v) for v in mean.values()):
                log.warning("configuration %s has NaN objectives; told Optuna FAIL", group_id)
                group.told = FAILED
                self.inner.on_trial_complete(group_id, None, error=True)
            else:
                group.told = mean
                self._set_constraints(group_id, group, outcomes)
                self.inner.on_trial_complete(group_id, mean)

    def _set_constraints(
        self, group_id: str, group: _Group, outcomes: list[dict[str, float]]
    ) -> None:
        """Judge the configuration on its seeds' means and tell Optuna the constraint values
        (they must be set before the trial is told its objectives)."""
        if not self.constraints:
            return
        means = {
            m: sum(o.get(m, math.nan) for o in outcomes) / len(outcomes)
            for m in constraint_metrics(self.constraints)
        }
        group.violations = violations(self.constraints, means)
        trial = self.inner._ot_trials[group_id]  # OptunaSearch's optuna.Trial for this id
        for name, value in constraint_values(self.constraints, means).items():
            trial.set_constraint(name, value)

    # --- Tune checkpoints the searcher so that a sweep can be resumed -------------------------
    # (an earlier release's state is upgraded or refused: sweep/searcher_state.py)
    def get_state(self) -> dict[str, Any]:
        return {**self.__dict__, "_wall_before": self.wall_seconds()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(upgraded(state))
        self._session_start = time.time()  # the clock runs on from what the saved run spent

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled from Tune's tuner.pkl, which an earlier release may have written."""
        self.__dict__.update(upgraded(state))

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.get_state(), handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.set_state(pickle.load(handle))


def build_searcher(plan: SweepPlan, prior: Prior | None = None) -> SeedReplicator:
    """OptunaSearch over the plan's define-by-run space (the grid enqueued for grid search, less
    the points `prior` holds); the study is taught the known configurations it lacks."""
    prior = prior or Prior()
    sweep, space = plan.sweep, plan.space
    seed = sweep.search_algorithm.seed
    if prior.configurations and seed is not None:  # the same seed would propose the old ones
        algorithm = sweep.search_algorithm.model_copy(
            update={"seed": seed + len(prior.configurations)})
        sweep = sweep.model_copy(update={"search_algorithm": algorithm})
    metrics = [o.metric for o in sweep.objectives]
    modes = [o.mode for o in sweep.objectives]
    single = len(metrics) == 1
    inner = OptunaSearch(
        space=space,
        metric=metrics[0] if single else metrics,
        mode=modes[0] if single else modes,
        sampler=make_sampler(sweep),
        study_name=prior.study_name or sweep.name,
        storage=optuna_storage(sweep),
        points_to_evaluate=new_grid_points(space, prior) if sweep.search_algorithm.name == "grid"
        else None,
    )
    if prior.configurations:
        added = teach_study(inner._ot_study, space, prior, sweep)  # OptunaSearch's study
        log.info("Optuna study %s: %d known configurations added", sweep.name, added)
    return SeedReplicator(inner, plan, prior)


def new_grid_points(space: SearchSpace, prior: Prior) -> list[dict[str, Any]] | None:
    """The grid points no known configuration holds (None: none left)."""
    points = [p for p in space.grid_points() if prior.key_of(space.to_fields(p)) is None]
    return points or None
