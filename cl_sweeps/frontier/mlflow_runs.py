"""MLflow side of the frontier: read a sweep's trial runs as records; log outputs on its parent run.

Naming follows the sweep output contract: one parent run per sweep (tags cl_sweeps.role=sweep,
cl_sweeps.sweep=<name>), one nested run per trial (cl_sweeps.role=trial, mlflow.parentRunId), params
= dotted trial-config keys, every per-task metric logged at step = task index.
"""

from __future__ import annotations

import ast
import logging
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cl_sweeps.records import (
    COMPLETED,
    CONFIG_KEY_TAG,
    ERROR_TAG,
    FAILED,
    NUM_TASKS_TAG,
    PARENT_TAG,
    RESOLVED_FILE,
    ROLE_TAG,
    RUNNING,
    SEED_PARAM,
    SEED_TAG,
    SERIES_METRICS,
    STATUS_TAG,
    STRATEGY_TAG,
    SWEEP_ROLE,
    SWEEP_TAG,
    TRIAL_ID_TAG,
    TRIAL_ROLE,
    UNKNOWN,
    SweepLayout,
    SweepSource,
    TrialRecord,
    complete_records,
    config_key,
    read_yaml_mapping,
)

log = logging.getLogger(__name__)

# MLflow's SQL stores keep ±inf as ±max float; map it back so an inf FID stays inf.
MLFLOW_MAX_FLOAT = 1.7976931348623157e308
RUN_STATUS_FALLBACK = {  # an MLflow run's status -> the trial's, for runs without a status tag
    "FINISHED": COMPLETED, "FAILED": FAILED, "KILLED": FAILED,
    "RUNNING": RUNNING, "SCHEDULED": RUNNING,
}


def make_client(tracking_uri: str | None = None) -> Any:
    """An MlflowClient (imported lazily: reading a sweep directory never needs MLflow)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def parse_param(text: str) -> Any:
    """MLflow keeps params as str(value); turn '2', '0.5', 'True', 'None', '[1, 2]' back."""
    if text in ("nan", "inf", "-inf"):
        return float(text)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def metric_value(value: float) -> float:
    """A stored metric value, with MLflow's ±max-float stand-in for ±inf undone."""
    value = float(value)
    return math.copysign(math.inf, value) if abs(value) >= MLFLOW_MAX_FLOAT else value


def _tag(tags: dict[str, str], key: str) -> str | None:
    return tags.get(f"cl_sweeps.{key}", tags.get(key))


def search_all_runs(client: Any, experiment_id: str, filter_string: str) -> list[Any]:
    """Every run matching the filter (search_runs is paged)."""
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filter_string, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_parent_runs(client: Any, experiment_id: str, sweep: str | None = None) -> list[Any]:
    """Parent (sweep) runs of the experiment, newest first; optionally of one sweep name."""
    query = f"tags.`{ROLE_TAG}` = '{SWEEP_ROLE}'"
    if sweep:
        query += f" and tags.`{SWEEP_TAG}` = '{sweep}'"
    runs = search_all_runs(client, experiment_id, query)
    return sorted(runs, key=lambda r: r.info.start_time or 0, reverse=True)


def _history(client: Any, run_id: str, key: str) -> dict[int, float]:
    """step -> value; a step logged twice (a resumed trial) keeps its latest value."""
    points = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    return {int(m.step): metric_value(m.value) for m in points}


def record_from_run(client: Any, run: Any) -> TrialRecord:
    """A TrialRecord from a nested trial run: tags, parsed params, final values and histories."""
    tags = run.data.tags
    params = {k: parse_param(v) for k, v in run.data.params.items()}
    seed_text = _tag(tags, SEED_TAG)
    seed = params.pop(SEED_PARAM, None)
    if seed_text is not None:
        seed = parse_param(seed_text)
    strategy = _tag(tags, STRATEGY_TAG)
    if strategy and "strategy.name" not in params:
        params["strategy.name"] = strategy
    final = {k: metric_value(v) for k, v in run.data.metrics.items() if k != "task"}
    series = {k: _history(client, run.info.run_id, k) for k in SERIES_METRICS if k in final}
    if "task" in run.data.metrics:
        steps = set(_history(client, run.info.run_id, "task"))
    else:
        steps = {step for values in series.values() for step in values}
    status = _tag(tags, STATUS_TAG) or RUN_STATUS_FALLBACK.get(run.info.status, UNKNOWN)
    num_tasks = _tag(tags, NUM_TASKS_TAG)
    return TrialRecord(
        trial_id=_tag(tags, TRIAL_ID_TAG) or run.info.run_name or run.info.run_id,
        config_key=_tag(tags, CONFIG_KEY_TAG) or config_key(params),
        seed=None if seed is None else int(seed),
        status=status.upper(),
        error=_tag(tags, ERROR_TAG),
        params=params,
        final=final,
        series={k: v for k, v in series.items() if v},
        tasks_done=len(steps),
        num_tasks=int(num_tasks) if num_tasks and num_tasks.isdigit() else None,
    )


def download_resolved(client: Any, run_id: str) -> dict[str, Any] | None:
    """The resolved sweep config artifact of the parent run, or None if it cannot be fetched."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, RESOLVED_FILE, tmp)
            return read_yaml_mapping(Path(path))
    except Exception as error:  # noqa: BLE001 - optional: records carry their task counts
        log.info("no %s artifact on run %s (%s)", RESOLVED_FILE, run_id, error)
        return None


def read_mlflow(
    experiment: str,
    tracking_uri: str | None = None,
    parent_run_id: str | None = None,
    client: Any = None,
) -> SweepSource:
    """The trials of one sweep in an MLflow experiment (the newest sweep if there are several)."""
    client = client or make_client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise LookupError(f"MLflow experiment {experiment!r} not found at {client.tracking_uri}")
    if parent_run_id is None:
        parents = find_parent_runs(client, found.experiment_id)
        if not parents:
            raise LookupError(
                f"experiment {experiment!r} has no sweep run (tag {ROLE_TAG}=sweep)"
            )
        parent_run_id = parents[0].info.run_id
        if len(parents) > 1:
            log.warning(
                "experiment %r holds %d sweep runs; using the newest (%s). Choose another with "
                "--parent-run-id: %s", experiment, len(parents), parent_run_id,
                ", ".join(p.info.run_id for p in parents[1:]),
            )
    query = f"tags.`{ROLE_TAG}` = '{TRIAL_ROLE}' and tags.`{PARENT_TAG}` = '{parent_run_id}'"
    runs = sorted(search_all_runs(client, found.experiment_id, query),
                  key=lambda r: r.info.start_time or 0)
    by_trial = {}
    for run in runs:  # a trial logged twice (resumed into a new run): the newest run wins
        record = record_from_run(client, run)
        by_trial[record.trial_id] = record
    resolved = download_resolved(client, parent_run_id)
    records = [by_trial[k] for k in sorted(by_trial)]
    complete_records(records, resolved)
    return SweepSource(
        records, resolved, description=f"MLflow experiment {experiment!r} run {parent_run_id}",
        parent_run_id=parent_run_id, client=client,
    )


def sweep_dir_tracking(sweep_dir: Path, resolved: dict[str, Any] | None) -> tuple[Any, str]:
    """The client and parent run of a sweep directory's MLflow store; raises if unreachable.

    Retries and timeouts are kept short: the directory is read because the server may be down.
    """
    resolved = resolved or {}
    mlflow_cfg = resolved.get("mlflow") or {}
    name = resolved.get("name") or sweep_dir.name
    uri = mlflow_cfg.get("tracking_uri")
    if not uri:
        db = SweepLayout(sweep_dir).mlflow_db
        if not db.is_file():
            raise LookupError(f"no tracking_uri in {RESOLVED_FILE} and no {db}")
        uri = f"sqlite:///{db.resolve()}"
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    client = make_client(uri)
    experiment = client.get_experiment_by_name(mlflow_cfg.get("experiment") or name)
    if experiment is None:
        raise LookupError(f"experiment {mlflow_cfg.get('experiment') or name!r} not at {uri}")
    parents = find_parent_runs(client, experiment.experiment_id, sweep=name)
    if not parents:
        raise LookupError(f"no sweep run tagged {SWEEP_TAG}={name} at {uri}")
    return client, parents[0].info.run_id


def log_frontier_artifacts(
    client: Any, parent_run_id: str, paths: Iterable[str | Path], artifact_path: str = "frontier"
) -> None:
    """Attach the frontier/report files to the sweep's parent run, under `artifact_path/`."""
    for path in paths:
        client.log_artifact(parent_run_id, str(path), artifact_path)


def log_sweep_metrics(
    client: Any, parent_run_id: str, metrics: dict[str, float], step: int = 0
) -> None:
    """Sweep-level numbers (hypervolume, compute spent) as metrics of the parent run."""
    for key, value in metrics.items():
        client.log_metric(parent_run_id, key, float(value), step=step)
