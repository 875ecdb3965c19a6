"""Finiteness checks: a diverged trial fails at once with the reason, instead of training on
NaN until evaluation or handing NaN/inf to the eigen-decomposition inside FID (which MKL answers
with a segfault, not an exception)."""

from __future__ import annotations

import math

import torch

NON_FINITE = "non-finite"


class NonFiniteError(RuntimeError):
    """A numerical divergence of the trial's configuration. It is deterministic: restarting the
    trial from its last checkpoint reproduces it, so a sweep does not retry it (README)."""


def check_loss(value: float, task: int, iteration: int, every: int = 1) -> None:
    """Raise if the training loss read on the host is NaN or infinite. It is read (as a mean)
    every `every` iterations, so `iteration` is that of the read: the loss turned non-finite in
    one of the `every` iterations up to it (exactly there with train.loss_read_every=1)."""
    if not math.isfinite(value):
        window = f" (loss read every {every} iterations)" if every > 1 else ""
        raise NonFiniteError(f"{NON_FINITE} loss at task {task}, iteration {iteration}{window}")


def check_samples(images: torch.Tensor, task: int) -> None:
    """Raise if generated images hold NaN or inf (checked before any metric uses them)."""
    finite = torch.isfinite(images.reshape(len(images), -1)).all(dim=1)
    bad = int((~finite).sum())
    if bad:
        raise NonFiniteError(
            f"{NON_FINITE} samples at task {task}: {bad} of {len(images)} generated images "
            "hold NaN or inf"
        )


def check_features(features: dict[str, torch.Tensor], what: str) -> None:
    """Raise if accumulated feature statistics hold NaN or inf (before any matrix square root
    or eigen-decomposition sees them)."""
    bad = [name for name, value in features.items() if not bool(torch.isfinite(value).all())]
    if bad:
        raise NonFiniteError(f"{NON_FINITE} features in {what}: {', '.join(bad)}")
