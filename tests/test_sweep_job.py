"""`ray job submit` of a small sweep to a local Ray head started here (token authentication on,
as Ray 2.60 clusters have it), the repository uploaded with --working-dir; the sweep's runs
appear in MLflow."""

from __future__ import annotations

import secrets
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import (
    background,
    child_env,
    free_port,
    run,
    tiny_sweep,
    wait_until,
    write_yaml,
)
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.e2e  # real Ray, servers or sweeps

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def head_command(temp_dir: Path, dashboard: int) -> list[str]:
    """A one-node head on free ports (other Ray instances may run on this machine), its own
    temp dir (short: Ray's Unix sockets live there), in the foreground (--block)."""
    ports = {
        "--port": free_port(),
        "--ray-client-server-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--metrics-export-port": free_port(),
    }
    return [
        RAY, "start", "--head", "--block", "--num-cpus=2", "--num-gpus=0",
        "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}", f"--temp-dir={temp_dir}", "--disable-usage-stats",
        *[f"{flag}={port}" for flag, port in ports.items()],
    ]


def test_ray_job_submit_runs_the_sweep(tmp_path: Path) -> None:
    temp_dir = Path(tempfile.mkdtemp(prefix="rj", dir="/tmp"))
    token = secrets.token_hex(32)
    env = child_env(tmp_path / "cache", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    dashboard = free_port()
    out = tmp_path / "out"
    path = write_yaml(tmp_path / "job.yaml", tiny_sweep("job-sweep", out, num_samples=1))
    address = f"http://127.0.0.1:{dashboard}"
    try:
        with background(head_command(temp_dir, dashboard), env, tmp_path / "head.log") as head:
            wait_until(
                lambda: head.poll() is not None or port_open(dashboard), 180, "the Ray dashboard"
            )
            assert head.poll() is None, (tmp_path / "head.log").read_text()[-3000:]

            no_token = {k: v for k, v in env.items() if k not in ("RAY_AUTH_MODE",)}
            code, denied = run(
                [RAY, "job", "list", "--address", address], no_token, tmp_path / "denied.log",
                timeout_s=120,
            )
            assert code != 0 and "uthentication" in denied  # why RAY_AUTH_MODE=token is needed

            submit = [
                RAY, "job", "submit", "--address", address, "--working-dir", str(REPO),
                "--", "cl-sweeps", "sweep", str(path),
            ]
            for attempt in range(12):  # the head's job agent registers after its dashboard
                code, log = run(submit, env, tmp_path / f"submit-{attempt}.log", timeout_s=600)
                if code == 0 or "No available agent to submit job" not in log:
                    break
                time.sleep(5)
            assert code == 0, log[-5000:]
            assert "succeeded" in log and "on the Pareto frontier" in log
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("job-sweep").experiment_id])
    roles = sorted(r.data.tags["cl_sweeps.role"] for r in runs)
    assert roles == ["sweep", "trial"]
    assert all(r.info.status == "FINISHED" for r in runs)
