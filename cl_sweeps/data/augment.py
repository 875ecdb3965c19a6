"""Training-image augmentation: the paper's code flips CIFAR-10 training images horizontally.

The flips are drawn from the run's seeded data generator (checkpointed with the run), so an
augmented run is reproducible and resumes exactly.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from cl_sweeps.data.sources import ImageSet


def random_hflip(batch: ImageSet, generator: torch.Generator) -> ImageSet:
    """Each image flipped left-right with probability 1/2 (labels unchanged)."""
    flip = torch.rand(len(batch), generator=generator) < 0.5
    flip = flip.to(batch.images.device).view(-1, 1, 1, 1)
    return ImageSet(torch.where(flip, batch.images.flip(-1), batch.images), batch.labels)


def augmented(batches: Iterator[ImageSet], generator: torch.Generator) -> Iterator[ImageSet]:
    """The minibatches with `random_hflip` applied to each."""
    for batch in batches:
        yield random_hflip(batch, generator)
