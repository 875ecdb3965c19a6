"""naive: fine-tune on the current task only (the lower bound; it forgets)."""

from __future__ import annotations

from diffusers import UNet2DModel

from cl_sweeps.data.sources import ImageSet
from cl_sweeps.strategies.base import LossOutput, Strategy, register

NAME = "naive"
KNOBS: tuple[str, ...] = ()
SETTING = "both"  # unconditional and class-conditional models


@register
class Naive(Strategy):
    shares_task0 = True

    def loss(self, model: UNet2DModel, batch: ImageSet) -> LossOutput:
        return self.combine(self.denoising_loss(model, batch.images, batch.labels), None)
