"""The validation split: training images held out per class, so that a sweep can choose its
configurations on images it does not report on (the test split) and never trains on.

The split is drawn once per dataset by `data.validation_seed`, not by the trial's seed: every
configuration, every seed replica and a resumed trial are validated on the same images, which is
what makes their validation metrics comparable. The held-out images are removed from the
training split before anything else reads it (task streams, the evaluation classifier).
"""

from __future__ import annotations

import torch

from cl_sweeps.data.idx import DataError


def held_out_index(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Sorted positions of `per_class` training images of every class, a seeded choice: the
    validation split (the rest stays the training split)."""
    generator = torch.Generator().manual_seed(seed)
    held: list[torch.Tensor] = []
    for c in labels.unique().tolist():
        index = (labels == c).nonzero().flatten()
        if len(index) <= per_class:
            raise DataError(
                f"data.validation_per_class={per_class}: class {c} has only {len(index)} "
                f"training images, so none would be left to train on; allowed: at most "
                f"{len(index) - 1} for this dataset (after max_train_per_class)"
            )
        held.append(index[torch.randperm(len(index), generator=generator)[:per_class]])
    return torch.cat(held).sort().values
