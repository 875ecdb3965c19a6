"""Frontier plots: a static PNG (matplotlib), the same interactive (plotly HTML), and FID after
each task for the frontier configurations.

Each plot is built by a function that returns the figure, so tests can check its axes before it
is saved. Matplotlib figures are made without pyplot (no global state, no display needed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from cl_sweeps.constraints import FEASIBLE_COLUMN, VIOLATIONS_COLUMN
from cl_sweeps.formatting import (
    LABEL_PARAMS,
    STD_SPREAD,
    config_label,
    fmt_mean_std,
    fmt_number,
    spread_note,
)
from cl_sweeps.frontier.build import P_PARETO, STRATEGY, Frontier
from cl_sweeps.frontier.pareto import frontier_order
from cl_sweeps.frontier.table import split_series_column

AXIS_LABELS = {
    "train_tflops": "training compute [TFLOPs, cumulative over tasks]",
    "fid_final": "FID after the last task (fid_final)",
    "kld": "KLD of generated class histogram (kld)",
}
# matplotlib's tab10, also used for plotly so both plots colour strategies alike
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)


MIN_OPACITY = 0.2
INFEASIBLE = "infeasible (breaks a constraint)"  # drawn apart: grey crosses, never on the front
INFEASIBLE_COLOUR = "#9e9e9e"


def axis_label(name: str) -> str:
    return AXIS_LABELS.get(name, name)


@dataclass
class Point:
    """One configuration on the (x, y) plane, with its spread over seeds."""

    x: float
    y: float
    xerr: float
    yerr: float
    strategy: str
    label: str
    pareto: bool
    row: dict[str, Any]

    @property
    def feasible(self) -> bool:
        return bool(self.row.get(FEASIBLE_COLUMN, True))

    @property
    def opacity(self) -> float:
        """Marker opacity from P(pareto): a point every seed resample puts on the front is
        solid, one that only a lucky seed put there is faint; unknown (one seed): solid."""
        p = self.row.get(P_PARETO)
        return 1.0 if p is None or math.isnan(p) else MIN_OPACITY + (1 - MIN_OPACITY) * p


def _nan_to_zero(value: float | None) -> float:
    return 0.0 if value is None or math.isnan(value) else float(value)


def label_params(frontier: Frontier) -> list[tuple[str, str]]:
    """Teacher steps / replay ratio, where the sweep varied them: a label that is the same on
    every point (a value fixed in the sweep's base) says nothing the legend does not."""
    configs = frontier.configs
    return [
        (column, tag) for column, tag in LABEL_PARAMS
        if column in configs.column_names and len(set(configs.column(column).drop_null().to_pylist())) > 1
    ]


def points_of(frontier: Frontier) -> list[Point]:
    """The configurations as plot points over the first two objectives."""
    x_name, y_name = frontier.objectives[:2]
    labelled = label_params(frontier)
    return [
        Point(
            x=row[f"{x_name}_mean"], y=row[f"{y_name}_mean"],
            xerr=_nan_to_zero(row[f"{x_name}_std"]), yerr=_nan_to_zero(row[f"{y_name}_std"]),
            strategy=str(row.get(STRATEGY) or "all"), label=config_label(row, labelled),
            pareto=bool(row["pareto"]), row=row,
        )
        for row in frontier.configs.to_pylist()
    ]


def step_line(points: list[Point]) -> tuple[list[float], list[float]]:
    """The 2-D frontier as a staircase: best y reachable for each x budget, drawn 'post'
    (the last step runs on to the largest x). With a third objective the highlighted points
    are 3-D optimal, while the line stays the 2-D (compute, FID) frontier."""
    if not points:
        return [], []
    order = frontier_order(np.array([[p.x, p.y] for p in points]))
    xs = [points[i].x for i in order]
    ys = [points[i].y for i in order]
    x_max = max(p.x for p in points)
    if x_max > xs[-1]:
        xs.append(x_max)
        ys.append(ys[-1])
    return xs, ys


def strategy_colours(points: list[Point]) -> dict[str, str]:
    names = sorted({p.strategy for p in points})
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def _title(frontier: Frontier) -> str:
    excluded = sum(frontier.excluded.values())
    return (
        f"Pareto frontier over ({', '.join(frontier.objectives)}): "
        f"{frontier.configs.num_rows} configurations, {excluded} trials excluded\n"
        f"error bars: {spread_note(STD_SPREAD, frontier.configs.column('n').to_pylist())}"
    )


def frontier_figure(frontier: Frontier) -> Figure:
    """Compute (log x) vs FID: one colour per strategy, error bars over seeds, the frontier as a
    step line, frontier points ringed, points labelled with teacher steps and replay ratio
    (those the sweep varied)."""
    points = points_of(frontier)
    feasible = [p for p in points if p.feasible]
    colours = strategy_colours(points)
    fig = Figure(figsize=(9, 6), layout="constrained")
    ax = fig.add_subplot()
    for strategy, colour in colours.items():
        mine = [p for p in feasible if p.strategy == strategy]
        ax.errorbar(
            [p.x for p in mine], [p.y for p in mine],
            xerr=[p.xerr for p in mine], yerr=[p.yerr for p in mine],
            fmt="none", ecolor=colour, alpha=0.5, capsize=3,
        )
        ax.scatter([p.x for p in mine], [p.y for p in mine], label=strategy,
                   color=[to_rgba(colour, p.opacity) for p in mine], zorder=2.5)
    infeasible = [p for p in points if not p.feasible]
    if infeasible:
        ax.scatter([p.x for p in infeasible], [p.y for p in infeasible], marker="x",
                   color=INFEASIBLE_COLOUR, label=INFEASIBLE, zorder=2)
    front = [p for p in points if p.pareto]
    if front:
        ax.scatter([p.x for p in front], [p.y for p in front], s=160, facecolors="none",
                   edgecolors="black", linewidths=1.2, label="Pareto-optimal", zorder=3)
    xs, ys = step_line(feasible)
    if xs:
        ax.step(xs, ys, where="post", color="black", linestyle="--", linewidth=1.2,
                label="frontier", zorder=2)
    for p in points:
        if p.label:
            ax.annotate(p.label, (p.x, p.y), textcoords="offset points", xytext=(5, 5),
                        fontsize=7)
    if points and min(p.x for p in points) > 0:
        ax.set_xscale("log")
        plain = FuncFormatter(lambda value, _: f"{value:g}")  # 2, 3 rather than 2×10⁰
        ax.xaxis.set_major_formatter(plain)
        xs = [p.x for p in points]
        if max(xs) / min(xs) < 30:  # within ~a decade minor ticks are the only ones labelled
            ax.xaxis.set_minor_formatter(plain)
    else:
        ax.set_xscale("symlog")  # a zero-compute point (never trained) cannot sit on a log axis
    ax.set_xlabel(axis_label(frontier.objectives[0]))
    ax.set_ylabel(axis_label(frontier.objectives[1]))
    ax.set_title(_title(frontier), fontsize=10)
    if frontier.noise is not None:
        ax.text(0.99, 0.99, "opacity: P(pareto) over seed resamples", ha="right", va="top",
                fontsize=7, transform=ax.transAxes)
    ax.grid(True, which="both", alpha=0.3)
    if points:
        for handle in ax.legend(fontsize=8).legend_handles:
            handle.set_alpha(1.0)  # a strategy's colour, not its first point's opacity
    else:
        ax.text(0.5, 0.5, "no configuration with complete, finite results",
                ha="center", va="center", transform=ax.transAxes)
    return fig


def per_task_series(frontier: Frontier, metric: str = "fid") -> list[int]:
    """Task indices for which the configs table has `<metric>@task<k>_mean`."""
    tasks = []
    for column in frontier.configs.column_names:
        if column.endswith("_mean"):
            parsed = split_series_column(column.removesuffix("_mean"))
            if parsed and parsed[0] == metric:
                tasks.append(parsed[1])
    return sorted(tasks)


def per_task_figure(frontier: Frontier, metric: str = "fid") -> Figure:
    """`metric` after each task (mean ± std over seeds) for the frontier configurations."""
    tasks = per_task_series(frontier, metric)
    front = [p for p in points_of(frontier) if p.pareto]
    colours = strategy_colours(points_of(frontier))
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    for p in front:
        ys = [p.row[f"{metric}@task{t}_mean"] for t in tasks]
        errs = [_nan_to_zero(p.row[f"{metric}@task{t}_std"]) for t in tasks]
        ax.errorbar(tasks, [np.nan if y is None else y for y in ys], yerr=errs, marker="o",
                    capsize=3, color=colours[p.strategy],
                    label=f"{p.strategy} {p.label}".strip())
    ax.set_xlabel("task just learned (0-based index)")
    ax.set_ylabel(f"{metric} after each task" + (" (stream FID on all seen tasks)"
                                                   if metric == "fid" else ""))
    ns = [p.row["n"] for p in front]
    ax.set_title(f"{metric} after each task, Pareto-optimal configurations\n"
                 f"error bars: {spread_note(STD_SPREAD, ns)}", fontsize=10)
    if tasks:
        ax.set_xticks(tasks)
    ax.grid(True, alpha=0.3)
    if front and tasks:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, f"no per-task {metric} for frontier configurations",
                ha="center", va="center", transform=ax.transAxes)
    return fig


def _hover(p: Point, frontier: Frontier) -> str:
    lines = [f"<b>{p.strategy}</b> {p.label}", f"config {p.row['config_key']} (n={p.row['n']})"]
    if frontier.noise is not None:
        lines.append(f"P(pareto) over seed resamples: {fmt_number(p.row[P_PARETO])}")
    if not p.feasible:
        lines.append(f"infeasible: {p.row.get(VIOLATIONS_COLUMN)}")
    lines += [
        f"{name}: {fmt_mean_std(p.row[f'{name}_mean'], p.row[f'{name}_std'])} "
        f"(± {STD_SPREAD})"
        for name in dict.fromkeys(frontier.objectives + ("fid_final", "kld"))
        if f"{name}_mean" in p.row
    ]
    params = [c for c in p.row if "." in c and "@" not in c and c != STRATEGY]
    lines += [f"{c} = {fmt_number(p.row[c])}" for c in params if p.row[c] is not None]
    return "<br>".join(lines)


def frontier_plotly(frontier: Frontier) -> Any:
    """The frontier plot as an interactive plotly figure (hover shows every param)."""
    import plotly.graph_objects as go

    points = points_of(frontier)
    feasible = [p for p in points if p.feasible]
    colours = strategy_colours(points)
    fig = go.Figure()
    for strategy, colour in colours.items():
        mine = [p for p in feasible if p.strategy == strategy]
        fig.add_trace(go.Scatter(
            x=[p.x for p in mine], y=[p.y for p in mine], mode="markers+text", name=strategy,
            text=[p.label for p in mine], textposition="top right",
            marker={"color": colour, "size": [14 if p.pareto else 9 for p in mine],
                    "opacity": [p.opacity for p in mine],
                    "line": {"color": "black", "width": [2 if p.pareto else 0 for p in mine]}},
            error_x={"type": "data", "array": [p.xerr for p in mine], "visible": True},
            error_y={"type": "data", "array": [p.yerr for p in mine], "visible": True},
            hovertext=[_hover(p, frontier) for p in mine], hoverinfo="text",
        ))
    infeasible = [p for p in points if not p.feasible]
    if infeasible:
        fig.add_trace(go.Scatter(
            x=[p.x for p in infeasible], y=[p.y for p in infeasible], mode="markers",
            name=INFEASIBLE, marker={"color": INFEASIBLE_COLOUR, "symbol": "x", "size": 9},
            hovertext=[_hover(p, frontier) for p in infeasible], hoverinfo="text",
        ))
    xs, ys = step_line(feasible)
    if xs:
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="frontier",
                                 line={"shape": "hv", "dash": "dash", "color": "black"}))
    positive = bool(points) and min(p.x for p in points) > 0
    fig.update_layout(
        title=_title(frontier),
        xaxis={"title": {"text": axis_label(frontier.objectives[0])},
               "type": "log" if positive else "linear"},
        yaxis={"title": {"text": axis_label(frontier.objectives[1])}},
        template="plotly_white",
    )
    return fig
