"""The `search:` section: its parameter types and the walk over them (conditions, order, grid).

A parameter is sampled only when its conditions hold (e.g. `strategy.teacher_steps` only for the
strategies that generate with the teacher), so Optuna never models a value that had no effect.
The walk needs only the section (`SearchSection`: the parameters and the trial-config key each
sets), so the sweep file's schema (sweep/schema.py) checks a sweep with it and the search space
(sweep/space.py) samples with it, and neither module needs the other to be understood.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Protocol

from pydantic import (
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from cl_sweeps.config import ConfigError
from cl_sweeps.config import _Strict as StrictModel
from cl_sweeps.strategies.catalog import strategy_knobs

MAX_GRID_POINTS = 100_000
SEARCH_TYPES = ("choice", "int", "float", "map")


def value_in(value: Any, allowed: list[Any]) -> bool:
    """`value` is one of `allowed`, comparing numbers by value but never bools with numbers."""
    return any(type(a) is type(value) and a == value for a in allowed) or (
        not isinstance(value, bool) and any(
            isinstance(a, int | float) and not isinstance(a, bool) and a == value for a in allowed
        )
    )


def condition_holds(conditions: dict[str, list[Any]], point: dict[str, Any]) -> bool:
    """True if every conditioning parameter is present in `point` with an allowed value."""
    return all(k in point and value_in(point[k], allowed) for k, allowed in conditions.items())


def knobs_of(name: Any) -> tuple[str, ...]:
    """The knobs strategy `name` reads; () for a name that is not a strategy."""
    try:
        return strategy_knobs(name)
    except ValueError:
        return ()


def strategy_name_key(sweep: SearchSection) -> str | None:
    """The search parameter that sets strategy.name, if the strategy is searched."""
    for key in sweep.search:
        if sweep.field_of(key) == "strategy.name":
            return key
    return None


def conditions(sweep: SearchSection, key: str) -> dict[str, list[Any]]:
    """When `key` is sampled: {search parameter: allowed values}; {} means always.
    Strategy knobs without `when` are sampled only for the strategies that read them."""
    param = sweep.search[key]
    if param.type == "map":
        return {param.depends_on: list(param.values)}
    if param.when is not None:
        return {k: v if isinstance(v, list) else [v] for k, v in param.when.items()}
    field = sweep.field_of(key)
    name_key = strategy_name_key(sweep)
    if not field.startswith("strategy.") or name_key is None or name_key == key:
        return {}
    choices = sweep.search[name_key].candidates()
    readers = [s for s in choices if field.split(".", 1)[1] in knobs_of(s)]
    return {} if len(readers) == len(choices) else {name_key: readers}


def search_order(sweep: SearchSection) -> list[str]:
    """Search keys ordered so that every condition's parameters come first (stable)."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(key: str) -> None:
        if key in order:
            return
        if key in visiting:
            raise ConfigError(f"search.{key}.when: conditions form a cycle through {key!r}")
        visiting.add(key)
        for parent in conditions(sweep, key):
            if parent in sweep.search:
                visit(parent)
        visiting.discard(key)
        order.append(key)

    for key in sweep.search:
        visit(key)
    return order


def grid(sweep: SearchSection) -> list[dict[str, Any]]:
    """Every combination of the search space (search key -> value), conditions respected,
    in file order; each parameter must have a finite grid."""
    points: list[dict[str, Any]] = [{}]
    for key in search_order(sweep):
        param = sweep.search[key]
        when = conditions(sweep, key)
        if param.type == "map":
            points = [
                {**p, key: mapped_value(param, p)} if condition_holds(when, p) else p
                for p in points
            ]
            continue
        values = param.grid()
        if values is None:
            raise ConfigError(f"search.{key}: grid search needs choice, int, or float with step")
        expanded = []
        for point in points:
            if condition_holds(when, point):
                expanded.extend({**point, key: v} for v in values)
            else:
                expanded.append(point)
            if len(expanded) > MAX_GRID_POINTS:
                raise ConfigError(f"search: the grid has more than {MAX_GRID_POINTS} points")
        points = expanded
    return points


Scalar = StrictBool | StrictInt | StrictFloat | StrictStr | None
ConditionValue = Scalar | list[Scalar]


class _SearchParam(StrictModel):
    """Common to every search parameter: the trial-config key it sets and when it is sampled."""

    field: str | None = Field(
        default=None,
        description="Dotted trial-config key this parameter sets; default: its name in `search`. "
        "Lets two parameters with exclusive conditions set one key (e.g. a λ grid per strategy).",
    )
    when: dict[str, ConditionValue] | None = Field(
        default=None,
        description="Sample only when every named search parameter has one of these values. "
        "Absent: inferred for strategy knobs from the strategies that read them; {}: always.",
    )

    @field_validator("when")
    @classmethod
    def _no_empty_lists(cls, when: dict[str, Any] | None) -> dict[str, Any] | None:
        for key, value in (when or {}).items():
            if isinstance(value, list) and not value:
                raise ValueError(
                    f"when.{key} is an empty list, so the parameter would never be sampled; "
                    "list the values it is sampled for, or drop the parameter"
                )
        return when

    def candidates(self) -> list[Any]:
        """The values to validate against the trial config: every choice, or both bounds."""
        raise NotImplementedError

    def grid(self) -> list[Any] | None:
        """All values, if the set is finite and small enough to enumerate; else None."""
        raise NotImplementedError

    def contains(self, value: Any) -> bool:
        raise NotImplementedError


class ChoiceParam(_SearchParam):
    """One of a list of values (categorical in Optuna)."""

    type: Literal["choice"] = "choice"
    values: list[Scalar] = Field(min_length=1)

    @field_validator("values")
    @classmethod
    def _unique(cls, values: list[Any]) -> list[Any]:
        seen: list[Any] = []
        for v in values:
            if any(type(v) is type(s) and v == s for s in seen):
                raise ValueError(f"value {v!r} is listed twice; list each choice once")
            seen.append(v)
        return values

    def candidates(self) -> list[Any]:
        return list(self.values)

    def grid(self) -> list[Any]:
        return list(self.values)

    def contains(self, value: Any) -> bool:
        return value_in(value, self.values)

    def describe(self) -> str:
        return str(self.values)


class IntParam(_SearchParam):
    """An integer in [low, high] (both included), optionally log-scaled or on a step."""

    type: Literal["int"]
    low: StrictInt
    high: StrictInt
    step: StrictInt = Field(default=1, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> IntParam:
        if self.low >= self.high:
            raise ValueError(f"low={self.low} must be below high={self.high}")
        if self.log and self.low < 1:
            raise ValueError(f"log scale needs low >= 1, got low={self.low}")
        if self.log and self.step != 1:
            raise ValueError(f"log scale and step={self.step} cannot be combined; drop one")
        if (self.high - self.low) % self.step:
            raise ValueError(
                f"high - low = {self.high - self.low} is not a multiple of step={self.step}"
            )
        return self

    def candidates(self) -> list[int]:
        return [self.low, self.high]

    def grid(self) -> list[int] | None:
        if (self.high - self.low) // self.step >= MAX_GRID_POINTS:
            return None
        return list(range(self.low, self.high + 1, self.step))

    def contains(self, value: Any) -> bool:
        return (
            isinstance(value, int) and not isinstance(value, bool)
            and self.low <= value <= self.high and (value - self.low) % self.step == 0
        )

    def describe(self) -> str:
        return f"{self.low}..{self.high}" + (f" in steps of {self.step}" if self.step > 1 else "")


class FloatParam(_SearchParam):
    """A float in [low, high], optionally log-scaled or on a step (a step makes it griddable)."""

    type: Literal["float"]
    low: StrictFloat | StrictInt
    high: StrictFloat | StrictInt
    step: StrictFloat | StrictInt | None = Field(default=None, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> FloatParam:
        if self.low >= self.high:
            raise ValueError(f"low={self.low} must be below high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got low={self.low}")
        if self.log and self.step is not None:
            raise ValueError(f"log scale and step={self.step} cannot be combined; drop one")
        if self.step is not None:
            n = (self.high - self.low) / self.step
            if not math.isfinite(n) or n > MAX_GRID_POINTS:
                raise ValueError(
                    f"(high - low) / step is {n:g} values; a stepped float range has at most "
                    f"{MAX_GRID_POINTS} (drop the step for a continuous range)"
                )
            if self.step > self.high - self.low:
                raise ValueError(
                    f"step={self.step:g} is larger than the range high - low = "
                    f"{self.high - self.low:g}, so only low would be tried; allowed: a step "
                    "that divides high - low"
                )
            if abs(n - round(n)) > 1e-9 * max(1.0, abs(n)):
                raise ValueError(
                    f"high - low = {self.high - self.low:g} is not a multiple of step={self.step:g}"
                )
        return self

    def candidates(self) -> list[float]:
        return [float(self.low), float(self.high)]

    def grid(self) -> list[float] | None:
        if self.step is None:
            return None
        n = round((self.high - self.low) / self.step)
        return [round(self.low + i * self.step, 12) for i in range(n + 1)]

    def contains(self, value: Any) -> bool:
        return False  # conditions on continuous parameters are not supported


class MappedParam(_SearchParam):
    """Not sampled: set from the value of another search parameter, e.g. the paper's λ per
    strategy (`depends_on: strategy.name`, `values: {generative_distillation: 0.75, ...}`).
    Set only when that parameter takes one of the listed values."""

    type: Literal["map"] = "map"
    depends_on: str
    values: dict[StrictStr | StrictInt | StrictBool, Scalar] = Field(min_length=1)

    @model_validator(mode="after")
    def _no_when(self) -> MappedParam:
        if self.when is not None:
            raise ValueError("`when` does not apply to a mapped parameter; list the values of "
                             f"{self.depends_on} it applies to under `values`")
        return self

    def candidates(self) -> list[Any]:
        return list(self.values.values())

    def grid(self) -> list[Any]:
        return list(self.values.values())

    def value_for(self, parent: Any) -> Any:
        for key, value in self.values.items():
            if value_in(parent, [key]):
                return value
        raise KeyError(parent)

    def contains(self, value: Any) -> bool:
        return False  # conditions on mapped parameters are not supported


SearchParam = Annotated[
    ChoiceParam | IntParam | FloatParam | MappedParam, Field(discriminator="type")
]


class SearchSection(Protocol):
    """What the walk reads of a sweep: its search parameters and the key each one sets."""

    @property
    def search(self) -> Mapping[str, SearchParam]: ...

    def field_of(self, key: str) -> str: ...


def mapped_value(param: MappedParam, values: dict[str, Any]) -> Any:
    return param.value_for(values[param.depends_on])
