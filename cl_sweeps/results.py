"""Per-task metric files next to a run (JSON lines and Parquet), `atomic_write`: the one way
the package writes a file that a reader may open at any moment (records, spools, caches), and
`append_json_line` / `read_json_lines`: append-only logs that two writers and a crash leave
readable."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cl_sweeps.errors import named_write_errors

if TYPE_CHECKING:
    import pyarrow as pa

METRICS_JSONL = "metrics.jsonl"
METRICS_PARQUET = "metrics.parquet"
SAMPLES_DIR = "samples"  # a run's sample grids and class histograms
CLASS_HISTOGRAMS = "task_{task}_classes.json"  # in SAMPLES_DIR: {"true": [...], "generated": [...]}


def atomic_write(path: Path, write: Callable[[Path], Any], durable: bool = False) -> Path:
    """Call write(tmp) on a fresh temporary name next to `path` (unique, so concurrent writers
    never share one), then rename: a reader sees the old file or the new one, never half of
    one. `durable`: the bytes reach the disk before the rename (what a crash must not lose,
    such as trained weights). A write that fails (a full disk) raises WriteFailed naming
    `path`; the old file stays as it was and the temporary one is removed."""
    # Not mkstemp: its 0600 mode would survive the rename; the writer creates the file.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        with named_write_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            write(tmp)
            if durable:
                with open(tmp, "rb+") as handle:
                    os.fsync(handle.fileno())
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def append_json_line(path: Path, record: Any, durable: bool = False) -> None:
    """Append `record` as one JSON line: a single write() on an O_APPEND descriptor, under an
    exclusive flock, so two writers' lines never interleave. A write that fails or is cut short
    (a full disk) is taken back, so the file never ends in a partial line that the next append
    would extend; it raises WriteFailed naming `path`. A partial last line left by a machine that
    lost power is closed first, so it stays one torn line and this record stays whole.
    `durable`: fsync before returning (a record a crash right after must not lose)."""
    line = (json.dumps(record, default=str) + "\n").encode()
    with named_write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by close
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            try:
                written = os.write(fd, line)
            except OSError:
                os.ftruncate(fd, size)
                raise
            if written != len(line):
                os.ftruncate(fd, size)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True)
class JsonLines:
    """The records of a JSON-lines file, and how many lines were skipped as torn (cut by a
    crash mid-write, or otherwise not one JSON value)."""

    records: list[Any]
    torn: int = 0


def read_json_lines(path: Path) -> JsonLines:
    """Every complete record of a JSON-lines file (none if it is absent). The bytes after the
    last newline are a line a crash cut short (or one being appended while this reads: so no
    warning here); they are skipped and counted, as is any line that is not valid JSON,
    instead of failing the reader."""
    if not path.is_file():
        return JsonLines([])
    *lines, tail = path.read_bytes().split(b"\n")
    records, torn = [], int(bool(tail.strip()))
    for line in lines:
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except (UnicodeDecodeError, json.JSONDecodeError):
            torn += 1
    return JsonLines(records, torn)


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
