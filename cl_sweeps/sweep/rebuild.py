"""`cl-sweeps sync --rebuild`: recreate a sweep's MLflow runs (parent, trials, every step,
artifacts) from its output_dir into an empty or new tracking store, e.g. after `mlflow.db` was
deleted or damaged. The records and spools hold everything the sweep ever sent: a new parent run
is created, every spooled operation is sent again with the new parent run's and experiment's
ids, and, as every operation is idempotent, each step lands once."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from cl_sweeps import records
from cl_sweeps.credentials import redact_uri
from cl_sweeps.errors import UsageError
from cl_sweeps.records import SweepLayout
from cl_sweeps.results import atomic_write
from cl_sweeps.sweep.databases import database_errors
from cl_sweeps.sweep.driver_lock import hold_driver_lock
from cl_sweeps.sweep.schema import SweepConfig
from cl_sweeps.sweep.spool import Spool
from cl_sweeps.sweep.tracking import (
    resolve_tracking_uri,
    start_sweep_run,
    sync_sweep,
)


def rebuild_tracking(root: Path, timeout_s: float) -> tuple[int, int, str | None]:
    """Recreate the sweep's runs and send everything; (sent, left, last error) as sync_sweep.
    Refused while a driver runs the sweep, or if the store still holds the sweep's parent run
    (then plain `cl-sweeps sync` sends what is missing)."""
    layout = SweepLayout(Path(root))
    _lock = hold_driver_lock(layout)  # no driver appends while the spools are rewritten
    sweep = SweepConfig.model_validate(records.read_yaml_mapping(layout.resolved))
    state = json.loads(layout.state.read_text())
    uri, _ = resolve_tracking_uri(sweep, layout)
    old = {"parent_run_id": state.get("parent_run_id"),
           "experiment_id": state.get("experiment_id")}
    with database_errors("mlflow.tracking_uri", uri):
        if old["parent_run_id"] and _run_exists(uri, old["parent_run_id"]):
            raise UsageError(
                f"--rebuild: {redact_uri(uri)} still holds this sweep's parent run "
                f"{old['parent_run_id']}; send what it lacks with  cl-sweeps sync {layout.root}"
            )
        target = start_sweep_run(sweep, layout, None)
    new = {"parent_run_id": target.parent_run_id, "experiment_id": target.experiment_id}
    spools = [Spool(p) for p in layout.trial_spools()]
    for spool in spools:
        _send_again(spool, old, new, {"uri": target.uri})
    _send_again(Spool(layout.spool), old, new,
                {"uri": target.uri, "run_id": target.parent_run_id})
    records.write_json(layout.state, {**state, **new})
    return sync_sweep(layout.root, timeout_s)


def _run_exists(uri: str, run_id: str) -> bool:
    try:
        MlflowClient(uri).get_run(run_id)
    except MlflowException:
        return False
    return True


def _send_again(spool: Spool, old: dict, new: dict, state: dict) -> None:
    """Rewrite the spool's operations with the new ids and mark none of them sent."""
    ops = spool.operations()
    for op in ops:
        for key, value in old.items():
            if value is not None and op.get(key) == value:
                op[key] = new[key]
    lines = "".join(json.dumps(op, default=str) + "\n" for op in ops)
    atomic_write(spool.path, lambda tmp: tmp.write_text(lines))
    sent = json.dumps({"sent": 0, **state})
    atomic_write(spool.state_path, lambda tmp: tmp.write_text(sent))
