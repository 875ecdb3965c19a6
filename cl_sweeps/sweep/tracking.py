"""MLflow tracking: one parent run per sweep, one nested run per trial, fed from spools.

The parent run is created on the driver when the sweep starts (the server must answer then).
Everything after that goes through a spool (spool.py): the trial, or the driver, appends an
operation to a file next to its records and goes on; a background sender applies it when the
server answers. Training therefore never waits for the tracking server. Every operation is
idempotent: a trial's run is found again by its trial_id tag before one is created, so a trial
restarted after a failure, or after the driver itself died, continues the same run; a step's
metrics are logged only if that step is not in MLflow yet (checked against the server just before
sending), so every step is held once however often a spool is sent. What is still unsent when a
trial or the sweep ends (after a bounded wait) is sent by `cl-sweeps sync <sweep-dir>`, which
`--resume` also does first.

Credentials come only from the environment (MLFLOW_TRACKING_USERNAME/PASSWORD, or a URI in
MLFLOW_TRACKING_URI); a URI is only ever logged or stored redacted.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.tracking import MlflowClient

from cl_sweeps.checkpoint_files import PIPELINE_FILES
from cl_sweeps.config import TrialConfig
from cl_sweeps.credentials import redact_uri, split_credentials, uri_has_secret
from cl_sweeps.errors import UsageError
from cl_sweeps.records import (
    COMPLETED,
    ERROR_TAG,
    FAILED,
    OPTUNA_STORAGE_TAG,
    OUTPUT_DIR_TAG,
    PARENT_TAG,
    PRUNED,
    RESTARTS_TAG,
    ROLE_TAG,
    STATUS_TAG,
    SWEEP_ROLE,
    SWEEP_TAG,
    TRIAL_ID_TAG,
    TRIAL_ROLE,
    SweepLayout,
    TrialLayout,
)
from cl_sweeps.sweep.paths import absolute_sqlite, base_directory
from cl_sweeps.sweep.schema import SweepConfig
from cl_sweeps.sweep.space import num_configurations
from cl_sweeps.sweep.spool import Sender, Spool

log = logging.getLogger(__name__)

TRACKING_ENV = "MLFLOW_TRACKING_URI"
USERNAME_ENV, PASSWORD_ENV = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"
# MLflow 3 picks the UI's mode from this experiment tag; without it the GenAI pages open first.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
DRAIN_ENV = "CL_SWEEPS_TRACKING_DRAIN_S"
TRIAL_DRAIN_S = 30.0  # how long a finished trial waits for its spool to be sent
SWEEP_DRAIN_S = 60.0  # how long the finished sweep waits for every spool
MODEL_ARTIFACT = "model"
SAMPLES_ARTIFACT = "samples"
MLFLOW_RUN_STATUS = {  # a trial record's ended status -> its MLflow run's status
    COMPLETED: "FINISHED", PRUNED: "KILLED", FAILED: "FAILED",
}
_PERMANENT_ERRORS = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "BAD_REQUEST"}
_PARAM_LIMIT = 6000
_TAG_LIMIT = 5000

T = TypeVar("T")


def retry(call: Callable[..., T], *args: Any, attempts: int = 6, **kwargs: Any) -> T:
    """Call with exponential back-off: SQLite is 'locked' while another trial writes, and a
    tracking server may blip; invalid requests are not retried."""
    delay = 0.5
    for attempt in range(attempts):
        try:
            return call(*args, **kwargs)
        except Exception as error:  # classified below: transient or not
            code = getattr(error, "error_code", None)
            if attempt == attempts - 1 or code in _PERMANENT_ERRORS:
                raise
            log.warning("MLflow call %s failed (%s); retrying", call.__name__, type(error).__name__)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def resolve_tracking_uri(sweep: SweepConfig, layout: SweepLayout) -> tuple[str, str]:
    """(URI, where it came from): the sweep file, $MLFLOW_TRACKING_URI, or SQLite under the
    sweep's output_dir."""
    if sweep.mlflow.tracking_uri:
        return sweep.mlflow.tracking_uri, "sweep file"
    env = os.environ.get(TRACKING_ENV)
    if env:
        return absolute_sqlite(env, base_directory()), TRACKING_ENV
    return f"sqlite:///{layout.mlflow_db}", "default (SQLite in output_dir)"


def move_tracking_credentials() -> None:
    """An http(s) MLFLOW_TRACKING_URI with user-info: its user name and password move into
    MLFLOW_TRACKING_USERNAME/PASSWORD (which MLflow's REST client reads; values already set
    there win) and the URI without them replaces it, before any client or Ray worker starts.
    So no MLflow client prints the secret ("View run at ..."), and Ray workers, which inherit
    this environment, log and pickle only the bare URI."""
    uri = os.environ.get(TRACKING_ENV, "")
    if not uri.lower().startswith(("http://", "https://")):
        return
    clean, user, password = split_credentials(uri)
    if clean == uri:
        return
    if user:
        os.environ.setdefault(USERNAME_ENV, user)
    if password is not None:
        os.environ.setdefault(PASSWORD_ENV, password)
    os.environ[TRACKING_ENV] = clean


def is_local_store(uri: str) -> bool:
    """True for a database URI the client writes directly (its artifacts need a location)."""
    return not uri.startswith(("http://", "https://", "databricks"))


@dataclass(frozen=True)
class TrackingTarget:
    """What a trial needs to log into the sweep's MLflow parent run (picklable, secret-free:
    a URI carrying credentials is not stored; the trial then reads MLFLOW_TRACKING_URI)."""

    uri: str | None
    experiment_id: str
    parent_run_id: str
    sweep_name: str

    def resolved_uri(self) -> str:
        uri = self.uri or os.environ.get(TRACKING_ENV)
        if not uri:
            raise RuntimeError(
                f"{TRACKING_ENV} is not set on this node, and the sweep's tracking URI carries "
                "credentials, so it was not sent to the trials; set it in the node environment"
            )
        return uri

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.resolved_uri())


def _experiment_id(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The experiment's id (created if new), tagged as model development so the MLflow UI opens
    on its training runs."""
    kind = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
    experiment = retry(client.get_experiment_by_name, name)
    if experiment is None:
        try:
            return retry(
                client.create_experiment, name, artifact_location=artifact_location, tags=kind
            )
        except MlflowException:  # created concurrently by another sweep
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        retry(client.restore_experiment, experiment.experiment_id)
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        retry(client.set_experiment_tag, experiment.experiment_id, EXPERIMENT_KIND_TAG,
              EXPERIMENT_KIND)
    return experiment.experiment_id


def _scheduler_param(sweep: SweepConfig) -> str:
    """none, asha:<metric>:<mode>, or moasha:<metric>:<mode>,<metric>:<mode>..."""
    if sweep.scheduler is None:
        return "none"
    if sweep.scheduler.type == "moasha":
        return "moasha:" + ",".join(f"{m}:{mode}" for m, mode in sweep.scheduler_objectives())
    metric, mode = sweep.scheduler_metric()
    return f"asha:{metric}:{mode}"


def _sweep_params(sweep: SweepConfig) -> dict[str, str]:
    values = {
        "search_algorithm": sweep.search_algorithm.name,
        "sampler": sweep.search_algorithm.sampler,
        "num_samples": num_configurations(sweep),
        "seeds": sweep.seed_list(),
        "objectives": [f"{o.metric}:{o.mode}" for o in sweep.objectives],
        "scheduler": _scheduler_param(sweep),
        "max_concurrent_trials": sweep.max_concurrent_trials,
        "resources_per_trial.cpu": sweep.resources_per_trial.cpu,
        "resources_per_trial.gpu": sweep.resources_per_trial.gpu,
        "search": sorted(sweep.search),
    }
    return {k: str(v)[:_PARAM_LIMIT] for k, v in values.items()}


class TrackingUnavailable(UsageError):
    """The tracking server did not answer when the sweep started (a one-line error, exit 2)."""


def quick_http_failures() -> None:
    """Let an MLflow HTTP call fail within seconds instead of retrying for minutes inside
    urllib3: the spool's sender is the retry loop. Settings already in the environment win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


def drain_seconds(default: float) -> float:
    value = os.environ.get(DRAIN_ENV)
    return float(value) if value not in (None, "") else default


def start_sweep_run(
    sweep: SweepConfig, layout: SweepLayout, parent_run_id: str | None = None
) -> TrackingTarget:
    """Create the sweep's parent run (or reopen it on --resume); its artifacts (the sweep file
    and the resolved search space) go through the sweep's spool. Raises TrackingUnavailable
    if the server does not answer."""
    quick_http_failures()
    uri, source = resolve_tracking_uri(sweep, layout)
    log.info("MLflow tracking URI: %s (from %s)", redact_uri(uri), source)
    client = MlflowClient(tracking_uri=uri)
    artifacts = layout.mlflow_artifacts.as_uri() if is_local_store(uri) else None
    try:
        experiment_id = _experiment_id(client, sweep.mlflow.experiment or sweep.name, artifacts)
        if parent_run_id is not None:
            retry(client.update_run, parent_run_id, status="RUNNING")
            retry(client.set_tag, parent_run_id, STATUS_TAG, "RUNNING")
            new = False
        else:
            tags = {ROLE_TAG: SWEEP_ROLE, SWEEP_TAG: sweep.name, STATUS_TAG: "RUNNING",
                    OUTPUT_DIR_TAG: str(layout.root)}
            if sweep.optuna_storage:
                tags[OPTUNA_STORAGE_TAG] = redact_uri(sweep.optuna_storage)
            run = retry(client.create_run, experiment_id, run_name=sweep.name, tags=tags)
            parent_run_id = run.info.run_id
            params = [Param(k, v) for k, v in _sweep_params(sweep).items()]
            retry(client.log_batch, parent_run_id, params=params)
            new = True
    except MlflowException as error:
        first = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        raise TrackingUnavailable(
            f"MLflow tracking server {redact_uri(uri)} (from {source}) did not answer: {first}"
        ) from None
    target = TrackingTarget(shareable_uri(uri), experiment_id, parent_run_id, sweep.name)
    if new:
        spool = sweep_spool(layout, target)
        for path in (layout.sweep_file, layout.resolved, layout.search_space):
            spool.append({"op": "artifact", "path": str(path)})
    return target


def shareable_uri(uri: str) -> str | None:
    """The URI to hand to trials, or None if it carries credentials (trials then read
    MLFLOW_TRACKING_URI from their own environment, so no secret is pickled or stored)."""
    return None if uri_has_secret(uri) else uri


def find_trial_run(client: MlflowClient, target: TrackingTarget, trial_id: str) -> str | None:
    """The nested run of a trial of this sweep, if it exists."""
    runs = client.search_runs(
        [target.experiment_id],
        filter_string=(
            f"tags.`{TRIAL_ID_TAG}` = '{trial_id}' "
            f"AND tags.`{PARENT_TAG}` = '{target.parent_run_id}'"
        ),
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


# --- operations: what a spool holds, and how each is applied (idempotently) -------------------


def is_permanent(error: BaseException) -> bool:
    """An invalid request, which retrying cannot fix (the operation is skipped and counted)."""
    return getattr(error, "error_code", None) in _PERMANENT_ERRORS


class _Clients:
    """One MlflowClient per URI (a spool's URI, or MLFLOW_TRACKING_URI if it holds none)."""

    def __init__(self) -> None:
        self._clients: dict[str, MlflowClient] = {}

    def __call__(self, uri: str | None) -> MlflowClient:
        uri = uri or os.environ.get(TRACKING_ENV)
        if not uri:
            raise RuntimeError(
                f"{TRACKING_ENV} is not set, and the sweep's tracking URI carries credentials, "
                "so it was not stored with the spool; set it in the environment"
            )
        if uri not in self._clients:
            self._clients[uri] = MlflowClient(tracking_uri=uri)
        return self._clients[uri]


def _target_of(op: dict[str, Any], uri: str | None) -> TrackingTarget:
    return TrackingTarget(uri, op["experiment_id"], op["parent_run_id"], op["sweep_name"])


def _open_trial(client: MlflowClient, op: dict[str, Any], known: str | None) -> str:
    """Continue the trial's run (known, or found by its trial_id tag), or create it."""
    target = _target_of(op, None)
    run_id = known or find_trial_run(client, target, op["trial_id"])
    if run_id is None:
        tags = {
            PARENT_TAG: target.parent_run_id, ROLE_TAG: TRIAL_ROLE, SWEEP_TAG: target.sweep_name,
            TRIAL_ID_TAG: op["trial_id"], STATUS_TAG: "RUNNING", RESTARTS_TAG: "0", **op["tags"],
        }
        run = client.create_run(target.experiment_id, run_name=op["trial_id"], tags=tags)
        params = [Param(k, str(v)[:_PARAM_LIMIT]) for k, v in op["params"].items()]
        client.log_batch(run.info.run_id, params=params)
        return run.info.run_id
    run = client.get_run(run_id)
    restarts = int(run.data.tags.get(RESTARTS_TAG, "0")) + 1
    client.update_run(run_id, status="RUNNING")
    client.log_batch(run_id, tags=[RunTag(STATUS_TAG, "RUNNING"), RunTag(RESTARTS_TAG, str(restarts))])
    return run_id


def _log_step(client: MlflowClient, run_id: str, op: dict[str, Any]) -> None:
    """The step's metrics, unless the step is in MLflow already: its marker metric is logged
    last in the same batch, so the marker's presence means the whole step is there."""
    step, marker = int(op["step"]), op["marker"]
    if any(m.step == step for m in client.get_metric_history(run_id, marker)):
        return
    now = int(op.get("time", time.time()) * 1000)
    metrics = op["metrics"]
    batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if k != marker]
    batch.append(Metric(marker, float(metrics.get(marker, step)), now, step))
    client.log_batch(run_id, metrics=batch)


def _set_status(client: MlflowClient, run_id: str, op: dict[str, Any]) -> None:
    tags = [RunTag(STATUS_TAG, op["status"])]
    if op.get("error"):
        tags.append(RunTag(ERROR_TAG, str(op["error"])[-_TAG_LIMIT:]))
    tags += [RunTag(k, str(v)[:_TAG_LIMIT]) for k, v in op.get("tags", {}).items()]
    client.log_batch(run_id, tags=tags)
    terminal = op.get("terminal")
    if terminal:
        client.set_terminated(run_id, status=terminal)
    else:
        client.update_run(run_id, status="RUNNING")


def apply_operation(clients: _Clients, state: dict[str, Any], op: dict[str, Any]) -> None:
    """Apply one spooled operation to MLflow; may record the run id in `state`."""
    client = clients(state.get("uri"))
    kind = op["op"]
    if kind == "open_trial":
        state["run_id"] = _open_trial(client, op, state.get("run_id"))
        return
    run_id = state.get("run_id")
    if run_id is None and "trial_id" in op:  # spooled by the driver for a trial run elsewhere
        run_id = find_trial_run(client, _target_of(op, None), op["trial_id"])
        if run_id is None:
            log.warning("no MLflow run for trial %s yet; %s not applied", op["trial_id"], kind)
            return
    if run_id is None:
        raise MlflowException(f"spooled {kind} before its run exists", INVALID_PARAMETER_VALUE)
    if kind == "metrics":
        _log_step(client, run_id, op)
    elif kind == "metric":  # one value, logged unless that value is at that step already
        history = client.get_metric_history(run_id, op["key"])
        if not any(m.step == op["step"] and m.value == op["value"] for m in history):
            client.log_metric(run_id, op["key"], op["value"], int(op["time"] * 1000), op["step"])
    elif kind == "artifact":
        if Path(op["path"]).exists():
            client.log_artifact(run_id, op["path"], op.get("dest"))
    elif kind == "artifacts_once":
        if Path(op["path"]).is_dir() and not client.list_artifacts(run_id, op["dest"]):
            client.log_artifacts(run_id, op["path"], op["dest"])
    elif kind == "text":
        client.log_text(run_id, op["text"], op["file"])
    elif kind == "status":
        _set_status(client, run_id, op)
    elif kind == "tags":
        tags = [RunTag(k, str(v)[:_TAG_LIMIT]) for k, v in op["tags"].items()]
        client.log_batch(run_id, tags=tags)
    else:
        raise MlflowException(f"unknown spooled operation {kind!r}", INVALID_PARAMETER_VALUE)


def make_sender(name: str) -> Sender:
    clients = _Clients()
    return Sender(lambda state, op: apply_operation(clients, state, op), is_permanent, name)


# --- a trial's run ------------------------------------------------------------------------


def trial_spool(directory: Path, target: TrackingTarget) -> Spool:
    return Spool(TrialLayout(directory).spool).ensure(uri=target.uri)


class TrialTracker:
    """A trial's nested run, fed through its spool in trials/<id>/: nothing here waits for
    the tracking server, except `close`, for at most its timeout."""

    def __init__(self, target: TrackingTarget, directory: Path, trial_id: str):
        quick_http_failures()
        self.target = target
        self.trial_id = trial_id
        self.spool = trial_spool(directory, target)
        self.sender = make_sender(f"mlflow-{trial_id}")
        self.sender.add(self.spool)
        self.sender.start()

    def _append(self, op: dict[str, Any]) -> None:
        self.spool.append(op)
        self.sender.notify()

    def open(self, params: dict[str, Any], tags: dict[str, str]) -> None:
        """Continue the trial's run, or create it under the sweep's parent run."""
        self._append({
            "op": "open_trial", "trial_id": self.trial_id, "params": params, "tags": tags,
            "experiment_id": self.target.experiment_id,
            "parent_run_id": self.target.parent_run_id, "sweep_name": self.target.sweep_name,
        })

    def log_config(self, config: TrialConfig) -> None:
        """The trial's full resolved config, as trial_config.yaml."""
        text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
        self._append({"op": "text", "text": text, "file": "trial_config.yaml"})

    def log_task(self, task: int, metrics: dict[str, float], images: list[Path]) -> None:
        """Every metric at step = task (once), sample grids as image artifacts."""
        for image in images:
            self._append({"op": "artifact", "path": str(image), "dest": SAMPLES_ARTIFACT})
        self._append({"op": "metrics", "step": task, "marker": "task", "time": time.time(),
                      "metrics": {k: float(v) for k, v in metrics.items()}})

    def log_model(self, checkpoint_dir: Path) -> None:
        """The final model (once), as a DDIMPipeline directory: model_index.json, unet/ and
        scheduler/ with the run's noise schedule; `DDIMPipeline.from_pretrained` loads it."""
        for name in PIPELINE_FILES:
            path = checkpoint_dir / name
            if path.is_dir():
                self._append({"op": "artifacts_once", "path": str(path),
                              "dest": f"{MODEL_ARTIFACT}/{name}"})
            else:
                self._append({"op": "artifact", "path": str(path), "dest": MODEL_ARTIFACT})

    def finish(self) -> None:
        self._append({"op": "status", "status": "COMPLETED", "terminal": "FINISHED"})

    def close(self, timeout_s: float | None = None) -> int:
        """Wait (bounded) for the spool to be sent; return how many operations are left."""
        left = self.sender.drain(drain_seconds(TRIAL_DRAIN_S) if timeout_s is None else timeout_s)
        self.sender.stop()
        if left:
            log.warning("trial %s: %d MLflow operations left in its spool (%s), for the "
                        "sweep's driver or `cl-sweeps sync`",
                        self.trial_id, left, self.sender.last_error)
        return left


# --- the sweep's parent run, on the driver -------------------------------------------------


def sweep_spool(layout: SweepLayout, target: TrackingTarget) -> Spool:
    return Spool(layout.spool).ensure(uri=target.uri, run_id=target.parent_run_id)


class SweepTracker:
    """The parent run's operations, and the trial spools the driver sends too: a trial that
    ended before its spool was sent leaves the rest to the driver (on a shared file system)."""

    _open: ClassVar[dict[str, SweepTracker]] = {}  # per output_dir, in the driver process

    @classmethod
    def for_sweep(cls, target: TrackingTarget, layout: SweepLayout) -> SweepTracker:
        """The driver's tracker of this sweep (one sender per process, also for Tune callbacks
        restored by --resume)."""
        key = str(layout.root)
        tracker = cls._open.get(key)
        if tracker is None or tracker.target != target or tracker.closed:
            tracker = cls._open[key] = cls(target, layout)
        return tracker

    def __init__(self, target: TrackingTarget, layout: SweepLayout):
        quick_http_failures()
        self.closed = False
        self.target = target
        self.layout = layout
        self.spool = sweep_spool(layout, target)
        self.sender = make_sender("mlflow-sweep")
        self.sender.add(self.spool)
        self.sender.start()

    def adopt_pending_trials(self) -> int:
        """Send what earlier trials left unsent (on --resume); returns how many spools."""
        spools = [Spool(p) for p in self.layout.trial_spools()]
        pending = [s for s in spools if s.pending()]
        for spool in pending:
            self.sender.add(spool)
        return len(pending)

    def log_artifact(self, path: Path, dest: str | None = None) -> None:
        self.spool.append({"op": "artifact", "path": str(path), "dest": dest})
        self.sender.notify()

    def log_metrics(self, step: int, metrics: dict[str, float], marker: str) -> None:
        """Metrics on the parent run at `step`, once (marker: the metric that marks the step)."""
        self.spool.append({"op": "metrics", "step": step, "marker": marker, "time": time.time(),
                           "metrics": {k: float(v) for k, v in metrics.items()}})
        self.sender.notify()

    def as_client(self) -> SpoolingClient:
        """A stand-in for MlflowClient (log_artifact, log_metric) that spools instead, for code
        that logs on the parent run given a client (the frontier)."""
        return SpoolingClient(self)

    def end_trial(self, trial_id: str, status: str, error: str | None = None) -> None:
        """Set a trial run's final status (a stopped or failed trial cannot), via its spool."""
        spool = trial_spool(self.layout.trial(trial_id), self.target)
        spool.append({
            "op": "status", "status": status, "terminal": MLFLOW_RUN_STATUS[status], "error": error,
            "trial_id": trial_id, "experiment_id": self.target.experiment_id,
            "parent_run_id": self.target.parent_run_id, "sweep_name": self.target.sweep_name,
        })
        self.sender.add(spool)

    def tag_trial(self, trial_id: str, tags: dict[str, str]) -> None:
        """Tags on a trial's run set by the driver (its configuration's feasibility), via its
        spool."""
        spool = trial_spool(self.layout.trial(trial_id), self.target)
        spool.append({
            "op": "tags", "tags": tags, "trial_id": trial_id,
            "experiment_id": self.target.experiment_id,
            "parent_run_id": self.target.parent_run_id, "sweep_name": self.target.sweep_name,
        })
        self.sender.add(spool)

    def finish(self, status: str, tags: dict[str, str], best_file: Path | None) -> None:
        """End the parent run: FINISHED, FAILED or KILLED, with the best/Pareto trials."""
        if best_file is not None and best_file.is_file():
            self.log_artifact(best_file)
        self.spool.append({"op": "status", "status": status, "terminal": status, "tags": tags})
        self.sender.notify()

    def close(self, timeout_s: float | None = None) -> int:
        """Wait (bounded) for every spool the driver knows; return how many are left."""
        left = self.sender.drain(drain_seconds(SWEEP_DRAIN_S) if timeout_s is None else timeout_s)
        self.sender.stop()
        self.closed = True
        return left


class SpoolingClient:
    """The parent-run calls of MlflowClient that the frontier makes, appended to the sweep's
    spool (the run id must be the parent run's)."""

    def __init__(self, tracker: SweepTracker):
        self.tracker = tracker

    def _check(self, run_id: str) -> None:
        if run_id != self.tracker.target.parent_run_id:
            raise ValueError(f"run {run_id} is not the sweep's parent run")

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        self._check(run_id)
        self.tracker.log_artifact(Path(local_path), artifact_path)

    def log_metric(self, run_id: str, key: str, value: float, step: int | None = None) -> None:
        self._check(run_id)
        self.tracker.spool.append({"op": "metric", "key": key, "value": float(value),
                                   "step": step or 0, "time": time.time()})
        self.tracker.sender.notify()


def sync_sweep(root: Path, timeout_s: float) -> tuple[int, int, str | None]:
    """Send every spool of a sweep directory: the trials' first, then the parent run's.
    Returns (operations sent, operations left, the last error if any are left)."""
    quick_http_failures()
    layout = SweepLayout(root)
    spools = [Spool(p) for p in layout.trial_spools()]
    spools.append(Spool(layout.spool))
    before = sum(s.pending() for s in spools)
    sender = make_sender("mlflow-sync")
    deadline = time.monotonic() + timeout_s
    for spool in spools:
        sender.add(spool)
        sender.drain(max(0.0, deadline - time.monotonic()))
    left = sender.pending()
    return before - left, left, sender.last_error if left else None
