"""Task-prefix sharing: runs whose task 0 is the same train and evaluate it once.

Every strategy that declares `shares_task0` trains task 0 exactly like naive (there is no teacher
and no memory yet), so trials that agree on everything task 0 depends on — seed, data, model,
training and evaluation settings, device; not the strategy nor its knobs — would repeat the same
work. The first such run computes the prefix and stores it; the others load it, run their own
strategy's end-of-task hook on it (ER fills its memory, EWC estimates its Fisher) and continue.

A prefix holds the state right after task 0's optimisation steps (model, optimiser, the data and
training generators, torch's RNG, forward counts and phase seconds) and task 0's evaluation
(metrics, the forwards and seconds it spent, torch's RNG after it, the samples of the grid). A
run that reuses one therefore ends bit-identical to one that trained its own task 0, and its
`train_tflops` still includes task 0 (its position on the frontier does not depend on which
trial came first); `reused_train_tflops` says how much of that it did not compute.

Storage: cl_sweeps/prefix_store.py. A run that needs a prefix another run is computing waits
on its lock, then loads the prefix, or computes it itself if the holder died without publishing.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import socket
import time
from typing import TYPE_CHECKING, Any

import torch

from cl_sweeps.config import TrialConfig, num_tasks_of
from cl_sweeps.evaluation.compute import TRAIN_PURPOSES, flops_by_purpose
from cl_sweeps.prefix_store import PrefixStore
from cl_sweeps.strategies import strategy_class

if TYPE_CHECKING:
    from cl_sweeps.sequence import Engine

log = logging.getLogger(__name__)

PREFIX_FORMAT = 1  # part of the key: a change of what a prefix holds never reuses old ones
NOT_TASK0 = ("output_dir", "strategy")  # trial-config sections task 0 does not depend on


def prefix_key(config: TrialConfig) -> str | None:
    """Hash of everything task 0 depends on, or None if this trial cannot share its task 0
    (its strategy does not declare `shares_task0`, or there is only one task)."""
    if not strategy_class(config.strategy.name).shares_task0 or num_tasks_of(config) < 2:
        return None
    payload = {k: v for k, v in config.model_dump(mode="json").items() if k not in NOT_TASK0}
    payload["prefix_format"] = PREFIX_FORMAT
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def shared_task_zero(engine: Engine, store: PrefixStore, progress: bool) -> dict[str, float]:
    """Task 0 of `engine`, computed and published, or loaded from the store; its metrics."""
    key = prefix_key(engine.config)
    assert key is not None
    with store.claim(key):
        payload_file = store.payload(key)
        if payload_file is None:
            metrics, payload = _compute(engine, progress)
            manifest = {
                "key": key, "format": PREFIX_FORMAT, "created": time.time(),
                "host": socket.gethostname(), "computed_by": engine.config.output_dir,
                "strategy": engine.config.strategy.name, "seed": engine.config.seed,
                "train_tflops": _training_tflops(engine, payload["trained"]["forward_counts"]),
            }
            if store.publish(key, lambda path: torch.save(payload, path), manifest):
                log.info("task-0 prefix %s computed and stored in %s", key, store.path(key))
            return metrics
    stored = torch.load(payload_file, map_location="cpu", weights_only=True)
    metrics = _reuse(engine, stored)
    log.info("task 0 reused from prefix %s (%.4g train TFLOPs not recomputed)",
             key, engine.reused_train_tflops)
    return metrics


def _compute(engine: Engine, progress: bool) -> tuple[dict[str, float], dict[str, Any]]:
    """Train and evaluate task 0 as an unshared run does, keeping what a prefix holds."""
    engine.fit_task(0, progress)
    trained = {
        "model": {k: v.detach().clone() for k, v in engine.model.state_dict().items()},
        "optimizer": copy.deepcopy(engine.optimizer.state_dict()),
        "data_generator": engine.data_generator.get_state(),
        "train_generator": engine.context.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "forward_counts": engine.counter.snapshot(),
        "phase_seconds": dict(engine.timer.seconds),
    }
    engine.end_task(0)
    counts, seconds = engine.counter.snapshot(), dict(engine.timer.seconds)
    metrics = engine.evaluate(0, 0.0)
    evaluated = {
        "metrics": _evaluation_only(engine, metrics),
        "forward_counts": _minus(engine.counter.snapshot(), counts),
        "phase_seconds": _minus(engine.timer.seconds, seconds),
        "torch_rng": torch.get_rng_state(),
        "grid_samples": engine.evaluator.grid_samples.detach().cpu(),
    }
    return metrics, {"trained": trained, "evaluation": evaluated}


def _reuse(engine: Engine, stored: dict[str, Any]) -> dict[str, float]:
    """Continue from a stored prefix: its trained state, this run's end_task, its evaluation."""
    trained, evaluated = stored["trained"], stored["evaluation"]
    engine.model.load_state_dict(trained["model"])
    engine.optimizer.load_state_dict(trained["optimizer"])
    engine.data_generator.set_state(trained["data_generator"])
    engine.context.generator.set_state(trained["train_generator"])
    torch.set_rng_state(trained["torch_rng"])
    engine.counter.load(trained["forward_counts"])
    engine.timer.seconds.update(trained["phase_seconds"])
    engine.reused_train_tflops = engine.training_tflops()
    engine.end_task(0)
    for purpose, images in evaluated["forward_counts"].items():
        engine.counter.add(purpose, images)
    for phase, spent in evaluated["phase_seconds"].items():
        engine.timer.seconds[phase] = engine.timer.seconds.get(phase, 0.0) + spent
    torch.set_rng_state(evaluated["torch_rng"])
    metrics = dict(evaluated["metrics"])
    samples = evaluated["grid_samples"].to(engine.device)
    engine.evaluator.write_grid(samples, 0, metrics["fid"], engine.sample_dir)
    metrics.update(engine.compute_metrics(0.0))
    return metrics


def _evaluation_only(engine: Engine, metrics: dict[str, float]) -> dict[str, float]:
    """The metrics task 0's evaluation measured (compute meters are recomputed per run)."""
    compute = set(engine.compute_metrics(0.0))
    return {k: v for k, v in metrics.items() if k not in compute}


def _minus(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def _training_tflops(engine: Engine, counts: dict[str, int]) -> float:
    spent = flops_by_purpose(counts, engine.flops)
    return sum(spent[p] for p in TRAIN_PURPOSES) / 1e12
