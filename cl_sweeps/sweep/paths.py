"""How relative paths in a sweep file become absolute before any trial starts (the files a sweep
writes under its output_dir are named by `cl_sweeps.records.SweepLayout`).

A trial runs with its own working directory (Ray changes it), so every path a trial sees is made
absolute on the driver. Relative paths are resolved against `CL_SWEEPS_HOME` if set, else the
current directory; inside a Ray job submitted with `--working-dir`, the current directory is a
temporary copy of the upload, so `~/cl-sweeps` is used instead (printed at the start).
"""

from __future__ import annotations

import os
from pathlib import Path

from cl_sweeps.records import SweepLayout
from cl_sweeps.sweep.schema import SweepConfig

HOME_ENV = "CL_SWEEPS_HOME"
# Trial-config keys that hold file system paths (tests check that new path fields are listed).
TRIAL_PATH_FIELDS = (
    "output_dir",
    "data.data_root",
    "evaluation.cache_dir",
    "evaluation.inception_weights",
    "evaluation.classifier_weights",
)
CACHE_ENV = "CL_SWEEPS_CACHE"


def base_directory() -> Path:
    """What relative paths in a sweep file are relative to (see the module docstring)."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser().resolve()
    cwd = Path.cwd()
    if "runtime_resources" in cwd.parts:  # a Ray job's uploaded working_dir
        return Path.home() / "cl-sweeps"
    return cwd


def absolute(path: str, base: Path) -> str:
    """`path` made absolute against `base` (~ expanded); URIs (scheme://) are left alone."""
    if "://" in path:
        return path
    resolved = Path(path).expanduser()
    return str(resolved if resolved.is_absolute() else (base / resolved).resolve())


def absolute_sqlite(url: str, base: Path) -> str:
    """sqlite:///relative.db -> sqlite:////abs/relative.db; other URLs unchanged."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url[len(prefix):].startswith(("/", ":memory:")):
        return url
    return prefix + absolute(url[len(prefix):], base)


def with_absolute_paths(sweep: SweepConfig, base: Path) -> SweepConfig:
    """A copy of the sweep with output_dir, storage, SQLite URLs and the base trial's path
    fields absolute (output_dir defaults to runs/<name>, optuna_storage to its optuna.db)."""
    output_dir = absolute(sweep.output_dir or f"runs/{sweep.name}", base)
    trial = sweep.base.model_dump()
    for field in TRIAL_PATH_FIELDS:
        section, _, key = field.rpartition(".")
        node = trial[section] if section else trial
        if node.get(key):
            node[key] = absolute(node[key], base)
    cache = os.environ.get(CACHE_ENV)
    if not trial["evaluation"].get("cache_dir") and cache and not Path(cache).is_absolute():
        trial["evaluation"]["cache_dir"] = absolute(cache, base)
    mlflow = sweep.mlflow
    if mlflow.tracking_uri:
        uri = absolute_sqlite(mlflow.tracking_uri, base)
        mlflow = mlflow.model_copy(update={"tracking_uri": uri})
    return sweep.model_copy(
        update={
            "output_dir": output_dir,
            "base": type(sweep.base).model_validate(trial),
            "storage_path": absolute(
                sweep.storage_path or str(SweepLayout(Path(output_dir)).ray), base
            ),
            "optuna_storage": (  # persistent by default, so optuna-dashboard can open it
                absolute_sqlite(sweep.optuna_storage, base) if sweep.optuna_storage
                else f"sqlite:///{SweepLayout(Path(output_dir)).optuna_db}"
            ),
            "mlflow": mlflow,
            "warm_start": [absolute(path, base) for path in sweep.warm_start],
        }
    )
