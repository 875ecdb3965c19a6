"""Datasets and their class-incremental task streams."""

from cl_sweeps.data.sources import ImageSet, SourceData, load_source
from cl_sweeps.data.streams import TaskStream, build_task_stream, resolve_task_classes

__all__ = [
    "ImageSet",
    "SourceData",
    "TaskStream",
    "build_task_stream",
    "load_source",
    "resolve_task_classes",
]
