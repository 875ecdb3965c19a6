"""Continual-learning strategies, one per file, found by name.

Names and knobs come from `catalog.py` (read from the files' declarations, no torch); the torch
implementation of a strategy is imported only when it is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cl_sweeps.strategies.catalog import strategy_knobs, strategy_names

if TYPE_CHECKING:
    from cl_sweeps.config import StrategyConfig
    from cl_sweeps.strategies.base import LossOutput, Strategy, TrainingContext

_LAZY = ("LossOutput", "Strategy", "TrainingContext", "strategy_class")


def available_strategies() -> list[str]:
    """Names accepted by `strategy.name`."""
    return strategy_names()


def build_strategy(config: StrategyConfig, context: TrainingContext) -> Strategy:
    """Instantiate the configured strategy (imports its implementation)."""
    from cl_sweeps.strategies.base import strategy_class

    return strategy_class(config.name)(config, context)


def unused_knobs(config: StrategyConfig) -> list[str]:
    """Knobs set to a non-default value that the chosen strategy does not read. They are
    ignored (so one sweep file can cover strategies with different knobs) and reported."""
    used = set(strategy_knobs(config.name)) | {"name"}
    fields = type(config).model_fields
    return sorted(
        name for name in set(config.model_fields_set) - used
        if getattr(config, name) != fields[name].default
    )


def __getattr__(name: str) -> Any:
    """The torch-side names, imported on first access."""
    if name in _LAZY:
        from cl_sweeps.strategies import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LossOutput",
    "Strategy",
    "TrainingContext",
    "available_strategies",
    "build_strategy",
    "strategy_class",
    "strategy_knobs",
    "unused_knobs",
]
