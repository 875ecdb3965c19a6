"""Class-distribution metrics of generated samples, as in the paper.

The evaluation classifier labels the generated samples; their class histogram is compared with
the true class histogram of the test data of the tasks seen so far. A model that forgets
generates only recent classes, which these metrics expose even when each image looks fine.
"""

from __future__ import annotations

import torch
from torch import Tensor


def class_histogram(labels: Tensor, num_classes: int) -> Tensor:
    """Fraction of labels in each class, float64 of shape (num_classes,)."""
    labels = torch.as_tensor(labels).flatten().long().cpu()
    if labels.numel() == 0:
        raise ValueError("class_histogram needs at least one label")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(
            f"labels must lie in [0, {num_classes}); got range "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )
    counts = torch.bincount(labels, minlength=num_classes).double()
    return counts / counts.sum()


def _as_distribution(hist: Tensor, name: str) -> Tensor:
    hist = torch.as_tensor(hist, dtype=torch.float64).flatten()
    if (hist < 0).any() or hist.sum() <= 0:
        raise ValueError(f"{name} must be non-negative with a positive sum; got {hist.tolist()}")
    return hist / hist.sum()


def _check_same_size(true_hist: Tensor, gen_hist: Tensor) -> None:
    if true_hist.numel() != gen_hist.numel():
        raise ValueError(
            f"histograms differ in size: true {true_hist.numel()}, generated {gen_hist.numel()}"
        )


def kld(true_hist: Tensor, gen_hist: Tensor, eps: float = 1e-8) -> float:
    """KL(true || generated) in nats, after adding ``eps`` to every bin and renormalising.

    The smoothing keeps the divergence finite when a class is never generated (a forgotten
    class then costs about ``rho_true * log(rho_true / eps)``). Counts or probabilities accepted.
    """
    p = _as_distribution(true_hist, "true_hist")
    q = _as_distribution(gen_hist, "gen_hist")
    _check_same_size(p, q)
    p = (p + eps) / (p + eps).sum()
    q = (q + eps) / (q + eps).sum()
    return float((p * (p / q).log()).sum())


def ard(true_hist: Tensor, gen_hist: Tensor) -> float:
    """Absolute ratio difference, 1/2 * sum |rho_true - rho_gen|, in [0, 1].

    The total-variation distance between the class distributions: the fraction of generated
    samples that would have to change class to match the true distribution.
    """
    p = _as_distribution(true_hist, "true_hist")
    q = _as_distribution(gen_hist, "gen_hist")
    _check_same_size(p, q)
    return float(0.5 * (p - q).abs().sum())
