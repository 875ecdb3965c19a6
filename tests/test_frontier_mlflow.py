"""The same sweep read from a real MLflow store (sqlite) and from its Parquet files alone gives
the same table and frontier; outputs are logged on the sweep's parent run; the CLI works on both.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from test_frontier_fakes import (
    EXPECTED_EXCLUDED,
    SWEEP,
    assert_tables_equal,
    log_to_mlflow,
    write_sweep_dir,
)

from cl_sweeps.cli import main
from cl_sweeps.frontier import (
    compute_frontier,
    log_frontier_artifacts,
    read_mlflow,
    read_sweep_dir,
    report,
)
from cl_sweeps.frontier.mlflow_runs import metric_value, parse_param


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Any, str]:
    """A sweep directory with its MLflow store at <dir>/mlflow.db (the contract's default)."""
    root = write_sweep_dir(tmp_path_factory.mktemp("mlflow") / SWEEP)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client, parent = log_to_mlflow(uri, root / "artifacts", resolved=root / "sweep_resolved.yaml")
    return root, uri, client, parent


def test_param_and_metric_values_survive_mlflow_strings() -> None:
    assert [parse_param(t) for t in ("2", "0.75", "True", "None", "[0, 1]", "naive", "1e-4")] \
        == [2, 0.75, True, None, [0, 1], "naive", 1e-4]
    assert metric_value(1.7976931348623157e308) == math.inf
    assert metric_value(-1.7976931348623157e308) == -math.inf


def test_mlflow_and_parquet_give_the_same_table_and_frontier(sweep) -> None:
    root, uri, _, parent = sweep
    from_dir = compute_frontier(read_sweep_dir(root))
    source = read_mlflow(SWEEP, tracking_uri=uri)
    assert source.parent_run_id == parent
    assert source.resolved is not None and source.resolved["name"] == SWEEP
    from_mlflow = compute_frontier(source)
    assert_tables_equal(from_mlflow.trials, from_dir.trials)
    assert_tables_equal(from_mlflow.configs, from_dir.configs)
    assert from_mlflow.excluded == from_dir.excluded == EXPECTED_EXCLUDED
    inf_row = {r["trial_id"]: r for r in from_mlflow.trials.to_pylist()}["t20"]
    assert inf_row["fid_final"] == math.inf  # not MLflow's max-float stand-in


def test_log_frontier_artifacts_on_parent_run(sweep, tmp_path: Path) -> None:
    _, _, client, parent = sweep
    files = [tmp_path / "a.txt", tmp_path / "b.png"]
    for f in files:
        f.write_text("x")
    log_frontier_artifacts(client, parent, files, artifact_path="check")
    assert {a.path for a in client.list_artifacts(parent, "check")} == {"check/a.txt", "check/b.png"}


def test_cli_frontier_from_sweep_dir_logs_on_parent_run(sweep, capsys) -> None:
    root, _, client, parent = sweep
    assert main(["frontier", "--sweep-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "4 of 8 configurations" in out and "logged as artifacts" in out
    names = {a.path for a in client.list_artifacts(parent, "frontier")}
    assert {"frontier/frontier.png", "frontier/frontier.html", "frontier/trials.parquet",
            "frontier/frontier.parquet", "frontier/frontier_per_task.png"} <= names
    assert (root / "frontier" / "summary.json").stat().st_size > 0


def test_cli_frontier_and_report_from_mlflow(sweep, tmp_path: Path, capsys, monkeypatch) -> None:
    _, uri, _, _ = sweep
    # the registry lookup imports torch (seconds); test_report checks it once
    monkeypatch.setattr(report, "reads_teacher_steps", lambda name: "generative" in name)
    args = ["--experiment", SWEEP, "--tracking-uri", uri, "--out", str(tmp_path), "--no-log"]
    assert main(["frontier", *args, "--third-objective", "kld"]) == 0
    assert "(train_tflops, fid_final, kld)" in capsys.readouterr().out
    assert main(["report", *args]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| strategy | teacher steps |")
    assert (tmp_path / "report.md").read_text().startswith("| strategy")
    assert (tmp_path / "report.csv").stat().st_size > 0


def test_cli_errors_are_messages(tmp_path: Path, capsys) -> None:
    assert main(["frontier", "--sweep-dir", str(tmp_path / "nope")]) == 1
    assert "output_dir" in capsys.readouterr().err
    root = write_sweep_dir(tmp_path / "sweep")
    assert main(["frontier", "--sweep-dir", str(root), "--third-objective", "kdl"]) == 1
    assert "no trial reported kdl" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["frontier"])  # one of --experiment / --sweep-dir is required


def test_sweep_end_summary_logs_hypervolume_on_parent_run(sweep) -> None:
    import json

    from cl_sweeps.frontier import sweep_end_summary

    root, _, client, parent = sweep
    sweep_end_summary(root, client, parent)
    summary = json.loads((root / "frontier" / "summary.json").read_text())
    logged = client.get_run(parent).data.metrics["sweep/hypervolume"]
    assert logged == summary["hypervolume"] > 0
