"""The `cl-sweeps` command line: run one sequence (more commands join as they are built)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cl_sweeps.config import ConfigError, load_trial_config

TABLE_COLUMNS = ("task", "denoise_loss", "fid", "kld", "train_tflops", "train_seconds")


def format_table(history: list[dict[str, float]], columns: tuple[str, ...] = TABLE_COLUMNS) -> str:
    """A plain-text table of the per-task metrics that are present."""
    present = [c for c in columns if any(c in row for row in history)]
    rows = [[_fmt(row.get(c)) for c in present] for row in history]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(present)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(present, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.4g}"


def cmd_run(args: argparse.Namespace) -> int:
    from cl_sweeps.checkpoint import latest_checkpoint, read_history
    from cl_sweeps.results import write_task_metrics
    from cl_sweeps.sequence import run_sequence

    config = load_trial_config(args.file, args.set)
    output_dir = Path(config.output_dir)
    resume_from = latest_checkpoint(output_dir) if args.resume else None

    def reporter(task_index: int, metrics: dict[str, float], checkpoint_dir: Path) -> None:
        history.append(metrics)
        write_task_metrics(output_dir, history)
        print(f"task {task_index} done: " + _summary(metrics), flush=True)

    history: list[dict[str, float]] = []
    if resume_from is not None:
        history = read_history(resume_from)
        print(f"resuming from {resume_from}")
    result = run_sequence(config, reporter, resume_from=resume_from, progress=not args.no_progress)
    print()
    print(format_table(result.history))
    print(f"\nmetrics: {output_dir / 'metrics.jsonl'} and {output_dir / 'metrics.parquet'}")
    return 0


def _summary(metrics: dict[str, float]) -> str:
    keys = [k for k in ("fid", "kld", "denoise_loss", "train_tflops") if k in metrics]
    return ", ".join(f"{k}={metrics[k]:.4g}" for k in keys)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cl-sweeps", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one continual sequence from a run/sweep file's base")
    run.add_argument("file", help="YAML file with a `base:` trial section (or a bare trial)")
    run.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a field, e.g. --set strategy.name=er --set train.iterations_per_task=50",
    )
    run.add_argument("--resume", action="store_true", help="continue after the last checkpoint")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.set_defaults(handler=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"error: invalid configuration\n{error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
