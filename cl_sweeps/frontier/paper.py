"""The paper's table: one row per (strategy, teacher steps, λ), mean ± SEM over the seeds.

As the reference's report script (utils/generate_report_cl.py): every configuration it ran is a
row (no best-of selection), the values are those after the last task, and ± is the standard
error of the mean with the population std, np.std(v) / sqrt(n) (`table.mean_sem`). The best mean
of each column is bold (the lowest; the highest for accuracy). Written as Markdown, CSV
and LaTeX, with per-task FID curves (SEM bands) and true-vs-generated class histograms beside.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from matplotlib.figure import Figure

from cl_sweeps.formatting import (
    DASH,
    SEM_SPREAD,
    fmt_number,
    markdown_table,
    seeds_note,
    short_name,
    spread_note,
)
from cl_sweeps.frontier.report import STRATEGY_ORDER
from cl_sweeps.frontier.table import mean_sem, param_columns, series_column
from cl_sweeps.metrics import ACCURACY_FINAL, ARD, FID, FID_FINAL, KLD, TRAIN_TFLOPS
from cl_sweeps.strategies.catalog import strategy_knobs

PAPER_METRICS = (FID_FINAL, KLD, ARD, ACCURACY_FINAL, TRAIN_TFLOPS)
HIGHER_IS_BETTER = frozenset({ACCURACY_FINAL})  # the second experiment's classifier
HEADERS = {FID_FINAL: "FID", KLD: "KLD", ARD: "ARD", ACCURACY_FINAL: "accuracy",
           TRAIN_TFLOPS: "train TFLOPs"}
STRATEGY, TEACHER_STEPS, LAMBDA = "strategy.name", "strategy.teacher_steps", "strategy.lambd"


def sem_note(n: Sequence[int]) -> str:
    """What every ± of the paper's table is, with the seeds behind it."""
    return (f"mean ± SEM over seeds ({seeds_note(n)}); {SEM_SPREAD}, as the paper's code; "
            "values after the last task; best mean per column in bold; '–': not measured or "
            "a single seed")


def _reads(strategy: str, knob: str) -> bool:
    try:
        return knob in strategy_knobs(strategy)
    except ValueError:  # a strategy of another version: show what the trial recorded
        return True


def _varies_within_a_strategy(trials: pa.Table, column: str) -> bool:
    """Whether some strategy's trials ran several values of `column` (a key set per strategy,
    such as classifier_replay.mode, names no row of its own)."""
    strategies = (trials.column(STRATEGY).to_pylist() if STRATEGY in trials.column_names
                  else [None] * trials.num_rows)
    values: dict[Any, set] = {}
    for strategy, value in zip(strategies, trials.column(column).to_pylist()):
        values.setdefault(strategy, set()).add(value)
    return any(len(v) > 1 for v in values.values())


def paper_table(
    trials: pa.Table,
    metrics: Sequence[str] = PAPER_METRICS,
    default_teacher_steps: int | None = None,
    default_lambda: float | None = None,
    uses: Callable[[str, str], bool] = _reads,
) -> pa.Table:
    """Rows (strategy, teacher_steps, lambd) of the complete trials, in the paper's order, with
    `<m>_mean`, `<m>_sem` and `<m>_n` for each of `metrics` some trial reported. Teacher steps
    and λ are None for strategies that do not read them; a trial whose params lack them ran the
    sweep's base value (`default_*`). Configurations that also differ in another searched key
    (e.g. the replay ratio) are rows of their own, that key shown in `settings`."""
    present = [m for m in metrics if m in trials.column_names]
    others = [c for c in param_columns(trials) if c not in (STRATEGY, TEACHER_STEPS, LAMBDA)
              and _varies_within_a_strategy(trials, c)]
    groups: dict[tuple[str, Any, Any, str], list[dict[str, Any]]] = {}
    for row in trials.filter(trials.column("complete")).to_pylist():
        strategy = str(row.get(STRATEGY) or "all")
        steps = lam = None
        if uses(strategy, "teacher_steps"):
            steps = row.get(TEACHER_STEPS)
            steps = default_teacher_steps if steps is None else steps
        if uses(strategy, "lambd"):
            lam = row.get(LAMBDA)
            lam = default_lambda if lam is None else lam
        settings = ", ".join(f"{short_name(c)}={fmt_number(row[c])}" for c in others
                             if row.get(c) is not None)
        groups.setdefault((strategy, steps, lam, settings), []).append(row)

    def order(key: tuple[str, Any, Any, str]) -> tuple:
        strategy, steps, lam, settings = key
        rank = STRATEGY_ORDER.index(strategy) if strategy in STRATEGY_ORDER else len(STRATEGY_ORDER)
        return (rank, strategy, steps or 0, lam or 0.0, settings)

    out: dict[str, list[Any]] = {"strategy": [], "teacher_steps": [], "lambd": [],
                                 "settings": [], "n": [], "trial_ids": []}
    for name in present:
        for suffix in ("mean", "sem", "n"):
            out[f"{name}_{suffix}"] = []
    for key in sorted(groups, key=order):
        rows = groups[key]
        out["strategy"].append(key[0])
        out["teacher_steps"].append(key[1])
        out["lambd"].append(None if key[2] is None else float(key[2]))
        out["settings"].append(key[3])
        out["n"].append(len(rows))
        out["trial_ids"].append(" ".join(sorted(r["trial_id"] for r in rows)))
        for name in present:
            mean, sem, n = mean_sem([r.get(name) for r in rows])
            out[f"{name}_mean"].append(mean)
            out[f"{name}_sem"].append(sem)
            out[f"{name}_n"].append(n)
    types = {"teacher_steps": pa.int64(), "lambd": pa.float64(), "n": pa.int64()}
    types.update({f"{m}_n": pa.int64() for m in present})
    types.update({f"{m}_{s}": pa.float64() for m in present for s in ("mean", "sem")})
    return pa.table({k: pa.array(v, types.get(k, pa.string())) for k, v in out.items()})


def table_metrics(table: pa.Table) -> list[str]:
    """The metrics a paper table holds, in PAPER_METRICS order (then any others)."""
    names = [c.removesuffix("_mean") for c in table.column_names if c.endswith("_mean")]
    return sorted(names, key=lambda m: PAPER_METRICS.index(m) if m in PAPER_METRICS else 99)


def best_rows(table: pa.Table) -> dict[str, int | None]:
    """Per metric, the index of the row with the best finite mean (None if there is none)."""
    best: dict[str, int | None] = {}
    for name in table_metrics(table):
        means = table.column(f"{name}_mean").to_pylist()
        finite = [(v, i) for i, v in enumerate(means) if v is not None and math.isfinite(v)]
        if not finite:
            best[name] = None
            continue
        best[name] = (max if name in HIGHER_IS_BETTER else min)(finite)[1]
    return best


def _cell(mean: float | None, sem: float | None) -> str:
    if mean is None or math.isnan(mean):
        return DASH
    if math.isinf(mean):
        return fmt_number(mean)
    return f"{fmt_number(mean)} ± {fmt_number(sem)}"


def _rows(table: pa.Table) -> tuple[list[str], list[list[str]], list[list[bool]]]:
    """Header, text cells and which cells are bold (the best of their column)."""
    metrics = table_metrics(table)
    best = best_rows(table)
    settings = any(table.column("settings").to_pylist())  # only when another key varied
    headers = ["strategy", "teacher steps", "λ"] + ["settings"] * settings + ["n"]
    headers += [HEADERS.get(m, m) for m in metrics]
    cells, bold = [], []
    for i, row in enumerate(table.to_pylist()):
        cells.append([row["strategy"], fmt_number(row["teacher_steps"]), fmt_number(row["lambd"])]
                     + [row["settings"] or DASH] * settings + [str(row["n"])]
                     + [_cell(row[f"{m}_mean"], row[f"{m}_sem"]) for m in metrics])
        bold.append([False] * (4 + settings) + [best[m] == i for m in metrics])
    return headers, cells, bold


def paper_markdown(table: pa.Table) -> str:
    headers, cells, bold = _rows(table)
    shown = [[f"**{c}**" if b else c for c, b in zip(row, flags)]
             for row, flags in zip(cells, bold)]
    note = sem_note(table.column("n").to_pylist() or [0])
    return f"{markdown_table(headers, shown)}\n\nAll ±: {note}.\n"


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"),
                          ("#", r"\#")):
        text = text.replace(char, escaped)
    return text.replace("±", r"$\pm$").replace("λ", r"$\lambda$").replace("–", "--")


def paper_latex(table: pa.Table) -> str:
    """A booktabs tabular; the best mean of each column in \\textbf."""
    headers, cells, bold = _rows(table)
    lines = [r"\begin{tabular}{l" + "r" * (len(headers) - 1) + "}", r"\toprule",
             " & ".join(_latex_escape(h) for h in headers) + r" \\", r"\midrule"]
    for row, flags in zip(cells, bold):
        parts = [_latex_escape(c) for c in row]
        parts = [rf"\textbf{{{p}}}" if b else p for p, b in zip(parts, flags)]
        lines.append(" & ".join(parts) + r" \\")
    note = _latex_escape(sem_note(table.column("n").to_pylist() or [0]))
    lines += [r"\bottomrule", r"\end{tabular}", f"% {note}"]
    return "\n".join(lines) + "\n"


def row_label(row: dict[str, Any]) -> str:
    """'generative_distillation k=2 λ=0.75' (the parts the strategy reads)."""
    parts = [row["strategy"]]
    if row.get("teacher_steps") is not None:
        parts.append(f"k={fmt_number(row['teacher_steps'])}")
    if row.get("lambd") is not None:
        parts.append(f"λ={fmt_number(row['lambd'])}")
    if row.get("settings"):
        parts.append(row["settings"])
    return " ".join(parts)


def fid_curves(trials: pa.Table, table: pa.Table, metric: str = FID) -> Figure:
    """`metric` after each task per row of the paper table: the mean over its seeds and a band
    of ± SEM (std ddof 0 / √n)."""
    by_id = {r["trial_id"]: r for r in trials.to_pylist()}
    tasks = sorted({t for c in trials.column_names
                    if (t := _task_of(c, metric)) is not None})
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    ns = []
    for row in table.to_pylist():
        runs = [by_id[t] for t in row["trial_ids"].split()]
        stats = [mean_sem([r.get(series_column(metric, t)) for r in runs]) for t in tasks]
        mean = np.array([s[0] for s in stats])
        sem = np.nan_to_num(np.array([s[1] for s in stats]))
        ns.append(row["n"])
        line, = ax.plot(tasks, mean, marker="o", label=f"{row_label(row)} (n={row['n']})")
        ax.fill_between(tasks, mean - sem, mean + sem, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("task just learned (0-based index)")
    ax.set_ylabel(f"{metric} on all seen tasks")
    ax.set_title(f"{metric} after each task; bands: {spread_note(SEM_SPREAD, ns)}",
                 fontsize=9)
    if tasks:
        ax.set_xticks(tasks)
    if ns:
        ax.legend(fontsize=7)
    return fig


def class_histograms(trials: pa.Table, table: pa.Table, trials_dir: Path) -> Figure | None:
    """Per row, the class fractions of the test data (true) and of the generated samples after
    the last task, averaged over the row's seeds, from each trial's samples folder
    (results.read_class_histograms); None when no trial wrote them."""
    from cl_sweeps.results import read_class_histograms

    last = {r["trial_id"]: r["num_tasks"] - 1 for r in trials.to_pylist()}
    shown = []
    for row in table.to_pylist():
        found = [read_class_histograms(trials_dir / t, last[t]) for t in row["trial_ids"].split()]
        found = [h for h in found if h]
        if found:
            true = np.mean([h["true"] for h in found], axis=0)
            shown.append((row, true, np.mean([h["generated"] for h in found], axis=0), len(found)))
    if not shown:
        return None
    cols = min(4, len(shown))
    rows = -(-len(shown) // cols)
    fig = Figure(figsize=(3.2 * cols, 2.4 * rows), layout="constrained")
    for i, (row, true, generated, n) in enumerate(shown):
        ax = fig.add_subplot(rows, cols, i + 1)
        classes = np.arange(len(true))
        ax.bar(classes - 0.2, true, width=0.4, label="true (test)")
        ax.bar(classes + 0.2, generated, width=0.4, label="generated")
        ax.set_title(f"{row_label(row)} (mean of n={n})", fontsize=8)
        ax.set_xticks(classes)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7)
    fig.supxlabel("class")
    fig.supylabel("fraction of images after the last task")
    return fig


def _task_of(column: str, metric: str) -> int | None:
    prefix = f"{metric}@task"
    return int(column[len(prefix):]) if column.startswith(prefix) else None


def write_paper_report(
    trials: pa.Table, table: pa.Table, out_dir: str | Path, trials_dir: Path | None = None
) -> dict[str, Path]:
    """paper.md, paper.csv, paper.tex, paper_fid_per_task.png and, when the trials in
    `trials_dir` wrote class histograms, paper_class_histograms.png in `out_dir`."""
    from cl_sweeps.results import atomic_write

    out = Path(out_dir)
    markdown, latex = paper_markdown(table), paper_latex(table)
    curves = fid_curves(trials, table)
    paths = {
        "markdown": atomic_write(out / "paper.md", lambda p: p.write_text(markdown)),
        "csv": atomic_write(out / "paper.csv", lambda p: pacsv.write_csv(table, p)),
        "latex": atomic_write(out / "paper.tex", lambda p: p.write_text(latex)),
        "fid_plot": atomic_write(out / "paper_fid_per_task.png",
                                 lambda p: curves.savefig(p, format="png", dpi=120)),
    }
    histograms = class_histograms(trials, table, trials_dir) if trials_dir else None
    if histograms is not None:
        paths["histograms"] = atomic_write(out / "paper_class_histograms.png",
                                           lambda p: histograms.savefig(p, format="png", dpi=120))
    return paths
