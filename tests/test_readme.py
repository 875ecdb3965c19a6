"""The README documents the stable metric names and every strategy."""

from __future__ import annotations

from pathlib import Path

from cl_sweeps.metrics import METRICS, is_known_metric
from cl_sweeps.strategies import available_strategies

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_metric_is_in_the_readme_table():
    for spec in METRICS:
        assert f"| `{spec.name}` |" in README, spec.name


def test_every_strategy_is_in_the_readme():
    for name in available_strategies():
        assert f"| `{name}` |" in README, name


def test_every_dataset_is_in_the_readme():
    from cl_sweeps.data.catalog import dataset_names

    for name in dataset_names():
        assert f"| `{name}` |" in README, name


def test_metric_names_accept_per_task_forms():
    assert is_known_metric("fid_task_3") and is_known_metric("fid_final")
    assert not is_known_metric("fid_task_x") and not is_known_metric("fidd")
