"""Constraints on a configuration's final metrics (`constraints:` in a sweep file) and the one
rule that says whether a configuration keeps them.

A configuration is judged on the mean over its seeds of each constrained metric's final value:
the same numbers Optuna is told as objectives, so the search, the records, MLflow and the
frontier agree on which configurations are feasible. A missing or NaN value breaks the
constraint (nothing shows it is kept).

Optuna's convention is kept for the values it is told: one value per bound, `value - max` or
`min - value`, feasible when every value is <= 0. Plain data only: the sweep file's schema, the
searcher and the frontier all import this module (no torch, Ray or Optuna).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field, model_validator

from cl_sweeps.config import _Strict as StrictModel
from cl_sweeps.formatting import fmt_number

FEASIBLE_COLUMN = "feasible"  # frontier tables: the configuration keeps every constraint
VIOLATIONS_COLUMN = "violations"  # frontier tables: what it breaks, '' when feasible


class ConstraintBounds(StrictModel):
    """`constraints.<metric>` in a sweep file: bounds on the configuration's final value of the
    metric (mean over its seeds)."""

    max: float | None = Field(default=None, description="Feasible when the value is <= max.")
    min: float | None = Field(default=None, description="Feasible when the value is >= min.")

    @model_validator(mode="after")
    def _some_bound(self) -> ConstraintBounds:
        if self.max is None and self.min is None:
            raise ValueError("no bound; allowed: {max: x}, {min: y} or both")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}: no value keeps both")
        return self


@dataclass(frozen=True)
class Constraint:
    """Bounds on one final metric (at least one of them)."""

    metric: str
    max: float | None = None
    min: float | None = None

    def excess(self, value: float | None) -> dict[str, float]:
        """Optuna's constraint values, by name: how far past each bound (<= 0: kept). An
        unknown value counts as breaking by +inf."""
        known = value is not None and not math.isnan(value)
        out: dict[str, float] = {}
        if self.max is not None:
            out[f"{self.metric}<={fmt_number(self.max)}"] = (
                value - self.max if known else math.inf)
        if self.min is not None:
            out[f"{self.metric}>={fmt_number(self.min)}"] = (
                self.min - value if known else math.inf)
        return out

    def describe(self) -> str:
        bounds = [f"min {fmt_number(self.min)}" if self.min is not None else "",
                  f"max {fmt_number(self.max)}" if self.max is not None else ""]
        return f"{self.metric} ({', '.join(b for b in bounds if b)})"


CONSTRAINT_TEXT = re.compile(r"^\s*([A-Za-z0-9_]+)\s*(<=|>=)\s*(\S+)\s*$")


def parse_constraint(text: str) -> Constraint:
    """'train_tflops<=3' or 'classifier_accuracy>=0.8' (the command line's form); ValueError
    naming the text and what is allowed."""
    match = CONSTRAINT_TEXT.match(text)
    value = None
    if match:
        try:
            value = float(match.group(3))
        except ValueError:
            value = None
    if match is None or value is None or not math.isfinite(value):
        raise ValueError(f"{text!r} is not a constraint; allowed: METRIC<=NUMBER or "
                         "METRIC>=NUMBER, e.g. train_tflops<=3")
    metric, sign = match.group(1), match.group(2)
    return Constraint(metric, max=value) if sign == "<=" else Constraint(metric, min=value)


def constraints_from(section: Mapping[str, Any] | None) -> list[Constraint]:
    """The constraints of a sweep's `constraints:` mapping ({metric: ConstraintBounds}, or the
    same as plain data from a resolved sweep file)."""
    out = []
    for metric, bounds in (section or {}).items():
        data = bounds.model_dump() if isinstance(bounds, ConstraintBounds) else dict(bounds)
        out.append(Constraint(metric, data.get("max"), data.get("min")))
    return out


def constraint_metrics(constraints: list[Constraint]) -> list[str]:
    return [c.metric for c in constraints]


def constraint_values(constraints: list[Constraint], values: Mapping[str, float]) -> dict[str, float]:
    """Every bound's excess (Optuna's `trial.set_constraint` values) for these metric values;
    +inf replaced by a large finite number, which Optuna accepts."""
    out: dict[str, float] = {}
    for constraint in constraints:
        for name, excess in constraint.excess(values.get(constraint.metric)).items():
            out[name] = excess if math.isfinite(excess) else 1e300
    return out


def violations(constraints: list[Constraint], values: Mapping[str, float]) -> list[str]:
    """What these metric values break, one line each ('train_tflops 4.1 > max 3'); [] if
    feasible."""
    broken = []
    for constraint in constraints:
        value = values.get(constraint.metric)
        if value is None or math.isnan(value):
            broken.append(f"{constraint.metric} not reported")
            continue
        if constraint.max is not None and value > constraint.max:
            broken.append(f"{constraint.metric} {fmt_number(value)} > max "
                          f"{fmt_number(constraint.max)}")
        if constraint.min is not None and value < constraint.min:
            broken.append(f"{constraint.metric} {fmt_number(value)} < min "
                          f"{fmt_number(constraint.min)}")
    return broken
