"""The quiet sweep console (the default; `--verbose` gives Ray's full output instead): one line
when a trial starts, finishes, is pruned or fails, and now and then the status table of
`cl-sweeps status` (trial, status, task k/T, objectives so far, elapsed, ETA).

Ray's own reporter is switched off (verbose=0), and so are the INFO logs of Ray, MLflow, Optuna
and cl-sweeps, on the driver and in the trials; warnings and errors still show.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import optuna
from ray import tune

from cl_sweeps import records
from cl_sweeps.records import SEED_PARAM
from cl_sweeps.sweep import budget as budgets
from cl_sweeps.sweep.plan import SweepPlan
from cl_sweeps.sweep.status import format_rows, sweep_eta, trial_rows

QUIET_LOGGERS = ("cl_sweeps", "mlflow", "ray", "ray.tune", "ray.train", "alembic", "filelock")
RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
TABLE_EVERY_S = 60.0


def quiet_ray_output() -> None:
    """On the driver: Ray Tune's classic output engine, which at verbose=0 prints nothing (the
    newer one still prints an experiment box at verbose=0)."""
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"


def quiet_logs() -> None:
    """INFO messages off (driver or trial process): only warnings and errors."""
    logging.getLogger().setLevel(logging.WARNING)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    auth = logging.getLogger(RAY_AUTH_LOGGER)
    if not any(isinstance(f, _TokenAuthOnNotice) for f in auth.filters):
        auth.addFilter(_TokenAuthOnNotice())


class _TokenAuthOnNotice(logging.Filter):
    """Drops Ray's notice that a local cluster has token authentication on (its secure
    default, printed at every start); its warning that authentication is off still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled")


def _params_text(params: dict[str, Any]) -> str:
    shown = []
    for key, value in params.items():
        if key in (SEED_PARAM, "strategy.name"):
            continue
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        shown.append(f"{key.split('.')[-1]}={text}")
    return " ".join(shown + [f"seed={params.get(SEED_PARAM)}"])


class QuietConsole(tune.Callback):
    """Prints one line per trial event and, every `every_s` seconds while trials report
    tasks, the status table. Listed after the TrialRecorder, so the records it
    reads are already written."""

    def __init__(self, plan: SweepPlan, every_s: float = TABLE_EVERY_S):
        self.plan = plan
        self.sweep = plan.sweep
        self.every_s = every_s
        self._last_table = time.monotonic()
        self._changed = False

    def _say(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)

    def _record(self, trial: Any) -> records.TrialRecord | None:
        return records.read_trial(self.plan.layout.trial(trial.trial_id))

    def _objectives(self, record: records.TrialRecord | None) -> str:
        if record is None:
            return ""
        values = [(o.metric, record.final.get(o.metric)) for o in self.sweep.objectives]
        return " ".join(f"{k}={v:.4g}" for k, v in values if v is not None)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        strategy = trial.config.get("strategy.name", self.sweep.base.strategy.name)
        self._say(f"started  {trial.trial_id}  {strategy}  {_params_text(dict(trial.config))}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        self._changed = True

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self._record(trial)
        status = record.status if record is not None else records.COMPLETED
        tasks = record.tasks_done if record is not None else "?"
        word = "finished" if status == records.COMPLETED else "pruned  "
        why = f"  ({record.error})" if record is not None and record.error else ""
        self._say(f"{word} {trial.trial_id}  after {tasks} tasks  {self._objectives(record)}{why}")
        self._changed = True

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self._record(trial)
        error = (record.error or "").strip().splitlines()[-1:] if record is not None else []
        self._say(f"failed   {trial.trial_id}  {error[0] if error else ''}".rstrip())
        self._changed = True

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if not self._changed or time.monotonic() - self._last_table < self.every_s:
            return
        self._last_table = time.monotonic()
        self._changed = False
        self.print_table()

    def print_table(self) -> None:
        layout = self.plan.layout
        rows = trial_rows(self.plan, layout, records.read_trials(layout.trials), time.time())
        if not rows:
            return
        eta = sweep_eta(self.plan, rows)
        eta_text = "?" if eta is None else f"{eta / 60:.1f} min"
        budget = budgets.sweep_summary(self.sweep, layout)
        spent = f"\n{budgets.summary_line(budget)}" if budget is not None else ""
        print(f"\n{format_rows(self.sweep, rows)}\n(sweep ETA {eta_text}){spent}\n", flush=True)
