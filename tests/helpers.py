"""Test scaffolding: the small trial config, tiny sweep files and real processes.

Everything here starts real components (cl-sweeps, mlflow server, a Ray head) as child processes
in their own session, so that a test can always stop exactly what it started, by process group.
"""

from __future__ import annotations

import copy
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

# The one small trial of the tests: seconds on one CPU (the engine, CLI and sweep tests use it).
SMALL_TRIAL: dict[str, Any] = {
    "seed": 3,
    "device": "cpu",
    "data": {
        "dataset": "digits",
        "tasks": [[0, 1], [2, 3], [4, 5]],
        "max_train_per_class": 40,
        "max_test_per_class": 12,
    },
    "strategy": {"name": "naive"},
    "train": {"iterations_per_task": 4, "batch_size": 16},
    "evaluation": {
        "n_eval_samples": 40,
        "eval_steps": 2,
        "denoise_eval_per_task": 16,
        "classifier_epochs": 2,
        "sample_grid_size": 16,
    },
}
TINY_TASKS = len(SMALL_TRIAL["data"]["tasks"])


def tiny_sweep(name: str, output_dir: Path, **keys: Any) -> dict[str, Any]:
    """A sweep over GR/GD on 3 tiny tasks: seconds per trial on one CPU."""
    sweep = {
        "name": name,
        "output_dir": str(output_dir),
        "base": copy.deepcopy(SMALL_TRIAL),
        "search": {
            "strategy.name": ["generative_replay", "generative_distillation"],
            "strategy.teacher_steps": {"type": "int", "low": 1, "high": 3},
            "strategy.replay_ratio": {"type": "float", "low": 0.5, "high": 1.0},
        },
        "objectives": {"fid_final": "min", "train_tflops": "min"},
        "num_samples": 2,
        "resources_per_trial": {"cpu": 1},
        "search_algorithm": {"name": "optuna", "seed": 0},
    }
    sweep.update(keys)
    return sweep


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(cache_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a child process: no ambient Ray cluster or MLflow server, a private
    Ray token (so Ray never writes ~/.ray/auth_token), the venv's scripts on PATH."""
    env = dict(os.environ)
    for key in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "CL_SWEEPS_CRASH_AT_TASK",
                "CL_SWEEPS_KILL_AT", "RAY_AUTH_MODE"):
        env.pop(key, None)
    env.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["CL_SWEEPS_CACHE"] = str(cache_dir)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def stop_group(process: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


@contextmanager
def background(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A long-running child in its own session, stopped (whole group) on exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            stop_group(process)


def run(
    command: list[str], env: dict[str, str], log: Path, timeout_s: float, cwd: Path | None = None
) -> tuple[int, str]:
    """Run a child to completion in its own session (killed as a group on timeout)."""
    with background(command, env, log) as process:
        try:
            code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            code = -1
    return code, log.read_text()


def wait_until(check, timeout_s: float, what: str, interval_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def mlflow_server(root: Path, env: dict[str, str], port: int | None = None) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 with a SQLite backend; yields its URI. Started
    again with the same root and port, it serves the same runs (an outage, for tests)."""
    port = port or free_port()
    command = [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
        "--artifacts-destination", str(root / "server-artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]
    log = root / f"mlflow-server-{time.monotonic_ns()}.log"
    # no GenAI job runner (huey consumers): nothing here uses it, and it slows every start
    env = {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with background(command, env, log) as process:
        uri = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: process.poll() is not None or http_ok(f"{uri}/health"), 120, "mlflow server"
        )
        if process.poll() is not None:
            raise RuntimeError(log.read_text()[-3000:])
        yield uri


def events(trial_dir: Path) -> list[dict]:
    """A trial's events.jsonl (attempts, tasks trained): the evidence of what a resume redid."""
    from cl_sweeps.records import read_events

    return read_events(trial_dir).records  # a line torn by a killed trial is skipped
