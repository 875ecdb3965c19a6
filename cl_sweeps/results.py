"""Per-task metric files next to a run: JSON lines (appended as tasks finish) and Parquet."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

METRICS_JSONL = "metrics.jsonl"
METRICS_PARQUET = "metrics.parquet"


def atomic_write_table(table: pa.Table, path: Path) -> None:
    """Write Parquet under a temporary name, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """A table whose columns are the union of the rows' keys (missing values are null)."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return pa.table({name: [row.get(name) for row in rows] for name in columns})


def write_task_metrics(output_dir: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite both files from the full history, so a resumed run never holds a task twice."""
    output_dir.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(row) + "\n" for row in history)
    tmp = output_dir / f".{METRICS_JSONL}.tmp-{os.getpid()}"
    tmp.write_text(lines)
    os.replace(tmp, output_dir / METRICS_JSONL)
    atomic_write_table(rows_to_table(history), output_dir / METRICS_PARQUET)
