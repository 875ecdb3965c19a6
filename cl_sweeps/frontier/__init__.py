"""Compute–quality frontiers and paper-style reports of a finished (or running) sweep.

tracking.py  trial records from MLflow (the same TrialRecords as cl_sweeps/records.py reads
             from a sweep directory); logging outputs on the sweep's parent run
table.py     records -> trials table (one row per trial) -> configurations (seed mean/std/n)
pareto.py    non-dominated set over any number of minimised objectives
bootstrap.py seed noise: each configuration's seeds resampled -> P(pareto), intervals of the
             seed means, the hypervolume's interval
advice.py    how many seeds would separate neighbouring frontier configurations
build.py     the Frontier (tables + Pareto flag + exclusions) and its text table
plots.py     PNG (matplotlib), HTML (plotly) and per-task plots
outputs.py   writing all of it atomically; the end-of-sweep summary and best_trials.json
report.py    strategy × metrics table, mean ± std over seeds, as Markdown and CSV
"""

from cl_sweeps.frontier.build import (
    Frontier,
    best_per_strategy,
    best_per_strategy_text,
    compute_frontier,
    frontier_summary_text,
    frontier_table_text,
    load_source,
    objectives_for,
)
from cl_sweeps.frontier.mlflow_runs import log_frontier_artifacts, read_mlflow
from cl_sweeps.frontier.outputs import sweep_end_summary, write_frontier_outputs
from cl_sweeps.frontier.pareto import pareto_mask
from cl_sweeps.frontier.report import report_markdown, report_table, write_report
from cl_sweeps.frontier.table import DEFAULT_OBJECTIVES, aggregate_configs, trials_table
from cl_sweeps.records import SweepSource, TrialRecord, read_sweep_dir

__all__ = [
    "DEFAULT_OBJECTIVES",
    "Frontier",
    "SweepSource",
    "TrialRecord",
    "aggregate_configs",
    "best_per_strategy",
    "best_per_strategy_text",
    "compute_frontier",
    "frontier_summary_text",
    "frontier_table_text",
    "load_source",
    "log_frontier_artifacts",
    "objectives_for",
    "pareto_mask",
    "read_mlflow",
    "read_sweep_dir",
    "report_markdown",
    "report_table",
    "sweep_end_summary",
    "trials_table",
    "write_frontier_outputs",
    "write_report",
]
