"""Training-image augmentation: the paper's code flips CIFAR-10 training images horizontally.

The flips are drawn on the host from the run's seeded data generator (checkpointed with the run),
so an augmented run is reproducible and resumes exactly, whatever its device.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from cl_sweeps.data.sources import ImageSet


def random_hflip(batch: ImageSet, generator: torch.Generator) -> ImageSet:
    """Each image flipped left-right with probability 1/2 (labels unchanged)."""
    flip = torch.rand(len(batch), generator=generator) < 0.5
    flip = to_device(flip, batch.images.device).view(-1, 1, 1, 1)
    return ImageSet(torch.where(flip, batch.images.flip(-1), batch.images), batch.labels)


def to_device(mask: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on `device`; to a GPU through pinned memory without blocking the host, so
    the flip mask of every minibatch costs no host sync."""
    if device.type != "cuda":
        return mask.to(device)
    return mask.pin_memory().to(device, non_blocking=True)


def augmented(batches: Iterator[ImageSet], generator: torch.Generator) -> Iterator[ImageSet]:
    """The minibatches with `random_hflip` applied to each."""
    for batch in batches:
        yield random_hflip(batch, generator)
