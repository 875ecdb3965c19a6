"""One real tiny sweep, grown and reused: `--extend` after raising num_samples and adding a seed
trains only the new (configuration, seed) pairs (counted from events.jsonl) into the same
records, Optuna study and MLflow parent run, even when its driver dies and `--resume` continues
it; a warm start from it trains nothing for what it has; a changed base key is refused (exit 2)
before any compute, by --extend and by warm_start."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import optuna
import pytest
from helpers import TINY_TASKS, child_env, events, run, tiny_sweep, write_yaml

from cl_sweeps import records
from cl_sweeps.sweep.signals import KILL_ENV

CLI = str(Path(sys.executable).parent / "cl-sweeps")
LR = {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}


def trained(layout: records.SweepLayout) -> dict[str, int]:
    """Trial id -> tasks it trained (events.jsonl), for every trial folder."""
    return {d.name: sum(1 for e in events(d) if e["event"] == "task_trained")
            for d in sorted(layout.trials.iterdir())}


def pairs(layout: records.SweepLayout) -> set[tuple[str, int]]:
    return {(t.config_key, t.seed) for t in records.read_trials(layout.trials)}


def study_params(out: Path, name: str) -> list[dict]:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'optuna.db'}")
    return [t.params for t in study.get_trials(states=[optuna.trial.TrialState.COMPLETE])]


@pytest.mark.e2e
def test_extend_then_warm_start_train_only_what_is_new(tmp_path: Path) -> None:
    env = child_env(tmp_path / "cache")
    out = tmp_path / "grown"
    sweep = tiny_sweep("grown", out, search={"train.lr": LR}, num_samples=2, seeds=[3],
                       max_concurrent_trials=2)
    sweep["base"]["strategy"] = {"name": "naive"}
    path = write_yaml(tmp_path / "grown.yaml", sweep)
    code, log = run([CLI, "sweep", str(path)], env, tmp_path / "first.log", timeout_s=600)
    assert code == 0, log[-5000:]
    layout = records.SweepLayout(out)
    first = trained(layout)
    assert len(first) == 2 and all(first.values())
    parent = json.loads(layout.state.read_text())["parent_run_id"]
    old_study = study_params(out, "grown")

    grown = {**sweep, "num_samples": 3, "seeds": [3, 4]}
    write_yaml(path, grown)
    # the extended sweep's driver and its Ray die right after a new trial saved its first task
    code, log = run([CLI, "sweep", str(path), "--extend"], {**env, KILL_ENV: "task_saved"},
                    tmp_path / "extend.log", timeout_s=600)
    assert code == -signal.SIGKILL, log[-5000:]
    assert {k: v for k, v in trained(layout).items() if k in first} == first
    code, log = run([CLI, "sweep", str(path), "--resume"], env, tmp_path / "resume.log",
                    timeout_s=600)
    assert code == 0, log[-5000:]
    after = trained(layout)
    assert {k: after[k] for k in first} == first  # the old trials trained nothing more
    new = {k: v for k, v in after.items() if k not in first}
    # seed 4 of the old two, both seeds of the third; each task once, the killed one included
    assert len(new) == 2 + 2 and set(new.values()) == {TINY_TASKS}, new
    assert len(pairs(layout)) == 6 and len({k for k, _ in pairs(layout)}) == 3
    assert json.loads(layout.state.read_text())["parent_run_id"] == parent
    told = study_params(out, "grown")  # a repeat proposal is told what it had: same params
    assert told[:2] == old_study and len({t["train.lr"] for t in told}) == 3
    summary = json.loads((layout.frontier / "summary.json").read_text())
    assert (summary["trials"], summary["configurations"]) == (6, 3)

    warm_out = tmp_path / "warm"
    warm = {**grown, "name": "warm", "output_dir": str(warm_out), "warm_start": str(out)}
    warm_path = write_yaml(tmp_path / "warm.yaml", warm)
    code, log = run([CLI, "sweep", str(warm_path)], env, tmp_path / "warm.log", timeout_s=600)
    assert code == 0, log[-5000:]
    warm_layout = records.SweepLayout(warm_out)
    assert "warm start: 6 trials imported, not trained again" in log
    assert not any(trained(warm_layout).values())  # nothing trained
    assert pairs(warm_layout) == pairs(layout)
    assert len(study_params(warm_out, "warm")) == 3  # Optuna was told the known configurations
    assert not (warm_out / "ray" / "warm").exists()  # no Tune experiment: Ray never started
    best = json.loads(warm_layout.best.read_text())
    assert best["warm_start"]["trials"] == 6

    changed = {**grown, "base": {**grown["base"], "train": {"iterations_per_task": 5,
                                                            "batch_size": 16}}}
    write_yaml(path, changed)
    code, log = run([CLI, "sweep", str(path), "--extend"], env, tmp_path / "refused.log",
                    timeout_s=300)
    assert code == 2 and "base.train.iterations_per_task: 4 -> 5" in log, log[-3000:]
    assert "Traceback" not in log and trained(layout) == after
    refused = {**changed, "name": "warm2", "output_dir": str(tmp_path / "warm2"),
               "warm_start": str(out)}
    code, log = run([CLI, "sweep", str(write_yaml(tmp_path / "warm2.yaml", refused))], env,
                    tmp_path / "refused2.log", timeout_s=300)
    assert code == 2 and "base.train.iterations_per_task = 4, this sweep has 5" in log, log
    assert not (tmp_path / "warm2" / "trials").exists()
