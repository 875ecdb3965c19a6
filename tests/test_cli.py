"""`cl-sweeps run` end to end on the embedded data, as a user runs it."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import yaml
from helpers import SMALL_TRIAL


def _run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cl_sweeps.cli", *args],
        check=False, capture_output=True, text=True, cwd=cwd, timeout=600,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )


def test_run_writes_per_task_metrics_as_jsonl_and_parquet(tmp_path):
    run_file = tmp_path / "run.yaml"
    out = tmp_path / "out"
    run_file.write_text(yaml.safe_dump({"base": {**SMALL_TRIAL, "output_dir": str(out)}}))
    result = _run_cli("run", str(run_file), "--set", "strategy.name=er", "--no-progress")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["task"] for row in rows] == [0, 1, 2]
    table = pq.read_table(out / "metrics.parquet")
    assert table.num_rows == 3
    assert {"fid", "kld", "train_tflops", "denoise_loss_task_2"} <= set(table.column_names)
    assert table.column("fid").to_pylist() == [row["fid"] for row in rows]
    assert "task" in result.stdout and "fid" in result.stdout  # the per-task table
    assert (out / "samples" / "task_2.png").stat().st_size > 0
    assert (out / "checkpoints" / "task_2" / "unet" / "config.json").is_file()
    # the class histograms the KLD compared, kept for the paper report's plots
    from cl_sweeps.evaluation.distribution import kld
    from cl_sweeps.results import read_class_histograms

    hist = read_class_histograms(out, 2)
    assert hist is not None and sum(hist["generated"]) == pytest.approx(1.0)
    assert kld(torch.tensor(hist["true"]), torch.tensor(hist["generated"])) == pytest.approx(
        rows[2]["kld"])
    # the paper's cost figure from this run's last checkpoint, at a tiny size
    from cl_sweeps.cli import main

    figure = tmp_path / "steps"
    assert main(["fid-vs-steps", str(out / "checkpoints" / "task_2"), "--config", str(run_file),
                 "--steps", "1,2,5", "--n-samples", "12", "--out", str(figure)]) == 0
    points = json.loads((figure / "fid_vs_steps.json").read_text())["results"]
    assert [p["steps"] for p in points] == [1, 2, 5]
    assert [p["unet_forwards"] for p in points] == [12, 24, 60]  # steps x images
    assert all(p["seconds"] > 0 and math.isfinite(p["fid"]) for p in points)
    assert {"fid_vs_steps.md", "fid_vs_steps.png"} <= {f.name for f in figure.iterdir()}


def test_run_resume_continues_after_the_last_checkpoint(tmp_path):
    run_file = tmp_path / "run.yaml"
    out = tmp_path / "out"
    run_file.write_text(yaml.safe_dump({"base": {**SMALL_TRIAL, "output_dir": str(out)}}))
    assert _run_cli("run", str(run_file), "--no-progress").returncode == 0
    again = _run_cli("run", str(run_file), "--resume", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert "resuming from" in again.stdout
    assert "task 0 done" not in again.stdout  # nothing was retrained
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 3


def test_bad_config_fails_before_training_with_field_named_message(tmp_path):
    run_file = tmp_path / "run.yaml"
    run_file.write_text("base:\n  strategy:\n    name: magic\n  output_dir: " + str(tmp_path / "o"))
    result = _run_cli("run", str(run_file))
    assert result.returncode == 2
    assert "base.strategy.name" in result.stderr and "'magic'" in result.stderr
    assert not (tmp_path / "o").exists()


def test_dry_runs_validate_without_heavy_imports() -> None:
    """`run --dry-run` and `sweep --dry-run` validate in full and load no torch, Ray, MLflow,
    Optuna, pyarrow or numpy (so they answer at once)."""
    quickstart = str(Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart.yaml")
    code = (
        "import sys\n"
        "from cl_sweeps.cli import main\n"
        f"assert main(['run', {quickstart!r}, '--dry-run']) == 0\n"
        f"assert main(['sweep', {quickstart!r}, '--dry-run']) == 0\n"
        "heavy = ('torch', 'diffusers', 'ray', 'mlflow', 'optuna', 'pyarrow', 'numpy')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "valid: 1 run" in out.stdout and " trials\n" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"
