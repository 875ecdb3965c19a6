"""Compute accounting, measured where it is spent.

UNet image-forwards are counted by purpose at every call site; FLOPs per image-forward are
measured once per model shape with torch.utils.flop_counter and multiplied out (a backward is
counted as the flop counter measures it, about twice a forward).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from diffusers import UNet2DModel
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cl_sweeps.diffusion.model import predict_noise

# Purposes of a UNet image-forward. Student forwards in training are followed by a backward.
STUDENT_TRAIN = "student_train"
TEACHER_GENERATION = "teacher_generation"
TEACHER_TARGET = "teacher_target"
EVAL_SAMPLING = "eval_sampling"
CLASSIFIER_REPLAY_GENERATION = "classifier_replay_generation"  # the classifier's replay images
# Student image-forwards (each with a backward) that also pass through adapters the strategy
# added to the UNet (LoRA): counted beside STUDENT_TRAIN, priced at the adapters' own FLOPs.
ADAPTER_TRAIN = "adapter_train"
# Not image-forwards: updates of an EMA teacher (one per optimiser step with `teacher: ema`),
# counted beside them and priced at the update's FLOPs (`ema_update_flops`).
EMA_UPDATE = "ema_update"
PURPOSES = (
    STUDENT_TRAIN, TEACHER_GENERATION, TEACHER_TARGET, CLASSIFIER_REPLAY_GENERATION, ADAPTER_TRAIN,
    EMA_UPDATE, EVAL_SAMPLING,
)
TRAIN_PURPOSES = (
    STUDENT_TRAIN, TEACHER_GENERATION, TEACHER_TARGET, CLASSIFIER_REPLAY_GENERATION, ADAPTER_TRAIN,
    EMA_UPDATE,
)

PHASES = ("train", "replay_generation", "evaluation")


class ForwardCounter:
    """Image-forwards of the UNet, by purpose (and EMA teacher updates, EMA_UPDATE)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter({p: 0 for p in PURPOSES})

    def add(self, purpose: str, images: int) -> None:
        if purpose not in PURPOSES:
            raise ValueError(f"unknown forward purpose {purpose!r}; allowed: {PURPOSES}")
        self.counts[purpose] += int(images)

    def hook(self, purpose: str):
        """A callback `f(n_images)` for the sampler's on_forward."""
        return lambda images: self.add(purpose, images)

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)

    def load(self, counts: dict[str, int]) -> None:
        self.counts = Counter({p: int(counts.get(p, 0)) for p in PURPOSES})


@dataclass
class FlopsPerImage:
    """FLOPs of one UNet image-forward, of one forward+backward (training), of one
    forward+backward through the adapters a strategy adds (LoRA; 0 without), and of one EMA
    teacher update (`ema_update_flops`; 0 where none is priced)."""

    forward: float
    forward_backward: float
    adapter_forward_backward: float = 0.0
    ema_update: float = 0.0


_FLOP_CACHE: dict[str, FlopsPerImage] = {}


def measure_flops_per_image(model: UNet2DModel) -> FlopsPerImage:
    """Measure once per model shape (config) with FlopCounterMode on a batch of 2, on CPU-free
    meta-agnostic inputs of the model's own device and dtype."""
    key = repr(sorted(model.config.items()))
    if key not in _FLOP_CACHE:
        _FLOP_CACHE[key] = measure_model_flops(model)
    return _FLOP_CACHE[key]


def measure_model_flops(model: nn.Module) -> FlopsPerImage:
    """The measurement itself, uncached: for a model whose config does not say its shape (a
    UNet with adapters injected has its base's config)."""
    cfg = model.config
    param = next(model.parameters())
    batch = 2
    x = torch.randn(batch, cfg.in_channels, cfg.sample_size, cfg.sample_size,
                    device=param.device, dtype=param.dtype)
    t = torch.full((batch,), 500, device=param.device, dtype=torch.long)
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        predict_noise(model, x, t)  # a conditional model: at the null class (same FLOPs)
    forward = counter.get_total_flops() / batch
    with FlopCounterMode(display=False) as counter:
        predict_noise(model, x, t).sum().backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return FlopsPerImage(forward=forward, forward_backward=counter.get_total_flops() / batch)


class PhaseTimer:
    """Seconds by phase. On CPU, wall-clock. Once CUDA is in use, a CUDA event is recorded on
    the current stream at each phase edge instead of synchronising the device (a phase entered
    every iteration, such as replay generation, would otherwise cost two host syncs per
    iteration): a pair's time is read when its end event has completed, checked without
    waiting at every phase exit, and waited for only when `seconds` is read (after a task)."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {p: 0.0 for p in PHASES}
        self._pending: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []

    @property
    def seconds(self) -> dict[str, float]:
        """Seconds by phase, every recorded phase included (waits for the device)."""
        self._settle(wait=True)
        return self._seconds

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if not _cuda_in_use():
            start = time.perf_counter()
            try:
                yield
            finally:
                self._add(name, time.perf_counter() - start)
            return
        begin, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
        begin.record()
        try:
            yield
        finally:
            end.record()
            self._pending.append((name, begin, end))
            self._settle(wait=False)

    def _settle(self, wait: bool) -> None:
        """Add the pairs whose end event has completed (all of them if `wait`)."""
        waiting = []
        for name, begin, end in self._pending:
            if wait:
                end.synchronize()
            elif not end.query():
                waiting.append((name, begin, end))
                continue
            self._add(name, begin.elapsed_time(end) / 1000)
        self._pending = waiting

    def _add(self, name: str, seconds: float) -> None:
        self._seconds[name] = self._seconds.get(name, 0.0) + seconds


def _cuda_in_use() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def ema_update_flops(model: nn.Module) -> float:
    """FLOPs of one EMA update φ ← φ + (1 − d)(θ − φ) of a copy of `model` (`update_ema`): 3
    per floating-point parameter element (a subtraction, a multiplication, an addition). The
    buffers it copies (none in a UNet2DModel) cost no arithmetic."""
    return 3.0 * sum(p.numel() for p in model.parameters() if p.is_floating_point())


def flops_by_purpose(counts: dict[str, int], flops: FlopsPerImage) -> dict[str, float]:
    """FLOPs spent per purpose: student forwards carry their backward, adapter forwards are
    priced at the adapters' own forward+backward, EMA updates at one update's FLOPs."""
    per_image = {
        STUDENT_TRAIN: flops.forward_backward,
        ADAPTER_TRAIN: flops.adapter_forward_backward,
        EMA_UPDATE: flops.ema_update,
    }
    return {p: counts.get(p, 0) * per_image.get(p, flops.forward) for p in PURPOSES}
