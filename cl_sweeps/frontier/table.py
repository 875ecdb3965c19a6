"""Trial records -> the trials table (one row per trial) and the configurations table (seed
replicas of one configuration aggregated as mean, std, n).

Which trials count: a trial is *complete* if its status is COMPLETED and it reported every task.
It is *included* in the frontier if it is complete and every objective is a finite number. All
others stay in the trials table with `excluded_reason` set, so they are counted, not lost.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from cl_sweeps.metrics import FRONTIER_AXES, METRIC_NAMES
from cl_sweeps.records import COMPLETED, FAILED, TrialRecord

# The default objectives (metrics.py), compute first: the x axis of every frontier plot and
# the column order of every table and report.
DEFAULT_OBJECTIVES = FRONTIER_AXES
ID_COLUMNS = (
    "trial_id", "config_key", "seed", "status", "error", "num_tasks_done", "num_tasks",
    "complete", "included", "excluded_reason",
)
SERIES_SEP = "@task"
# Order in which exclusion reasons are checked and reported.
REASONS = (
    "non-finite loss", "non-finite samples", "non-finite features", "failed", "pruned",
    "running", "unknown", "incomplete", "missing", "nan", "inf",
)


def series_column(metric: str, task: int) -> str:
    """Column of a per-task series value: series_column('fid', 2) == 'fid@task2'."""
    return f"{metric}{SERIES_SEP}{task}"


def split_series_column(name: str) -> tuple[str, int] | None:
    """('fid', 2) for 'fid@task2'; None for any other column."""
    metric, sep, task = name.rpartition(SERIES_SEP)
    return (metric, int(task)) if sep and task.isdigit() else None


def exclusion_reason(
    record: TrialRecord, objectives: Sequence[str], num_tasks: int | None
) -> str | None:
    """Why a trial is left out of the frontier (one of REASONS), or None if it is included."""
    if record.status != COMPLETED:
        for reason in REASONS[:3]:  # a diverged trial: its error starts with the reason
            if record.status == FAILED and (record.error or "").startswith(reason):
                return reason
        status = record.status.lower()
        return status if status in REASONS else "unknown"
    if num_tasks is not None and record.tasks_done < num_tasks:
        return "incomplete"
    values = [record.final.get(name) for name in objectives]
    if any(v is None for v in values):
        return "missing"
    if any(math.isnan(v) for v in values):
        return "nan"
    if any(math.isinf(v) for v in values):
        return "inf"
    return None


def _metric_sort_key(name: str) -> tuple:
    """Declared metrics in declaration order, then the rest; task indices sorted as numbers."""
    order = METRIC_NAMES.index(name) if name in METRIC_NAMES else len(METRIC_NAMES)
    parts = tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))
    return (order, parts)


def _param_array(values: list[Any]) -> pa.Array:
    """One type per param column whatever the source: bool, int64, float64 or string."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.array(values, pa.bool_())
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.array(values, pa.int64())
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.array([_as_text(v) for v in values], pa.string())


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def trials_table(
    records: Sequence[TrialRecord], objectives: Sequence[str] = DEFAULT_OBJECTIVES
) -> pa.Table:
    """One row per trial (sorted by trial_id): identity and status, then every param as its
    dotted name, every metric's final value, and per-task series as `<metric>@task<k>`.
    A record that does not know its number of tasks is held to the most any trial reached."""
    records = sorted(records, key=lambda r: r.trial_id)
    most = max((r.tasks_done for r in records), default=0)
    params = sorted({k for r in records for k in r.params})
    metrics = sorted({k for r in records for k in r.final}, key=_metric_sort_key)
    series = sorted(
        {series_column(m, t) for r in records for m, by_task in r.series.items() for t in by_task},
        key=lambda c: (_metric_sort_key(split_series_column(c)[0]), split_series_column(c)[1]),
    )
    expected = [most if r.num_tasks is None else r.num_tasks for r in records]
    reasons = [exclusion_reason(r, objectives, n) for r, n in zip(records, expected)]
    columns: dict[str, pa.Array] = {
        "trial_id": pa.array([r.trial_id for r in records], pa.string()),
        "config_key": pa.array([r.config_key for r in records], pa.string()),
        "seed": pa.array([r.seed for r in records], pa.int64()),
        "status": pa.array([r.status for r in records], pa.string()),
        "error": pa.array([r.error for r in records], pa.string()),
        "num_tasks_done": pa.array([r.tasks_done for r in records], pa.int64()),
        "num_tasks": pa.array(expected, pa.int64()),
        "complete": pa.array(
            [r.status == COMPLETED and r.tasks_done >= n for r, n in zip(records, expected)],
            pa.bool_(),
        ),
        "included": pa.array([reason is None for reason in reasons], pa.bool_()),
        "excluded_reason": pa.array(reasons, pa.string()),
    }
    for name in params:
        columns[name] = _param_array([r.params.get(name) for r in records])
    for name in metrics:
        columns[name] = pa.array([r.final.get(name) for r in records], pa.float64())
    for name in series:
        metric, task = split_series_column(name)
        columns[name] = pa.array(
            [r.series.get(metric, {}).get(task) for r in records], pa.float64()
        )
    return pa.table(columns)


def excluded_counts(trials: pa.Table) -> dict[str, int]:
    """How many trials were left out of the frontier, by reason (REASONS order, zeros omitted)."""
    counts = Counter(r for r in trials.column("excluded_reason").to_pylist() if r is not None)
    return {reason: counts[reason] for reason in REASONS if counts[reason]}


def mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    """Mean, sample std (ddof=1) and n over the non-null, non-NaN values.

    std is NaN for n < 2 (one seed says nothing about spread) and when a value is infinite; the
    mean of values that include inf is inf, which is what it is.
    """
    kept = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(kept)
    if n == 0:
        return math.nan, math.nan, 0
    with np.errstate(invalid="ignore"):  # inf - inf: the mean is NaN, rightly
        mean = float(kept.mean())
    std = float(kept.std(ddof=1)) if n > 1 and np.isfinite(kept).all() else math.nan
    return mean, std, n


def mean_sem(values: Sequence[float | None]) -> tuple[float, float, int]:
    """Mean, standard error of the mean and n, as the paper reports its seeds: the population
    std (ddof=0) over sqrt(n), the reference code's `np.std(v) / np.sqrt(len(v))` (about 0.47x
    the sample std at n = 3). NaN spread for n < 2 and for infinite values, as `mean_std`."""
    mean, std, n = mean_std(values)
    if n < 2 or math.isnan(std):
        return mean, math.nan, n
    return mean, std * math.sqrt((n - 1) / n) / math.sqrt(n), n


def param_columns(table: pa.Table) -> list[str]:
    """Dotted config params (strategy.name, train.lr, ...): columns with a '.' in their name."""
    return [c for c in table.column_names if "." in c and split_series_column(c) is None]


def value_columns(table: pa.Table) -> list[str]:
    """Numeric metric and series columns of a trials table (what gets mean ± std)."""
    skip = set(ID_COLUMNS) | set(param_columns(table))
    return [
        c for c in table.column_names
        if c not in skip and pa.types.is_floating(table.schema.field(c).type)
    ]


def aggregate_configs(trials: pa.Table, only_included: bool = True) -> pa.Table:
    """One row per config_key (sorted): params, n, seeds, trial_ids and `<m>_mean`, `<m>_std`
    for every metric and series column, over the seed replicas (included trials only)."""
    if only_included:
        trials = trials.filter(trials.column("included"))
    rows = trials.to_pylist()
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: (r["config_key"], r["seed"] or 0, r["trial_id"])):
        groups.setdefault(row["config_key"], []).append(row)
    params = param_columns(trials)
    values = value_columns(trials)
    keys = sorted(groups)
    columns: dict[str, Any] = {"config_key": pa.array(keys, pa.string())}
    for name in params:
        columns[name] = pa.array([groups[k][0][name] for k in keys], trials.schema.field(name).type)
    columns["n"] = pa.array([len(groups[k]) for k in keys], pa.int64())
    columns["seeds"] = pa.array([[r["seed"] for r in groups[k]] for k in keys], pa.list_(pa.int64()))
    columns["trial_ids"] = pa.array(
        [[r["trial_id"] for r in groups[k]] for k in keys], pa.list_(pa.string())
    )
    for name in values:
        stats = [mean_std([r[name] for r in groups[k]]) for k in keys]
        columns[f"{name}_mean"] = pa.array([s[0] for s in stats], pa.float64())
        columns[f"{name}_std"] = pa.array([s[1] for s in stats], pa.float64())
    return pa.table(columns)
