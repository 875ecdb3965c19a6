"""Hostile conditions, unit by unit: secrets in URIs (one redaction rule, credentials moved out
of the tracking URI), one driver per sweep (the lock), SIGTERM as a stop signal."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest

from cl_sweeps.credentials import redact_uri, split_credentials, uri_has_secret
from cl_sweeps.errors import UsageError
from cl_sweeps.records import SweepLayout
from cl_sweeps.sweep.driver_lock import hold_driver_lock
from cl_sweeps.sweep.heartbeat import write_beat
from cl_sweeps.sweep.signals import StopSignals

SECRET = "hunter2-s3cr3t"


@pytest.mark.parametrize("uri", [
    f"http://{SECRET}@mlflow.internal:5000",  # a token as the user name
    f"https://me:{SECRET}@mlflow.internal",
    f"postgresql://me:{SECRET}@db/optuna",
    f"http://mlflow:5000/?access_token={SECRET}",
    f"http://{SECRET}@[::1",  # malformed
])
def test_every_secret_is_redacted(uri: str) -> None:
    assert uri_has_secret(uri)
    assert SECRET not in redact_uri(uri)


def test_an_account_name_is_no_secret_and_a_token_user_is() -> None:
    assert not uri_has_secret("postgresql://optuna@db:5432/optuna")
    assert redact_uri("postgresql://optuna@db:5432/optuna") == "postgresql://optuna@db:5432/optuna"
    assert redact_uri(f"postgresql://optuna:{SECRET}@db/x") == "postgresql://optuna:***@db/x"
    assert redact_uri(f"https://{SECRET}@host/x") == "https://***@host/x"
    assert redact_uri(f"https://me:{SECRET}@host/x") == "https://***@host/x"


def test_credentials_split_from_the_uri() -> None:
    assert split_credentials(f"https://me%40corp:{SECRET}@host:5000/p") == (
        "https://host:5000/p", "me@corp", SECRET)
    assert split_credentials("http://host:5000") == ("http://host:5000", None, None)


def test_tracking_credentials_move_into_mlflows_variables(monkeypatch) -> None:
    from cl_sweeps.sweep.tracking import move_tracking_credentials

    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://me:{SECRET}@127.0.0.1:5000")
    move_tracking_credentials()
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "me"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == SECRET


def test_a_tracking_uri_from_the_environment_is_checked_before_compute(monkeypatch) -> None:
    from cl_sweeps.config import ConfigError
    from cl_sweeps.sweep.schema import parse_sweep_config
    from cl_sweeps.sweep.tuner import check_tracking_environment

    sweep = parse_sweep_config({"name": "x"})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "ftp://host/x")
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_URI: unsupported scheme 'ftp'"):
        check_tracking_environment(sweep)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"https://me:{SECRET}@host")  # allowed here
    check_tracking_environment(sweep)


def test_a_second_driver_is_refused_with_the_first_ones_host_and_pid(tmp_path: Path) -> None:
    layout = SweepLayout(tmp_path / "sweep")
    first = hold_driver_lock(layout)
    write_beat(layout, 0.0)
    with pytest.raises(UsageError) as error:
        hold_driver_lock(layout)
    assert f"host {socket.gethostname()}, pid {os.getpid()}" in str(error.value)
    assert "in use by another driver" in str(error.value)
    first.release()  # as the operating system does when the first driver dies
    hold_driver_lock(layout).release()
    assert json.loads(layout.driver.read_text())["pid"] == os.getpid()


def test_sigterm_before_the_tuner_runs_exits_143() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    stop = StopSignals()
    try:
        stop.install()
        with pytest.raises(SystemExit) as exit_:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0)  # let the handler run here
        assert exit_.value.code == 143 and stop.exit_code(130) == 143
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_sigterm_while_the_tuner_runs_is_tunes_sigint() -> None:
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    seen: list[int] = []
    stop = StopSignals()
    try:
        signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
        stop.install()
        stop.graceful = True
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0)
        assert seen == [signal.SIGINT] and stop.exit_code(0) == 143
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    assert StopSignals().exit_code(7) == 7


def test_a_checkpoint_tune_deleted_is_dropped_before_tune_restores_it(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from ray import tune

    from cl_sweeps.sweep.callbacks import OwnCheckpointFallback

    def trial_with(directory: Path) -> SimpleNamespace:
        result = SimpleNamespace(checkpoint=tune.Checkpoint.from_directory(str(directory)))
        manager = SimpleNamespace(_latest_checkpoint_result=result, _checkpoint_results=[result])
        return SimpleNamespace(trial_id="t1", latest_checkpoint_result=result,
                               run_metadata=SimpleNamespace(checkpoint_manager=manager),
                               _restore_checkpoint_result=None)

    kept = tmp_path / "checkpoint_000001"
    kept.mkdir()
    intact = trial_with(kept)
    OwnCheckpointFallback().on_trial_start(0, [], intact)
    assert intact.run_metadata.checkpoint_manager._latest_checkpoint_result is not None
    gone = trial_with(tmp_path / "checkpoint_000000")  # deleted by Tune, still named
    OwnCheckpointFallback().on_trial_start(0, [], gone)
    assert gone.run_metadata.checkpoint_manager._latest_checkpoint_result is None
    assert gone.run_metadata.checkpoint_manager._checkpoint_results == []


def test_a_corrupt_study_database_is_one_line(tmp_path: Path) -> None:
    from cl_sweeps.sweep.output_dir import check_optuna_study
    from cl_sweeps.sweep.schema import parse_sweep_config

    db = tmp_path / "optuna.db"
    db.write_bytes(b"\x00garbage" * 500)
    sweep = parse_sweep_config({"name": "x", "optuna_storage": f"sqlite:///{db}"})
    for resume in (False, True):
        with pytest.raises(UsageError) as error:
            check_optuna_study(sweep, resume=resume)
        message = str(error.value)
        assert message.startswith(f"optuna_storage: the database sqlite:///{db} cannot be used")
        assert "file is not a database" in message and "move it aside" in message
        assert "\n" not in message


def test_the_heartbeat_beats_from_tunes_loop(tmp_path: Path) -> None:
    from ray import tune

    from cl_sweeps.sweep.callbacks import DriverHeartbeat

    assert DriverHeartbeat.on_step_end is not tune.Callback.on_step_end  # a hook Tune calls
    layout = SweepLayout(tmp_path)
    DriverHeartbeat(layout, started=1.0).on_step_end(iteration=1, trials=[])
    beat = json.loads(layout.driver.read_text())
    assert beat["started"] == 1.0 and not beat["ended"]


def test_a_checkpoint_whose_record_is_truncated_is_set_aside(tmp_path: Path, caplog) -> None:
    from cl_sweeps.checkpoint_files import (
        META_FILE,
        CorruptCheckpoint,
        latest_checkpoint,
        read_meta,
        task_checkpoint_dir,
    )

    for task in (0, 1):
        directory = task_checkpoint_dir(tmp_path, task)
        directory.mkdir(parents=True)
        (directory / META_FILE).write_text(json.dumps({"task_index": task, "history": []}))
    broken = task_checkpoint_dir(tmp_path, 1) / META_FILE
    broken.write_text(broken.read_text()[:12])  # truncated
    with pytest.raises(CorruptCheckpoint, match=str(broken)):
        read_meta(broken.parent)
    assert latest_checkpoint(tmp_path) == task_checkpoint_dir(tmp_path, 0)
    assert str(broken) in caplog.text and "set aside" in caplog.text
    assert [p.name.split(".")[0] for p in (tmp_path / "checkpoints").glob("task_1.corrupt-*")] \
        == ["task_1"]  # kept, not deleted


def test_a_tune_checkpoint_whose_record_is_truncated_is_not_used(tmp_path: Path) -> None:
    from cl_sweeps.checkpoint_files import META_FILE
    from cl_sweeps.sweep.trainable import readable_or_none

    tune_checkpoint = tmp_path / "checkpoint_000002"
    tune_checkpoint.mkdir()
    (tune_checkpoint / META_FILE).write_text('{"task_index": 2, "hist')
    assert readable_or_none(tune_checkpoint) is None and readable_or_none(None) is None
    (tune_checkpoint / META_FILE).write_text('{"task_index": 2, "history": []}')
    assert readable_or_none(tune_checkpoint) == tune_checkpoint


def test_a_fresh_start_that_fails_takes_back_its_files(tmp_path: Path) -> None:
    from cl_sweeps.sweep.output_dir import refuse_existing_sweep, undone_if_failed

    layout = SweepLayout(tmp_path / "out")
    lock = hold_driver_lock(layout)
    for fresh in (False, True):
        for path in (layout.state, layout.sweep_file, layout.ray / "x" / "y"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}")
        with pytest.raises(UsageError), undone_if_failed(layout, fresh=fresh):
            raise UsageError("the tracking server did not answer")
        assert layout.state.is_file() is not fresh  # --resume keeps the sweep's files
    assert [p.name for p in layout.root.iterdir()] == [layout.lock.name]
    refuse_existing_sweep(layout)  # starting again is allowed
    lock.release()


def test_a_tracking_store_error_names_where_the_uri_came_from() -> None:
    from cl_sweeps.sweep.tuner import tracking_field

    assert tracking_field("MLFLOW_TRACKING_URI") == "MLFLOW_TRACKING_URI"
    assert tracking_field("sweep file") == tracking_field("default (SQLite in output_dir)") \
        == "mlflow.tracking_uri"


def test_a_kill_point_kills_the_drivers_group_and_the_worker(tmp_path: Path) -> None:
    import subprocess
    import sys

    from cl_sweeps.sweep.signals import KILL_ENV

    driver = subprocess.Popen(["sleep", "60"], start_new_session=True)  # the driver's group
    beat = tmp_path / "driver.json"
    beat.write_text(json.dumps({"pid": driver.pid}))
    code = ("import sys; from pathlib import Path; from cl_sweeps.sweep.signals import kill_point;"
            "kill_point('experiment_end', Path(sys.argv[1])); kill_point('task_saved', "
            "Path(sys.argv[1])); print('alive')")
    worker = subprocess.run([sys.executable, "-c", code, str(beat)], start_new_session=True,
                            env={**os.environ, KILL_ENV: "task_saved"}, capture_output=True,
                            text=True, timeout=60, check=False)
    assert worker.returncode == -signal.SIGKILL and "alive" not in worker.stdout, worker.stderr
    assert driver.wait(timeout=10) == -signal.SIGKILL
