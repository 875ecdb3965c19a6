"""The trial records of a sweep: where they live, what one holds, how they are written and read.

The sweep driver writes them (it sees every trial's config, results and end, wherever the trial
ran, so they are complete on the machine that ran the sweep even on a multi-node cluster);
frontier, report, status and resume read them. The MLflow reader (frontier/mlflow_runs.py) produces
the same `TrialRecord`s from the runs, using the tag names defined here, so everything
downstream works on records only and both sources give the same tables by construction.

Layout of a sweep's output_dir (see the README's "Sweep output"):

    sweep.yaml               the file as submitted (--set options noted at its end)
    sweep_resolved.yaml      the validated sweep after --set, defaults filled, paths absolute:
                             what ran, and what every later reader uses
    search_space.json  sweep_state.json  best_trials.json  mlflow.db  optuna.db  mlartifacts/
    ray/
    frontier/                tables, plots and summary of the end-of-sweep frontier
    budget.json              the driver's clock and why a budget ended the sweep
    mlflow_spool.jsonl       the parent run's MLflow operations, spooled (sweep/spool.py)
    warm_start.json          what warm_start imported, from which sweeps
    trials/<trial_id>/       params.json  status.json  metrics.jsonl  metrics.parquet
                             events.jsonl (the trial's own log)  mlflow_spool.jsonl
                             feasibility.json (with `constraints:`, once its configuration ended)
                             stop_reason.json (stopped by a hard budget)
                             divergence.json (why it failed for good: a non-finite value)
                             origin.json (copied by warm_start: from which sweep and trial)

Every path of that layout is a property of `SweepLayout` or `TrialLayout`; no other module
spells a file name of it (tests/test_layout_paths.py).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cl_sweeps.hashing import content_hash
from cl_sweeps.results import (
    METRICS_JSONL,
    METRICS_PARQUET,
    JsonLines,
    append_json_line,
    atomic_write,
    read_json_lines,
    write_task_metrics,
)

log = logging.getLogger(__name__)

PARAMS_FILE = "params.json"
STATUS_FILE = "status.json"
FEASIBILITY_FILE = "feasibility.json"
STOP_REASON_FILE = "stop_reason.json"
SWEEP_FILE = "sweep.yaml"
RESOLVED_FILE = "sweep_resolved.yaml"
EVENTS_FILE = "events.jsonl"
DIVERGENCE_FILE = "divergence.json"
SPOOL_FILE = "mlflow_spool.jsonl"  # in the sweep's output_dir and in each trial's folder
BUDGET_FILE = "budget.json"
WARM_START_FILE = "warm_start.json"
ORIGIN_FILE = "origin.json"
TRIALS_DIR = "trials"

RUNNING, COMPLETED, PRUNED, FAILED = "RUNNING", "COMPLETED", "PRUNED", "FAILED"
STATUSES = (RUNNING, COMPLETED, PRUNED, FAILED)
ENDED = (COMPLETED, PRUNED, FAILED)  # a trial in one of these will not report again
UNKNOWN = "UNKNOWN"  # a record whose status cannot be read

SEED_PARAM = "seed"  # the trial parameter holding the replica's seed

# MLflow names shared by the writer (sweep/tracking.py) and the reader (frontier/mlflow_runs.py).
PARENT_TAG = "mlflow.parentRunId"
ROLE_TAG = "cl_sweeps.role"  # SWEEP_ROLE on the parent run, TRIAL_ROLE on nested runs
SWEEP_ROLE, TRIAL_ROLE = "sweep", "trial"
SWEEP_TAG = "cl_sweeps.sweep"
TRIAL_ID_TAG = "trial_id"
CONFIG_KEY_TAG = "config_key"
SEED_TAG = "seed"
STRATEGY_TAG = "strategy"
NUM_TASKS_TAG = "num_tasks"
STATUS_TAG = "status"
ERROR_TAG = "error"
RESTARTS_TAG = "restarts"  # how often a trial's run was continued after a failure
OUTPUT_DIR_TAG = "output_dir"  # the parent run's sweep directory
OPTUNA_STORAGE_TAG = "optuna_storage"
FEASIBLE_TAG = "feasible"  # "true"/"false": the configuration keeps the sweep's constraints
VIOLATIONS_TAG = "violations"  # what it breaks ('; '-joined), with `feasible: false`

# Metrics whose whole per-task history a record keeps (the others keep only their last value):
# the ones a frontier or a per-task plot needs, not all of them × T.
SERIES_METRICS = ("fid", "kld", "ard", "forgetting", "denoise_loss", "train_tflops")


@dataclass(frozen=True)
class SweepLayout:
    """The files of one sweep under its output_dir."""

    root: Path

    @property
    def sweep_file(self) -> Path:
        return self.root / SWEEP_FILE

    @property
    def resolved(self) -> Path:
        return self.root / RESOLVED_FILE

    @property
    def search_space(self) -> Path:
        return self.root / "search_space.json"

    @property
    def state(self) -> Path:
        return self.root / "sweep_state.json"

    @property
    def driver(self) -> Path:
        """The driver's heartbeat (sweep/heartbeat.py)."""
        return self.root / "driver.json"

    @property
    def lock(self) -> Path:
        """Held (flock) by the one driver running the sweep (sweep/driver_lock.py)."""
        return self.root / "driver.lock"

    @property
    def best(self) -> Path:
        return self.root / "best_trials.json"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def optuna_db(self) -> Path:
        """The Optuna study's SQLite file, unless the sweep file sets optuna_storage."""
        return self.root / "optuna.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def ray(self) -> Path:
        return self.root / "ray"

    @property
    def frontier(self) -> Path:
        return self.root / "frontier"

    @property
    def trials(self) -> Path:
        return self.root / TRIALS_DIR

    @property
    def budget(self) -> Path:
        """The driver's clock and why a budget ended the sweep (sweep/budget.py)."""
        return self.root / BUDGET_FILE

    @property
    def spool(self) -> Path:
        """The parent run's spooled MLflow operations (sweep/tracking.py)."""
        return self.root / SPOOL_FILE

    @property
    def warm_start(self) -> Path:
        """What warm_start imported from which sweeps (sweep/warm_start.py)."""
        return self.root / WARM_START_FILE

    def trial(self, trial_id: str) -> Path:
        return self.trials / trial_id

    def trial_spools(self) -> list[Path]:
        """Every trial's spool, in trial order."""
        return sorted(self.trials.glob(f"*/{SPOOL_FILE}"))


@dataclass(frozen=True)
class TrialLayout:
    """The files of one trial under trials/<trial_id>/ (its `root`)."""

    root: Path

    @property
    def params(self) -> Path:
        return self.root / PARAMS_FILE

    @property
    def status(self) -> Path:
        return self.root / STATUS_FILE

    @property
    def feasibility(self) -> Path:
        return self.root / FEASIBILITY_FILE

    @property
    def stop_reason(self) -> Path:
        return self.root / STOP_REASON_FILE

    @property
    def metrics_jsonl(self) -> Path:
        return self.root / METRICS_JSONL

    @property
    def metrics_parquet(self) -> Path:
        return self.root / METRICS_PARQUET

    @property
    def events(self) -> Path:
        """The trial's own log of what happened to it, appended by the trial (trainable.py)."""
        return self.root / EVENTS_FILE

    @property
    def divergence(self) -> Path:
        """Why the trial failed for good, if it did (trainable.py)."""
        return self.root / DIVERGENCE_FILE

    @property
    def spool(self) -> Path:
        """The trial's spooled MLflow operations (sweep/tracking.py)."""
        return self.root / SPOOL_FILE

    @property
    def origin(self) -> Path:
        """The sweep and trial a warm-started trial was copied from (sweep/warm_start.py)."""
        return self.root / ORIGIN_FILE


def config_key(params: dict[str, Any]) -> str:
    """Short hash of a trial's parameters without the seed: seed replicas share it."""
    body = {k: v for k, v in params.items() if k != SEED_PARAM}
    return content_hash(body, 10)


@dataclass
class TrialRecord:
    """One trial as reported, whatever the source: identity, params and metric values."""

    trial_id: str
    config_key: str
    seed: int | None
    status: str
    error: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # dotted trial-config keys, no seed
    final: dict[str, float] = field(default_factory=dict)  # last reported value per metric
    series: dict[str, dict[int, float]] = field(default_factory=dict)  # metric -> task -> value
    tasks_done: int = 0
    num_tasks: int | None = None  # tasks the trial's sequence has (None: not recorded)
    violations: list[str] | None = None  # constraints its configuration breaks (None: not judged)
    imported: bool = False  # copied from another sweep by a warm start (it has an origin.json)


def compute_spent(trials: list[TrialRecord]) -> dict[str, float]:
    """Training TFLOPs the trials report (each its full sequence so far, task 0 included) and
    what the sweep actually spent: a task 0 reused from a shared prefix was computed once."""
    reported = sum(r.final.get("train_tflops", 0.0) for r in trials)
    saved = sum(r.final.get("reused_train_tflops", 0.0) for r in trials)
    reuses = sum(1 for r in trials if r.final.get("reused_train_tflops", 0.0) > 0)
    return {
        "sweep_train_tflops_reported": reported,
        "sweep_train_tflops_spent": reported - saved,
        "sweep_train_tflops_saved": saved,
        "prefix_reuses": float(reuses),
    }


# --- writing (the sweep driver) ---------------------------------------------------------------


def to_json(payload: Any) -> str:
    """Strict JSON: NaN and ±inf become null (a bare NaN is not JSON); other objects str()."""
    return json.dumps(_finite(payload), indent=2, default=str, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_json(path: Path, payload: Any) -> None:
    """Atomic, strict JSON write (temporary name, then rename)."""
    text = to_json(payload)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_yaml(path: Path, payload: dict[str, Any]) -> None:
    text = yaml.safe_dump(payload, sort_keys=False)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_params(directory: Path, trial_id: str, params: dict[str, Any], num_tasks: int) -> None:
    """params.json: the trial's identity, its sampled parameters (seed included) and its tasks."""
    write_json(TrialLayout(directory).params, {
        "trial_id": trial_id, "config_key": config_key(params), "seed": params.get(SEED_PARAM),
        "num_tasks": num_tasks, "params": params,
    })


def write_status(directory: Path, status: str, error: str | None = None) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown trial status {status!r}; allowed: {', '.join(STATUSES)}")
    write_json(TrialLayout(directory).status, {"status": status, "error": error})


def write_feasibility(directory: Path, violations: list[str]) -> None:
    """feasibility.json: whether the trial's configuration (judged on its seeds' mean,
    cl_sweeps/constraints.py) keeps the sweep's constraints, and what it breaks."""
    write_json(TrialLayout(directory).feasibility,
               {"feasible": not violations, "violations": violations})


def write_stop_reason(directory: Path, reason: str) -> None:
    """Why the sweep stops a running trial (a hard budget); the trial ends PRUNED with it."""
    write_json(TrialLayout(directory).stop_reason, {"reason": reason})


def read_stop_reason(directory: Path) -> str | None:
    return (_read_json(TrialLayout(directory).stop_reason) or {}).get("reason")


def append_event(directory: Path, event: str, **fields: Any) -> None:
    """One line of the trial's events.jsonl (attempts, tasks trained: the evidence a resume is
    judged by), whole and on disk before the trial goes on (results.append_json_line)."""
    append_json_line(TrialLayout(directory).events,
                     {"event": event, "time": time.time(), **fields}, durable=True)


def read_events(directory: Path) -> JsonLines:
    """The trial's events; a line a crash tore is skipped and counted in `torn`."""
    return read_json_lines(TrialLayout(directory).events)


def read_task_metrics(directory: Path) -> list[dict[str, Any]]:
    """The per-task rows of metrics.jsonl; a line cut by a crash ends the usable history."""
    path = TrialLayout(directory).metrics_jsonl
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def record_task(directory: Path, row: dict[str, Any]) -> list[dict[str, Any]]:
    """Add one task's metrics; a task reported again (after a restart) replaces the old row and
    everything after it, so each task appears once."""
    task = int(row["task"])
    history = [r for r in read_task_metrics(directory) if int(r["task"]) < task] + [row]
    write_task_metrics(directory, history)
    return history


# --- reading (frontier, report, status, resume) -----------------------------------------------


def records_from_rows(rows: list[dict[str, Any]]) -> tuple[dict[str, float], dict, int]:
    """Final values, per-task series and the number of tasks done from per-task metric rows."""
    rows = sorted((r for r in rows if r.get("task") is not None), key=lambda r: int(r["task"]))
    final: dict[str, float] = {}
    series: dict[str, dict[int, float]] = {}
    for row in rows:
        task = int(row["task"])
        for name, value in row.items():
            if name == "task" or value is None or isinstance(value, str | bool | list | dict):
                continue
            final[name] = float(value)  # rows are in task order: the last one wins
            if name in SERIES_METRICS:
                series.setdefault(name, {})[task] = float(value)
    return final, series, len({int(r["task"]) for r in rows})


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        if path.exists():
            log.warning("cannot read %s: %s", path, error)
        return None
    return data if isinstance(data, dict) else None


def _metric_rows(directory: Path) -> list[dict[str, Any]]:
    """Rows of metrics.parquet, or of metrics.jsonl if the Parquet file is missing or broken."""
    parquet = TrialLayout(directory).metrics_parquet
    if parquet.is_file():
        import pyarrow.parquet as pq

        try:
            return pq.read_table(parquet).to_pylist()
        except Exception as error:  # noqa: BLE001 - a damaged file must not hide the other trials
            log.warning("cannot read %s (%s); trying %s", parquet, error, METRICS_JSONL)
    return read_task_metrics(directory)


def read_json_mapping(path: Path) -> dict[str, Any] | None:
    """A JSON object written by write_json, or None if absent or unreadable."""
    return _read_json(path)


def read_trial(directory: Path) -> TrialRecord:
    """One trial from trials/<trial_id>/; unreadable files give status UNKNOWN, never raise."""
    files = TrialLayout(directory)
    meta = _read_json(files.params) or {}
    status_data = _read_json(files.status) or {}
    params = dict(meta.get("params") or {})
    seed = meta.get("seed", params.get(SEED_PARAM))
    params.pop(SEED_PARAM, None)
    status = str(status_data.get("status") or UNKNOWN).upper()
    error = status_data.get("error")
    if not meta:
        error = error or f"{PARAMS_FILE} missing or unreadable"
        status = UNKNOWN
    final, series, tasks_done = records_from_rows(_metric_rows(directory))
    num_tasks = meta.get("num_tasks")
    feasibility = _read_json(files.feasibility)
    return TrialRecord(
        trial_id=str(meta.get("trial_id") or directory.name),
        config_key=str(meta.get("config_key") or config_key(params)),
        seed=None if seed is None else int(seed),
        status=status,
        error=error,
        params=params,
        final=final,
        series=series,
        tasks_done=tasks_done,
        num_tasks=num_tasks if isinstance(num_tasks, int) else None,
        violations=None if feasibility is None else list(feasibility.get("violations") or []),
        imported=files.origin.is_file(),
    )


def read_trials(trials_dir: Path) -> list[TrialRecord]:
    """Every recorded trial, in trial-id order."""
    if not trials_dir.is_dir():
        return []
    return [
        read_trial(d) for d in sorted(trials_dir.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    ]


def trials_of_config(trials_dir: Path, key: str) -> list[TrialRecord]:
    """The recorded trials of one configuration (its seed replicas), found by params.json."""
    if not trials_dir.is_dir():
        return []
    return [
        read_trial(d) for d in sorted(trials_dir.iterdir())
        if d.is_dir() and (_read_json(TrialLayout(d).params) or {}).get("config_key") == key
    ]


def read_yaml_mapping(path: Path) -> dict[str, Any] | None:
    """A YAML mapping, or None if the file is absent or unreadable."""
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        log.warning("cannot read %s: %s", path, error)
        return None
    return data if isinstance(data, dict) else None


@dataclass
class SweepSource:
    """What a reader found: the trials, the resolved sweep config (if any) and where MLflow
    keeps the sweep."""

    records: list[TrialRecord]
    resolved: dict[str, Any] | None = None
    description: str = ""
    parent_run_id: str | None = None
    client: Any = None  # an MlflowClient when read from MLflow


def read_sweep_dir(sweep_dir: str | Path) -> SweepSource:
    """All trials under <sweep_dir>/trials/ (trial-id order) and the resolved sweep config."""
    layout = SweepLayout(Path(sweep_dir))
    if not layout.trials.is_dir():
        raise FileNotFoundError(
            f"{layout.trials} does not exist; --sweep-dir must be a sweep's output_dir "
            f"(the folder holding {SWEEP_FILE} and trials/)"
        )
    resolved = read_yaml_mapping(layout.resolved)
    records = read_trials(layout.trials)
    complete_records(records, resolved)
    return SweepSource(records, resolved, description=str(layout.root))


def base_value(resolved: dict[str, Any] | None, dotted: str) -> Any:
    """The value the resolved sweep's base trial has for a dotted key (None if absent)."""
    from cl_sweeps.config import get_dotted

    return get_dotted((resolved or {}).get("base"), dotted)


def complete_records(records: list[TrialRecord], resolved: dict[str, Any] | None) -> None:
    """Fill what a record may lack from the resolved sweep: the strategy of a sweep that does
    not search it, and the number of tasks of records written without it."""
    strategy = base_value(resolved, "strategy.name") or "naive"
    for record in records:
        record.params.setdefault("strategy.name", strategy)
        if record.num_tasks is None and resolved is not None:
            record.num_tasks = trial_num_tasks(resolved, record.params)


def trial_num_tasks(resolved: dict[str, Any], params: dict[str, Any]) -> int | None:
    """The tasks of the trial with these params in this resolved sweep (None if not valid)."""
    from cl_sweeps.config import ConfigError, num_tasks_of, parse_trial_config, set_dotted

    data = json.loads(json.dumps(resolved.get("base") or {}))
    for key, value in params.items():
        set_dotted(data, key, value)
    try:
        return num_tasks_of(parse_trial_config(data))
    except ConfigError:
        return None
