"""MLflow tracking: one parent run per sweep, one nested run per trial, through MlflowClient.

The parent run is created on the driver. Each trial creates (or finds again, by its trial_id
tag) its own nested run and keeps the run id in its checkpoints, so a trial restarted after a
failure, or after the driver itself died, continues the same run; a task's metrics are logged at
step = task index only if that step is not there yet, so every step is held once.

Credentials come only from the environment (MLFLOW_TRACKING_USERNAME/PASSWORD, or a URI in
MLFLOW_TRACKING_URI); a URI is only ever logged or stored redacted.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from cl_sweeps.checkpoint import PIPELINE_FILES
from cl_sweeps.config import TrialConfig
from cl_sweeps.credentials import redact_uri, uri_has_secret
from cl_sweeps.records import PARENT_TAG, ROLE_TAG, SWEEP_TAG, SweepLayout
from cl_sweeps.sweep.layout import absolute_sqlite, base_directory
from cl_sweeps.sweep.schema import SweepConfig
from cl_sweeps.sweep.space import num_configurations

log = logging.getLogger(__name__)

TRACKING_ENV = "MLFLOW_TRACKING_URI"
# MLflow 3 picks the UI's mode from this experiment tag; without it the GenAI pages open first.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
RUN_FILE = "mlflow_run.json"  # in each checkpoint directory: the trial's run id
MODEL_ARTIFACT = "model"
SAMPLES_ARTIFACT = "samples"
TERMINAL = {"COMPLETED": "FINISHED", "PRUNED": "KILLED", "FAILED": "FAILED"}
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


def start_sweep_run(
    sweep: SweepConfig, layout: SweepLayout, parent_run_id: str | None = None
) -> TrackingTarget:
    """Create the sweep's parent run (or reopen it on --resume) with the sweep file and the
    resolved search space as artifacts."""
    uri, source = resolve_tracking_uri(sweep, layout)
    log.info("MLflow tracking URI: %s (from %s)", redact_uri(uri), source)
    client = MlflowClient(tracking_uri=uri)
    artifacts = layout.mlflow_artifacts.as_uri() if is_local_store(uri) else None
    experiment_id = _experiment_id(client, sweep.mlflow.experiment or sweep.name, artifacts)
    if parent_run_id is not None:
        retry(client.update_run, parent_run_id, status="RUNNING")
        retry(client.set_tag, parent_run_id, "status", "RUNNING")
    else:
        tags = {ROLE_TAG: "sweep", SWEEP_TAG: sweep.name, "status": "RUNNING",
                "output_dir": str(layout.root)}
        if sweep.optuna_storage:
            tags["optuna_storage"] = redact_uri(sweep.optuna_storage)
        run = retry(client.create_run, experiment_id, run_name=sweep.name, tags=tags)
        parent_run_id = run.info.run_id
        params = [Param(k, v) for k, v in _sweep_params(sweep).items()]
        retry(client.log_batch, parent_run_id, params=params)
        for path in (layout.sweep_file, layout.resolved, layout.search_space):
            retry(client.log_artifact, parent_run_id, str(path))
    return TrackingTarget(shareable_uri(uri), experiment_id, parent_run_id, sweep.name)


def shareable_uri(uri: str) -> str | None:
    """The URI to hand to trials, or None if it carries credentials (trials then read
    MLFLOW_TRACKING_URI from their own environment, so no secret is pickled or stored)."""
    return None if uri_has_secret(uri) else uri


def finish_sweep_run(
    target: TrackingTarget, status: str, tags: dict[str, str], best_file: Path | None
) -> None:
    """End the parent run: FINISHED, FAILED or KILLED, with the best/Pareto trials attached."""
    client = target.client()
    if best_file is not None and best_file.is_file():
        retry(client.log_artifact, target.parent_run_id, str(best_file))
    for key, value in {**tags, "status": status}.items():
        retry(client.set_tag, target.parent_run_id, key, str(value)[:_TAG_LIMIT])
    retry(client.set_terminated, target.parent_run_id, status=status)


def find_trial_run(client: MlflowClient, target: TrackingTarget, trial_id: str) -> str | None:
    """The nested run of a trial of this sweep, if it exists."""
    runs = retry(
        client.search_runs,
        [target.experiment_id],
        filter_string=(
            f"tags.trial_id = '{trial_id}' AND tags.`{PARENT_TAG}` = '{target.parent_run_id}'"
        ),
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def read_run_id(checkpoint_dir: Path | None) -> str | None:
    if checkpoint_dir is None or not (checkpoint_dir / RUN_FILE).is_file():
        return None
    return json.loads((checkpoint_dir / RUN_FILE).read_text()).get("run_id")


def write_run_id(checkpoint_dir: Path, run_id: str) -> None:
    (checkpoint_dir / RUN_FILE).write_text(json.dumps({"run_id": run_id}))


class TrialRun:
    """A trial's nested run: params and tags once, metrics per task once, artifacts."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client = client
        self.run_id = run_id
        history = retry(client.get_metric_history, run_id, "task")
        self.logged_steps = {m.step for m in history}

    @classmethod
    def open(
        cls,
        target: TrackingTarget,
        trial_id: str,
        params: dict[str, Any],
        tags: dict[str, str],
        known_run_id: str | None = None,
    ) -> TrialRun:
        """Continue the trial's run (id from the checkpoint, else found by its trial_id tag),
        or create it under the sweep's parent run."""
        client = target.client()
        run_id = known_run_id or find_trial_run(client, target, trial_id)
        if run_id is None:
            all_tags = {
                PARENT_TAG: target.parent_run_id, ROLE_TAG: "trial", SWEEP_TAG: target.sweep_name,
                "trial_id": trial_id, "status": "RUNNING", "restarts": "0", **tags,
            }
            run = retry(client.create_run, target.experiment_id, run_name=trial_id, tags=all_tags)
            run_id = run.info.run_id
            logged = [Param(k, str(v)[:_PARAM_LIMIT]) for k, v in params.items()]
            retry(client.log_batch, run_id, params=logged)
        else:
            run = retry(client.get_run, run_id)
            restarts = int(run.data.tags.get("restarts", "0")) + 1
            retry(client.update_run, run_id, status="RUNNING")
            retry(client.log_batch, run_id, tags=[
                RunTag("status", "RUNNING"), RunTag("restarts", str(restarts))
            ])
        return cls(client, run_id)

    def log_config(self, config: TrialConfig) -> None:
        """The trial's full resolved config, as trial_config.yaml."""
        text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
        retry(self.client.log_text, self.run_id, text, "trial_config.yaml")

    def log_task(self, task: int, metrics: dict[str, float], images: list[Path]) -> bool:
        """Every metric at step = task, once (False if this step was logged before a restart);
        sample grids as image artifacts."""
        for image in images:
            retry(self.client.log_artifact, self.run_id, str(image), SAMPLES_ARTIFACT)
        if task in self.logged_steps:
            return False
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, task) for k, v in metrics.items() if k != "task"]
        batch.append(Metric("task", float(task), now, task))  # last: marks the step complete
        retry(self.client.log_batch, self.run_id, metrics=batch)
        self.logged_steps.add(task)
        return True

    def log_model(self, checkpoint_dir: Path) -> None:
        """The final model (once), as a DDIMPipeline directory: model_index.json, unet/ and
        scheduler/ with the run's noise schedule; `DDIMPipeline.from_pretrained` loads it."""
        if retry(self.client.list_artifacts, self.run_id, MODEL_ARTIFACT):
            return
        for name in PIPELINE_FILES:
            path = checkpoint_dir / name
            if path.is_dir():
                retry(self.client.log_artifacts, self.run_id, str(path), f"{MODEL_ARTIFACT}/{name}")
            else:
                retry(self.client.log_artifact, self.run_id, str(path), MODEL_ARTIFACT)

    def finish(self) -> None:
        retry(self.client.set_tag, self.run_id, "status", "COMPLETED")
        retry(self.client.set_terminated, self.run_id, status="FINISHED")


def finalize_trial_run(
    target: TrackingTarget, trial_id: str, status: str, error: str | None = None
) -> None:
    """Set a trial run's final status from the driver (a stopped or failed trial cannot)."""
    client = target.client()
    run_id = find_trial_run(client, target, trial_id)
    if run_id is None:
        return
    tags = [RunTag("status", status)]
    if error:
        tags.append(RunTag("error", error[-_TAG_LIMIT:]))
    retry(client.log_batch, run_id, tags=tags)
    retry(client.set_terminated, run_id, status=TERMINAL[status])
