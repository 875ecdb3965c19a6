"""The sweep -> frontier/report hand-off on a real sweep: `cl-sweeps sweep` with a `--set` that
changes the number of tasks, then `cl-sweeps frontier` and `cl-sweeps report` on its output
directory. They read the resolved sweep config the sweep saved, so they see the same complete
trials and the same Pareto set the sweep printed at its end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from helpers import child_env, run, tiny_sweep, write_yaml

from cl_sweeps import records

CLI = str(Path(sys.executable).parent / "cl-sweeps")


def test_frontier_and_report_agree_with_the_sweep_after_set(tmp_path: Path) -> None:
    env = child_env(tmp_path / "cache")
    out = tmp_path / "out"
    sweep = tiny_sweep("handoff", out, num_samples=2)
    sweep["base"]["data"].pop("tasks")
    sweep["base"]["data"]["num_tasks"] = 5  # the file says 5; --set makes it 2
    path = write_yaml(tmp_path / "handoff.yaml", sweep)
    code, log = run(
        [CLI, "sweep", str(path), "--set", "base.data.num_tasks=2"], env,
        tmp_path / "sweep.log", timeout_s=900,
    )
    assert code == 0, log[-5000:]

    layout = records.SweepLayout(out)
    resolved = records.read_yaml_mapping(layout.resolved)
    assert resolved is not None and resolved["base"]["data"]["num_tasks"] == 2
    trials = records.read_trials(layout.trials)
    assert len(trials) == 2 and all(t.num_tasks == 2 for t in trials)
    finished = [t for t in trials if t.status == records.COMPLETED]
    assert finished and all(t.tasks_done == 2 for t in finished)
    best = json.loads(layout.best.read_text(), parse_constant=lambda c: 1 / 0)
    printed = {c["config_key"] for c in best["configurations"]}
    assert printed, log[-3000:]

    code, text = run([CLI, "frontier", "--sweep-dir", str(out), "--out", str(tmp_path / "f"),
                      "--no-log"], env, tmp_path / "frontier.log", timeout_s=300)
    assert code == 0, text[-3000:]
    summary = json.loads((tmp_path / "f" / "summary.json").read_text())
    assert set(summary["pareto_config_keys"]) == printed
    assert summary["configurations"] == len(finished)  # every finished trial counted
    on_front = f"{len(printed)} of {summary['configurations']} configurations on the Pareto"
    assert on_front in log and on_front in text

    code, text = run([CLI, "report", "--sweep-dir", str(out), "--out", str(tmp_path / "r"),
                      "--no-log"], env, tmp_path / "report.log", timeout_s=300)
    assert code == 0, text[-3000:]
    strategies = {t.params["strategy.name"] for t in finished}
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert {row.split("|")[1].strip() for row in rows[1:]} == strategies
