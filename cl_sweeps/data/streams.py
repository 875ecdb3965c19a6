"""Class-incremental task streams: which classes each task holds, and its train/test images."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cl_sweeps.config import DataConfig, resolve_task_classes
from cl_sweeps.data.sources import ImageSet, SourceData


@dataclass
class TaskStream:
    """The tasks of one continual sequence, in order."""

    task_classes: list[list[int]]
    train: list[ImageSet]
    test: list[ImageSet]
    num_classes: int
    channels: int
    image_size: int
    validation: list[ImageSet] | None = None  # per task, when the data has a validation split

    def __len__(self) -> int:
        return len(self.task_classes)

    def seen_classes(self, task_index: int) -> list[int]:
        return [c for classes in self.task_classes[: task_index + 1] for c in classes]

    def seen_test(self, task_index: int) -> ImageSet:
        return _concat(self.test[: task_index + 1])

    def seen_validation(self, task_index: int) -> ImageSet | None:
        """The validation images of the tasks seen so far (None without a split)."""
        return None if self.validation is None else _concat(self.validation[: task_index + 1])


def _concat(parts: list[ImageSet]) -> ImageSet:
    return ImageSet(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))


def build_task_stream(config: DataConfig, source: SourceData) -> TaskStream:
    """Split a source into tasks; every image belongs to exactly one task."""
    task_classes = resolve_task_classes(config, source.num_classes)
    return TaskStream(
        task_classes=task_classes,
        train=[source.train.of_classes(c) for c in task_classes],
        test=[source.test.of_classes(c) for c in task_classes],
        num_classes=source.num_classes,
        channels=source.channels,
        image_size=source.image_size,
        validation=None if source.validation is None
        else [source.validation.of_classes(c) for c in task_classes],
    )
