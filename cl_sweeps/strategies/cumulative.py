"""cumulative: joint training on every task seen so far (the upper bound)."""

from __future__ import annotations

import torch

from cl_sweeps.data.sources import ImageSet
from cl_sweeps.strategies.base import register
from cl_sweeps.strategies.naive import Naive

NAME = "cumulative"
KNOBS: tuple[str, ...] = ()
SETTING = "both"  # unconditional and class-conditional models


@register
class Cumulative(Naive):

    def training_set(self, task_index: int, current: ImageSet, previous: list[ImageSet]) -> ImageSet:
        parts = [*previous, current]
        return ImageSet(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))
