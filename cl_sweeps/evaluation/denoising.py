"""Mean denoising loss on held-out images: a cheap, deterministic measure of what is retained."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, UNet2DModel

from cl_sweeps.config import NUM_TRAIN_TIMESTEPS
from cl_sweeps.diffusion.model import predict_noise


@torch.no_grad()
def denoising_loss(
    model: UNet2DModel,
    scheduler: DDIMScheduler,
    images: torch.Tensor,
    *,
    seed: int,
    batch_size: int,
    labels: torch.Tensor | None = None,
) -> float:
    """MSE of the noise prediction on `images` with noise and timesteps fixed by `seed`, so the
    same images always get the same noisy inputs (comparable across tasks and trials). A
    conditional model is given the images' `labels` (no dropout)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=generator)
    timesteps = torch.randint(0, NUM_TRAIN_TIMESTEPS, (len(images),), generator=generator)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = 0.0
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        eps = noise[start : start + batch_size].to(device)
        t = timesteps[start : start + batch_size].to(device)
        y = None if labels is None else labels[start : start + batch_size].to(device)
        prediction = predict_noise(model, scheduler.add_noise(x, eps, t), t, y).float()  # fp32
        total += F.mse_loss(prediction, eps, reduction="sum").item() / eps[0].numel()
    model.train(was_training)
    return total / len(images)
