"""The paper-style table: one row per strategy (and teacher steps, for strategies that generate
with a teacher) with fid_final, kld, forgetting and training compute as mean ± std over seeds.

Like the paper, each row is one configuration: where a sweep tried several settings of a strategy
(λ, replay ratio, ...), the row shows the one with the lowest mean `fid_final`, names its settings
and says how many were tried. Only complete trials (COMPLETED, every task) count; an infinite
value (a diverged seed) is kept and shows as `inf`, since hiding it would flatter the strategy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from cl_sweeps.formatting import fmt_mean_std, fmt_number, markdown_table, short_name
from cl_sweeps.frontier.table import mean_std, param_columns
from cl_sweeps.strategies.catalog import strategy_knobs

REPORT_METRICS = ("fid_final", "kld", "forgetting", "train_tflops")
VALIDATION_METRICS = ("fid_final_val", "kld_val")  # with a split: chosen on, shown first
CLASSIFIER_METRICS = ("accuracy_final", "accuracy_forgetting")  # with classifier_replay on
CLASSIFIER_VALIDATION_METRICS = ("accuracy_final_val",)  # with both: beside the other *_val
CLOG_METRICS = ("aiq", "afq", "fr")  # CLoG's FID summaries, where reported


def clog_metrics(trials: pa.Table) -> tuple[str, ...]:
    """CLoG's aiq, afq and fr, those that some trial reported (sweeps recorded before they
    existed have none)."""
    return tuple(m for m in CLOG_METRICS
                 if m in trials.column_names and trials.column(m).null_count < trials.num_rows)


def report_selection(trials: pa.Table) -> tuple[tuple[str, ...], str]:
    """(metrics, select_by): with a validation split, each row's configuration is chosen on
    fid_final_val and the test metrics beside it report the choice; else on fid_final. CLoG's
    aiq, afq and fr follow the paper's metrics where trials reported them; the
    classifier's accuracy is shown where a trial measured it (classifier_replay), on
    validation too where it has a split."""
    columns = trials.column_names
    shown = REPORT_METRICS + clog_metrics(trials)
    shown += tuple(m for m in CLASSIFIER_METRICS if m in columns)
    if VALIDATION_METRICS[0] in columns:
        validation = VALIDATION_METRICS + tuple(
            m for m in CLASSIFIER_VALIDATION_METRICS if m in columns)
        return validation + shown, VALIDATION_METRICS[0]
    return shown, "fid_final"
STRATEGY = "strategy.name"
TEACHER_STEPS = "strategy.teacher_steps"
# The paper's order: baselines, replay, then the distillation variants.
STRATEGY_ORDER = (
    "naive", "cumulative", "er", "ewc", "si", "generative_replay", "generative_distillation",
    "partial_generation_distillation", "intermediate_distillation", "lwf_distillation",
    "gaussian_distillation", "l2", "mas", "agem", "ensemble", "lora",
)
HEADER_NAMES = {"train_tflops": "train TFLOPs", "teacher_steps": "teacher steps"}


def reads_teacher_steps(strategy: str) -> bool:
    """Whether the strategy uses `teacher_steps` (from its declared knobs; no torch). Unknown
    names (a strategy from another version): assume it does, so its teacher steps are shown."""
    try:
        return "teacher_steps" in strategy_knobs(strategy)
    except ValueError:
        return True


def _select(configs: dict[str, list[dict[str, Any]]], select_by: str) -> str:
    """The config key with the lowest mean `select_by` (NaN last; ties: more seeds, then key)."""
    def key(config_key: str) -> tuple:
        mean, _, _ = mean_std([r.get(select_by) for r in configs[config_key]])
        return (math.isnan(mean), mean if not math.isnan(mean) else 0.0,
                -len(configs[config_key]), config_key)

    return min(configs, key=key)


def report_table(
    trials: pa.Table,
    metrics: Sequence[str] = REPORT_METRICS,
    select_by: str = "fid_final",
    uses_teacher_steps: Callable[[str], bool] | None = None,
    default_teacher_steps: int | None = None,
) -> pa.Table:
    """Rows (strategy, teacher_steps) in the paper's order; for each metric `<m>_mean`, `<m>_std`
    (ddof=1, NaN for one seed) and `<m>_n`; plus the chosen config, its settings, n and the
    number of configurations the row was chosen from. `uses_teacher_steps` defaults to the
    strategy registry's knobs; `default_teacher_steps` is the value of trials whose params do not
    hold it (the resolved sweep's base: see records.base_value)."""
    uses_teacher_steps = uses_teacher_steps or reads_teacher_steps
    complete = trials.filter(trials.column("complete")).to_pylist()
    groups: dict[tuple[str, Any], dict[str, list[dict[str, Any]]]] = {}
    for row in complete:
        strategy = str(row.get(STRATEGY) or "all")
        steps = None
        if uses_teacher_steps(strategy):
            steps = row.get(TEACHER_STEPS)
            steps = default_teacher_steps if steps is None else steps
        groups.setdefault((strategy, steps), {}).setdefault(row["config_key"], []).append(row)
    shown = [c for c in param_columns(trials) if c not in (STRATEGY, TEACHER_STEPS)
             and len(set(trials.column(c).drop_null().to_pylist())) > 1]

    def order(group: tuple[str, Any]) -> tuple:
        strategy, steps = group
        rank = STRATEGY_ORDER.index(strategy) if strategy in STRATEGY_ORDER else len(STRATEGY_ORDER)
        return (rank, strategy, steps is not None, steps or 0)

    out: dict[str, list[Any]] = {k: [] for k in (
        "strategy", "teacher_steps", "config_key", "settings", "configurations", "n")}
    for name in metrics:
        for suffix in ("mean", "std", "n"):
            out[f"{name}_{suffix}"] = []
    for group in sorted(groups, key=order):
        configs = groups[group]
        chosen = _select(configs, select_by)
        rows = configs[chosen]
        out["strategy"].append(group[0])
        out["teacher_steps"].append(group[1])
        out["config_key"].append(chosen)
        out["settings"].append(", ".join(
            f"{short_name(c)}={fmt_number(rows[0][c])}" for c in shown if rows[0][c] is not None
        ))
        out["configurations"].append(len(configs))
        out["n"].append(len(rows))
        for name in metrics:
            mean, std, n = mean_std([r.get(name) for r in rows])
            out[f"{name}_mean"].append(mean)
            out[f"{name}_std"].append(std)
            out[f"{name}_n"].append(n)
    types = {"teacher_steps": pa.int64(), "configurations": pa.int64(), "n": pa.int64()}
    types.update({f"{m}_n": pa.int64() for m in metrics})
    types.update({f"{m}_{s}": pa.float64() for m in metrics for s in ("mean", "std")})
    return pa.table({k: pa.array(v, types.get(k, pa.string())) for k, v in out.items()})


def report_markdown(
    report: pa.Table, metrics: Sequence[str] = REPORT_METRICS, select_by: str = "fid_final"
) -> str:
    """The report as a Markdown table with a note on what the numbers are."""
    headers = ["strategy", "teacher steps", "n"] + [HEADER_NAMES.get(m, m) for m in metrics]
    headers.append("settings (of configurations tried)")
    rows = []
    for row in report.to_pylist():
        cells = [row["strategy"], fmt_number(row["teacher_steps"]), str(row["n"])]
        cells += [fmt_mean_std(row[f"{m}_mean"], row[f"{m}_std"]) for m in metrics]
        cells.append(f"{row['settings'] or '–'} ({row['configurations']})")
        rows.append(cells)
    note = (
        "Mean ± std (ddof=1) over seeds after the last task; '± –': a single seed; 'inf': a seed "
        f"diverged. Complete trials only; per row the configuration with the lowest mean "
        f"{select_by}."
    )
    if select_by.endswith("_val"):
        note += " Chosen on the validation split (*_val); the other columns are test metrics."
    return f"{markdown_table(headers, rows)}\n\n{note}\n"


def write_report(
    report: pa.Table, out_dir: str | Path, metrics: Sequence[str] = REPORT_METRICS,
    select_by: str = "fid_final",
) -> dict[str, Path]:
    """report.md and report.csv (the CSV keeps mean, std and n as separate numeric columns)."""
    from cl_sweeps.results import atomic_write

    out = Path(out_dir)
    text = report_markdown(report, metrics, select_by)
    return {
        "markdown": atomic_write(out / "report.md", lambda p: p.write_text(text)),
        "csv": atomic_write(out / "report.csv", lambda p: pacsv.write_csv(report, p)),
    }
