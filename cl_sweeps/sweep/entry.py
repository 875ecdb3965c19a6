"""The function Ray Tune runs for each trial, named by the driver without importing it.

The training stack (torch, diffusers: cl_sweeps/sweep/trainable.py) is imported in the worker
that runs a trial, never in the driver, which starts seconds sooner for it.
"""

from __future__ import annotations

from typing import Any

from cl_sweeps.sweep.context import SweepContext


def run_trial(config: dict[str, Any], context: SweepContext) -> None:
    """Ray Tune's function trainable: one whole sequence (trainable.train_sequence)."""
    from cl_sweeps.sweep.trainable import train_sequence  # the worker's import only

    train_sequence(config, context)
