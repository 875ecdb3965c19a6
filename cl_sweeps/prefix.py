"""Task-prefix sharing: runs whose task 0 is the same train and evaluate it once.

Every strategy that declares `shares_task0` trains task 0 exactly like naive (there is no teacher
and no memory yet), so trials that agree on everything task 0 depends on — seed, data, model,
training and evaluation settings, device; not the strategy nor its knobs — would repeat the same
work. The first such run computes the prefix and stores it; the others load it, run their own
strategy's end-of-task hook on it (ER fills its memory, EWC estimates its Fisher) and continue.

This module owns the key (what task 0 depends on) and the compute-once protocol over the store
(cl_sweeps/prefix_store.py). What a prefix holds is the engine's business (`Engine.snapshot()`
right after task 0's optimisation steps, and task 0's evaluation: `Engine.task_zero_prefix`), so
a run that reuses one ends bit-identical to one that trained its own task 0, whatever state the
engine grows. A run that needs a prefix another run is computing waits on its lock, then loads
the prefix, or computes it itself if the holder died without publishing.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import torch

from cl_sweeps.checkpoint import save_torch
from cl_sweeps.config import TrialConfig, num_tasks_of
from cl_sweeps.hashing import content_hash
from cl_sweeps.prefix_store import PrefixStore
from cl_sweeps.strategies import strategy_class
from cl_sweeps.throughput import Throughput, resolve_device

log = logging.getLogger(__name__)

PREFIX_FORMAT = 2  # part of the key: a change of what a prefix holds never reuses old ones
NOT_TASK0 = ("output_dir", "strategy")  # trial-config sections task 0 does not depend on

Metrics = dict[str, float]


def prefix_key(config: TrialConfig) -> str | None:
    """Hash of everything task 0 depends on, or None if this trial cannot share its task 0
    (its strategy does not declare `shares_task0`, or there is only one task)."""
    if not strategy_class(config.strategy.name).shares_task0 or num_tasks_of(config) < 2:
        return None
    payload = {k: v for k, v in config.model_dump(mode="json").items() if k not in NOT_TASK0}
    payload["prefix_format"] = PREFIX_FORMAT
    # the device and precision as resolved on this node, not as written (`auto`)
    del payload["device"], payload["train"]["precision"]
    payload["runs_on"] = runs_on(config)
    return content_hash(payload, 16)


def runs_on(config: TrialConfig) -> dict[str, str]:
    """The device and settings the trial resolves to on this node (`device: auto` and
    `precision: auto` mean different things on a CPU, a bf16 A100 and an fp32 V100)."""
    return Throughput.resolve(config.train, resolve_device(config.device)).identity()


def computed_once(
    store: PrefixStore,
    config: TrialConfig,
    compute: Callable[[], tuple[Metrics, dict[str, Any], float]],
    reuse: Callable[[dict[str, Any]], Metrics],
) -> Metrics:
    """Task 0's metrics: `compute()` (metrics, payload, its training TFLOPs) and publish the
    payload, or `reuse(payload)` of the prefix another run published."""
    key = prefix_key(config)
    assert key is not None
    with store.claim(key):
        payload_file = store.payload(key)
        if payload_file is None:
            metrics, payload, train_tflops = compute()
            manifest = {
                "key": key, "format": PREFIX_FORMAT, "created": time.time(),
                "host": socket.gethostname(), "computed_by": config.output_dir,
                "strategy": config.strategy.name, "seed": config.seed,
                "train_tflops": train_tflops,
            }
            if store.publish(key, lambda path: save_torch(payload, path), manifest):
                log.info("task-0 prefix %s computed and stored in %s", key, store.path(key))
            return metrics
    stored = torch.load(payload_file, map_location="cpu", weights_only=True)
    metrics = reuse(stored)
    log.info("task 0 reused from prefix %s", key)
    return metrics
