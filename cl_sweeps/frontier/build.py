"""The frontier of a sweep: load its trials, aggregate seeds, mark the Pareto configurations,
and say it in a few lines of text (what `cl-sweeps frontier` and the end of a sweep print)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from cl_sweeps.constraints import (
    FEASIBLE_COLUMN,
    VIOLATIONS_COLUMN,
    Constraint,
    constraints_from,
    violations,
)
from cl_sweeps.formatting import (
    STD_SPREAD,
    fmt_mean_std,
    fmt_number,
    short_name,
    spread_note,
    text_table,
)
from cl_sweeps.frontier.bootstrap import SeedNoise, intervals_overlap, seed_noise
from cl_sweeps.frontier.hypervolume import hypervolume, reference_point
from cl_sweeps.frontier.pareto import pareto_mask
from cl_sweeps.frontier.table import (
    DEFAULT_OBJECTIVES,
    aggregate_configs,
    excluded_counts,
    param_columns,
    trials_table,
)
from cl_sweeps.metrics import VALIDATION_FORMS, is_cost_metric, validation_form
from cl_sweeps.records import SweepSource, read_sweep_dir

STRATEGY = "strategy.name"
# printed next to the objectives, where the trials measured them
SHOWN_METRICS = ("fid_final", "kld", "forgetting", "accuracy_final")
P_PARETO = "p_pareto"  # configs column: share of seed bootstrap resamples on the Pareto set
ONE_SEED = (
    "one seed per configuration: nothing can be said about seed noise "
    "(replicate with `seeds:` to see how sure each point is)"
)


def interval_columns(objective: str) -> tuple[str, str]:
    """Configs columns of an objective's bootstrap interval of the seed mean."""
    return f"{objective}_low", f"{objective}_high"


@dataclass
class Frontier:
    """A sweep's trials table, its configurations with a `pareto` flag, and what was left out."""

    trials: pa.Table
    configs: pa.Table
    objectives: tuple[str, ...]
    excluded: dict[str, int]
    source: SweepSource | None = field(default=None, repr=False)
    hypervolume: float | None = None  # of the configurations' seed means (None: no config)
    reference: tuple[float, ...] | None = None  # the reference point of `hypervolume`
    modes: tuple[str, ...] = ()  # "min"/"max" per objective; empty: all minimised
    noise: SeedNoise | None = None  # seed bootstrap; None: no configuration has two seeds
    constraints: tuple[Constraint, ...] = ()  # the sweep's; infeasible configs are off the front

    def mode(self, index: int) -> str:
        return self.modes[index] if self.modes else "min"

    def pareto_configs(self) -> pa.Table:
        """The non-dominated configurations, best first on the first objective."""
        front = self.configs.filter(self.configs.column("pareto"))
        keys = self._by_objectives(front)
        return front.sort_by(keys) if keys else front

    def _by_objectives(self, table: pa.Table) -> list[tuple[str, str]]:
        keys = [
            (f"{name}_mean", "ascending" if self.mode(i) == "min" else "descending")
            for i, name in enumerate(self.objectives)
        ]
        return [key for key in keys if key[0] in table.column_names]


def objectives_for(third_objective: str | None = None) -> tuple[str, ...]:
    """(train_tflops, fid_final), plus an optional third objective such as kld."""
    return DEFAULT_OBJECTIVES + ((third_objective,) if third_objective else ())


def on_validation(objectives: Sequence[str], source: SweepSource) -> tuple[str, ...]:
    """The objectives a sweep with a validation split chose on (fid_final -> fid_final_val),
    when its trials report them; else the objectives as given."""
    forms = {name: validation_form(name) for name in objectives}
    reported = {name for record in source.records for name in record.final}
    if not any(form in reported for form in forms.values() if form):
        return tuple(objectives)
    return tuple(forms[name] or name for name in objectives)


def selection_note(frontier: Frontier) -> str:
    """Says which metrics chose and which report, when the objectives are validation ones."""
    chosen = [name for name in frontier.objectives if name in VALIDATION_FORMS.values()]
    if not chosen:
        return ""
    tests = [name for name, form in VALIDATION_FORMS.items() if form in chosen]
    shown = [name for name in dict.fromkeys(tests + list(SHOWN_METRICS))
             if f"{name}_mean" in frontier.configs.column_names]
    return (f"chosen on the validation split ({', '.join(chosen)}); the test metrics beside "
            f"them ({', '.join(shown)}) report the choice")


def compute_frontier(
    source: SweepSource,
    objectives: Sequence[str] = DEFAULT_OBJECTIVES,
    modes: Sequence[str] | None = None,
    constraints: Sequence[Constraint] | None = None,
) -> Frontier:
    """Trials table -> seed aggregates -> Pareto flag over the objectives' seed means. `modes`
    ("min"/"max" per objective, default all "min"): a maximised objective is negated for the
    Pareto set and the hypervolume (whose reference point is then in negated units).
    `constraints` (default: the resolved sweep's): a configuration whose seed means break one
    is marked infeasible and left out of the Pareto set, the hypervolume and the bootstrap."""
    objectives = tuple(objectives)
    if constraints is None:
        constraints = constraints_from((source.resolved or {}).get("constraints"))
    constraints = tuple(constraints)
    modes = tuple(modes) if modes else ()
    if modes and (len(modes) != len(objectives) or set(modes) - {"min", "max"}):
        raise ValueError(f"modes {modes} must be 'min' or 'max', one per objective {objectives}")
    trials = trials_table(source.records, objectives)
    configs = with_feasibility(aggregate_configs(trials), constraints)
    signs = np.array([-1.0 if modes and modes[i] == "max" else 1.0 for i in range(len(objectives))])
    volume, reference, noise = None, None, None
    mask = np.zeros(configs.num_rows, dtype=bool)
    feasible = np.flatnonzero(configs.column(FEASIBLE_COLUMN).to_numpy(zero_copy_only=False))
    if len(feasible):
        points = np.column_stack([
            sign * configs.column(f"{name}_mean").to_numpy(zero_copy_only=False)
            for sign, name in zip(signs, objectives)
        ])[feasible]
        mask[feasible] = pareto_mask(points)
        ref = reference_point(points)
        volume, reference = hypervolume(points, ref), tuple(float(v) for v in ref)
        replicas = seed_replicas(trials, configs, objectives)
        noise = seed_noise([replicas[i] * signs for i in feasible], ref)
        noise = spread_noise(noise, feasible, configs.num_rows)
    configs = configs.append_column("pareto", pa.array(mask, pa.bool_()))
    configs = with_noise_columns(configs, objectives, signs, noise)
    return Frontier(
        trials, configs, objectives, excluded_counts(trials), source, volume, reference, modes,
        noise, constraints,
    )


def with_feasibility(configs: pa.Table, constraints: Sequence[Constraint]) -> pa.Table:
    """`feasible` and `violations` columns: each configuration's seed means judged by the
    constraints (all feasible without any)."""
    broken = []
    for row in configs.to_pylist():
        means = {c.metric: row.get(f"{c.metric}_mean") for c in constraints}
        broken.append(violations(list(constraints), {
            m: float("nan") if v is None else v for m, v in means.items()
        }))
    configs = configs.append_column(FEASIBLE_COLUMN, pa.array([not b for b in broken], pa.bool_()))
    return configs.append_column(VIOLATIONS_COLUMN, pa.array(["; ".join(b) for b in broken],
                                                             pa.string()))


def spread_noise(noise: SeedNoise | None, rows: np.ndarray, count: int) -> SeedNoise | None:
    """The bootstrap of the feasible configurations `rows`, as rows of all `count`: an
    infeasible one has P(pareto) 0 and no interval."""
    if noise is None or len(rows) == count:
        return noise
    p_pareto = np.zeros(count)
    low = np.full((count, noise.low.shape[1]), np.nan)
    high = low.copy()
    p_pareto[rows], low[rows], high[rows] = noise.p_pareto, noise.low, noise.high
    return replace(noise, p_pareto=p_pareto, low=low, high=high)


def seed_replicas(
    trials: pa.Table, configs: pa.Table, objectives: Sequence[str]
) -> list[np.ndarray]:
    """Per configuration (in the configs' order), its included trials' objective values as an
    (n, d) array: what the seed bootstrap resamples."""
    included = trials.filter(trials.column("included"))
    keys = included.column("config_key").to_pylist()
    values = np.column_stack([
        included.column(name).to_numpy(zero_copy_only=False) for name in objectives
    ]) if included.num_rows else np.zeros((0, len(objectives)))
    rows: dict[str, list[int]] = {}
    for row, key in enumerate(keys):
        rows.setdefault(key, []).append(row)
    return [values[rows[key]] for key in configs.column("config_key").to_pylist()]


def with_noise_columns(
    configs: pa.Table, objectives: Sequence[str], signs: np.ndarray, noise: SeedNoise | None
) -> pa.Table:
    """`p_pareto` and each objective's `<m>_low`, `<m>_high` (NaN without a bootstrap), in the
    objectives' own units (a maximised objective's interval negated back)."""
    count = configs.num_rows
    p = noise.p_pareto if noise is not None else np.full(count, np.nan)
    configs = configs.append_column(P_PARETO, pa.array(p, pa.float64()))
    for j, name in enumerate(objectives):
        if noise is None:
            low = high = np.full(count, np.nan)
        elif signs[j] > 0:
            low, high = noise.low[:, j], noise.high[:, j]
        else:
            low, high = -noise.high[:, j], -noise.low[:, j]
        for column, end in zip(interval_columns(name), (low, high)):
            configs = configs.append_column(column, pa.array(end, pa.float64()))
    return configs


def load_source(
    sweep_dir: str | Path | None = None,
    experiment: str | None = None,
    tracking_uri: str | None = None,
    parent_run_id: str | None = None,
) -> SweepSource:
    """Trials from a sweep directory (Parquet, no server needed) or from an MLflow experiment."""
    if (sweep_dir is None) == (experiment is None):
        raise ValueError("give exactly one of sweep_dir and experiment")
    if sweep_dir is not None:
        return read_sweep_dir(sweep_dir)
    from cl_sweeps.frontier.mlflow_runs import read_mlflow

    return read_mlflow(experiment, tracking_uri, parent_run_id)


def varying_params(configs: pa.Table) -> list[str]:
    """Params that differ between configurations (strategy first): the ones worth showing."""
    names = [c for c in param_columns(configs) if len(set(configs.column(c).to_pylist())) > 1]
    names.sort(key=lambda c: (c != STRATEGY, c))
    if STRATEGY in configs.column_names and STRATEGY not in names:
        names.insert(0, STRATEGY)
    return names


def summary_line(frontier: Frontier) -> str:
    """'4 of 12 configurations on the frontier over (...); 30 trials, 25 included; excluded: …'"""
    included = sum(frontier.trials.column("included").to_pylist())
    on_front = sum(frontier.configs.column("pareto").to_pylist())
    excluded = ", ".join(f"{n} {reason}" for reason, n in frontier.excluded.items()) or "none"
    line = (
        f"{on_front} of {frontier.configs.num_rows} configurations on the Pareto frontier over "
        f"({', '.join(frontier.objectives)}); {frontier.trials.num_rows} trials, {included} "
        f"included; excluded: {excluded}"
    )
    if frontier.constraints:
        rules = ", ".join(c.describe() for c in frontier.constraints)
        line += (f"; constraints {rules}: {len(infeasible_keys(frontier))} configurations "
                 "infeasible (off the Pareto set and the hypervolume)")
    if frontier.hypervolume is not None and frontier.reference is not None:
        ref = ", ".join(fmt_number(v) for v in frontier.reference)
        line += f"; hypervolume {fmt_number(frontier.hypervolume)}"
        noise = frontier.noise
        if noise is not None and noise.hypervolume is not None:
            low, high = (fmt_number(v) for v in noise.hypervolume)
            line += f" ({percent(noise.level)} interval over seeds [{low}, {high}])"
        line += f" (reference ({ref}))"
    return line


def infeasible_keys(frontier: Frontier) -> list[str]:
    """Config keys of the configurations that break a constraint."""
    configs = frontier.configs
    return [key for key, ok in zip(configs.column("config_key").to_pylist(),
                                   configs.column(FEASIBLE_COLUMN).to_pylist()) if not ok]


def percent(level: float) -> str:
    return f"{fmt_number(100 * level)} %"


def noise_line(frontier: Frontier) -> str:
    """How sure the frontier is, in one line ('' without configurations)."""
    noise = frontier.noise
    if not frontier.configs.num_rows:
        return ""
    if noise is None:
        return ONE_SEED
    line = (
        f"seed noise: each configuration's seeds bootstrapped {noise.resamples} times (seed "
        f"{noise.seed}); P(pareto) = share of resamples on the Pareto set, "
        f"{percent(noise.level)} intervals of the seed means"
    )
    if noise.single_seed:
        many = "s" if noise.single_seed > 1 else ""
        line += f"; {noise.single_seed} configuration{many} with one seed: P(pareto) unknown (–)"
    return line


def frontier_table_text(frontier: Frontier, all_configs: bool = False) -> str:
    """The frontier as a plain-text table (mean ± std over seeds), cheapest first, with a summary
    line of what was counted and excluded. `all_configs` lists every configuration instead."""
    configs = frontier.configs if all_configs else frontier.pareto_configs()
    if all_configs:
        keys = frontier._by_objectives(configs)
        configs = configs.sort_by(keys) if keys else configs
    body = configs_table_text(frontier, configs, pareto_column=all_configs)
    spread = spread_note(STD_SPREAD, configs.column("n").to_pylist()) if configs.num_rows else ""
    notes = "".join(f"\n{line}" for line in (spread, selection_note(frontier),
                                             noise_line(frontier)) if line)
    empty = NO_FEASIBLE_CONFIG if frontier.constraints else NO_CONFIG
    return f"{summary_line(frontier)}\n{body or empty}{notes}"


NO_CONFIG = "(no configuration with complete, finite results)"
NO_FEASIBLE_CONFIG = "(no feasible configuration with complete, finite results)"


def fmt_probability(value: float | None) -> str:
    """'0.83'; '–' when unknown (one seed)."""
    return fmt_number(None if value is None else round(value, 2))


def configs_table_text(frontier: Frontier, configs: pa.Table, pareto_column: bool) -> str:
    """Rows of `configs` (a selection of frontier.configs) with the varying params, n, the
    objectives and SHOWN_METRICS as mean ± std; '' if there is no row."""
    params = varying_params(frontier.configs) if frontier.configs.num_rows else []
    metrics = list(dict.fromkeys(frontier.objectives + SHOWN_METRICS))
    metrics = [m for m in metrics if f"{m}_mean" in configs.column_names]
    headers = [short_name(p) for p in params] + ["n"] + metrics
    if pareto_column:
        headers.append("pareto")
    if frontier.constraints and pareto_column:
        headers.append("breaks")
    if frontier.noise is not None:
        headers.append("P(pareto)")
    rows = []
    for row in configs.to_pylist():
        cells = [fmt_number(row[p]) for p in params] + [str(row["n"])]
        cells += [fmt_mean_std(row[f"{m}_mean"], row[f"{m}_std"]) for m in metrics]
        if pareto_column:
            cells.append("*" if row["pareto"] else "")
        if frontier.constraints and pareto_column:
            cells.append(row[VIOLATIONS_COLUMN])
        if frontier.noise is not None:
            cells.append(fmt_probability(row[P_PARETO]))
        rows.append(cells)
    return text_table(headers, rows) if rows else ""


def quality_objective(frontier: Frontier) -> int:
    """Index of the first objective that measures quality rather than cost (else 0)."""
    return next((i for i, name in enumerate(frontier.objectives) if not is_cost_metric(name)), 0)


def best_per_strategy(frontier: Frontier) -> pa.Table:
    """Each strategy's best configuration on the first quality objective (seed means; ties go
    to the better one on the other objectives), best first: what a sweep found for every
    strategy, also for those a cheaper one dominates. Only feasible configurations compete."""
    configs = frontier.configs.filter(frontier.configs.column(FEASIBLE_COLUMN))
    if not configs.num_rows or STRATEGY not in configs.column_names:
        return configs.slice(0, 0)
    keys = frontier._by_objectives(configs)
    first = quality_objective(frontier)
    ordered = configs.sort_by([keys[first], *keys[:first], *keys[first + 1:]])
    seen: set[str] = set()
    rows = []
    for row, name in enumerate(ordered.column(STRATEGY).to_pylist()):
        if name not in seen:
            seen.add(name)
            rows.append(row)
    return ordered.take(rows)


def best_per_strategy_text(frontier: Frontier) -> str:
    """best_per_strategy as text ('' with fewer than two strategies): `pareto` marks the ones
    on the frontier; strategies with no included trial are named below it."""
    best = best_per_strategy(frontier)
    if best.num_rows < 2:
        return ""
    first = quality_objective(frontier)
    title = (f"Best configuration of each strategy by {frontier.objectives[first]} "
             f"({frontier.mode(first)}; mean over seeds):")
    text = f"{title}\n{configs_table_text(frontier, best, pareto_column=True)}"
    separable = separability_text(frontier, best, first)
    if separable:
        text += f"\n{separable}"
    tried = set(frontier.trials.column(STRATEGY).to_pylist()) - {None}
    missing = sorted(tried - set(best.column(STRATEGY).to_pylist()))
    if missing:
        kept = " keeping the constraints" if frontier.constraints else ""
        text += f"\nno complete trial with finite objectives{kept}: {', '.join(missing)}"
    return text


def separability_text(frontier: Frontier, best: pa.Table, objective: int) -> str:
    """Whether the best strategy's configuration and the runner-up's can be told apart on the
    ranking objective: their bootstrap intervals of the seed mean overlap or not ('' without a
    bootstrap or a runner-up)."""
    if frontier.noise is None or best.num_rows < 2:
        return ""
    name = frontier.objectives[objective]
    rows = best.slice(0, 2).to_pylist()
    intervals = [tuple(row[c] for c in interval_columns(name)) for row in rows]
    overlap = intervals_overlap(*intervals)
    first, second = (row[STRATEGY] for row in rows)
    level = percent(frontier.noise.level)
    if overlap is None:
        return f"best ({first}) vs runner-up ({second}): one has a single seed; not comparable"
    shown = " vs ".join(f"[{fmt_number(lo)}, {fmt_number(hi)}]" for lo, hi in intervals)
    verdict = "NOT separable" if overlap else "separable"
    why = "overlap" if overlap else "do not overlap"
    return (f"best ({first}) and runner-up ({second}) are {verdict} on {name}: their {level} "
            f"intervals of the seed mean {why} ({shown})")


def frontier_summary_text(frontier: Frontier) -> str:
    """What a sweep's end, `cl-sweeps frontier` and `cl-sweeps status` print: the frontier
    table, then each strategy's best configuration."""
    per_strategy = best_per_strategy_text(frontier)
    return frontier_table_text(frontier) + (f"\n\n{per_strategy}" if per_strategy else "")
