"""Trial records read from a sweep's output directory (Parquet + JSON), without MLflow or Ray.

The sweep directory is the fallback when the tracking server is unreachable, so it alone must be
enough to rebuild the frontier. MLflow reading (tracking.py) produces the same `TrialRecord`s, and
everything downstream works on records only, so both sources give the same table by construction.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from cl_sweeps.results import METRICS_JSONL, METRICS_PARQUET

log = logging.getLogger(__name__)

PARAMS_JSON = "params.json"
STATUS_JSON = "status.json"
SWEEP_YAML = "sweep.yaml"

# Metrics whose whole per-task history becomes columns `<metric>@task<k>` (the rest keep only
# their final value): the ones a frontier or a per-task plot needs, not all 25 × T.
SERIES_METRICS = ("fid", "kld", "ard", "forgetting", "denoise_loss", "train_tflops")

STATUSES = ("RUNNING", "COMPLETED", "PRUNED", "FAILED")
UNKNOWN = "UNKNOWN"


@dataclass
class TrialRecord:
    """One trial as reported, whatever the source: identity, params and metric values."""

    trial_id: str
    config_key: str
    seed: int | None
    status: str
    error: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)  # last reported value per metric
    series: dict[str, dict[int, float]] = field(default_factory=dict)  # metric -> task -> value
    tasks_done: int = 0


@dataclass
class SweepSource:
    """What a reader found: the trials, the sweep file (if any) and where MLflow keeps the sweep."""

    records: list[TrialRecord]
    sweep_file: dict[str, Any] | None = None
    description: str = ""
    parent_run_id: str | None = None
    client: Any = None  # an MlflowClient when read from MLflow


def config_key_of(params: dict[str, Any]) -> str:
    """Fallback config key (short hash of params without the seed) for trials that lack one."""
    body = {k: v for k, v in params.items() if k != "seed"}
    text = json.dumps(body, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def records_from_rows(rows: list[dict[str, Any]]) -> tuple[dict[str, float], dict, int]:
    """Final values, per-task series and the number of tasks from per-task metric rows."""
    rows = sorted((r for r in rows if r.get("task") is not None), key=lambda r: int(r["task"]))
    final: dict[str, float] = {}
    series: dict[str, dict[int, float]] = {}
    for row in rows:
        task = int(row["task"])
        for name, value in row.items():
            if name == "task" or value is None or isinstance(value, (str, bool, list, dict)):
                continue
            final[name] = float(value)  # rows are in task order: the last one wins
            if name in SERIES_METRICS:
                series.setdefault(name, {})[task] = float(value)
    return final, series, len({int(r["task"]) for r in rows})


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        log.warning("cannot read %s: %s", path, error)
        return None
    return data if isinstance(data, dict) else None


def _read_metric_rows(trial_dir: Path) -> list[dict[str, Any]]:
    """Rows of metrics.parquet, or of metrics.jsonl if the Parquet file is missing or broken."""
    parquet = trial_dir / METRICS_PARQUET
    if parquet.is_file():
        try:
            return pq.read_table(parquet).to_pylist()
        except Exception as error:  # noqa: BLE001 - a damaged file must not hide the other trials
            log.warning("cannot read %s (%s); trying %s", parquet, error, METRICS_JSONL)
    jsonl = trial_dir / METRICS_JSONL
    if not jsonl.is_file():
        return []
    rows = []
    for line in jsonl.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by a crash ends the usable history
    return rows


def read_trial_dir(trial_dir: Path) -> TrialRecord:
    """One trial from <output_dir>/trials/<trial_id>/ (params.json, status.json, metrics)."""
    meta = _read_json(trial_dir / PARAMS_JSON) or {}
    status_data = _read_json(trial_dir / STATUS_JSON) or {}
    params = dict(meta.get("params") or {})
    seed = meta.get("seed", params.get("seed"))
    params.pop("seed", None)
    status = str(status_data.get("status") or UNKNOWN).upper()
    error = status_data.get("error")
    if not meta:
        error = error or f"{PARAMS_JSON} missing or unreadable"
        status = UNKNOWN
    final, series, tasks_done = records_from_rows(_read_metric_rows(trial_dir))
    return TrialRecord(
        trial_id=str(meta.get("trial_id") or trial_dir.name),
        config_key=str(meta.get("config_key") or config_key_of(params)),
        seed=None if seed is None else int(seed),
        status=status,
        error=error,
        params=params,
        final=final,
        series=series,
        tasks_done=tasks_done,
    )


def read_sweep_file(path: Path) -> dict[str, Any] | None:
    """The sweep file as submitted (sweep.yaml), or None if absent or unreadable."""
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        log.warning("cannot read %s: %s", path, error)
        return None
    return data if isinstance(data, dict) else None


def read_sweep_dir(sweep_dir: str | Path) -> SweepSource:
    """All trials under <sweep_dir>/trials/, in trial-id order."""
    sweep_dir = Path(sweep_dir)
    trials_dir = sweep_dir / "trials"
    if not trials_dir.is_dir():
        raise FileNotFoundError(
            f"{trials_dir} does not exist; --sweep-dir must be a sweep's output_dir "
            "(the folder holding sweep.yaml and trials/)"
        )
    sweep_file = read_sweep_file(sweep_dir / SWEEP_YAML)
    records = [
        read_trial_dir(d) for d in sorted(trials_dir.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    ]
    fill_strategy_name(records, sweep_file)
    return SweepSource(records, sweep_file, description=str(sweep_dir))


def fill_strategy_name(records: list[TrialRecord], sweep_file: dict[str, Any] | None) -> None:
    """A sweep that does not search the strategy still needs it per row (colours, report)."""
    base = (sweep_file or {}).get("base") or {}
    default = ((base.get("strategy") or {}).get("name")) or "naive"
    for record in records:
        record.params.setdefault("strategy.name", default)


def base_param(sweep_file: dict[str, Any] | None, dotted: str) -> Any:
    """The value a trial had for a param the sweep did not search: the sweep file's `base`, else
    the TrialConfig default (e.g. strategy.teacher_steps -> 2). None if neither has it."""
    node: Any = (sweep_file or {}).get("base") or {}
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is not None:
        return node
    from cl_sweeps.config import TrialConfig

    model: Any = TrialConfig
    parts = dotted.split(".")
    for part in parts[:-1]:
        field_info = model.model_fields.get(part)
        model = getattr(field_info, "annotation", None)
        if model is None or not hasattr(model, "model_fields"):
            return None
    field_info = model.model_fields.get(parts[-1])
    return None if field_info is None else field_info.default

