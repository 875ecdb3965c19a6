"""A small, hand-made sweep written through the records module the sweep layer writes with
(cl_sweeps/records.py): trial directories with params.json / status.json / metrics.parquet, the
resolved sweep config and, optionally, the same trials logged to a real MLflow store. Shared by
the frontier and report tests; no Ray involved (tests/test_sweep_frontier.py runs a real sweep)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cl_sweeps import records
from cl_sweeps.results import write_task_metrics
from cl_sweeps.sweep.schema import parse_sweep_config

SWEEP = "fake_sweep"
NUM_TASKS = 3
GD = "generative_distillation"
GR = "generative_replay"


@dataclass
class FakeTrial:
    trial_id: str
    params: dict[str, Any]
    seed: int
    compute: float  # final train_tflops
    fid_final: float
    kld: float = 0.5
    status: str = "COMPLETED"
    tasks: int = NUM_TASKS
    error: str | None = None
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def config_key(self) -> str:
        return records.config_key(self.params)

    def history(self) -> list[dict[str, Any]]:
        """Per-task rows: stream FID falls towards fid_final, compute grows linearly."""
        rows = []
        for t in range(self.tasks):
            last = t == NUM_TASKS - 1
            row: dict[str, Any] = {
                "task": t,
                "fid": self.fid_final if last else 100.0 + 10 * t + self.seed,
                "kld": self.kld if last else 0.1 * (t + 1),
                "train_tflops": self.compute * (t + 1) / NUM_TASKS,
                "denoise_loss": 0.1 - 0.01 * t,
            }
            for k in range(t + 1):
                row[f"fid_task_{k}"] = 50.0 + k + t
            if last:
                row["fid_final"] = self.fid_final
                row["fid_avg"] = self.fid_final + 5
                row["forgetting"] = 3.0 + self.seed
                row.update(self.extra)
            rows.append(row)
        return rows


def _gd(k: int, lambd: float = 0.75) -> dict[str, Any]:
    return {"strategy.name": GD, "strategy.teacher_steps": k, "strategy.replay_ratio": 1.0,
            "strategy.lambd": lambd}


def fake_trials() -> list[FakeTrial]:
    """Frontier by construction: naive (cheapest), er, GD k=2, cumulative. Dominated: GR k=2
    (more compute and worse FID than er), GD k=10 (worse than cumulative at more compute),
    GD k=2 λ=1.5 (same compute as GD k=2 λ=0.75, worse mean FID despite tiny spread).
    Excluded: one each of failed, pruned, running, incomplete, NaN and inf fid_final."""
    naive = {"strategy.name": "naive"}
    er = {"strategy.name": "er", "strategy.replay_ratio": 1.0}
    cumulative = {"strategy.name": "cumulative"}
    gr2 = {"strategy.name": GR, "strategy.teacher_steps": 2, "strategy.replay_ratio": 1.0,
           "strategy.lambd": 1.0}
    trials = [
        FakeTrial("t00", naive, 0, 1.0, 80.0, kld=2.0),
        FakeTrial("t01", naive, 1, 1.0, 82.0, kld=2.2),
        FakeTrial("t02", naive, 2, 1.0, 84.0, kld=2.4),
        FakeTrial("t03", er, 0, 1.5, 50.0),
        FakeTrial("t04", er, 1, 1.5, 52.0),
        FakeTrial("t05", gr2, 0, 2.0, 120.0),
        FakeTrial("t06", gr2, 1, 2.0, 118.0),
        FakeTrial("t07", _gd(2), 0, 2.5, 20.0, kld=0.2),  # mean 30, wide spread
        FakeTrial("t08", _gd(2), 1, 2.5, 40.0, kld=0.3),
        FakeTrial("t09", _gd(2, 1.5), 0, 2.5, 30.9),  # mean 31.0, tiny spread: dominated
        FakeTrial("t10", _gd(2, 1.5), 1, 2.5, 31.1),
        FakeTrial("t11", _gd(10), 0, 5.0, 25.0),
        FakeTrial("t12", _gd(10), 1, 5.0, 26.0),
        FakeTrial("t13", cumulative, 0, 3.0, 20.0, kld=0.05),
        FakeTrial("t14", cumulative, 1, 3.0, 21.0, kld=0.06),
        # excluded, one per reason
        FakeTrial("t15", _gd(2), 2, 0.9, 10.0, status="FAILED", tasks=1, error="CUDA OOM"),
        FakeTrial("t16", _gd(10), 2, 1.2, 90.0, status="PRUNED", tasks=2),
        FakeTrial("t17", er, 2, 0.5, 95.0, status="RUNNING", tasks=1),
        FakeTrial("t18", cumulative, 2, 3.0, 5.0, tasks=2),  # COMPLETED but short: incomplete
        FakeTrial("t19", gr2, 2, 2.0, math.nan),
        FakeTrial("t20", {"strategy.name": GR, "strategy.teacher_steps": 1,
                          "strategy.replay_ratio": 1.0, "strategy.lambd": 1.0},
                  0, 1.8, math.inf),
        FakeTrial("t21", {"strategy.name": GR, "strategy.teacher_steps": 1,
                          "strategy.replay_ratio": 1.0, "strategy.lambd": 1.0},
                  1, 1.8, 150.0),
    ]
    return trials


EXPECTED_EXCLUDED = {"failed": 1, "pruned": 1, "running": 1, "incomplete": 1, "nan": 1, "inf": 1}
EXPECTED_FRONT = {  # (strategy, teacher_steps) of the Pareto configurations
    ("naive", None), ("er", None), (GD, 2), ("cumulative", None),
}


def resolved_sweep() -> dict[str, Any]:
    """The resolved config of the fake sweep, as the sweep writes it (defaults filled)."""
    sweep = parse_sweep_config({
        "name": SWEEP, "base": {"data": {"dataset": "digits",
                                          "tasks": [[2 * k, 2 * k + 1] for k in range(NUM_TASKS)]}},
        "seeds": [0, 1, 2],
    })
    return sweep.model_dump(mode="json")


def write_sweep_dir(root: Path, trials: list[FakeTrial] | None = None) -> Path:
    """<root>/trials/<id>/{params.json,status.json,metrics.parquet,metrics.jsonl} and the
    resolved sweep config, written by the records module."""
    layout = records.SweepLayout(root)
    records.write_yaml(layout.resolved, resolved_sweep())
    for trial in trials if trials is not None else fake_trials():
        trial_dir = layout.trial(trial.trial_id)
        params = {**trial.params, records.SEED_PARAM: trial.seed}
        records.write_params(trial_dir, trial.trial_id, params, NUM_TASKS)
        records.write_status(trial_dir, trial.status, trial.error)
        write_task_metrics(trial_dir, trial.history())
    return root


MLFLOW_STATUS = {"COMPLETED": "FINISHED", "FAILED": "FAILED", "PRUNED": "KILLED"}


def log_to_mlflow(tracking_uri: str, artifact_root: Path, trials: list[FakeTrial] | None = None,
                  resolved: Path | None = None) -> tuple[Any, str]:
    """The same trials in a real MLflow store, named as the sweep layer names them."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.create_experiment(SWEEP, artifact_location=artifact_root.as_uri())
    parent = client.create_run(
        experiment_id, run_name=SWEEP,
        tags={"cl_sweeps.role": "sweep", "cl_sweeps.sweep": SWEEP},
    ).info.run_id
    if resolved is not None:
        client.log_artifact(parent, str(resolved))
    for trial in trials if trials is not None else fake_trials():
        run = client.create_run(experiment_id, run_name=trial.trial_id, tags={
            "mlflow.parentRunId": parent, "cl_sweeps.role": "trial", "cl_sweeps.sweep": SWEEP,
            "trial_id": trial.trial_id, "config_key": trial.config_key,
            "strategy": trial.params["strategy.name"], "seed": str(trial.seed),
            "status": trial.status, **({"error": trial.error} if trial.error else {}),
        }).info.run_id
        params = [Param(k, str(v)) for k, v in {**trial.params, "seed": trial.seed}.items()]
        metrics = [
            Metric(key, float(value), 1_700_000_000_000 + t, t)
            for t, row in enumerate(trial.history()) for key, value in row.items()
        ]
        client.log_batch(run, params=params, metrics=metrics)
        if trial.status in MLFLOW_STATUS:
            client.set_terminated(run, MLFLOW_STATUS[trial.status])
    return client, parent


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b and type(a) is type(b)


def assert_tables_equal(a: Any, b: Any) -> None:
    """Same columns, types and values (NaN equal to NaN; pyarrow's equals says otherwise)."""
    assert a.schema.remove_metadata().equals(b.schema.remove_metadata()), (a.schema, b.schema)
    rows_a, rows_b = a.to_pylist(), b.to_pylist()
    assert len(rows_a) == len(rows_b)
    for row_a, row_b in zip(rows_a, rows_b):
        diff = {k: (row_a[k], row_b[k]) for k in row_a if not _same(row_a[k], row_b[k])}
        assert not diff, (row_a.get("trial_id", row_a), diff)


def test_fake_sweep_dir_follows_the_contract(tmp_path: Path) -> None:
    root = write_sweep_dir(tmp_path / "sweep")
    trial = root / "trials" / "t00"
    assert {p.name for p in trial.iterdir()} >= {"params.json", "status.json", "metrics.parquet"}
    assert json.loads((trial / "status.json").read_text())["status"] == "COMPLETED"
