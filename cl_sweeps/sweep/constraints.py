"""The sweep's verdict on a configuration's constraints, written into its trials' records.

When the last seed replica of a configuration has ended, its COMPLETED replicas' final values
are averaged and judged by the one rule (cl_sweeps/constraints.py), the same numbers the
searcher told Optuna; every replica's record gets feasibility.json and the driver tags the
MLflow runs. A configuration without a completed replica is not judged (it is not on any
frontier either).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from cl_sweeps import records
from cl_sweeps.constraints import Constraint, constraint_metrics, violations


@dataclass(frozen=True)
class Verdict:
    """What a configuration breaks ([] when feasible) and the trials it was judged for."""

    trial_ids: list[str]
    violations: list[str]

    def tags(self) -> dict[str, str]:
        """The MLflow tags of each of its trials' runs."""
        tags = {records.FEASIBLE_TAG: "false" if self.violations else "true"}
        if self.violations:
            tags[records.VIOLATIONS_TAG] = "; ".join(self.violations)
        return tags


def seed_means(replicas: list[records.TrialRecord], metrics: list[str]) -> dict[str, float]:
    """Each metric's mean final value over the replicas (NaN if one did not report it)."""
    return {
        m: sum(r.final.get(m, math.nan) for r in replicas) / len(replicas) for m in metrics
    }


def judge_configuration(
    trials_dir: Path, key: str, replicas: int, constraints: list[Constraint]
) -> Verdict | None:
    """Once all `replicas` trials of configuration `key` have ended: judge it, write
    feasibility.json into each, return the verdict; None before that, without constraints, or
    when no replica completed."""
    if not constraints:
        return None
    trials = records.trials_of_config(trials_dir, key)
    if len(trials) < replicas or any(t.status not in records.ENDED for t in trials):
        return None
    completed = [t for t in trials if t.status == records.COMPLETED]
    if not completed:
        return None
    broken = violations(constraints, seed_means(completed, constraint_metrics(constraints)))
    for trial in trials:
        records.write_feasibility(trials_dir / trial.trial_id, broken)
    return Verdict([t.trial_id for t in trials], broken)
