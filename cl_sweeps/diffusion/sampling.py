"""DDIM sampling through diffusers' DDIMScheduler: full generation, generation stopped at a
timestep (per image), and the trajectory of visited states with the model's predictions.

Each call counts the UNet image-forwards it spends, so generation cost is measured, not estimated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from diffusers import DDIMScheduler, UNet2DModel

ForwardHook = Callable[[int], None]


@dataclass
class TrajectoryPoint:
    """The state x_t fed to the model at grid timestep t, and the model's noise prediction."""

    timestep: int
    states: torch.Tensor
    predictions: torch.Tensor


@dataclass
class SampleResult:
    """Final states (x0, or x_t where generation stopped early) and, if asked, the trajectory."""

    images: torch.Tensor
    timesteps: torch.Tensor  # per image: the grid t it stopped at, or -1 for a finished sample
    trajectory: list[TrajectoryPoint] = field(default_factory=list)


class DDIMSampler:
    """Generates images with k DDIM steps; owns its own scheduler copy so callers never race on
    `set_timesteps` state."""

    def __init__(self, scheduler: DDIMScheduler):
        self.scheduler = DDIMScheduler.from_config(scheduler.config)

    def timesteps(self, steps: int) -> torch.Tensor:
        """The grid of timesteps a `steps`-step DDIM run visits, from noisiest to cleanest."""
        self.scheduler.set_timesteps(steps)
        return self.scheduler.timesteps.clone()

    @torch.no_grad()
    def sample(
        self,
        model: UNet2DModel,
        n: int,
        steps: int,
        *,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        batch_size: int | None = None,
        stop_at: torch.Tensor | None = None,
        return_trajectory: bool = False,
        on_forward: ForwardHook | None = None,
    ) -> SampleResult:
        """Generate `n` images in batches.

        stop_at: per-image grid timestep; an image stops as soon as it reaches it (its state is
        then x_t for that t, and the model was called once per grid step above t).
        on_forward: called with the number of images of every UNet call (cost accounting).
        """
        batch_size = batch_size or n
        results = [
            self._sample_batch(
                model,
                min(batch_size, n - start),
                steps,
                eta,
                generator,
                None if stop_at is None else stop_at[start : start + batch_size],
                return_trajectory,
                on_forward,
            )
            for start in range(0, n, batch_size)
        ]
        if len(results) == 1:
            return results[0]
        return SampleResult(
            images=torch.cat([r.images for r in results]),
            timesteps=torch.cat([r.timesteps for r in results]),
            trajectory=_merge_trajectories([r.trajectory for r in results]),
        )

    def _sample_batch(
        self,
        model: UNet2DModel,
        n: int,
        steps: int,
        eta: float,
        generator: torch.Generator | None,
        stop_at: torch.Tensor | None,
        return_trajectory: bool,
        on_forward: ForwardHook | None,
    ) -> SampleResult:
        device = next(model.parameters()).device
        cfg = model.config
        shape = (n, cfg.in_channels, cfg.sample_size, cfg.sample_size)
        x = torch.randn(shape, generator=generator, device=device)
        grid = self.timesteps(steps)
        reached = torch.full((n,), -1, dtype=torch.long, device=device)
        stop = None if stop_at is None else stop_at.to(device)
        trajectory: list[TrajectoryPoint] = []
        for t in grid.tolist():
            if stop is None:
                active = torch.ones(n, dtype=torch.bool, device=device)
            else:
                active = stop < t
                reached[~active & (reached < 0)] = t
            if not active.any():
                continue
            x_in = x[active]
            t_batch = torch.full((x_in.shape[0],), t, device=device, dtype=torch.long)
            eps = model(x_in, t_batch).sample
            if on_forward is not None:
                on_forward(x_in.shape[0])
            if return_trajectory:
                trajectory.append(TrajectoryPoint(t, x_in.clone(), eps.clone()))
            step = self.scheduler.step(eps, t, x_in, eta=eta, generator=generator)
            x = x.clone()
            x[active] = step.prev_sample
        return SampleResult(images=x, timesteps=reached, trajectory=trajectory)


def _merge_trajectories(parts: list[list[TrajectoryPoint]]) -> list[TrajectoryPoint]:
    """Join the per-batch trajectories point by point (same grid in every batch)."""
    merged: dict[int, list[TrajectoryPoint]] = {}
    for part in parts:
        for point in part:
            merged.setdefault(point.timestep, []).append(point)
    return [
        TrajectoryPoint(t, torch.cat([p.states for p in pts]), torch.cat([p.predictions for p in pts]))
        for t, pts in merged.items()
    ]
