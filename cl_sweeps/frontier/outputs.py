"""Write a frontier's files (Parquet tables, summary, PNG and HTML plots), each atomically, and
the one-call summary the `sweep` command prints when a sweep ends."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cl_sweeps.constraints import FEASIBLE_COLUMN, VIOLATIONS_COLUMN
from cl_sweeps.frontier.build import (
    ONE_SEED,
    P_PARETO,
    Frontier,
    compute_frontier,
    frontier_summary_text,
)
from cl_sweeps.frontier.table import DEFAULT_OBJECTIVES
from cl_sweeps.records import SweepLayout, read_sweep_dir, to_json, write_json
from cl_sweeps.results import atomic_write, atomic_write_table

log = logging.getLogger(__name__)

TRIALS_PARQUET = "trials.parquet"
FRONTIER_PARQUET = "frontier.parquet"
SUMMARY_JSON = "summary.json"
FRONTIER_PNG = "frontier.png"
FRONTIER_HTML = "frontier.html"
PER_TASK_PNG = "frontier_per_task.png"
HYPERVOLUME_METRIC = "sweep/hypervolume"  # on the parent run (reference point: summary.json)


def summary_dict(frontier: Frontier) -> dict[str, Any]:
    """What a script needs without opening Parquet: counts and the frontier's config keys."""
    front = frontier.pareto_configs()
    return {
        "objectives": list(frontier.objectives),
        "trials": frontier.trials.num_rows,
        "included": sum(frontier.trials.column("included").to_pylist()),
        "excluded": frontier.excluded,
        "configurations": frontier.configs.num_rows,
        "pareto_config_keys": front.column("config_key").to_pylist(),
        **constraints_dict(frontier),
        "hypervolume": frontier.hypervolume,
        "hypervolume_reference": list(frontier.reference) if frontier.reference else None,
        "seed_noise": noise_dict(frontier),
        "source": frontier.source.description if frontier.source else None,
    }


def constraints_dict(frontier: Frontier) -> dict[str, Any]:
    """The sweep's constraints and what each infeasible configuration breaks ({} without)."""
    if not frontier.constraints:
        return {}
    rows = frontier.configs.select(["config_key", FEASIBLE_COLUMN, VIOLATIONS_COLUMN]).to_pylist()
    return {
        "constraints": {c.metric: {k: v for k, v in (("min", c.min), ("max", c.max))
                                   if v is not None} for c in frontier.constraints},
        "infeasible": {r["config_key"]: r[VIOLATIONS_COLUMN] for r in rows
                       if not r[FEASIBLE_COLUMN]},
    }


def noise_dict(frontier: Frontier) -> dict[str, Any]:
    """The seed bootstrap in summary.json: settings, the hypervolume's interval and each
    configuration's P(pareto); or why there is none."""
    noise = frontier.noise
    if noise is None:
        return {"note": ONE_SEED}
    keys = frontier.configs.column("config_key").to_pylist()
    probabilities = frontier.configs.column(P_PARETO).to_pylist()
    return {
        "resamples": noise.resamples,
        "level": noise.level,
        "seed": noise.seed,
        "hypervolume_interval": list(noise.hypervolume) if noise.hypervolume else None,
        "configurations_with_one_seed": noise.single_seed,
        "p_pareto": dict(zip(keys, probabilities)),
    }


def write_frontier_outputs(frontier: Frontier, out_dir: str | Path) -> dict[str, Path]:
    """trials.parquet, frontier.parquet (configs + pareto flag), summary.json, frontier.png,
    frontier.html (plotly, self-contained: works offline) and frontier_per_task.png (the plots
    with two objectives or more)."""
    from cl_sweeps.frontier.plots import frontier_figure, frontier_plotly, per_task_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"trials": out / TRIALS_PARQUET, "frontier": out / FRONTIER_PARQUET}
    atomic_write_table(frontier.trials, paths["trials"])
    atomic_write_table(frontier.configs, paths["frontier"])
    text = to_json(summary_dict(frontier))
    paths["summary"] = atomic_write(out / SUMMARY_JSON, lambda p: p.write_text(text))
    if len(frontier.objectives) < 2:
        return paths  # the plots draw the first two objectives against each other
    png = frontier_figure(frontier)
    paths["png"] = atomic_write(out / FRONTIER_PNG, lambda p: png.savefig(p, dpi=130))
    per_task = per_task_figure(frontier)
    paths["per_task_png"] = atomic_write(
        out / PER_TASK_PNG, lambda p: per_task.savefig(p, dpi=130)
    )
    html = frontier_plotly(frontier)
    paths["html"] = atomic_write(
        out / FRONTIER_HTML, lambda p: html.write_html(str(p), include_plotlyjs=True)
    )
    return paths


def best_trials(frontier: Frontier) -> dict[str, Any]:
    """best_trials.json: the Pareto configurations (for one objective: the best, ties kept),
    best first, with their params, seeds, trials and the objectives' mean, std over seeds."""
    front = frontier.pareto_configs().to_pylist()
    params = [c for c in frontier.configs.column_names if "." in c and "@" not in c]
    configurations = [
        {
            "config_key": row["config_key"],
            "params": {p: row[p] for p in params if row.get(p) is not None},
            "n": row["n"],
            "seeds": row["seeds"],
            "trial_ids": row["trial_ids"],
            "mean": {m: row[f"{m}_mean"] for m in frontier.objectives},
            "std": {m: row[f"{m}_std"] for m in frontier.objectives},
            "p_pareto": row[P_PARETO],
        }
        for row in front
    ]
    return {
        "objectives": [
            {"metric": m, "mode": frontier.mode(i)} for i, m in enumerate(frontier.objectives)
        ],
        "selection": "best" if len(frontier.objectives) == 1 else "pareto",
        "configurations": configurations,
        **constraints_dict(frontier),
    }


def sweep_end_summary(
    output_dir: str | Path,
    client: Any = None,
    parent_run_id: str | None = None,
    objectives: Sequence[str] = DEFAULT_OBJECTIVES,
    modes: Sequence[str] | None = None,
    extra: dict[str, Any] | None = None,
    step: int = 0,
) -> str:
    """The end of `cl-sweeps sweep`: the frontier of the sweep directory's records over the
    sweep's own objectives; its files written to <output_dir>/frontier/ and best_trials.json
    (plus the `extra` entries the sweep adds, e.g. its compute),
    logged on the parent run if a client is given; returns the text to print (`step`: that of the parent run's live sweep/*
    metrics). A sweep without
    trials gives a message (and an empty best_trials.json); other failures raise."""
    from cl_sweeps.frontier.mlflow_runs import log_frontier_artifacts, log_sweep_metrics

    layout = SweepLayout(Path(output_dir))
    if not layout.trials.is_dir() or not any(layout.trials.iterdir()):
        empty = [{"metric": m, "mode": (modes or ["min"] * len(objectives))[i]}
                 for i, m in enumerate(objectives)]
        write_json(layout.best, {"objectives": empty, "selection": None, "configurations": [],
                                 **(extra or {})})
        return f"no trials under {layout.trials}; no frontier"
    frontier = compute_frontier(read_sweep_dir(layout.root), objectives, modes)
    write_json(layout.best, {**best_trials(frontier), **(extra or {})})
    paths = write_frontier_outputs(frontier, layout.frontier)
    if client is not None and parent_run_id is not None:
        log_frontier_artifacts(client, parent_run_id, paths.values())
        if frontier.hypervolume is not None:
            log_sweep_metrics(
                client, parent_run_id, {HYPERVOLUME_METRIC: frontier.hypervolume}, step
            )
    return f"{frontier_summary_text(frontier)}\n\nfrontier files: {layout.frontier}"
