"""Metric names are an API: declared once in metrics.py, used as constants where computed. A
reported metric missing from metrics.py fails tests/test_compute.py (every name of a real run's
history must be declared); these tests keep the constants and the declarations in step."""

from __future__ import annotations

import ast
from pathlib import Path

from cl_sweeps import metrics

PACKAGE = Path(metrics.__file__).parent
COMPUTED_IN = ("sequence.py", "evaluation/generation.py", "classifier_replay.py")
PREFIXES = (*metrics.TASK_PREFIXES, metrics.FORWARDS)


def constants() -> dict[str, str]:
    return {k: v for k, v in vars(metrics).items() if k.isupper() and isinstance(v, str)
            and k not in ("AFTER_EACH_TASK", "AFTER_LAST_TASK")}


def test_every_constant_is_declared_and_every_declaration_has_a_constant() -> None:
    values = set(constants().values())
    for value in values - set(PREFIXES):
        assert value in metrics.METRIC_NAMES, f"{value!r} has a constant but no MetricSpec"
    for name in metrics.METRIC_NAMES:
        covered = name in values or any(name.startswith(p) for p in PREFIXES)
        assert covered, f"metric {name!r} is declared but has no constant in metrics.py"


def test_metric_names_are_not_string_literals_where_computed() -> None:
    names = set(metrics.METRIC_NAMES) | set(PREFIXES)
    for relative in COMPUTED_IN:
        tree = ast.parse((PACKAGE / relative).read_text())
        literals = [
            (node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in names
        ]
        assert not literals, f"{relative}: use the metrics.py constants for {literals}"


def test_default_objectives_are_declared_once() -> None:
    """A sweep file without objectives and the frontier/report commands use the same two
    metrics; the sweep ranks on quality first, the frontier puts compute on x."""
    from cl_sweeps.frontier import DEFAULT_OBJECTIVES as FRONTIER_DEFAULTS
    from cl_sweeps.sweep.schema import parse_sweep_config

    sweep = parse_sweep_config({"name": "defaults", "search": {"strategy.name": ["naive"]}})
    assert [(o.metric, o.mode) for o in sweep.objectives] == [
        (metrics.FID_FINAL, "min"), (metrics.TRAIN_TFLOPS, "min")]
    assert FRONTIER_DEFAULTS == (metrics.TRAIN_TFLOPS, metrics.FID_FINAL)
    assert set(metrics.DEFAULT_OBJECTIVES) <= set(metrics.METRIC_NAMES)
