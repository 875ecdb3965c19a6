"""Per-task metric files next to a run: JSON lines (appended as tasks finish) and Parquet."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

METRICS_JSONL = "metrics.jsonl"
METRICS_PARQUET = "metrics.parquet"
SAMPLES_DIR = "samples"  # a run's sample grids and class histograms
CLASS_HISTOGRAMS = "task_{task}_classes.json"  # in SAMPLES_DIR: {"true": [...], "generated": [...]}


def atomic_write(path: Path, write: Callable[[Path], Any]) -> Path:
    """Call write(tmp) on a temporary name next to `path`, then rename: no half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_table(table: pa.Table, path: Path) -> None:
    """Write Parquet atomically."""
    import pyarrow.parquet as pq  # here: validating and reading JSON records never needs it

    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """A table whose columns are the union of the rows' keys (missing values are null)."""
    import pyarrow as pa

    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return pa.table({name: [row.get(name) for row in rows] for name in columns})


def write_task_metrics(output_dir: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite both files from the full history, so a resumed run never holds a task twice."""
    lines = "".join(json.dumps(row) + "\n" for row in history)
    atomic_write(output_dir / METRICS_JSONL, lambda tmp: tmp.write_text(lines))
    atomic_write_table(rows_to_table(history), output_dir / METRICS_PARQUET)


def write_class_histograms(
    sample_dir: Path, task: int, true: list[float], generated: list[float]
) -> Path:
    """The class fractions of the seen test data and of the generated samples after `task`
    (what KLD and ARD compare), for the paper report's histograms."""
    text = json.dumps({"true": list(true), "generated": list(generated)})
    path = Path(sample_dir) / CLASS_HISTOGRAMS.format(task=task)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def read_class_histograms(output_dir: Path, task: int) -> dict[str, list[float]] | None:
    """What `write_class_histograms` wrote in a run's output_dir; None if it is absent."""
    path = Path(output_dir) / SAMPLES_DIR / CLASS_HISTOGRAMS.format(task=task)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
