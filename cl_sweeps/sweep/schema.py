"""The sweep file's schema and its checks: the one validation path of `cl-sweeps sweep`.

A sweep file is a run file (`base:`, a trial config) plus the keys below. `SweepConfig` checks the
structure; `check_sweep` then checks what needs the trial config: every searched key exists,
every value a distribution can produce gives a valid TrialConfig, conditions refer to real
choices, metrics exist. Both run before Ray, MLflow or Optuna are touched, and importing this
module imports none of them (nor torch): `cl-sweeps sweep FILE --dry-run` stays fast.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cl_sweeps.config import (
    REPLACED_KEYS,
    ConfigError,
    PathText,
    Seed,
    TrialConfig,
    apply_overrides,
    load_yaml,
    num_tasks_of,
    set_dotted,
    shown_value,
)
from cl_sweeps.config import _Strict as StrictModel
from cl_sweeps.constraints import ConstraintBounds
from cl_sweeps.credentials import is_well_formed, redact_uri, uri_has_secret
from cl_sweeps.documents import shorten
from cl_sweeps.metrics import (
    DEFAULT_OBJECTIVES,
    METRIC_NAMES,
    is_known_metric,
    is_per_task_metric,
    per_task_form,
    task_of_metric,
    validation_form,
)
from cl_sweeps.strategies.catalog import strategy_names
from cl_sweeps.sweep.budget import BudgetConfig
from cl_sweeps.sweep.search_params import (
    SEARCH_TYPES,
    ChoiceParam,
    FloatParam,
    MappedParam,
    SearchParam,
    conditions,
    grid,
    knobs_of,
    search_order,
    strategy_name_key,
    value_in,
)
from cl_sweeps.sweep.strategy_settings import setting_problems

SWEEP_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# The name becomes directory, study and experiment names (file names end at 255 bytes).
SWEEP_NAME_MAX = 100
# URI schemes each store understands (a `+driver` suffix is allowed for SQLAlchemy URLs).
TRACKING_SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks")
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "oracle")
STORAGE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "abfs", "abfss", "az")
# Trial-config keys a sweep sets itself (per trial) and that a search may therefore not touch.
SWEEP_OWNED_KEYS = ("output_dir",)

class Objective(StrictModel):
    """One metric of the last task to minimise or maximise."""

    metric: str
    mode: Literal["min", "max"] = "min"

    @field_validator("metric")
    @classmethod
    def _known(cls, metric: str) -> str:
        """Checked with the structure, so it is reported beside any other structural problem."""
        if not is_known_metric(metric):
            raise ValueError(
                f"unknown metric; allowed: {', '.join(METRIC_NAMES)} (see cl_sweeps/metrics.py)"
            )
        return metric


class SchedulerConfig(StrictModel):
    """Early stopping with the task index as time: ASHA on one per-task metric, or MO-ASHA on
    the per-task forms of all objectives (stops what is dominated; see sweep/moasha.py)."""

    type: Literal["asha", "moasha"] = "asha"
    metric: str | None = Field(
        default=None, description="ASHA only: a metric reported after every task; default: the "
        "first objective's per-task form (fid_final -> fid)."
    )
    mode: Literal["min", "max"] | None = Field(
        default=None, description="ASHA only. Default: the mode of the first objective."
    )
    grace_period: int = Field(
        default=1, ge=1, description="First task index at which trials are compared."
    )
    reduction_factor: float = Field(default=2.0, gt=1.0)

    @model_validator(mode="after")
    def _asha_only(self) -> SchedulerConfig:
        if self.type == "moasha":
            for key in ("metric", "mode"):
                if getattr(self, key) is not None:
                    raise ValueError(
                        f"{key} applies to type: asha only; MO-ASHA compares the per-task forms "
                        "of all objectives"
                    )
        return self


class ResourcesConfig(StrictModel):
    """What one trial reserves on the Ray cluster; fractional GPUs let small trials share one."""

    cpu: float = Field(default=1.0, gt=0, description="CPUs one trial reserves.")
    gpu: float = Field(
        default=0.0, ge=0, description="GPUs one trial reserves; a fraction shares a GPU."
    )

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, gpu: float) -> float:
        if gpu > 1 and not float(gpu).is_integer():
            raise ValueError(
                f"gpu={gpu}: Ray shares a GPU only in fractions below 1; "
                "allowed: a fraction in (0, 1) or a whole number"
            )
        return gpu


class SearchAlgorithmConfig(StrictModel):
    """How the next point is chosen. `optuna` (default) uses TPE for one objective and
    multi-objective TPE for several (or the sampler named here); `random`; `grid` enumerates
    every combination of the (finite) search space, conditions respected."""

    name: Literal["optuna", "random", "grid"] = Field(
        default="optuna", description="optuna (a sampler), random, or grid (every point)."
    )
    sampler: Literal["auto", "tpe", "nsga2", "gp"] = Field(
        default="auto", description="auto: TPE for one objective, multi-objective TPE for several."
    )
    seed: Seed | None = Field(default=None, description="Seed of the sampler (reproducible search).")
    n_startup_trials: int | None = Field(
        default=None, ge=0, description="Random configurations before TPE/GP model the space."
    )
    population_size: int | None = Field(default=None, ge=2, description="NSGA-II population.")

    @model_validator(mode="after")
    def _optuna_only(self) -> SearchAlgorithmConfig:
        if self.name != "optuna":
            for key in ("n_startup_trials", "population_size"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} applies to name: optuna only, not {self.name!r}")
            if self.sampler != "auto":
                raise ValueError(f"sampler applies to name: optuna only, not {self.name!r}")
        if self.population_size is not None and self.sampler != "nsga2":
            raise ValueError("population_size applies to sampler: nsga2 only")
        return self


class MlflowConfig(StrictModel):
    """Where trials are tracked; default: SQLite under the sweep's output_dir."""

    tracking_uri: PathText | None = Field(
        default=None, description="Default: $MLFLOW_TRACKING_URI, else sqlite:///<output_dir>/"
        "mlflow.db. Never put credentials here: they come from the environment only."
    )
    experiment: str | None = Field(default=None, min_length=1, description="Default: the name.")

    @field_validator("experiment")
    @classmethod
    def _not_blank(cls, name: str | None) -> str | None:
        if name is not None and (not name.strip() or "\x00" in name):
            raise ValueError("a blank name (or one with a NUL byte) cannot name an MLflow "
                             "experiment; allowed: visible text, or drop it to use the sweep name")
        return name


def _default_objectives() -> list[Objective]:
    return [Objective(metric=name) for name in DEFAULT_OBJECTIVES]


class SweepConfig(StrictModel):
    """A sweep file: the base trial, the search space, the objectives and how to run them."""

    name: str = Field(
        pattern=SWEEP_NAME_PATTERN, max_length=SWEEP_NAME_MAX,
        description="Names the MLflow experiment, the Optuna study and the Ray experiment; "
        "default: the file name.",
    )
    output_dir: PathText | None = Field(default=None, description="Default: runs/<name>.")
    base: TrialConfig = Field(
        default_factory=TrialConfig, description="The trial every configuration starts from "
        "(a run file's base); see the trial-config reference."
    )
    search: dict[str, SearchParam] = Field(
        default_factory=dict, description="Dotted trial-config key -> distribution: a list "
        "(choice), {type: int|float, low, high, log, step}, {depends_on, values}; `when:` "
        "conditions; `field:` to set a key from a second parameter.",
    )
    objectives: list[Objective] = Field(
        default_factory=_default_objectives, min_length=1,
        description="Metric -> min|max after the last task; several: a Pareto set.",
    )
    num_samples: int | None = Field(
        default=None, gt=0, description="Configurations to try (each run once per seed); "
        "default 10. A grid runs every point once (num_samples, if set, must be 1)."
    )
    max_concurrent_trials: int | None = Field(
        default=None, gt=0, description="Trials at once; default: as many as resources allow."
    )
    resources_per_trial: ResourcesConfig = Field(default_factory=ResourcesConfig)
    scheduler: SchedulerConfig | None = Field(
        default=None, description="none, {type: asha, metric, mode, grace_period, "
        "reduction_factor} or {type: moasha, grace_period, reduction_factor}; time = task index."
    )
    seeds: list[Seed] | None = Field(
        default=None, min_length=1, max_length=1000,
        description="Replicate each configuration once per seed; default: base.seed.",
    )
    seed_keys: list[str] = Field(
        default_factory=lambda: ["seed"], min_length=1,
        description="Trial-config keys set to the replica's seed (e.g. data.class_order_seed too).",
    )
    search_algorithm: SearchAlgorithmConfig = Field(default_factory=SearchAlgorithmConfig)
    optuna_storage: PathText | None = Field(
        default=None, description="RDB URL (sqlite:///..., postgresql://user@host/db) of the "
        "Optuna study; password from the environment (PGPASSWORD, ~/.pgpass), never here."
    )
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    storage_path: PathText | None = Field(
        default=None, description="Ray Tune storage: a directory or a cloud URI (s3://, gs://); "
        "default <output_dir>/ray. Must be shared by all nodes of a multi-node cluster."
    )
    max_failures: int = Field(
        default=2, ge=0, description="Restarts of a failed trial (from its last finished task)."
    )
    share_prefix: bool = Field(
        default=True, description="Trials whose task 0 is the same (same seed, data, model, "
        "training and evaluation; a strategy whose task 0 trains like naive) train and "
        "evaluate it once and share it (cl_sweeps/prefix.py); results are bit-identical."
    )
    reuse_actors: bool = Field(
        default=True, description="A worker process that finished a trial runs the next one "
        "(Ray Tune's reuse_actors): no new process, torch and diffusers not imported again, a "
        "GPU's CUDA context kept. Trials share no state (each builds its own from its config)."
    )
    constraints: dict[str, ConstraintBounds] = Field(
        default_factory=dict, description="Final metric -> {max: x} and/or {min: y} on the "
        "configuration's seed mean; Optuna (TPE, NSGA-II, GP) searches the feasible region, "
        "and configurations that break one are marked infeasible and kept off the Pareto set."
    )
    budget: BudgetConfig | None = Field(
        default=None, description="Any of train_tflops, tflops, wall_hours, trials (and hard): "
        "no configuration is started that could not finish within what is left."
    )
    warm_start: list[PathText] = Field(
        default_factory=list, description="Output directories of finished sweeps (one, or a "
        "list): their trials whose configuration and seed this sweep can propose are copied "
        "into its records and not trained again, and its Optuna study starts knowing them. "
        "Their base must equal this one outside the searched keys."
    )

    @field_validator("warm_start", mode="before")
    @classmethod
    def _one_warm_start(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("scheduler", mode="before")
    @classmethod
    def _scheduler_shorthand(cls, value: Any) -> Any:
        if value is None or value == "none":
            return None
        if value in ("asha", "moasha"):
            return {"type": value}
        return value

    @field_validator("search_algorithm", mode="before")
    @classmethod
    def _algorithm_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("objectives", mode="before")
    @classmethod
    def _objectives_shorthand(cls, value: Any) -> Any:
        """Accept `{fid_final: min, train_tflops: min}` and `[fid_final, ...]` as well."""
        if isinstance(value, dict):
            return [{"metric": k, "mode": v} for k, v in value.items()]
        if isinstance(value, list):
            return [{"metric": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("search", mode="before")
    @classmethod
    def _search_shorthand(cls, value: Any) -> Any:
        """A bare list is a choice; `values:` without `type:` is a choice too."""
        if not isinstance(value, dict):
            return value
        result = {}
        for key, spec in value.items():
            if isinstance(spec, list):
                spec = {"type": "choice", "values": spec}
            elif isinstance(spec, dict) and "type" not in spec:
                if "depends_on" in spec:
                    spec = {"type": "map", **spec}
                elif "grid" in spec and "values" not in spec:  # Ray Tune users' spelling
                    spec = {"type": "choice", **spec, "values": spec["grid"]}
                    del spec["grid"]
                elif "values" in spec:
                    spec = {"type": "choice", **spec}
            result[key] = spec
        return result
    @model_validator(mode="after")
    def _select_on_validation(self) -> SweepConfig:
        """With a validation split (base data.validation_per_class), the objectives are
        measured on it (fid_final -> fid_final_val, kld -> kld_val): Optuna, ASHA/MO-ASHA and
        the frontier choose on validation images, and the test metrics report the choice."""
        if self.base.data.validation_per_class is not None:
            for objective in self.objectives:
                objective.metric = validation_form(objective.metric) or objective.metric
        return self

    # --- derived views (used by validation and by the sweep layer) ---------------------------
    def seed_list(self) -> list[int]:
        """The seeds every configuration is replicated over (default: the base seed)."""
        return list(self.seeds) if self.seeds else [self.base.seed]

    def field_of(self, key: str) -> str:
        """The trial-config key a search parameter sets."""
        return self.search[key].field or key

    def scheduler_objectives(self) -> list[tuple[str, str]]:
        """MO-ASHA: (per-task metric, mode) of each objective (fid_final -> fid; a metric
        already reported after every task, such as train_tflops, stays itself)."""
        return [(per_task_form(o.metric), o.mode) for o in self.objectives]

    def scheduler_metric(self) -> tuple[str, str] | None:
        """(metric, mode) of the ASHA scheduler, defaults filled in; None without a scheduler
        (MO-ASHA: the first of `scheduler_objectives`)."""
        if self.scheduler is None:
            return None
        if self.scheduler.type == "moasha":
            return self.scheduler_objectives()[0]
        first = self.objectives[0]
        metric = self.scheduler.metric
        if metric is None:
            metric = per_task_form(first.metric)
        return metric, self.scheduler.mode or first.mode


def trial_field(key: str) -> tuple[Any, str | None]:
    """The pydantic FieldInfo of a dotted trial-config key, or (None, why it is not a field)."""
    model: type[BaseModel] = TrialConfig
    parts = key.split(".")
    for index, part in enumerate(parts):
        where = ".".join(parts[:index]) or "the trial config"
        if part not in model.model_fields:
            replaced = REPLACED_KEYS.get(".".join(parts[: index + 1]))
            if replaced:
                return None, f"{key} was replaced by {replaced}"
            allowed = ", ".join(model.model_fields)
            return None, f"{where} has no field {part!r}; allowed: {allowed}"
        info = model.model_fields[part]
        section = _section_of(info.annotation)
        if index < len(parts) - 1:
            if section is None:
                return None, f"{'.'.join(parts[: index + 1])} is a value, not a section"
            model = section
        elif section is not None:
            fields = ", ".join(f"{key}.{f}" for f in section.model_fields)
            return None, f"{key} is a section; search one of its fields: {fields}"
    return info, None


def _section_of(annotation: Any) -> type[BaseModel] | None:
    """The model of a section field, an optional one (`classifier_replay`) included."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _is_int_field(info: Any) -> bool:
    args = set(get_args(info.annotation)) or {info.annotation}
    plain = {get_args(a)[0] if get_origin(a) is Annotated else a for a in args}
    return plain - {type(None)} == {int}


# --- semantic checks ------------------------------------------------------------------------


def check_sweep(sweep: SweepConfig) -> list[str]:
    """Every problem the structure alone cannot show, one field-named line each."""
    problems: list[str] = []
    problems += _check_seeds(sweep)
    problems += _check_search(sweep)
    if not problems:
        problems += _check_algorithm(sweep)
    problems += _check_objectives(sweep)
    problems += _check_scheduler(sweep)
    problems += _check_resources(sweep)
    problems += _check_uris(sweep)
    problems += _check_constraints(sweep)
    return problems


def _check_seeds(sweep: SweepConfig) -> list[str]:
    problems = []
    if sweep.seeds is not None and len(set(sweep.seeds)) != len(sweep.seeds):
        problems.append(f"seeds: a seed is listed twice; list each once (got {sweep.seeds})")
    for index, key in enumerate(sweep.seed_keys):
        info, why = trial_field(key)
        if info is None:
            problems.append(f"seed_keys[{index}]: {why} (got {key!r})")
        elif not _is_int_field(info):
            problems.append(f"seed_keys[{index}]: {key} is not an integer field (got {key!r})")
    return problems


def _check_search(sweep: SweepConfig) -> list[str]:
    problems = []
    fields: dict[str, list[str]] = {}
    for key, param in sweep.search.items():
        where = f"search.{key}"
        field = sweep.field_of(key)
        info, why = trial_field(field)
        if info is None:
            name = "field" if param.field else ""
            problems.append(f"{where}{'.' + name if name else ''}: {why} (got {field!r})")
            continue
        if field in sweep.seed_keys or field in SWEEP_OWNED_KEYS:
            reason = "use `seeds:` to replicate over seeds" if field in sweep.seed_keys else (
                "the sweep sets it per trial")
            problems.append(f"{where}: {field} cannot be searched; {reason}")
            continue
        if isinstance(param, FloatParam) and _is_int_field(info):
            problems.append(f"{where}.type: {field} is an integer field; use type: int (got float)")
            continue
        fields.setdefault(field, []).append(key)
        problems += _check_conditions(sweep, key)
        problems += _check_strategy_knob(sweep, key)
        if not problems:
            problems += _check_candidates(sweep, key)
    for field, keys in fields.items():
        problems += _check_exclusive(sweep, field, keys)
    if not problems:
        try:
            search_order(sweep)
        except ConfigError as error:
            problems.append(str(error))
    if not problems:
        problems += setting_problems(sweep, sweep.base.strategy.name, sweep.base.model.conditional)
    return problems


def _check_conditions(sweep: SweepConfig, key: str) -> list[str]:
    problems = []
    mapped = isinstance(sweep.search[key], MappedParam)
    for parent, allowed in conditions(sweep, key).items():
        where = f"search.{key}.depends_on" if mapped else f"search.{key}.when.{parent}"
        if parent == key:
            problems.append(f"{where}: a parameter cannot depend on itself")
        elif parent not in sweep.search:
            others = ", ".join(k for k in sweep.search if k != key) or "(none)"
            problems.append(
                f"{where}: {parent!r} is not a search parameter; allowed: {others}"
            )
        elif isinstance(sweep.search[parent], FloatParam | MappedParam):
            problems.append(f"{where}: {parent} must be a choice or int parameter")
        else:
            for value in allowed:
                if not sweep.search[parent].contains(value):
                    label = f"search.{key}.values.{value}" if mapped else where
                    problems.append(
                        f"{label}: {value!r} is not a value {parent} can take; "
                        f"allowed: {sweep.search[parent].describe()}"
                    )
    return problems


def _check_strategy_knob(sweep: SweepConfig, key: str) -> list[str]:
    """A searched strategy knob must be read by some strategy it is sampled for."""
    field = sweep.field_of(key)
    param = sweep.search[key]
    if param.when is not None or isinstance(param, MappedParam) or (
        not field.startswith("strategy.") or field == "strategy.name"
    ):
        return []
    knob = field.split(".", 1)[1]
    name_key = strategy_name_key(sweep)
    names = sweep.search[name_key].candidates() if name_key else [sweep.base.strategy.name]
    if any(knob in knobs_of(n) for n in names):
        return []
    readers = [s for s in strategy_names() if knob in knobs_of(s)]
    message = (
        f"search.{key}: no strategy this sweep runs ({', '.join(map(str, names))}) reads {knob}, "
        f"so sampling it has no effect; strategies that read it: {', '.join(readers) or 'none'} "
        "(write `when: {}` to sample it anyway)"
    )
    return [message]


def _check_candidates(sweep: SweepConfig, key: str) -> list[str]:
    """Build a TrialConfig at every choice / bound / mapped value, with the parameters it is
    conditioned on set to a value that activates it; name the value that fails and why."""
    problems = []
    base = sweep.base.model_dump(mode="json")
    for label, value, parents in _labelled_candidates(sweep, key):
        data = copy.deepcopy(base)
        for parent, parent_value in parents.items():
            set_dotted(data, sweep.field_of(parent), parent_value)
        set_dotted(data, sweep.field_of(key), value)
        try:
            TrialConfig.model_validate(data)
        except ValidationError as error:
            reasons = "; ".join(_reason(item) for item in error.errors())
            problems.append(f"search.{key}.{label}: {reasons} (got {value!r})")
    return problems


def _labelled_candidates(sweep: SweepConfig, key: str) -> list[tuple[str, Any, dict[str, Any]]]:
    """(label for errors, value, {conditioning parameter: a value that activates this one})."""
    param = sweep.search[key]
    if isinstance(param, MappedParam):
        return [(f"values.{k}", v, {param.depends_on: k}) for k, v in param.values.items()]
    parents = {p: allowed[0] for p, allowed in conditions(sweep, key).items()}
    if isinstance(param, ChoiceParam):
        return [(f"values[{i}]", v, parents) for i, v in enumerate(param.values)]
    low, high = param.candidates()
    return [("low", low, parents), ("high", high, parents)]


def _reason(item: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in item["loc"])
    msg = item["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def _check_exclusive(sweep: SweepConfig, field: str, keys: list[str]) -> list[str]:
    """Several parameters may set one key only if no two can be sampled together."""
    if len(keys) < 2:
        return []
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if not _exclusive(conditions(sweep, a), conditions(sweep, b)):
                message = (
                    f"search.{b}.field: {field} is also set by search.{a}; parameters sharing a "
                    "field need `when` conditions that exclude each other"
                )
                return [message]
    return []


def _exclusive(a: dict[str, list[Any]], b: dict[str, list[Any]]) -> bool:
    return any(k in b and not any(value_in(v, b[k]) for v in a[k]) for k in a)


def _check_algorithm(sweep: SweepConfig) -> list[str]:
    if not sweep.search:
        if sweep.num_samples in (None, 1):
            return []
        message = (
            f"num_samples: {sweep.num_samples} identical trials, as `search` is empty; "
            "allowed: 1 (replicate over seeds with `seeds:`)"
        )
        return [message]
    if sweep.search_algorithm.name != "grid":
        return []
    for key, param in sweep.search.items():
        if param.grid() is None:
            message = (
                f"search.{key}: search_algorithm grid needs a small finite set; use type "
                "choice, int, or float with step"
            )
            return [message]
    if sweep.num_samples not in (None, 1):
        message = (
            f"num_samples: {sweep.num_samples} passes over the grid would repeat identical "
            "trials; allowed: 1 (the default; replicate over seeds with `seeds:`)"
        )
        return [message]
    try:
        grid(sweep)
    except ConfigError as error:
        return [str(error)]
    return []


def _check_constraints(sweep: SweepConfig) -> list[str]:
    """Constrained metrics must exist; the sampler must be one that honours constraints
    (random and grid never look at results, so a constraint could not steer them)."""
    problems = []
    for metric in sweep.constraints:
        if not is_known_metric(metric):
            problems.append(f"constraints.{metric}: unknown metric; allowed: "
                            f"{', '.join(METRIC_NAMES)} (see cl_sweeps/metrics.py)")
        else:
            problems += _task_in_range(sweep, f"constraints.{metric}", metric)
    algorithm = sweep.search_algorithm.name
    if sweep.constraints and algorithm != "optuna":
        problems.append(
            f"constraints: search_algorithm {algorithm!r} (Optuna's RandomSampler) cannot honour "
            "constraints; allowed: search_algorithm optuna with sampler auto, tpe, nsga2 or gp"
        )
    return problems


def _check_objectives(sweep: SweepConfig) -> list[str]:
    problems, seen = [], set()
    for index, objective in enumerate(sweep.objectives):  # names checked by Objective
        problems += _task_in_range(sweep, f"objectives[{index}].metric", objective.metric)
        if objective.metric in seen:
            problems.append(f"objectives[{index}].metric: {objective.metric!r} is listed twice")
        seen.add(objective.metric)
    if sweep.scheduler is not None and sweep.scheduler.metric is not None:
        problems += _task_in_range(sweep, "scheduler.metric", sweep.scheduler.metric)
    return problems


def _task_in_range(sweep: SweepConfig, field: str, metric: str) -> list[str]:
    """A per-task metric's task index must be one of the sweep's tasks."""
    task = task_of_metric(metric)
    if task is None or {"data.num_tasks", "data.tasks"} & {sweep.field_of(k) for k in sweep.search}:
        return []
    tasks = num_tasks_of(sweep.base)
    if task >= tasks:
        reason = f"names task {task}, but the sweep has {tasks} tasks (allowed: 0..{tasks - 1})"
        return [f"{field}: {metric!r} {reason}"]
    return []


def _check_scheduler(sweep: SweepConfig) -> list[str]:
    if sweep.scheduler is None:
        return []
    if sweep.scheduler.type == "moasha":
        for index, (metric, _) in enumerate(sweep.scheduler_objectives()):
            if not is_per_task_metric(metric):
                message = (
                    f"objectives[{index}].metric: {sweep.objectives[index].metric!r} has no form "
                    "reported after every task, so MO-ASHA cannot compare trials on it; use "
                    "objectives such as fid_final, denoise_loss, kld, train_tflops, or ASHA"
                )
                return [message]
    metric, _ = sweep.scheduler_metric()
    if not is_per_task_metric(metric):
        message = (
            f"scheduler.metric: {metric!r} is not reported after every task, so ASHA cannot "
            "compare trials on it; use a per-task metric such as fid or denoise_loss"
        )
        return [message]
    searched = {sweep.field_of(k) for k in sweep.search}
    if searched & {"data.num_tasks", "data.tasks"}:
        message = (
            f"scheduler: {sweep.scheduler.type} needs one number of tasks; do not search "
            "data.num_tasks/tasks"
        )
        return [message]
    tasks = num_tasks_of(sweep.base)
    if sweep.scheduler.grace_period >= tasks - 1:
        message = (
            f"scheduler.grace_period: {sweep.scheduler.grace_period} leaves nothing to stop early "
            f"in {tasks} tasks (time = task index 0..{tasks - 1}); allowed: 1..{max(1, tasks - 2)}"
        )
        return [message]
    return []


def _check_resources(sweep: SweepConfig) -> list[str]:
    device, gpu = sweep.base.device, sweep.resources_per_trial.gpu
    searched = [(f"search.{key}", value) for key, param in sweep.search.items()
                if sweep.field_of(key) == "device" for value in param.candidates()]
    for where, value in [("base.device", device), *searched]:
        if isinstance(value, str) and value.startswith("cuda:"):
            message = (
                f"{where}: {value!r} names one GPU, but Ray gives each trial its own GPUs and "
                "numbers them from 0 inside the trial, so a fixed index points at another "
                "trial's GPU or at none; allowed in a sweep: cuda, auto or cpu (choose the "
                "GPU count with resources_per_trial.gpu)"
            )
            return [message]
        if isinstance(value, str) and value.startswith("cuda") and gpu == 0:
            message = (
                f"resources_per_trial.gpu: 0 but {where}={value!r}; a trial sees no GPU unless "
                "it reserves one (set gpu, e.g. 1 or 0.5, or device: auto)"
            )
            return [message]
    if device == "cpu" and gpu > 0 and not searched:
        message = (
            f"resources_per_trial.gpu: {gpu} reserves a GPU that base.device='cpu' never uses "
            "(set device: auto or gpu: 0)"
        )
        return [message]
    return []


def _check_uris(sweep: SweepConfig) -> list[str]:
    problems = []
    if sweep.storage_path is not None and uri_has_secret(sweep.storage_path):
        problems.append(
            "storage_path: the location carries credentials; give them to the storage client "
            "through its environment (e.g. AWS_* variables) instead "
            f"(got {redact_uri(sweep.storage_path)!r})"
        )
    elif sweep.storage_path is not None and "://" in sweep.storage_path:
        problems += _uri_problems("storage_path", sweep.storage_path, STORAGE_SCHEMES)
    for field, uri in (
        ("mlflow.tracking_uri", sweep.mlflow.tracking_uri),
        ("optuna_storage", sweep.optuna_storage),
    ):
        if uri is not None:
            problems += store_uri_problems(field, uri)
    return problems


def store_uri_problems(field: str, uri: str, from_environment: bool = False) -> list[str]:
    """What is wrong with an MLflow tracking URI (field mlflow.* or MLFLOW_TRACKING_URI) or an
    Optuna storage URL. A URI from the environment may carry credentials (they are moved into
    the client's own variables, sweep/tracking.py); a sweep file's may not."""
    tracking = "mlflow" in field.lower()
    if not is_well_formed(uri):
        return [f"{field}: not a well-formed URI (got {redact_uri(uri)!r})"]
    if uri_has_secret(uri) and not from_environment:
        why = ("the URI carries a password; credentials come only from the environment "
               "(MLFLOW_TRACKING_USERNAME/PASSWORD, PGPASSWORD or ~/.pgpass)")
        return [f"{field}: {why} (got {redact_uri(uri)!r})"]
    if "://" not in uri or uri.startswith("file:"):
        allowed = (
            "http(s)://host:port, sqlite:///path/mlflow.db, postgresql://user@host/db "
            "(MLflow 3 refuses plain file stores)" if tracking
            else "an SQLAlchemy URL such as sqlite:///optuna.db or postgresql://user@host/db"
        )
        return [f"{field}: not a URL; allowed: {allowed} (got {shorten(uri)})"]
    return _uri_problems(field, uri, TRACKING_SCHEMES if tracking else DATABASE_SCHEMES)


def _uri_problems(field: str, uri: str, schemes: tuple[str, ...]) -> list[str]:
    """A URI's scheme must be one its client speaks, and a network store needs a host (a
    missing one fails late, after a long connection timeout, or as a traceback)."""
    if not is_well_formed(uri):
        return [f"{field}: not a well-formed URI (got {redact_uri(uri)!r})"]
    parts = urlsplit(uri)
    scheme = parts.scheme.lower().split("+", 1)[0]
    shown = shorten(redact_uri(uri))
    if scheme not in schemes:
        allowed = ", ".join(f"{s}://" for s in schemes)
        return [f"{field}: unsupported scheme {parts.scheme!r}; allowed: {allowed} (got {shown})"]
    if scheme == "sqlite":
        if not parts.path.strip("/") or parts.path.endswith("/"):
            needs = "an SQLite URL needs a file, e.g. sqlite:///path/to/file.db"
            return [f"{field}: {needs} (got {shown})"]
        return []
    if scheme == "databricks":
        return []
    if not parts.hostname:
        where = "bucket" if field == "storage_path" else "host"
        return [f"{field}: the URI names no {where}; e.g. {scheme}://name/... (got {shown})"]
    return []


# --- loading ----------------------------------------------------------------------------------


def _format_sweep_error(error: ValidationError) -> str:
    """Field-named lines as config.format_validation_error writes them (values shown, and
    redacted, by its `shown_value`); the discriminator tag pydantic adds to search locations is
    dropped and list indices are written [i]."""
    lines = []
    for item in error.errors():
        loc = [f"[{p}]" if isinstance(p, int) else str(p) for p in item["loc"]]
        if len(loc) >= 3 and loc[0] == "search" and loc[2] in SEARCH_TYPES:
            del loc[2]
        field = ".".join(loc).replace(".[", "[") or "<root>"
        reason = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            reason = "unknown key; check the spelling against the documented fields"
        elif item["type"] == "union_tag_invalid" or item["type"] == "union_tag_not_found":
            reason = f"type must be one of {', '.join(SEARCH_TYPES)}"
        lines.append(f"{field}: {reason} (got {shown_value(item.get('input'))})")
    return "\n".join(lines)


def parse_sweep_config(data: dict[str, Any], default_name: str = "sweep") -> SweepConfig:
    """Validate a sweep mapping in full (structure, then semantics); ConfigError lists every
    problem with its field."""
    data = dict(data)
    data.setdefault("name", default_name)
    try:
        sweep = SweepConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_sweep_error(error)) from None
    problems = check_sweep(sweep)
    if problems:
        raise ConfigError("\n".join(problems))
    return sweep


def sweep_name_from_path(path: str | Path) -> str:
    """A valid sweep name from a file name: search_spaces/quickstart.yaml -> quickstart."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "-", Path(path).stem).lstrip("._-")
    return stem or "sweep"


def load_sweep_raw(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """The sweep file's mapping with `--set` overrides applied (search entries excluded)."""
    for item in overrides or []:
        if item.strip().startswith("search."):
            raise ConfigError(
                f"--set {item!r}: search entries have dotted names; edit them in the file"
            )
    return apply_overrides(load_yaml(path), overrides or [])


def load_sweep_config(path: str | Path, overrides: list[str] | None = None) -> SweepConfig:
    """Load and fully validate a sweep file; the name defaults to the file's stem."""
    return parse_sweep_config(load_sweep_raw(path, overrides), sweep_name_from_path(path))
