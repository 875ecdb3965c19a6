"""The `cl-sweeps` command line: run one sequence (more commands join as they are built)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cl_sweeps.config import ConfigError, TrialConfig, load_trial_config
from cl_sweeps.errors import UsageError, ensure_writable

if TYPE_CHECKING:
    from cl_sweeps.frontier import Frontier, SweepSource

TABLE_COLUMNS = ("task", "denoise_loss", "fid", "kld", "train_tflops", "train_seconds")


def format_table(history: list[dict[str, float]], columns: tuple[str, ...] = TABLE_COLUMNS) -> str:
    """A plain-text table of the per-task metrics that are present."""
    from cl_sweeps.formatting import fmt_number, text_table

    present = [c for c in columns if any(c in row for row in history)]
    rows = [[fmt_number(row.get(c)) for c in present] for row in history]
    return text_table(present, rows, align="right")


def cmd_run(args: argparse.Namespace) -> int:
    config = load_trial_config(args.file, args.set)
    if args.dry_run:
        return print_resolved_trial(config)
    from cl_sweeps.checkpoint_files import latest_checkpoint, read_history
    from cl_sweeps.results import METRICS_JSONL, METRICS_PARQUET, write_task_metrics
    from cl_sweeps.sequence import run_sequence

    ensure_writable(config.output_dir, "output_dir")

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
    print(f"\nmetrics: {output_dir / METRICS_JSONL} and {output_dir / METRICS_PARQUET}")
    return 0


def print_resolved_trial(config: TrialConfig) -> int:
    """`run --dry-run`: the validated trial with every default filled in, and its tasks (no
    model is built and no data is read)."""
    import yaml

    from cl_sweeps.config import resolve_task_classes

    tasks = resolve_task_classes(config.data, config.data.info.num_classes)
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
    print(f"# tasks ({len(tasks)}): {tasks}")
    print("valid: 1 run")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from cl_sweeps.bench import Variant, format_bench, format_comparison, run_bench

    if args.peak_tflops is not None and args.peak_tflops <= 0:
        raise ConfigError(f"--peak-tflops: must be positive (got {args.peak_tflops})")
    if args.compare:
        variants = [Variant.parse(text) for text in args.compare]
    else:
        variants = [Variant.parse(args.precision + ("+compile" if args.compile else ""))]
    rows = run_bench(
        args.strategies, preset=args.preset, image_size=args.image_size, channels=args.channels,
        batch_size=args.batch_size, teacher_steps=args.teacher_steps,
        replay_ratio=args.replay_ratio, iterations=args.iterations, warmup=args.warmup,
        device=args.device, variants=variants, peak_tflops=args.peak_tflops,
        compile_backend=args.compile_backend,
    )
    device = args.device
    if device.startswith("cuda"):
        import torch

        device += f" ({torch.cuda.get_device_name(device)})"
    print(f"preset={args.preset} image={args.channels}x{args.image_size}x{args.image_size} "
          f"batch={args.batch_size} teacher_steps={args.teacher_steps} "
          f"replay_ratio={args.replay_ratio} device={device} "
          f"iterations={args.iterations} (after {args.warmup} warm-up, compilation included)")
    print("meas = measured seconds ratio; pred = FLOP-model ratio; forwards per iteration right")
    print(format_bench(rows))
    if len(variants) > 1:
        print()
        print(format_comparison(rows))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check this node before a sweep; the exit code is the number of failed checks."""
    from cl_sweeps.doctor import FAIL, SKIP, run_doctor
    from cl_sweeps.strategies import available_strategies

    try:
        TrialConfig(device=args.device)
    except ValueError:
        raise ConfigError(
            f"--device: {args.device!r} is not allowed; allowed: auto, cpu, cuda or cuda:N"
        ) from None
    strategies = args.strategies.split(",") if args.strategies else None
    unknown = sorted(set(strategies or []) - set(available_strategies()))
    if unknown:
        raise ConfigError(
            f"--strategies: unknown {', '.join(unknown)}; allowed: "
            f"{', '.join(available_strategies())}"
        )
    results = run_doctor(args.device, strategies, bench=not args.no_bench)
    failed = sum(r.status == FAIL for r in results)
    skipped = sum(r.status == SKIP for r in results)
    print(f"{len(results) - failed - skipped} passed, {failed} failed, {skipped} skipped")
    return failed


def cmd_bench_search(args: argparse.Namespace) -> int:
    from cl_sweeps.constraints import parse_constraint
    from cl_sweeps.records import SweepLayout
    from cl_sweeps.sweep.bench_search import format_table, run_bench_search, write_outputs

    grid_dir = Path(args.grid_dir)
    if not SweepLayout(grid_dir).trials.is_dir():
        print(f"error: --grid-dir: {grid_dir} holds no sweep (no trials/); run the grid first: "
              "cl-sweeps sweep search_spaces/bench_digits.yaml", file=sys.stderr)
        return 2
    try:
        constraints = [parse_constraint(text) for text in args.constraint or []]
    except ValueError as error:
        print(f"error: --constraint: {error}", file=sys.stderr)
        return 2
    warm = Path(args.warm_start_dir) if args.warm_start_dir else None
    if warm is not None and not SweepLayout(warm).trials.is_dir():
        print(f"error: --warm-start-dir: {warm} holds no sweep (no trials/); allowed: a finished "
              "grid sweep of the same space at fewer iterations per task", file=sys.stderr)
        return 2
    try:
        result = run_bench_search(grid_dir, repeats=args.repeats, extra_dirs=args.extra_dir or [],
                                  constraints=constraints, warm_start_dir=warm)
    except ValueError as error:  # a grid or source that cannot be replayed (ConfigError too)
        print(f"error: {error}", file=sys.stderr)
        return 2
    if constraints:
        print(f"constraints {', '.join(result['constraints'])}: "
              f"{result['feasible_configurations']} feasible configurations")
    paths = write_outputs(result, Path(args.out) if args.out else grid_dir / "bench_search")
    print(f"{result['configurations']} configurations; grid: hypervolume "
          f"{result['grid_hypervolume']:.4g} for {result['grid_train_tflops']:.4g} training "
          f"TFLOPs; reference point {[round(v, 4) for v in result['reference']]}")
    print(format_table(result))
    print(f"\n{paths['table']}, {paths['plot']}, {paths['json']}")
    return 0


def _summary(metrics: dict[str, float]) -> str:
    keys = [k for k in ("fid", "kld", "denoise_loss", "train_tflops") if k in metrics]
    return ", ".join(f"{k}={metrics[k]:.4g}" for k in keys)


def _add_sweep_source(parser: argparse.ArgumentParser) -> None:
    """--experiment | --sweep-dir, shared by `frontier` and `report`."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--experiment", help="MLflow experiment of the sweep (default: its name)")
    source.add_argument(
        "--sweep-dir", help="the sweep's output_dir: reads its Parquet files, no server needed"
    )
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (with --experiment)")
    parser.add_argument(
        "--parent-run-id", help="the sweep's parent run, if the experiment holds several sweeps"
    )
    parser.add_argument(
        "--out", help="output folder (default <sweep-dir>/frontier, or runs/<experiment>/frontier)"
    )
    parser.add_argument(
        "--no-log", action="store_true", help="do not log the files on the sweep's MLflow run"
    )


def _frontier_of(args: argparse.Namespace, objectives: tuple[str, ...]) -> Frontier:
    from cl_sweeps.frontier import compute_frontier, load_source
    from cl_sweeps.frontier.build import on_validation

    source = load_source(args.sweep_dir, args.experiment, args.tracking_uri, args.parent_run_id)
    if not source.records:
        raise LookupError(f"no trials found in {source.description}")
    objectives = on_validation(objectives, source)
    frontier = compute_frontier(source, objectives)
    unknown = [name for name in objectives if name not in frontier.trials.column_names]
    if unknown:
        raise LookupError(f"no trial reported {', '.join(unknown)}; see the metric table")
    return frontier


def _out_dir(args: argparse.Namespace) -> Path:
    if args.out:
        return Path(args.out)
    from cl_sweeps.records import SweepLayout

    root = Path(args.sweep_dir) if args.sweep_dir else Path("runs") / args.experiment
    return SweepLayout(root).frontier


def _log_on_parent_run(args: argparse.Namespace, source: SweepSource, paths: list[Path]) -> None:
    """Best effort: the files are written either way; MLflow may be down (that is why
    --sweep-dir exists), so a failure here is a note, not an error."""
    if args.no_log:
        return
    from cl_sweeps.frontier.mlflow_runs import log_frontier_artifacts, sweep_dir_tracking

    try:
        if source.client is not None:
            client, run_id = source.client, source.parent_run_id
        else:
            client, run_id = sweep_dir_tracking(Path(args.sweep_dir), source.resolved)
        log_frontier_artifacts(client, run_id, paths)
        print(f"logged as artifacts frontier/ of MLflow run {run_id}")
    except Exception as error:  # noqa: BLE001 - any tracking failure only skips the upload
        print(f"note: files not logged to MLflow ({error})", file=sys.stderr)


def cmd_frontier(args: argparse.Namespace) -> int:
    from cl_sweeps.frontier import (
        frontier_summary_text,
        frontier_table_text,
        objectives_for,
        write_frontier_outputs,
    )

    try:
        frontier = _frontier_of(args, objectives_for(args.third_objective))
    except (FileNotFoundError, LookupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    paths = write_frontier_outputs(frontier, _out_dir(args))
    if args.all:
        print(frontier_table_text(frontier, all_configs=True))
    else:
        print(frontier_summary_text(frontier))
    if args.seeds_advice:
        from cl_sweeps.frontier.advice import seeds_advice_text

        print(f"\n{seeds_advice_text(frontier)}")
    print("\nfiles:\n" + "\n".join(f"  {p}" for p in paths.values()))
    _log_on_parent_run(args, frontier.source, list(paths.values()))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from cl_sweeps.frontier import DEFAULT_OBJECTIVES, report_markdown, report_table, write_report
    from cl_sweeps.frontier.report import report_selection
    from cl_sweeps.records import base_value

    try:
        frontier = _frontier_of(args, DEFAULT_OBJECTIVES)
    except (FileNotFoundError, LookupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    steps = base_value(frontier.source.resolved, "strategy.teacher_steps")
    if args.paper:
        return _paper_report(args, frontier, steps)
    metrics, select_by = report_selection(frontier.trials)
    report = report_table(frontier.trials, metrics, select_by, default_teacher_steps=steps)
    paths = write_report(report, _out_dir(args), metrics, select_by)
    print(report_markdown(report, metrics, select_by))
    print("files:\n" + "\n".join(f"  {p}" for p in paths.values()))
    _log_on_parent_run(args, frontier.source, list(paths.values()))
    return 0


def _paper_report(args: argparse.Namespace, frontier: Frontier, steps: int | None) -> int:
    """`report --paper`: every (strategy, teacher steps, λ) row, mean ± SEM (frontier/paper.py)."""
    from cl_sweeps.frontier.paper import paper_markdown, paper_table, write_paper_report
    from cl_sweeps.records import SweepLayout, base_value

    table = paper_table(frontier.trials, default_teacher_steps=steps,
                        default_lambda=base_value(frontier.source.resolved, "strategy.lambd"))
    trials_dir = SweepLayout(Path(args.sweep_dir)).trials if args.sweep_dir else None
    paths = write_paper_report(frontier.trials, table, _out_dir(args), trials_dir)
    print(paper_markdown(table))
    print("files:\n" + "\n".join(f"  {p}" for p in paths.values()))
    _log_on_parent_run(args, frontier.source, list(paths.values()))
    return 0


def _checkpoint_config(args: argparse.Namespace) -> TrialConfig:
    """The trial config a checkpoint was trained with: --config FILE, or, for a sweep trial's
    checkpoint (<sweep>/trials/<id>/checkpoints/task_<k>), rebuilt from the sweep's resolved
    config and the trial's params; --set overrides either."""
    from cl_sweeps.config import apply_overrides, parse_trial_config
    from cl_sweeps.records import PARAMS_FILE, RESOLVED_FILE, read_json_mapping, read_yaml_mapping

    if args.config:
        return load_trial_config(args.config, args.set)
    trial_dir = Path(args.checkpoint).resolve().parent.parent
    resolved = read_yaml_mapping(trial_dir.parent.parent / RESOLVED_FILE)
    meta = read_json_mapping(trial_dir / PARAMS_FILE)
    if resolved is None or meta is None:
        raise UsageError(f"{args.checkpoint}: not a sweep trial's checkpoint (no "
                         f"{RESOLVED_FILE} two folders above {trial_dir}); give --config RUN_FILE")
    from cl_sweeps.sweep.space import trial_config_for

    config = trial_config_for(resolved["base"], meta.get("params") or {},
                              list(resolved.get("seed_keys") or ["seed"]), trial_dir)
    return parse_trial_config(apply_overrides(config.model_dump(mode="json"), args.set))


def cmd_fid_vs_steps(args: argparse.Namespace) -> int:
    """FID and generation time per DDIM step count from one checkpoint (the paper's figure)."""
    from cl_sweeps.checkpoint_files import read_meta

    try:
        steps = tuple(int(k) for k in args.steps.split(","))
    except ValueError:
        steps = ()
    if not steps or not all(1 <= k <= 1000 for k in steps):
        raise UsageError(f"--steps {args.steps!r}: allowed: comma-separated integers 1..1000")
    try:
        read_meta(Path(args.checkpoint))
    except (OSError, ValueError) as error:
        raise UsageError(f"{args.checkpoint}: not a task checkpoint ({error})") from None
    config = _checkpoint_config(args)
    from cl_sweeps.evaluation.fid_vs_steps import fid_vs_steps, results_markdown, write_results

    results = fid_vs_steps(config, Path(args.checkpoint), steps, args.n_samples)
    out = Path(args.out) if args.out else Path(args.checkpoint) / "fid_vs_steps"
    paths = write_results(results, out, config.device)
    print(results_markdown(results, config.device))
    print("files:\n" + "\n".join(f"  {p}" for p in paths.values()))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Validate the sweep file in full, then (unless --dry-run) run it on Ray."""
    from cl_sweeps.sweep.schema import load_sweep_raw, parse_sweep_config, sweep_name_from_path

    raw = load_sweep_raw(args.file, args.set)
    sweep = parse_sweep_config(raw, sweep_name_from_path(args.file))
    if args.dry_run:
        import json

        from cl_sweeps.sweep.space import SearchSpace, num_trials

        print(json.dumps(SearchSpace(sweep).describe(), indent=2))
        print(f"valid: {num_trials(sweep)} trials")
        return 0
    from cl_sweeps.sweep.tuner import run_sweep

    return run_sweep(
        sweep, Path(args.file).read_text(), overrides=args.set, resume=args.resume,
        extend=args.extend, address=args.address, verbose=args.verbose,
    )


def cmd_status(args: argparse.Namespace) -> int:
    """The sweep's trials and Pareto set from its records; --watch reprints until it ends."""
    import time

    from cl_sweeps.sweep.status import sweep_status

    while True:
        try:
            text, done = sweep_status(args.sweep_dir)
        except FileNotFoundError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        if args.watch is not None:
            print("\033[2J\033[H" + time.strftime("%H:%M:%S "), end="")
        print(text, flush=True)
        if args.watch is None or done:
            return 0
        try:
            time.sleep(args.watch)
        except KeyboardInterrupt:
            return 0


def _add_status_command(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser(
        "status", help="a sweep's trials (status, task, objectives, elapsed, ETA) and Pareto set"
    )
    status.add_argument("sweep_dir", help="the sweep's output_dir (works while it runs)")
    status.add_argument(
        "--watch", type=float, nargs="?", const=10.0, metavar="SECONDS",
        help="refresh every SECONDS (default 10) until every trial has ended",
    )
    status.set_defaults(handler=cmd_status)


def cmd_sync(args: argparse.Namespace) -> int:
    """Send what a sweep's spools hold and MLflow does not have yet (each step once)."""
    from cl_sweeps.records import SweepLayout
    from cl_sweeps.sweep.tracking import sync_sweep

    root = Path(args.sweep_dir)
    state = SweepLayout(root).state
    if not state.is_file():
        print(f"error: {root} is not a sweep's output_dir (no {state.name})", file=sys.stderr)
        return 2
    if args.rebuild:
        from cl_sweeps.sweep.rebuild import rebuild_tracking

        sent, left, error = rebuild_tracking(root, args.timeout)
    else:
        sent, left, error = sync_sweep(root, args.timeout)
    if left:
        print(f"error: {left} MLflow operations not sent within {args.timeout:g}s "
              f"({error}); {sent} sent; run it again when the server answers", file=sys.stderr)
        return 1
    print(f"MLflow is up to date: {sent} operations sent")
    return 0


def _add_sweep_command(sub: argparse._SubParsersAction) -> None:
    sweep = sub.add_parser(
        "sweep", help="Ray Tune sweep of whole sequences, searched by Optuna, logged to MLflow"
    )
    sweep.add_argument("file", help="sweep file (YAML): base, search, objectives, ...")
    sweep.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a non-search key, e.g. --set num_samples=4 --set base.train.lr=1e-4",
    )
    start = sweep.add_mutually_exclusive_group()
    start.add_argument(
        "--resume", action="store_true",
        help="continue the sweep in output_dir after its driver died (same file, same --set)",
    )
    start.add_argument(
        "--extend", action="store_true",
        help="grow the ended sweep in output_dir after raising num_samples or adding seeds: "
        "only the new (configuration, seed) pairs are trained (docs/growing.md)",
    )
    sweep.add_argument(
        "--address", help="Ray cluster to join (default: RAY_ADDRESS, e.g. inside a Ray job; "
        "else a new local Ray)",
    )
    sweep.add_argument(
        "--dry-run", action="store_true", help="validate and print the resolved search space"
    )
    sweep.add_argument(
        "--verbose", action="store_true",
        help="Ray's full progress output and every log message (default: one line per trial "
        "event and a short status table)",
    )
    sweep.set_defaults(handler=cmd_sweep)
    sync = sub.add_parser(
        "sync", help="send to MLflow what a sweep recorded while the server was unreachable"
    )
    sync.add_argument("sweep_dir", help="the sweep's output_dir")
    sync.add_argument("--timeout", type=float, default=300.0,
                      help="give up after this many seconds (default 300)")
    sync.add_argument(
        "--rebuild", action="store_true",
        help="recreate the sweep's MLflow runs (parent, trials, every step, artifacts) from "
        "its output_dir in an empty or new tracking store (e.g. after mlflow.db was deleted)",
    )
    sync.set_defaults(handler=cmd_sync)


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
    run.add_argument(
        "--dry-run", action="store_true",
        help="validate and print the resolved trial and its tasks; build and read nothing",
    )
    run.set_defaults(handler=cmd_run)
    _add_sweep_command(sub)
    _add_status_command(sub)
    bench = sub.add_parser(
        "bench", help="seconds per training iteration of each strategy vs the FLOP model"
    )
    bench.add_argument("--strategies", nargs="*", help="default: every registered strategy")
    bench.add_argument("--preset", default="tiny", help="model preset (tiny, paper, paper_cifar)")
    bench.add_argument("--image-size", type=int, default=8)
    bench.add_argument("--channels", type=int, default=1)
    bench.add_argument("--batch-size", type=int, default=64)
    bench.add_argument("--teacher-steps", type=int, default=2)
    bench.add_argument("--replay-ratio", type=float, default=1.0)
    bench.add_argument("--iterations", type=int, default=10)
    bench.add_argument("--warmup", type=int, default=2)
    bench.add_argument("--device", default="cpu")
    bench.add_argument(
        "--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
        help="autocast precision, as train.precision (auto: bf16 on capable CUDA, else fp32)",
    )
    bench.add_argument("--compile", action="store_true", help="torch.compile the UNet")
    bench.add_argument(
        "--compile-backend", default="inductor", choices=("inductor", "aot_eager", "eager"),
    )
    bench.add_argument(
        "--compare", nargs="+", metavar="VARIANT",
        help="variants side by side with speed-up ratios, e.g. fp32 bf16 bf16+compile "
        "(replaces --precision/--compile)",
    )
    bench.add_argument(
        "--peak-tflops", type=float,
        help="peak TFLOP/s for the MFU column (default: known GPUs by precision; none on CPU)",
    )
    bench.set_defaults(handler=cmd_bench)
    doctor = sub.add_parser(
        "doctor",
        help="check this node before a sweep: PASS/FAIL/SKIP per check; exit code = FAILs",
    )
    doctor.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    doctor.add_argument("--strategies", default=None,
                        help="comma-separated strategies to run (default: all)")
    doctor.add_argument("--no-bench", action="store_true",
                        help="skip the paper-preset bench on a GPU (its longest check)")
    doctor.set_defaults(handler=cmd_doctor)
    bench_search = sub.add_parser(
        "bench-search",
        help="grid, random, TPE, NSGA-II and MO-ASHA+TPE replayed on a finished grid sweep: "
        "hypervolume versus training TFLOPs spent",
    )
    bench_search.add_argument("--grid-dir", required=True, help="output_dir of a grid sweep "
                              "(e.g. of search_spaces/bench_digits.yaml); several seeds: "
                              "their means, at the cost of all")
    bench_search.add_argument("--repeats", type=int, default=5,
                              help="sampler seeds per searcher (default 5)")
    bench_search.add_argument("--out", help="default: <grid-dir>/bench_search")
    bench_search.add_argument(
        "--extra-dir", action="append", help="a sweep with the same base and seed that ran "
        "part of the grid (e.g. on more workers); its finished trials fill in the grid's")
    bench_search.add_argument(
        "--constraint", action="append", metavar="METRIC<=X|METRIC>=Y",
        help="replay a constrained search: only configurations whose last task keeps every "
        "constraint count (repeatable; e.g. train_tflops<=3)")
    bench_search.add_argument(
        "--warm-start-dir", metavar="DIR", help="a finished grid sweep of the same space at "
        "fewer iterations per task: TPE, NSGA-II and MO-ASHA+TPE also run told its results "
        "first (rows +warm; its own TFLOPs stated apart)")
    bench_search.set_defaults(handler=cmd_bench_search)
    frontier = sub.add_parser(
        "frontier", help="compute–quality Pareto frontier of a sweep: table, plots, artifacts"
    )
    _add_sweep_source(frontier)
    frontier.add_argument(
        "--third-objective", metavar="METRIC", help="a third minimised objective, e.g. kld"
    )
    frontier.add_argument("--all", action="store_true", help="print every configuration")
    frontier.add_argument(
        "--seeds-advice", action="store_true",
        help="also print how many seeds would separate each pair of neighbouring frontier "
        "configurations at the observed spread",
    )
    frontier.set_defaults(handler=cmd_frontier)
    report = sub.add_parser(
        "report", help="paper-style table: strategy × fid_final, kld, forgetting, compute"
    )
    _add_sweep_source(report)
    report.add_argument(
        "--paper", action="store_true",
        help="the paper's table instead: one row per (strategy, teacher steps, λ), mean ± SEM "
        "over seeds, as Markdown, CSV and LaTeX, with per-task FID curves",
    )
    report.set_defaults(handler=cmd_report)
    steps = sub.add_parser(
        "fid-vs-steps", help="FID and generation time for DDIM steps 1..100 from a checkpoint"
    )
    steps.add_argument("checkpoint", help="a task checkpoint: <output_dir>/checkpoints/task_<k>")
    steps.add_argument("--config", help="the run file it was trained with (default: a sweep "
                       "trial's own config, found from the checkpoint's folder)")
    steps.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a trial-config field, e.g. --set device=cuda")
    steps.add_argument("--steps", default="1,2,5,10,20,50,100",
                       help="comma-separated DDIM step counts (default: the paper's)")
    steps.add_argument("--n-samples", type=int, default=None,
                       help="images per step count (default: evaluation.n_eval_samples)")
    steps.add_argument("--out", help="output folder (default <checkpoint>/fid_vs_steps)")
    steps.set_defaults(handler=cmd_fid_vs_steps)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"error: invalid configuration\n{error}", file=sys.stderr)
        return 2
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl+C before a sweep's trials run: nothing to keep
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
