"""--resume over a searcher state an earlier release saved: what it lacks is rebuilt from the
sweep's resolved config, or the resume is refused before any compute with the release that
wrote it and what to do (exit 2, one line)."""

from __future__ import annotations

import json
import pickle
import signal
from pathlib import Path

import pytest
from helpers import TINY_TASKS, tiny_sweep, write_yaml

from cl_sweeps import __version__
from cl_sweeps.errors import UsageError
from cl_sweeps.records import SweepLayout
from cl_sweeps.sweep.heartbeat import write_beat
from cl_sweeps.sweep.output_dir import prepare_output
from cl_sweeps.sweep.paths import base_directory, with_absolute_paths
from cl_sweeps.sweep.plan import SweepPlan
from cl_sweeps.sweep.schema import parse_sweep_config
from cl_sweeps.sweep.searcher import SeedReplicator, build_searcher
from cl_sweeps.sweep.searcher_state import STATE_KEYS, check_saved_searcher
from cl_sweeps.sweep.tuner import experiment_path


def absolute_sweep(tmp_path: Path, **keys):
    data = tiny_sweep("older", tmp_path / "sweep", objectives=["fid_final"], **keys)
    return with_absolute_paths(parse_sweep_config(data), base_directory())


def old_state(searcher: SeedReplicator) -> dict:
    """The state as releases before the SweepPlan saved it (base and seed keys, no plan)."""
    state = searcher.get_state()
    plan = state.pop("plan")
    state.pop("release")
    return {**state, "base": plan.base, "seed_keys": list(plan.seed_keys)}


def finished(fid: float) -> dict:
    return {"task": TINY_TASKS - 1, "fid": fid, "fid_final": fid, "train_tflops": 1.0}


def test_a_state_saved_without_the_plan_is_rebuilt_from_the_resolved_sweep(
    tmp_path: Path,
) -> None:
    sweep = absolute_sweep(tmp_path)
    layout = SweepLayout(Path(sweep.output_dir))
    prepare_output(layout, sweep, SweepPlan(sweep).space, "", [], resume=False)
    searcher = build_searcher(SweepPlan(sweep))
    searcher.suggest("x")
    (tmp_path / "state.pkl").write_bytes(pickle.dumps(old_state(searcher)))

    restored = build_searcher(SweepPlan(sweep))  # Tune: set_state from searcher-state-*.pkl
    restored.restore(str(tmp_path / "state.pkl"))
    assert "base" not in restored.__dict__ and restored.release == __version__
    restored.on_trial_complete("x", finished(3.0))
    assert restored.inner._ot_study.best_value == pytest.approx(3.0)

    unpickled = object.__new__(SeedReplicator)  # Tune: the searcher object in tuner.pkl
    unpickled.__dict__.update(old_state(searcher))
    unpickled = pickle.loads(pickle.dumps(unpickled))
    assert unpickled.plan.tasks_of({**unpickled._groups["config_00000"].fields, "seed": 0}) \
        == TINY_TASKS


def test_a_state_that_cannot_be_rebuilt_is_refused_naming_the_release(tmp_path: Path) -> None:
    sweep = absolute_sweep(tmp_path)
    layout = SweepLayout(Path(sweep.output_dir))
    layout.root.mkdir(parents=True)
    searcher = build_searcher(SweepPlan(sweep))
    path = tmp_path / "state.pkl"
    path.write_bytes(pickle.dumps(old_state(searcher)))  # and no resolved config to rebuild from
    with pytest.raises(UsageError) as refused:
        build_searcher(SweepPlan(sweep)).restore(str(path))
    message = str(refused.value)
    assert "written by an earlier cl-sweeps release (one that did not record its release)" \
        in message
    assert "lacks plan" in message and "warm_start" in message and str(layout.root) in message

    layout.state.write_text(json.dumps({"release": "0.0.9"}))
    with pytest.raises(UsageError, match="written by cl-sweeps 0.0.9 and lacks plan"):
        build_searcher(SweepPlan(sweep)).restore(str(path))


def test_state_keys_name_what_the_searcher_saves() -> None:
    sweep = parse_sweep_config(tiny_sweep("keys", Path("/tmp/keys")))
    saved = set(build_searcher(SweepPlan(sweep)).get_state())
    assert set(STATE_KEYS) == saved - {"_metric", "_mode", "_session_start", "release"}


def test_check_saved_searcher_reads_the_newest_state(tmp_path: Path) -> None:
    check_saved_searcher(str(tmp_path))  # no saved state: nothing to check
    (tmp_path / "searcher-state-2024-01-01.pkl").write_bytes(pickle.dumps({"inner": None}))
    (tmp_path / "searcher-state-2025-01-01.pkl").write_bytes(b"not a pickle")
    with pytest.raises(UsageError, match="searcher-state-2025-01-01.pkl cannot be read"):
        check_saved_searcher(str(tmp_path))


def test_resume_of_a_state_lacking_an_attribute_stops_before_any_compute(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """The driver checks the saved state before MLflow or Ray start (exit 2, one line)."""
    from cl_sweeps.cli import main

    file = write_yaml(tmp_path / "older.yaml", tiny_sweep(
        "older", tmp_path / "sweep", objectives=["fid_final"]))
    monkeypatch.chdir(tmp_path)
    sweep = absolute_sweep(tmp_path)
    layout = SweepLayout(Path(sweep.output_dir))
    prepare_output(layout, sweep, SweepPlan(sweep).space, file.read_text(), [], resume=False)
    state = old_state(build_searcher(SweepPlan(sweep)))
    del state["_prior"]  # a release before known configurations were held
    experiment = Path(experiment_path(sweep))
    experiment.mkdir(parents=True)
    (experiment / "searcher-state-2024-01-01_00-00-00.pkl").write_bytes(pickle.dumps(state))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert main(["sweep", str(file), "--resume"]) == 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --resume: the saved Ray Tune searcher state was written by")
    assert "lacks _prior" in err and "\n" not in err
    assert not (layout.root / "trials").exists() and not layout.mlflow_db.exists()


def test_the_sweep_state_and_driver_files_name_the_release(tmp_path: Path) -> None:
    sweep = absolute_sweep(tmp_path)
    layout = SweepLayout(Path(sweep.output_dir))
    state = prepare_output(layout, sweep, SweepPlan(sweep).space, "", [], resume=False)
    write_beat(layout, 0.0)
    assert state["release"] == json.loads(layout.state.read_text())["release"] == __version__
    assert json.loads(layout.driver.read_text())["release"] == __version__

