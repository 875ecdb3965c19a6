"""Per-trial files under <output_dir>/trials/<trial_id>/, written by the sweep driver.

The driver sees every trial's config, results and end, wherever the trial ran, so these files are
complete on the machine that ran the sweep even on a multi-node cluster (checkpoints, by
contrast, live where the trial ran and in Ray's storage_path). Layout (see the README):
params.json, status.json, metrics.jsonl and metrics.parquet (one row per finished task).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cl_sweeps.results import METRICS_JSONL, atomic_write, write_task_metrics

PARAMS_FILE = "params.json"
STATUS_FILE = "status.json"
STATUSES = ("RUNNING", "COMPLETED", "PRUNED", "FAILED")


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomic JSON write (temporary name, then rename)."""
    text = json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_params(
    directory: Path, trial_id: str, key: str, seed: int, params: dict[str, Any]
) -> None:
    write_json(
        directory / PARAMS_FILE,
        {"trial_id": trial_id, "config_key": key, "seed": seed, "params": params},
    )


def write_status(directory: Path, status: str, error: str | None = None) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown trial status {status!r}; allowed: {', '.join(STATUSES)}")
    write_json(directory / STATUS_FILE, {"status": status, "error": error})


def read_history(directory: Path) -> list[dict[str, Any]]:
    path = directory / METRICS_JSONL
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def record_task(directory: Path, row: dict[str, Any]) -> list[dict[str, Any]]:
    """Add one task's metrics; a task reported again (after a restart) replaces the old row and
    everything after it, so each task appears once."""
    task = int(row["task"])
    history = [r for r in read_history(directory) if int(r["task"]) < task] + [row]
    write_task_metrics(directory, history)
    return history


@dataclass
class TrialRecord:
    """One trial as recorded on disk."""

    trial_id: str
    config_key: str
    seed: int
    params: dict[str, Any]
    status: str
    error: str | None
    history: list[dict[str, Any]] = field(default_factory=list)

    def final(self, metric: str) -> float | None:
        """The metric's value after the last reported task (None if never reported)."""
        for row in reversed(self.history):
            value = row.get(metric)
            if value is not None:
                return float(value)
        return None


def read_trial(directory: Path) -> TrialRecord | None:
    params_file = directory / PARAMS_FILE
    if not params_file.is_file():
        return None
    params = json.loads(params_file.read_text())
    status_file = directory / STATUS_FILE
    status = json.loads(status_file.read_text()) if status_file.is_file() else {}
    return TrialRecord(
        trial_id=params["trial_id"],
        config_key=params["config_key"],
        seed=params["seed"],
        params=params["params"],
        status=status.get("status", "RUNNING"),
        error=status.get("error"),
        history=read_history(directory),
    )


def read_trials(trials_dir: Path) -> list[TrialRecord]:
    """Every recorded trial, in trial-id order."""
    if not trials_dir.is_dir():
        return []
    records = (read_trial(d) for d in sorted(trials_dir.iterdir()) if d.is_dir())
    return [r for r in records if r is not None]


def finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value)
