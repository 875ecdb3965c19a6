"""Continual-learning strategies, one per file, selected by name from a registry."""

from cl_sweeps.strategies import cumulative, er, naive  # noqa: F401  (registration)
from cl_sweeps.strategies.base import (
    LossOutput,
    Strategy,
    TrainingContext,
    registered_names,
    strategy_class,
)


def available_strategies() -> list[str]:
    """Names accepted by `strategy.name`."""
    return registered_names()


def build_strategy(config, context: TrainingContext) -> Strategy:
    """Instantiate the configured strategy."""
    return strategy_class(config.name)(config, context)


__all__ = [
    "LossOutput",
    "Strategy",
    "TrainingContext",
    "available_strategies",
    "build_strategy",
]
