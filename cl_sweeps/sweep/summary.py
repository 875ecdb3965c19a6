"""What a sweep prints at the end: configurations averaged over their seeds, then the best ones
(one objective) or the Pareto set (several objectives). Only finished trials count: a trial
stopped early by ASHA, or failed, has no final metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cl_sweeps.sweep.records import TrialRecord, finite
from cl_sweeps.sweep.schema import Objective
from cl_sweeps.sweep.space import SEED_PARAM

TOP_K = 5


@dataclass
class ConfigResult:
    """One configuration: its parameters, its seeds' trials and the objectives' mean ± s.e."""

    config_key: str
    params: dict[str, Any]
    trial_ids: list[str]
    seeds: list[int]
    mean: dict[str, float]
    stderr: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "config_key": self.config_key, "params": self.params, "trial_ids": self.trial_ids,
            "seeds": self.seeds, "mean": self.mean, "stderr": self.stderr,
        }


def aggregate(records: list[TrialRecord], objectives: list[Objective]) -> list[ConfigResult]:
    """Group COMPLETED trials by config_key; mean and standard error of each objective."""
    groups: dict[str, list[TrialRecord]] = {}
    for record in records:
        values = [record.final(o.metric) for o in objectives]
        if record.status == "COMPLETED" and all(finite(v) for v in values):
            groups.setdefault(record.config_key, []).append(record)
    results = []
    for key, members in groups.items():
        mean, stderr = {}, {}
        for objective in objectives:
            values = [m.final(objective.metric) for m in members]
            mean[objective.metric] = sum(values) / len(values)
            stderr[objective.metric] = _stderr(values)
        params = {k: v for k, v in members[0].params.items() if k != SEED_PARAM}
        results.append(ConfigResult(
            key, params, [m.trial_id for m in members], [m.seed for m in members], mean, stderr
        ))
    return results


def _stderr(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return float("nan")
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def _signed(result: ConfigResult, objective: Objective) -> float:
    value = result.mean[objective.metric]
    return value if objective.mode == "min" else -value


def best(results: list[ConfigResult], objective: Objective, k: int = TOP_K) -> list[ConfigResult]:
    return sorted(results, key=lambda r: _signed(r, objective))[:k]


def pareto_set(results: list[ConfigResult], objectives: list[Objective]) -> list[ConfigResult]:
    """Configurations no other configuration beats on every objective (ties kept), sorted by
    the first objective."""

    def dominates(a: ConfigResult, b: ConfigResult) -> bool:
        pairs = [(_signed(a, o), _signed(b, o)) for o in objectives]
        return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)

    front = [r for r in results if not any(dominates(o, r) for o in results if o is not r)]
    return sorted(front, key=lambda r: _signed(r, objectives[0]))


def select(results: list[ConfigResult], objectives: list[Objective]) -> list[ConfigResult]:
    """The best configurations (one objective) or the Pareto set (several)."""
    if len(objectives) == 1:
        return best(results, objectives[0])
    return pareto_set(results, objectives)


def status_counts(records: list[TrialRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        counts[record.status] = counts.get(record.status, 0) + 1
    return counts


def format_summary(
    name: str, records: list[TrialRecord], objectives: list[Objective]
) -> tuple[str, list[ConfigResult]]:
    """The text printed at the end of a sweep, and the configurations it lists."""
    results = aggregate(records, objectives)
    chosen = select(results, objectives)
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(status_counts(records).items()))
    goal = ", ".join(f"{o.metric} ({o.mode})" for o in objectives)
    title = (
        f"Best configurations by {goal}" if len(objectives) == 1
        else f"Pareto set over {goal}: {len(chosen)} of {len(results)} configurations"
    )
    lines = [f"Sweep {name!r}: {len(records)} trials ({counts or 'none'})", title]
    if not chosen:
        lines.append("  no configuration finished all its tasks")
        return "\n".join(lines), chosen
    lines.append(_table(chosen, objectives))
    return "\n".join(lines), chosen


def _table(results: list[ConfigResult], objectives: list[Objective]) -> str:
    param_keys: list[str] = []
    for result in results:
        param_keys += [k for k in result.params if k not in param_keys]
    header = ["config", *[o.metric for o in objectives], "n", "seeds", *param_keys, "trials"]
    rows = []
    for r in results:
        cells = [r.config_key]
        for o in objectives:
            m, se = r.mean[o.metric], r.stderr[o.metric]
            cells.append(f"{m:.4g}" if math.isnan(se) else f"{m:.4g} ± {se:.2g}")
        cells.append(str(len(r.trial_ids)))
        cells.append(",".join(str(seed) for seed in sorted(set(r.seeds))))
        cells += [_short(r.params.get(k, "-")) for k in param_keys]
        cells.append(",".join(r.trial_ids))
        rows.append(cells)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    out = ["  " + "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    out += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(out)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def compute_spent(records: list[TrialRecord]) -> dict[str, float]:
    """Training TFLOPs the trials report (each its full sequence so far, task 0 included) and
    what the sweep actually spent: a task 0 reused from a shared prefix was computed once."""
    reported = sum(r.final("train_tflops") or 0.0 for r in records)
    saved = sum(r.final("reused_train_tflops") or 0.0 for r in records)
    reuses = sum(1 for r in records if (r.final("reused_train_tflops") or 0.0) > 0)
    return {
        "sweep_train_tflops_reported": reported,
        "sweep_train_tflops_spent": reported - saved,
        "sweep_train_tflops_saved": saved,
        "prefix_reuses": float(reuses),
    }
