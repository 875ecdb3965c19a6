"""DDIM sampling: full generation on diffusers' DDIM grid, the trajectory of visited states with
the model's predictions, and partial generation down to a per-image timestep.

diffusers' `DDIMScheduler.step` moves one grid point at a time, with one timestep for the whole
batch, and divides by √ᾱ_t (infinite at t = 999 under zero terminal SNR). `ddim_update` is the
same DDIM update (DDIM paper eq. 12, ε-prediction) for arbitrary per-image (t → t_prev) pairs,
with the reference code's guard: x̂0 = (x_t − √(1−ᾱ_t)·ε) / √(ᾱ_t + 1e-8). Where both apply
(t_prev = t − T//k on diffusers' grid) it equals `DDIMScheduler.step` (tests/test_diffusion.py).

Each call counts the UNet image-forwards it spends, so generation cost is measured, not estimated.

A class-conditional model samples the classes `labels` asks for, with classifier-free guidance
ε = ε(x, t, ∅) + w·(ε(x, t, y) − ε(x, t, ∅)) (`guided_noise`): w = 1 is the conditional
prediction alone and w = 0 the null class alone, one image-forward per image each; any other w
takes both, two image-forwards per image (one batched call of 2n), and both are counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from diffusers import DDIMScheduler, UNet2DModel
from torch import nn

from cl_sweeps.diffusion.model import is_conditional, null_class, predict_noise

ForwardHook = Callable[[int], None]

X0_GUARD = 1e-8  # added to ᾱ_t under the square root of the x̂0 estimate (as the reference code)


@dataclass
class TrajectoryPoint:
    """The state x_t fed to the model at grid timestep t, and the model's noise prediction.

    For a conditional model, `labels` are the labels the predictions were made for: the
    requested classes (w ≠ 0; under guidance the conditional prediction, not the guided one that
    moved the state), or the null class (w = 0), so (state, t, label) → prediction is always
    exactly one model call's input and output."""

    timestep: int
    states: torch.Tensor
    predictions: torch.Tensor
    labels: torch.Tensor | None = None


@dataclass
class SampleResult:
    """Final states (x0), if asked the trajectory, and the requested classes (conditional)."""

    images: torch.Tensor
    trajectory: list[TrajectoryPoint] = field(default_factory=list)
    labels: torch.Tensor | None = None


def alpha_bar(scheduler: DDIMScheduler, t: torch.Tensor) -> torch.Tensor:
    """ᾱ at per-image timesteps (N,), as (N, 1, 1, 1); t < 0 is the clean end of the chain
    (diffusers' `final_alpha_cumprod`, 1 with set_alpha_to_one).

    The tables move to t's device once and stay there (as diffusers' own `add_noise` moves
    `alphas_cumprod`): a copy from the host per call would cost three transfers per DDIM step."""
    if scheduler.alphas_cumprod.device != t.device:
        scheduler.alphas_cumprod = scheduler.alphas_cumprod.to(t.device)
    table = scheduler.alphas_cumprod
    if scheduler.final_alpha_cumprod.device != t.device:
        scheduler.final_alpha_cumprod = scheduler.final_alpha_cumprod.to(t.device)
    final = scheduler.final_alpha_cumprod.to(table.dtype)
    values = torch.where(t >= 0, table[t.clamp(min=0)], final)
    return values.view(-1, 1, 1, 1)


def predicted_x0(
    scheduler: DDIMScheduler, eps: torch.Tensor, x: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """x̂0 = (x_t − √(1−ᾱ_t)·ε) / √(ᾱ_t + 1e-8), clipped if the schedule clips: finite even at
    ᾱ_t = 0 (t = 999 under zero terminal SNR), where it is dominated by the clip."""
    abar = alpha_bar(scheduler, t)
    x0 = (x - (1 - abar).sqrt() * eps) / (abar + X0_GUARD).sqrt()
    if scheduler.config.clip_sample:
        limit = scheduler.config.clip_sample_range
        x0 = x0.clamp(-limit, limit)
    return x0.to(x.dtype)


def ddim_update(
    scheduler: DDIMScheduler,
    eps: torch.Tensor,
    x: torch.Tensor,
    t: torch.Tensor,
    t_prev: torch.Tensor,
    *,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One DDIM step from x_t to x_{t_prev}, per image (t, t_prev: int64 (N,), t_prev < 0 = clean).

        σ = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1 − ᾱ_t/ᾱ_prev)
        x_prev = √ᾱ_prev·x̂0 + √(1−ᾱ_prev−σ²)·ε + σ·z,   z ~ N(0, I) (`noise`, or drawn)
    """
    abar = alpha_bar(scheduler, t)
    abar_prev = alpha_bar(scheduler, t_prev)
    x0 = predicted_x0(scheduler, eps, x, t)
    sigma = torch.zeros_like(abar)
    if eta > 0:
        variance = (1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)
        sigma = eta * variance.clamp(min=0).sqrt()
    direction = (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps
    prev = abar_prev.sqrt() * x0 + direction
    if eta > 0:
        if noise is None:
            noise = torch.randn(eps.shape, generator=generator, device=eps.device, dtype=eps.dtype)
        prev = prev + sigma * noise
    return prev.to(x.dtype)


def guided_noise(
    model: nn.Module,
    x: torch.Tensor,
    t: torch.Tensor,
    labels: torch.Tensor | None,
    guidance_scale: float = 1.0,
    on_forward: ForwardHook | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The noise prediction a sampling step uses, fp32: unconditional without labels, else
    classifier-free guided with scale w. Returns (ε used, pair labels, pair prediction): the
    label and prediction of one real model call per image (see `TrajectoryPoint`).

    Counts its image-forwards through on_forward: n, or 2n when guidance needs both calls."""
    n = x.shape[0]
    if labels is None or not is_conditional(model):
        if labels is not None:
            raise ValueError("labels given to an unconditional UNet (model.conditional: false)")
        eps = predict_noise(model, x, t).float()
        _count(on_forward, n)
        return eps, None, eps
    if guidance_scale == 1.0:
        eps = predict_noise(model, x, t, labels).float()
        _count(on_forward, n)
        return eps, labels, eps
    null = torch.full_like(labels, null_class(model))
    if guidance_scale == 0.0:
        eps = predict_noise(model, x, t, null).float()
        _count(on_forward, n)
        return eps, null, eps
    both = predict_noise(
        model, torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null])
    ).float()
    _count(on_forward, 2 * n)
    conditional, unconditional = both[:n], both[n:]
    return unconditional + guidance_scale * (conditional - unconditional), labels, conditional


def _count(on_forward: ForwardHook | None, images: int) -> None:
    if on_forward is not None:
        on_forward(images)


def partial_timesteps(
    tau: torch.Tensor, steps: int, num_train_timesteps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-image k-step grid from t = T−1 down to τ (the reference's custom `set_timesteps`).

    With stride s = (T − τ)/k per image, the model is evaluated at t_j = τ − 1 + round(j·s) for
    j = k..1 (t_k = T − 1; never below τ), and step j goes to the next evaluation point, the last
    one to τ itself. Returns (evaluation timesteps, step targets), both (k, N) int64.
    The reference steps by ⌊s⌋ instead, which can land one timestep off the next point (and
    finish at τ − 1 labelled τ); we land exactly. Where fewer than k timesteps lie above τ
    (τ > T − k) some points repeat: those steps keep the state (the reference masks them too).
    """
    tau = tau.long()
    stride = (num_train_timesteps - tau).double() / steps
    j = torch.arange(steps, 0, -1, device=tau.device, dtype=torch.float64).unsqueeze(1)
    points = (tau - 1 + torch.round(j * stride).long()).clamp(min=tau)
    targets = torch.cat([points[1:], tau.unsqueeze(0)])
    return points, targets


class DDIMSampler:
    """Generates images with k DDIM steps; owns its own scheduler copy so callers never race on
    `set_timesteps` state."""

    def __init__(self, scheduler: DDIMScheduler):
        self.scheduler = DDIMScheduler.from_config(scheduler.config)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

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
        return_trajectory: bool = False,
        on_forward: ForwardHook | None = None,
        labels: torch.Tensor | None = None,
        guidance_scale: float = 1.0,
    ) -> SampleResult:
        """Generate `n` images in batches on diffusers' k-step grid (each step goes from t to
        t − T//k, as `DDIMScheduler.step` does).

        on_forward: called with the number of images of every UNet call (cost accounting).
        labels: (n,) classes to generate (a conditional model), with guidance scale w.
        """
        batch_size = batch_size or n
        if labels is not None and len(labels) != n:
            raise ValueError(f"{len(labels)} labels for {n} images; give one label per image")
        results = [
            self._sample_batch(
                model,
                min(batch_size, n - start),
                steps,
                eta,
                generator,
                return_trajectory,
                on_forward,
                None if labels is None else labels[start : start + batch_size],
                guidance_scale,
            )
            for start in range(0, n, batch_size)
        ]
        if len(results) == 1:
            results[0].labels = labels
            return results[0]
        return SampleResult(
            images=torch.cat([r.images for r in results]),
            trajectory=_merge_trajectories([r.trajectory for r in results]),
            labels=labels,
        )

    def _sample_batch(
        self,
        model: UNet2DModel,
        n: int,
        steps: int,
        eta: float,
        generator: torch.Generator | None,
        return_trajectory: bool,
        on_forward: ForwardHook | None,
        labels: torch.Tensor | None = None,
        guidance_scale: float = 1.0,
    ) -> SampleResult:
        device = next(model.parameters()).device
        x = torch.randn(_shape(model, n), generator=generator, device=device)
        if labels is not None:
            labels = labels.to(device)
        stride = self.num_train_timesteps // steps
        trajectory: list[TrajectoryPoint] = []
        for t in self.timesteps(steps).tolist():
            t_batch = torch.full((n,), t, device=device, dtype=torch.long)
            # The update runs in fp32 whatever the autocast precision: x stays fp32 across steps.
            eps, pair_labels, pair_eps = guided_noise(
                model, x, t_batch, labels, guidance_scale, on_forward
            )
            if return_trajectory:
                trajectory.append(TrajectoryPoint(t, x.clone(), pair_eps.clone(), pair_labels))
            x = ddim_update(
                self.scheduler, eps, x, t_batch, t_batch - stride, eta=eta, generator=generator
            )
        return SampleResult(images=x, trajectory=trajectory)

    @torch.no_grad()
    def partial(
        self,
        model: UNet2DModel,
        tau: torch.Tensor,
        steps: int,
        *,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        on_forward: ForwardHook | None = None,
        labels: torch.Tensor | None = None,
        guidance_scale: float = 1.0,
    ) -> torch.Tensor:
        """x̃_τ per image: k DDIM steps from pure noise at t = T−1 down to that image's τ, on the
        per-image grid of `partial_timesteps`. Exactly k forwards per image (one batched UNet
        call per step; 2k under classifier-free guidance), whatever τ."""
        device = next(model.parameters()).device
        tau = tau.to(device)
        points, targets = partial_timesteps(tau, steps, self.num_train_timesteps)
        x = torch.randn(_shape(model, len(tau)), generator=generator, device=device)
        for t, t_prev in zip(points, targets):
            eps, _, _ = guided_noise(model, x, t, labels, guidance_scale, on_forward)  # fp32
            stepped = ddim_update(self.scheduler, eps, x, t, t_prev, eta=eta, generator=generator)
            moves = (t_prev < t).view(-1, 1, 1, 1)
            x = torch.where(moves, stepped, x)
        return x


def _shape(model: UNet2DModel, n: int) -> tuple[int, int, int, int]:
    cfg = model.config
    return (n, cfg.in_channels, cfg.sample_size, cfg.sample_size)


def _merge_trajectories(parts: list[list[TrajectoryPoint]]) -> list[TrajectoryPoint]:
    """Join the per-batch trajectories point by point (same grid in every batch)."""
    merged: dict[int, list[TrajectoryPoint]] = {}
    for part in parts:
        for point in part:
            merged.setdefault(point.timestep, []).append(point)
    return [
        TrajectoryPoint(
            t,
            torch.cat([p.states for p in pts]),
            torch.cat([p.predictions for p in pts]),
            None if pts[0].labels is None else torch.cat([p.labels for p in pts]),
        )
        for t, pts in merged.items()
    ]
