"""A sweep's budget (`budget:` in the sweep file): what it has spent, what is left, and whether
the next configuration still fits.

Spent is read from the trial records, so a resumed sweep counts what it spent before:
- `train_tflops`: training TFLOPs the trials computed (a shared task-0 prefix once, as in
  records.compute_spent); `tflops`: that plus evaluation-sampling TFLOPs;
- `trials`: trials started (each seed replica is one);
- `wall_hours`: the driver's wall clock, summed over its runs (kept in budget.json).
Trials a warm start imported (sweep/warm_start.py) were paid for by another sweep: they are
not spent by this one (shown apart, as reused), though their costs still estimate the next
configuration's.

The searcher asks `why_not` before it hands Tune a new configuration: the configuration's cost
is estimated from the finished trials of its strategy (mean per trial x seeds), else from that
strategy's running trials (their cost per task so far x tasks), else from any finished trial;
before any task has ended nothing is known and the configuration starts. What the running
trials will still spend (extrapolated the same way) counts as committed. So the sweep stops
proposing once the next configuration could not finish within what is left; running trials
finish, or, with `hard: true`, stop at the task boundary where their next task would pass the
budget (`hard_stop`), PRUNED with the reason. Wall time: a configuration's replicas may run in
parallel, so it needs one trial's duration.

Plain data and records only (no Ray, no torch): schema, searcher, status and console import it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, StrictBool, model_validator

from cl_sweeps import records
from cl_sweeps.config import _Strict as StrictModel
from cl_sweeps.formatting import fmt_number
from cl_sweeps.records import SweepLayout, TrialRecord

LIMITS = ("train_tflops", "tflops", "wall_hours", "trials")
TFLOP_LIMITS = ("train_tflops", "tflops")


class BudgetConfig(StrictModel):
    """`budget:` in a sweep file: any of the limits; the sweep stops proposing configurations
    that could not finish within what is left."""

    train_tflops: float | None = Field(
        default=None, gt=0, description="Training TFLOPs of all trials (shared prefixes once)."
    )
    tflops: float | None = Field(
        default=None, gt=0, description="Training plus evaluation-sampling TFLOPs."
    )
    wall_hours: float | None = Field(
        default=None, gt=0, description="Wall-clock hours of the sweep's driver, over resumes."
    )
    trials: int | None = Field(
        default=None, gt=0, description="Trials started (each seed replica counts one)."
    )
    hard: StrictBool = Field(
        default=False, description="Also stop running trials at the task boundary where their "
        "next task would pass a TFLOP or wall-clock limit (PRUNED, with the reason).",
    )

    @model_validator(mode="after")
    def _some_limit(self) -> BudgetConfig:
        if not self.limits():
            raise ValueError(f"no limit; allowed: any of {', '.join(LIMITS)} (and hard)")
        return self

    def limits(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in LIMITS
                if getattr(self, name) is not None}


def trial_cost(record: TrialRecord) -> dict[str, float]:
    """What one trial has spent so far, per limit (wall_hours: its own duration)."""
    final = record.final
    train = final.get("train_tflops", 0.0) - final.get("reused_train_tflops", 0.0)
    seconds = final.get("train_seconds", 0.0) + final.get("eval_seconds", 0.0)
    return {"train_tflops": train, "tflops": train + final.get("eval_tflops", 0.0),
            "wall_hours": seconds / 3600, "trials": 1.0}


def _complete(record: TrialRecord) -> bool:
    return record.num_tasks is None or record.tasks_done >= record.num_tasks


def _finished(record: TrialRecord) -> bool:
    return record.status == records.COMPLETED and _complete(record)


def _full_cost(record: TrialRecord) -> dict[str, float] | None:
    """A trial's cost over its whole sequence: as spent if it reported every task, else its
    cost per task so far times its tasks; None before its first task ended."""
    cost = trial_cost(record)
    if _complete(record):
        return cost
    if not record.tasks_done:
        return None
    scale = record.num_tasks / record.tasks_done
    return {k: v * scale if k != "trials" else v for k, v in cost.items()}


def _mean(costs: list[dict[str, float]]) -> dict[str, float] | None:
    if not costs:
        return None
    return {k: sum(c[k] for c in costs) / len(costs) for k in costs[0]}


def strategy_of(params: dict[str, Any], default: str) -> str:
    return str(params.get("strategy.name") or default)


def estimate_trial(
    trials: list[TrialRecord], strategy: str, default_strategy: str
) -> dict[str, float] | None:
    """One trial of `strategy`, whole sequence: finished trials of it, else its running ones
    extrapolated, else any finished trial; None when nothing is known yet."""
    mine = [t for t in trials if strategy_of(t.params, default_strategy) == strategy]
    for pool in ([t for t in mine if _finished(t)], mine, [t for t in trials if _finished(t)]):
        estimate = _mean([c for c in map(_full_cost, pool) if c is not None])
        if estimate is not None:
            return estimate
    return None


def committed(trials: list[TrialRecord], default_strategy: str) -> dict[str, float]:
    """TFLOPs the running trials will still spend (their own pace, else their strategy's)."""
    left = dict.fromkeys(TFLOP_LIMITS, 0.0)
    for trial in trials:
        if trial.status != records.RUNNING:
            continue
        full = _full_cost(trial) or estimate_trial(
            trials, strategy_of(trial.params, default_strategy), default_strategy)
        spent = trial_cost(trial)
        for name in TFLOP_LIMITS:
            left[name] += max(0.0, (full or spent)[name] - spent[name])
    return left


@dataclass
class Spending:
    """Spent per limit, and what the running trials are expected to add (TFLOPs only)."""

    spent: dict[str, float]
    committed: dict[str, float]


def spending(
    trials: list[TrialRecord], wall_seconds: float, trials_started: int, default_strategy: str
) -> Spending:
    """What this sweep spent: its own trials, not the ones a warm start imported."""
    own = [t for t in trials if not t.imported]
    costs = [trial_cost(t) for t in own]
    spent = {name: sum(c[name] for c in costs) for name in TFLOP_LIMITS}
    spent["trials"] = float(max(trials_started, len(own)))
    spent["wall_hours"] = wall_seconds / 3600
    return Spending(spent, committed(trials, default_strategy))


def why_not(
    budget: BudgetConfig, trials: list[TrialRecord], strategy: str, replicas: int,
    wall_seconds: float, trials_started: int, default_strategy: str,
) -> str | None:
    """Why a new configuration of `strategy` (run `replicas` times) would not fit the budget,
    or None if it fits (see the module doc)."""
    now = spending(trials, wall_seconds, trials_started, default_strategy)
    per_trial = estimate_trial(trials, strategy, default_strategy)
    for name, cap in budget.limits().items():
        used = now.spent[name] + now.committed.get(name, 0.0)
        if name == "trials":
            need: float | None = float(replicas)
        elif per_trial is None:
            need = None
        else:
            need = per_trial[name] * (1 if name == "wall_hours" else replicas)
        if used >= cap or (need is not None and used + need > cap):
            running = now.committed.get(name, 0.0)
            also = f" + ~{fmt_number(running)} for running trials" if running > 0 else ""
            needs = "" if need is None else f"; the next configuration needs ~{fmt_number(need)}"
            return (f"budget {name}: {fmt_number(now.spent[name])}{also} of "
                    f"{fmt_number(cap)} spent{needs} ({strategy}, {replicas} seed(s))")
    return None


def hard_stop(
    budget: BudgetConfig, trials: list[TrialRecord], trial: TrialRecord, wall_seconds: float
) -> str | None:
    """With `hard: true`, why `trial` (records as of its latest task) must stop before its next
    task: that task, at the trial's pace so far, would pass a TFLOP or wall-clock limit."""
    if not budget.hard or not trial.tasks_done:
        return None
    pace = {k: v / trial.tasks_done for k, v in trial_cost(trial).items()}
    spent = spending(trials, wall_seconds, 0, "").spent
    for name, cap in budget.limits().items():
        if name == "trials":
            continue
        if spent[name] + pace[name] > cap:
            return (f"budget {name} (hard): {fmt_number(spent[name])} of {fmt_number(cap)} "
                    f"spent; the next task needs ~{fmt_number(pace[name])}")
    return None


def with_result(trials: list[TrialRecord], trial_id: str, row: dict[str, Any]) -> TrialRecord:
    """The record of `trial_id` with a result Tune has not handed to the records yet; it
    replaces that record in `trials` (added if the trial has none)."""
    for index, record in enumerate(trials):
        if record.trial_id == trial_id:
            break
    else:
        record = TrialRecord(trial_id, "", None, records.RUNNING)
        trials.append(record)
        index = len(trials) - 1
    final = {**record.final, **{k: float(v) for k, v in row.items()
                                if isinstance(v, int | float) and not isinstance(v, bool)}}
    tasks = max(record.tasks_done, int(row.get("task", -1)) + 1)
    trials[index] = TrialRecord(
        record.trial_id, record.config_key, record.seed, record.status, record.error,
        record.params, final, record.series, tasks, record.num_tasks,
    )
    return trials[index]


# --- the driver's state (budget.json) and what readers show ---------------------------------


def read_state(layout: SweepLayout) -> dict[str, Any]:
    """budget.json: {wall_seconds, at (when written), trials_started, ended}; {} if the sweep
    wrote none."""
    return records.read_json_mapping(layout.budget) or {}


def write_state(layout: SweepLayout, wall_seconds: float, trials_started: int,
                ended: str | None) -> None:
    records.write_json(layout.budget, {
        "wall_seconds": wall_seconds, "at": time.time(), "trials_started": trials_started,
        "ended": ended,
    })


def reused(trials: list[TrialRecord]) -> dict[str, float]:
    """What the imported trials cost the sweeps they came from: {trials, train_tflops,
    tflops}."""
    costs = [trial_cost(t) for t in trials if t.imported]
    return {"trials": float(len(costs)),
            **{name: sum(c[name] for c in costs) for name in TFLOP_LIMITS}}


def summary(budget: BudgetConfig, layout: SweepLayout, default_strategy: str) -> dict[str, Any]:
    """{limit: {budget, spent, left}, hard, ended, reused}: for best_trials.json, status,
    console (reused: what imported trials cost elsewhere, not counted as spent)."""
    state = read_state(layout)
    trials = records.read_trials(layout.trials)
    now = spending(trials, float(state.get("wall_seconds") or 0.0),
                   int(state.get("trials_started") or 0), default_strategy)
    out: dict[str, Any] = {
        name: {"budget": cap, "spent": now.spent[name], "left": max(0.0, cap - now.spent[name])}
        for name, cap in budget.limits().items()
    }
    return {**out, "hard": budget.hard, "ended": state.get("ended"), "reused": reused(trials)}


def limits_of(budget_summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The summary's limits only ({name: {budget, spent, left}})."""
    return {name: budget_summary[name] for name in LIMITS if name in budget_summary}


def summary_line(budget_summary: dict[str, Any]) -> str:
    """'budget: train_tflops 3.2 of 10 spent (6.8 left); trials 4 of 6 (2 left)', then what
    a warm start reused and why the budget ended the sweep, if it did."""
    parts = [
        f"{name} {fmt_number(v['spent'])} of {fmt_number(v['budget'])} spent "
        f"({fmt_number(v['left'])} left)"
        for name, v in limits_of(budget_summary).items()
    ]
    line = "budget: " + "; ".join(parts)
    reuse = budget_summary.get("reused") or {}
    if reuse.get("trials"):
        line += (f"\nreused, not spent: {fmt_number(reuse['trials'])} trials imported by the "
                 f"warm start ({fmt_number(reuse['train_tflops'])} training TFLOPs)")
    ended = budget_summary.get("ended")
    return line + (f"\nended by the budget: {ended}" if ended else "")


def parent_metrics(resolved: dict[str, Any] | None, output_dir: Path) -> dict[str, float]:
    """The parent run's live sweep/budget_used (the largest share of a limit spent, 1 = used
    up) and sweep/budget_left (1 minus it, at least 0); {} without a budget."""
    section = (resolved or {}).get("budget")
    if not section:
        return {}
    budget = BudgetConfig.model_validate(section)
    default = ((resolved.get("base") or {}).get("strategy") or {}).get("name") or "naive"
    shares = [v["spent"] / v["budget"]
              for v in limits_of(summary(budget, SweepLayout(output_dir), default)).values()]
    used = max(shares)
    return {"sweep/budget_used": used, "sweep/budget_left": max(0.0, 1.0 - used)}


def sweep_summary(sweep: Any, layout: SweepLayout) -> dict[str, Any] | None:
    """`summary` of a SweepConfig's budget; None for a sweep without one."""
    if sweep.budget is None:
        return None
    return summary(sweep.budget, layout, sweep.base.strategy.name)
