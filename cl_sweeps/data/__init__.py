"""Datasets and their class-incremental task streams.

`catalog.py` declares the datasets without torch (the config layer reads it); the loaders and
streams, which need torch, are imported on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cl_sweeps.data.sources import ImageSet, SourceData, load_source
    from cl_sweeps.data.streams import TaskStream, build_task_stream, resolve_task_classes

_LAZY = {
    "ImageSet": "sources",
    "SourceData": "sources",
    "load_source": "sources",
    "TaskStream": "streams",
    "build_task_stream": "streams",
    "resolve_task_classes": "streams",
}

__all__ = [
    "ImageSet",
    "SourceData",
    "TaskStream",
    "build_task_stream",
    "load_source",
    "resolve_task_classes",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
