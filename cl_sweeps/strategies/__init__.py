"""Continual-learning strategies, one per file, selected by name from a registry."""

from cl_sweeps.config import StrategyConfig
from cl_sweeps.strategies import (  # noqa: F401  (registration)
    cumulative,
    er,
    ewc,
    gaussian_distillation,
    generative_distillation,
    generative_replay,
    intermediate_distillation,
    lwf_distillation,
    naive,
    partial_generation_distillation,
    si,
)
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


def build_strategy(config: StrategyConfig, context: TrainingContext) -> Strategy:
    """Instantiate the configured strategy."""
    return strategy_class(config.name)(config, context)


def unused_knobs(config: StrategyConfig) -> list[str]:
    """Knobs set to a non-default value that the chosen strategy does not read. They are
    ignored (so one sweep file can cover strategies with different knobs) and reported."""
    used = set(strategy_class(config.name).knobs) | {"name"}
    fields = type(config).model_fields
    return sorted(
        name for name in set(config.model_fields_set) - used
        if getattr(config, name) != fields[name].default
    )


__all__ = [
    "LossOutput",
    "Strategy",
    "TrainingContext",
    "available_strategies",
    "build_strategy",
    "unused_knobs",
]
