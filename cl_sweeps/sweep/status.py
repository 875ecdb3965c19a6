"""Where a sweep stands, from its records alone (no Ray, no MLflow): one row per trial with its
status, task k/T, objectives so far, elapsed time and ETA, then the Pareto set so far.

`cl-sweeps status <output_dir>` prints it (while the sweep runs or after), and the quiet sweep
console prints the same table now and then. Elapsed time is the trial's measured training and
evaluation seconds, plus, while it runs, the time since its last record was written; ETAs come
from the per-task times measured so far.
"""

from __future__ import annotations

import heapq
import json
import math
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from cl_sweeps.results import METRICS_JSONL
from cl_sweeps.sweep import records
from cl_sweeps.sweep.layout import SweepLayout
from cl_sweeps.sweep.records import TrialRecord
from cl_sweeps.sweep.schema import SweepConfig, load_sweep_raw, parse_sweep_config
from cl_sweeps.sweep.space import expected_tasks, num_trials
from cl_sweeps.sweep.summary import format_summary

OVERRIDES_MARK = "# applied with --set: "
TERMINAL = ("COMPLETED", "PRUNED", "FAILED")


def load_saved_sweep(layout: SweepLayout) -> SweepConfig:
    """The sweep as it was started: the saved sweep.yaml with its --set overrides applied."""
    if not layout.sweep_file.is_file():
        raise FileNotFoundError(f"{layout.root} holds no sweep (no {layout.sweep_file.name})")
    text = layout.sweep_file.read_text()
    overrides = [
        item for line in text.splitlines() if line.startswith(OVERRIDES_MARK)
        for item in shlex.split(line.removeprefix(OVERRIDES_MARK))
    ]
    name = json.loads(layout.state.read_text())["name"] if layout.state.is_file() else None
    raw = load_sweep_raw(layout.sweep_file, overrides)
    return parse_sweep_config(raw, name or layout.root.name)


def task_seconds(record: TrialRecord) -> float:
    """Measured seconds of the finished tasks (training and evaluation, cumulative)."""
    if not record.history:
        return 0.0
    last = record.history[-1]
    return float(last.get("train_seconds", 0.0)) + float(last.get("eval_seconds", 0.0))


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
    value = record.final(metric)
    return value if value is not None else record.final(metric.removesuffix("_final"))


def trial_rows(
    sweep: SweepConfig, layout: SweepLayout, trials: list[TrialRecord], now: float
) -> list[TrialRow]:
    base = sweep.base.model_dump(mode="json")
    per_task = [task_seconds(r) / len(r.history) for r in trials if r.history]
    typical = sum(per_task) / len(per_task) if per_task else None
    rows = []
    for record in trials:
        num_tasks = expected_tasks(base, record.params, list(sweep.seed_keys))
        done = len(record.history)
        elapsed = task_seconds(record)
        eta: float | None = None
        if record.status == "RUNNING":
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
    times = [p.stat().st_mtime for p in (directory / METRICS_JSONL, directory / records.PARAMS_FILE)
             if p.is_file()]
    return max(times, default=time.time())


def sweep_eta(sweep: SweepConfig, rows: list[TrialRow]) -> float | None:
    """Seconds until the last trial ends: the trials not started yet (at the mean measured trial
    time) start as slots free up, the running ones end at their ETAs."""
    pending = max(0, num_trials(sweep) - len(rows))
    running = [r for r in rows if r.status == "RUNNING"]
    if any(r.eta is None for r in running):
        return None
    per_task = [r.elapsed / r.tasks_done for r in rows if r.tasks_done]
    if pending and not per_task:
        return None
    per_trial = sum(per_task) / len(per_task) * rows[0].num_tasks if per_task else 0.0
    slots = max(1, sweep.max_concurrent_trials or len(running))
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
         _duration(r.elapsed), "-" if r.status in TERMINAL else _duration(r.eta)]
        for r in rows
    ]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def sweep_status(output_dir: str | Path, now: float | None = None) -> tuple[str, bool]:
    """The text `cl-sweeps status` prints, and whether every trial of the sweep has ended."""
    layout = SweepLayout(Path(output_dir))
    sweep = load_saved_sweep(layout)
    trials = records.read_trials(layout.trials)
    rows = trial_rows(sweep, layout, trials, time.time() if now is None else now)
    total = num_trials(sweep)
    counts = {s: sum(r.status == s for r in rows) for s in ("RUNNING", *TERMINAL)}
    ended = sum(counts[s] for s in TERMINAL)
    done = ended >= total
    head = (f"sweep {sweep.name!r} in {layout.root}: {ended}/{total} trials ended "
            f"({counts['COMPLETED']} completed, {counts['PRUNED']} pruned, "
            f"{counts['FAILED']} failed), {counts['RUNNING']} running, "
            f"{max(0, total - len(rows))} not started")
    if not done:
        head += f"; ETA {_duration(sweep_eta(sweep, rows))}"
    parts = [head, format_rows(sweep, rows) if rows else "no trial has started yet"]
    summary, _ = format_summary(sweep.name, trials, sweep.objectives)
    parts.append("\n".join(summary.splitlines()[1:]))  # the Pareto set (or best) so far
    return "\n\n".join(parts), done
