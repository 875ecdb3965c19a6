"""er: experience replay from a class-balanced memory of at most `memory_size` real images.

Each minibatch of B real images is joined by round(replay_ratio·B) images drawn from the memory;
both get the ordinary diffusion loss, combined with `lambd` and the paper's task weighting.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import UNet2DModel

from cl_sweeps.data.sources import ImageSet
from cl_sweeps.strategies.base import LossOutput, Strategy, register

NAME = "er"
KNOBS = ("replay_ratio", "memory_size", "lambd", "weight_replay_loss")
SETTING = "both"  # unconditional and class-conditional models


@register
class ExperienceReplay(Strategy):
    shares_task0 = True  # the memory is filled by end_task

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.memory: ImageSet | None = None
        self.memory_images: torch.Tensor | None = None  # its images on the training device
        self.memory_labels: torch.Tensor | None = None  # and their labels (conditional models)

    def loss(self, model: UNet2DModel, batch: ImageSet) -> LossOutput:
        real = self.denoising_loss(model, batch.images, batch.labels)
        n_replay = self.replay_batch_size(len(batch))
        if self.memory is None or n_replay == 0:
            return self.combine(real, None)
        images, labels = self.memory_on_device()
        pick = torch.randint(
            0, len(self.memory), (n_replay,), generator=self.context.generator,
            device=self.context.device,
        )
        replay = self.denoising_loss(model, images[pick], labels[pick])
        return self.combine(real, replay)

    def memory_on_device(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The memory's images and labels on the training device, copied once per task:
        indexing there needs no host sync."""
        assert self.memory is not None
        if self.memory_images is None:
            self.memory_images = self.memory.images.to(self.context.device)
            self.memory_labels = self.memory.labels.to(self.context.device)
        return self.memory_images, self.memory_labels

    def end_task(self, model: UNet2DModel, task_index: int, current: ImageSet) -> None:
        """Rebuild the memory: an equal share of `memory_size` for every class seen so far."""
        pool = current if self.memory is None else _concat(self.memory, current)
        classes = pool.labels.unique().tolist()
        per_class = self.config.memory_size // len(classes)
        generator = torch.Generator().manual_seed(task_index)
        keep = []
        for c in classes:
            idx = (pool.labels == c).nonzero().flatten()
            keep.append(idx[torch.randperm(len(idx), generator=generator)[:per_class]])
        self.memory = pool.subset(torch.cat(keep))
        self.memory_images = None

    def state_dict(self) -> dict[str, Any]:
        if self.memory is None:
            return {}
        return {"memory_images": self.memory.images, "memory_labels": self.memory.labels}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.memory = ImageSet(state["memory_images"], state["memory_labels"])
            self.memory_images = None


def _concat(a: ImageSet, b: ImageSet) -> ImageSet:
    return ImageSet(torch.cat([a.images, b.images]), torch.cat([a.labels, b.labels]))
