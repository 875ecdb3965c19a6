"""Numbers and tables as text: mean ± std cells, aligned plain text, Markdown (the one table
formatter of the package: per-task tables of `cl-sweeps run`, frontier and report tables)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

DASH = "–"  # no value / no spread (one seed)


def fmt_number(value: Any) -> str:
    """4 significant digits; '–' for missing or NaN; 'inf' stays 'inf'."""
    if value is None:
        return DASH
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if math.isnan(value):
        return DASH
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.4g}"


def fmt_mean_std(mean: float | None, std: float | None) -> str:
    """'12.3 ± 0.4'; '12.3 ± –' for a single seed; 'inf' if a seed diverged; '–' if none."""
    if mean is None or math.isnan(mean):
        return DASH
    if math.isinf(mean):
        return fmt_number(mean)
    return f"{fmt_number(mean)} ± {fmt_number(std)}"


STD_SPREAD = "std (ddof 1)"  # the ± of frontier, report and status tables and plots
SEM_SPREAD = "SEM = std (ddof 0) / √n"  # the ± of the paper report, as the paper's code


def seeds_note(counts: Sequence[int]) -> str:
    """'n = 3' or 'n = 1..3': the seeds behind a table's or plot's ± values."""
    present = sorted(set(counts)) or [0]
    low, high = present[0], present[-1]
    return f"n = {low}" if low == high else f"n = {low}..{high}"


def spread_note(spread: str, counts: Sequence[int]) -> str:
    """What every ± is, e.g. '± = std (ddof 1) over seeds, n = 3'."""
    return f"± = {spread} over seeds, {seeds_note(counts)}"


def short_name(column: str) -> str:
    """'strategy.teacher_steps' -> 'teacher_steps', 'strategy.name' -> 'strategy' (headers)."""
    section, _, name = column.rpartition(".")
    return section if name == "name" and section else name


LABEL_PARAMS = (("strategy.teacher_steps", "k"), ("strategy.replay_ratio", "r"))


def config_label(
    row: dict[str, Any], params: Sequence[tuple[str, str]] = LABEL_PARAMS
) -> str:
    """Point label on the plots, e.g. 'k=2 r=0.5': the given (param, tag) pairs the config has."""
    parts = [f"{tag}={fmt_number(row[c])}" for c, tag in params if row.get(c) is not None]
    return " ".join(parts)


def text_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "left"
) -> str:
    """Plain-text columns separated by two spaces, left- or right-aligned (numbers)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = (c.ljust(w) if align == "left" else c.rjust(w) for c, w in zip(cells, widths))
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (| escaped in cells)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
