"""A sweep that searches both the strategy and `model.conditional` must never pair a strategy
with a kind of model it does not work for (its module's SETTING, see strategies/catalog.py).

Checking each searched value alone against the base (schema's candidate check) cannot see such a
pair, so the pairs the search can produce are walked here: the parameters that set the two fields
and those their `when` conditions depend on, with conditions respected as in the grid.
"""

from __future__ import annotations

from typing import Any

from cl_sweeps.strategies.catalog import setting_problem
from cl_sweeps.sweep.search_params import (
    MappedParam,
    SearchSection,
    condition_holds,
    conditions,
    mapped_value,
    search_order,
)

FIELDS = ("strategy.name", "model.conditional")


def setting_problems(sweep: SearchSection, base_name: str, base_conditional: bool) -> list[str]:
    """One line naming the first searched pair of strategy.name and model.conditional whose
    strategy does not work for that kind of model; [] if the search cannot produce one."""
    setters = {f: [k for k in sweep.search if sweep.field_of(k) == f] for f in FIELDS}
    if not all(setters.values()):
        return []  # one of the two is the base's: each searched value is checked against it
    for point in _points(sweep, _relevant(sweep, [k for ks in setters.values() for k in ks])):
        name = _value(sweep, point, setters["strategy.name"], base_name)
        conditional = _value(sweep, point, setters["model.conditional"], base_conditional)
        problem = setting_problem(name, conditional)
        if problem:
            searched = ", ".join(f"search.{k}={point[k]!r}" for k in point
                                 if sweep.field_of(k) in FIELDS)
            return [f"search: the search pairs {searched}: {problem}"]
    return []


def _relevant(sweep: SearchSection, keys: list[str]) -> set[str]:
    """`keys` and every parameter their conditions depend on, transitively."""
    found: set[str] = set()
    todo = list(keys)
    while todo:
        key = todo.pop()
        if key in found or key not in sweep.search:
            continue
        found.add(key)
        todo.extend(conditions(sweep, key))
    return found


def _points(sweep: SearchSection, keys: set[str]) -> list[dict[str, Any]]:
    """Every combination of the `keys` parameters' values (a range contributes its bounds)."""
    points: list[dict[str, Any]] = [{}]
    for key in (k for k in search_order(sweep) if k in keys):
        param, when = sweep.search[key], conditions(sweep, key)
        expanded: list[dict[str, Any]] = []
        for point in points:
            if not condition_holds(when, point):
                expanded.append(point)
            elif isinstance(param, MappedParam):
                expanded.append({**point, key: mapped_value(param, point)})
            else:
                expanded.extend({**point, key: v} for v in param.candidates())
        points = expanded
    return points


def _value(sweep: SearchSection, point: dict[str, Any], keys: list[str], base: Any) -> Any:
    """The field's value at `point`: the searched one if a parameter setting it is active."""
    for key in keys:
        if key in point:
            return point[key]
    return base
