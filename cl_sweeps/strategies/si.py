"""si: Synaptic Intelligence (Zenke, Poole and Ganguli, 2017).

L = ‖ε − ε_θ(x_τ, τ)‖² + si_c · Σ_i Ω_i (θ_i − θ*_i)², on the current task's data only.

During a task every optimiser step adds to the path integral ω_i −= g_i · Δθ_i, with g the
gradient the step used (that of the whole loss, penalty included, after clipping — as in the
implementations of van de Ven et al. and Avalanche) and Δθ the step's parameter change. At the end
of the task Ω_i += max(0, ω_i / ((θ_i(end) − θ_i(start))² + ξ)) with damping ξ = `damping`
(0.1, as van de Ven et al.), and θ* becomes the parameters at the end of the task. Negative ω
(steps that went uphill, possible with Adam) are clipped to zero importance.

A step the fp16 gradient scaler skips (an inf/NaN gradient; its periodic scale-up probes make one
near certain over thousands of steps) leaves Δθ = 0 with a non-finite g, and inf · 0 = NaN would
poison ω for the rest of the task. A parameter that did not move adds nothing to ω, so the
product is taken only where Δθ ≠ 0 (on the device, without a host sync).

Cost: student 3B per iteration; the path integral needs no extra forwards (one more parameter
copy during a task, dropped at its end).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import UNet2DModel

from cl_sweeps.data.sources import ImageSet
from cl_sweeps.strategies.base import LossOutput, register
from cl_sweeps.strategies.penalty import (
    AnchoredPenalty,
    Tensors,
    detached_copy,
    trainable_parameters,
)

NAME = "si"
KNOBS = ("si_c",)
SETTING = "both"  # unconditional and class-conditional models


@register
class SI(AnchoredPenalty):
    # The path integral accumulates over task 0's optimiser steps and cannot be rebuilt
    # from the task's end state, so SI trains its own task 0.
    shares_task0 = False
    strength_knob = "si_c"
    damping: float = 0.1  # ξ

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.start: Tensors | None = None  # θ at the start of the current task
        self.previous: Tensors | None = None  # θ before the coming optimiser step
        self.path: Tensors | None = None  # ω of the current task

    def loss(self, model: UNet2DModel, batch: ImageSet) -> LossOutput:
        if self.start is None:  # first iteration of a task: parameters are still at its start
            self.start = detached_copy(model)
            self.previous = detached_copy(model)
            self.path = {name: torch.zeros_like(p) for name, p in self.start.items()}
        return super().loss(model, batch)

    @torch.no_grad()
    def after_optimizer_step(self, model: UNet2DModel) -> None:
        if self.previous is None or self.path is None:
            return
        for name, p in trainable_parameters(model).items():
            if p.grad is not None:
                delta = p - self.previous[name]
                self.path[name] -= torch.where(delta != 0, p.grad * delta, 0.0)
            self.previous[name].copy_(p)

    @torch.no_grad()
    def end_task(self, model: UNet2DModel, task_index: int, current: ImageSet) -> None:
        if self.start is None or self.path is None:  # a task without a training step
            return
        importance = {
            name: (self.path[name] / ((p - self.start[name]).pow(2) + self.damping)).clamp(min=0)
            for name, p in trainable_parameters(model).items()
        }
        self.consolidate(model, importance)
        self.start = self.previous = self.path = None
