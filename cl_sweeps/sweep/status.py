"""Where a sweep stands, from its records alone (no Ray, no MLflow): one row per trial with its
status, task k/T, objectives so far, elapsed time and ETA, then the Pareto set so far and each
strategy's best configuration.

`cl-sweeps status <output_dir>` prints it (while the sweep runs or after), and the quiet sweep
console prints the same table now and then. Elapsed time is the trial's measured training and
evaluation seconds, plus, while it runs, the time since its last record was written; ETAs come
from the per-task times measured so far.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass
from pathlib import Path

from cl_sweeps import records
from cl_sweeps.formatting import text_table
from cl_sweeps.metrics import per_task_form
from cl_sweeps.records import SweepLayout, TrialLayout, TrialRecord
from cl_sweeps.sweep import budget as budgets
from cl_sweeps.sweep.heartbeat import driver_state
from cl_sweeps.sweep.plan import SweepPlan
from cl_sweeps.sweep.schema import SweepConfig, parse_sweep_config

INTERRUPTED = "INTERRUPTED"  # shown for a RUNNING record whose driver is gone (heartbeat.py)


def load_saved_sweep(layout: SweepLayout) -> SweepConfig:
    """The sweep as it runs: its resolved config (--set applied, defaults filled)."""
    resolved = records.read_yaml_mapping(layout.resolved)
    if resolved is None:
        raise FileNotFoundError(f"{layout.root} holds no sweep (no {layout.resolved.name})")
    return parse_sweep_config(resolved)


def task_seconds(record: TrialRecord) -> float:
    """Measured seconds of the finished tasks (training and evaluation, cumulative)."""
    return record.final.get("train_seconds", 0.0) + record.final.get("eval_seconds", 0.0)


@dataclass
class TrialRow:
    """One line of the status table."""

    trial_id: str
    strategy: str
    status: str
    tasks_done: int
    num_tasks: int
    objectives: dict[str, float | None]
    elapsed: float
    eta: float | None


def objective_so_far(record: TrialRecord, metric: str) -> float | None:
    """The objective after the last task, or, before it, its per-task form (fid for fid_final)."""
    value = record.final.get(metric)
    return value if value is not None else record.final.get(per_task_form(metric))


def trial_rows(
    plan: SweepPlan, layout: SweepLayout, trials: list[TrialRecord], now: float
) -> list[TrialRow]:
    """`layout`: where the records are read (the directory given, wherever the sweep ran)."""
    sweep = plan.sweep
    per_task = [task_seconds(r) / r.tasks_done for r in trials if r.tasks_done]
    typical = sum(per_task) / len(per_task) if per_task else None
    rows = []
    for record in trials:
        num_tasks = record.num_tasks or plan.tasks_of(record.params)
        done = record.tasks_done
        elapsed = task_seconds(record)
        eta: float | None = None
        if record.status == records.RUNNING:
            since = max(0.0, now - last_write(layout.trial(record.trial_id)))
            elapsed += since  # the task in progress
            per = task_seconds(record) / done if done else typical
            if per is not None:
                eta = max(0.0, per * (num_tasks - done) - since)
        rows.append(TrialRow(
            record.trial_id, str(record.params.get("strategy.name", sweep.base.strategy.name)),
            record.status, done, num_tasks,
            {o.metric: objective_so_far(record, o.metric) for o in sweep.objectives},
            elapsed, eta,
        ))
    return rows


def last_write(directory: Path) -> float:
    """When the driver last wrote this trial's records (its start, or its last finished task)."""
    files = TrialLayout(directory)
    times = [p.stat().st_mtime for p in (files.metrics_jsonl, files.params) if p.is_file()]
    return max(times, default=time.time())


def sweep_eta(plan: SweepPlan, rows: list[TrialRow]) -> float | None:
    """Seconds until the last trial ends: the trials not started yet (at the mean measured trial
    time) start as slots free up, the running ones end at their ETAs."""
    pending = max(0, plan.trials - len(rows))
    running = [r for r in rows if r.status == records.RUNNING]
    if any(r.eta is None for r in running):
        return None
    per_task = [r.elapsed / r.tasks_done for r in rows if r.tasks_done]
    if pending and not per_task:
        return None
    per_trial = sum(per_task) / len(per_task) * rows[0].num_tasks if per_task else 0.0
    slots = max(1, plan.sweep.max_concurrent_trials or len(running))
    ends = sorted(r.eta or 0.0 for r in running)[-slots:]
    ends += [0.0] * (slots - len(ends))
    heapq.heapify(ends)
    for _ in range(pending):
        heapq.heappush(ends, heapq.heappop(ends) + per_trial)
    return max(ends, default=0.0)


def _duration(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "?"
    whole = round(seconds)
    if whole >= 3600:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 60}m{whole % 60:02d}s"


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def format_rows(sweep: SweepConfig, rows: list[TrialRow]) -> str:
    """The status table: trial, strategy, status, task k/T, objectives so far, elapsed, ETA."""
    header = ["trial", "strategy", "status", "task", *[o.metric for o in sweep.objectives],
              "elapsed", "eta"]
    cells = [
        [r.trial_id, r.strategy, r.status, f"{r.tasks_done}/{r.num_tasks}",
         *[_value(r.objectives[o.metric]) for o in sweep.objectives],
         _duration(r.elapsed), "-" if r.status in (*records.ENDED, INTERRUPTED) else _duration(r.eta)]
        for r in rows
    ]
    return text_table(header, cells)


def sweep_status(output_dir: str | Path, now: float | None = None) -> tuple[str, bool]:
    """The text `cl-sweeps status` prints, and whether the sweep has ended (every trial ended, or
    its driver surely is gone). While the driver is gone or silent, RUNNING records are shown as
    INTERRUPTED."""
    layout = SweepLayout(Path(output_dir))
    sweep = load_saved_sweep(layout)
    plan = SweepPlan(sweep)
    trials = records.read_trials(layout.trials)
    now = time.time() if now is None else now
    rows = trial_rows(plan, layout, trials, now)
    driver = driver_state(layout, now)
    stopped = driver is not None and not driver.alive
    if stopped:
        for row in rows:
            if row.status == records.RUNNING:
                row.status, row.eta = INTERRUPTED, None
    total = plan.trials
    counts = {s: sum(r.status == s for r in rows)
              for s in (records.RUNNING, INTERRUPTED, *records.ENDED)}
    ended = sum(counts[s] for s in records.ENDED)
    budget = budgets.sweep_summary(sweep, layout)
    by_budget = bool(budget and budget.get("ended")) and not counts[records.RUNNING]
    done = ended >= total or (stopped and driver.certain) or by_budget
    head = (f"sweep {sweep.name!r} in {layout.root}: {ended}/{total} trials ended "
            f"({counts[records.COMPLETED]} completed, {counts[records.PRUNED]} pruned, "
            f"{counts[records.FAILED]} failed), {counts[records.RUNNING]} running, "
            f"{max(0, total - len(rows))} not started")
    if by_budget:
        head += "; ended by its budget"
    elif stopped and ended < total:
        head += (f"; the sweep's driver is not running (last seen "
                 f"{_duration(driver.since_beat)} ago): {counts[INTERRUPTED]} interrupted; "
                 f"continue with  cl-sweeps sweep FILE --resume  (FILE: {layout.sweep_file})")
    elif not done:
        head += f"; ETA {_duration(sweep_eta(plan, rows))}"
    parts = [head, format_rows(sweep, rows) if rows else "no trial has started yet"]
    if budget is not None:
        parts.insert(1, budgets.summary_line(budget))
    parts.append(frontier_so_far(sweep, layout))
    return "\n\n".join(parts), done


def frontier_so_far(sweep: SweepConfig, layout: SweepLayout) -> str:
    """The Pareto set of the finished configurations, over the sweep's own objectives, and each
    strategy's best configuration so far."""
    from cl_sweeps.frontier import compute_frontier, frontier_summary_text

    frontier = compute_frontier(
        records.read_sweep_dir(layout.root), [o.metric for o in sweep.objectives],
        [o.mode for o in sweep.objectives],
    )
    return frontier_summary_text(frontier)
