"""The common base of the quadratic-penalty regularisers (EWC, SI, MAS, L2).

All add strength · Σ_i Ω_i (θ_i − θ*_i)² to the ordinary diffusion loss on the current task,
where θ* are the parameters at the end of the previous task and Ω a per-parameter importance
accumulated over the tasks so far (L2: no importance, Ω = 1 everywhere). Memory: two extra copies of the parameters (Ω and θ*),
whatever the number of tasks. Ω and θ* are plain dicts of tensors keyed by parameter name, so they
checkpoint with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import UNet2DModel

from cl_sweeps.data.sources import ImageSet
from cl_sweeps.strategies.base import LossOutput, Strategy

Tensors = dict[str, torch.Tensor]


def trainable_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def detached_copy(model: torch.nn.Module) -> Tensors:
    return {name: p.detach().clone() for name, p in trainable_parameters(model).items()}


class AnchoredPenalty(Strategy):
    """Diffusion loss + strength · Σ Ω (θ − θ*)²; subclasses estimate Ω and name the strength."""

    strength_knob: str = ""  # the StrategyConfig field with the penalty strength

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.importance: Tensors | None = None  # Ω, summed over past tasks (None: Ω = 1)
        self.anchor: Tensors | None = None  # θ* at the end of the previous task

    def loss(self, model: UNet2DModel, batch: ImageSet) -> LossOutput:
        real = self.denoising_loss(model, batch.images, batch.labels)
        if self.anchor is None:
            return LossOutput(real, {"loss_real": real.detach()})
        penalty = self.penalty(model)
        loss = real + getattr(self.config, self.strength_knob) * penalty
        return LossOutput(loss, {"loss_real": real.detach(), "loss_penalty": penalty.detach()})

    def penalty(self, model: torch.nn.Module) -> torch.Tensor:
        """Σ_i Ω_i (θ_i − θ*_i)² (without the strength)."""
        assert self.anchor is not None
        squares = {n: (p - self.anchor[n]).pow(2) for n, p in trainable_parameters(model).items()}
        if self.importance is not None:
            squares = {n: self.importance[n] * square for n, square in squares.items()}
        terms = [square.sum() for square in squares.values()]
        return torch.stack(terms).sum()

    def consolidate(self, model: torch.nn.Module, importance: Tensors | None) -> None:
        """Add this task's importance to Ω (None: none, Ω = 1) and move the anchor θ* to the
        current parameters."""
        if importance is None or self.importance is None:
            self.importance = importance
        else:
            self.importance = {n: self.importance[n] + importance[n] for n in self.importance}
        self.anchor = detached_copy(model)

    def state_dict(self) -> dict[str, Any]:
        if self.anchor is None:
            return {}
        if self.importance is None:
            return {"anchor": self.anchor}
        return {"importance": self.importance, "anchor": self.anchor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            device = self.context.device
            if "importance" in state:
                self.importance = {n: v.to(device) for n, v in state["importance"].items()}
            self.anchor = {n: v.to(device) for n, v in state["anchor"].items()}
