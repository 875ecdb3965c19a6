"""Class-incremental task streams: which classes each task holds, and its train/test images."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cl_sweeps.config import ConfigError, DataConfig
from cl_sweeps.data.sources import ImageSet, SourceData


def resolve_task_classes(config: DataConfig, num_classes: int) -> list[list[int]]:
    """The classes of every task: explicit `tasks`, or `class_order` (or a seeded permutation,
    or 0..C-1) cut into `num_tasks` equal parts."""
    if config.tasks is not None:
        for index, classes in enumerate(config.tasks):
            for c in classes:
                if not 0 <= c < num_classes:
                    raise ConfigError(
                        f"data.tasks[{index}]: class {c} does not exist in {config.dataset!r}; "
                        f"allowed: 0..{num_classes - 1}"
                    )
        return [list(classes) for classes in config.tasks]
    if config.class_order is not None:
        order = list(config.class_order)
        if sorted(order) != list(range(num_classes)):
            raise ConfigError(
                f"data.class_order={order} must be a permutation of 0..{num_classes - 1}"
            )
    elif config.class_order_seed is not None:
        generator = torch.Generator().manual_seed(config.class_order_seed)
        order = torch.randperm(num_classes, generator=generator).tolist()
    else:
        order = list(range(num_classes))
    if len(order) % config.num_tasks:
        raise ConfigError(
            f"data.num_tasks={config.num_tasks} does not divide the {len(order)} classes; "
            "allowed: a divisor of the class count, or explicit data.tasks"
        )
    per_task = len(order) // config.num_tasks
    return [order[i : i + per_task] for i in range(0, len(order), per_task)]


@dataclass
class TaskStream:
    """The tasks of one continual sequence, in order."""

    task_classes: list[list[int]]
    train: list[ImageSet]
    test: list[ImageSet]
    num_classes: int
    channels: int
    image_size: int

    def __len__(self) -> int:
        return len(self.task_classes)

    def seen_classes(self, task_index: int) -> list[int]:
        return [c for classes in self.task_classes[: task_index + 1] for c in classes]

    def seen_test(self, task_index: int) -> ImageSet:
        parts = self.test[: task_index + 1]
        return ImageSet(
            torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts])
        )


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
    )
