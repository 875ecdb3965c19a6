"""The quickstart sweep (its grid, shrunk to seconds per trial) against a real `mlflow server`,
read back through the server's REST API as the UI reads it: the experiment kind, the parent
run's live sweep/* metrics and files, frontier files that appear while the sweep runs and are
refreshed, every trial's nested run (tags, params, each metric at every task, legible sample
grids, complete pipeline models) agreeing with the trial records on disk; `cl-sweeps status`
while it runs and after; the quiet console. The tracking URI comes from MLFLOW_TRACKING_URI with
a user name and password in it: the password appears nowhere, neither on the console, nor in the
output directory, nor in Ray's session logs."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from helpers import background, child_env, mlflow_server
from PIL import Image

from cl_sweeps import records
from cl_sweeps.evaluation.grids import MIN_GRID_PIXELS
from cl_sweeps.sweep.schema import load_sweep_config
from cl_sweeps.sweep.space import num_trials

pytestmark = pytest.mark.e2e  # real Ray, servers or sweeps

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "cl-sweeps")
STRATEGIES = ("naive", "cumulative", "generative_replay", "generative_distillation")
TRIALS = num_trials(load_sweep_config(ROOT / "search_spaces" / "quickstart.yaml"))
TASKS = 5
STEPS = list(range(TASKS))
SHRINK = [  # the quickstart's grid and 5 tasks, with seconds of training per trial
    "base.train.iterations_per_task=3", "base.data.max_train_per_class=20",
    "base.data.validation_per_class=5",  # the quickstart's split, within 20 images per class
    "base.data.max_test_per_class=10", "base.evaluation.n_eval_samples=16",
    "base.evaluation.eval_steps=2", "base.evaluation.eval_batch_size=16",
    "base.evaluation.classifier_epochs=1", "base.evaluation.denoise_eval_per_task=8",
]


def rest(uri: str, endpoint: str, **query: Any) -> dict[str, Any]:
    url = f"{uri}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def rest_post(uri: str, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/{endpoint}", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def artifact(uri: str, run_id: str, path: str) -> bytes:
    query = urllib.parse.urlencode({"run_id": run_id, "path": path})
    with urllib.request.urlopen(f"{uri}/get-artifact?{query}", timeout=30) as response:
        return response.read()


def listing(uri: str, run_id: str, path: str = "") -> set[str]:
    files = rest(uri, "artifacts/list", run_id=run_id, path=path).get("files", [])
    return {f["path"] for f in files}


def history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    metrics = rest(uri, "metrics/get-history", run_id=run_id, metric_key=key).get("metrics", [])
    return sorted((int(m["step"]), float(m["value"])) for m in metrics)


def status_text(env: dict[str, str], out: Path) -> str:
    result = subprocess.run([CLI, "status", str(out)], env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


SECRET = "s3cr3t-Pa55word"


def test_quickstart_sweep_as_seen_through_the_mlflow_rest_api(tmp_path: Path) -> None:
    ray_tmp = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # short: Ray's socket paths
    try:
        _quickstart_against_a_server(tmp_path, ray_tmp)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _quickstart_against_a_server(tmp_path: Path, ray_tmp: Path) -> None:
    env = child_env(tmp_path / "cache", RAY_TMPDIR=str(ray_tmp))
    out = tmp_path / "out"
    with mlflow_server(tmp_path / "mlflow", env) as uri:
        env["MLFLOW_TRACKING_URI"] = uri.replace("http://", f"http://cl-user:{SECRET}@")
        command = [CLI, "sweep", str(ROOT / "search_spaces" / "quickstart.yaml"),
                   "--set", f"output_dir={out}"]
        for item in SHRINK:
            command += ["--set", item]
        running_status = None
        frontier_seen_while_running = None
        with background(command, env, tmp_path / "sweep.log") as sweep:
            deadline = time.monotonic() + 1800
            while sweep.poll() is None and time.monotonic() < deadline:
                trials = records.read_trials(out / "trials")
                busy = [t for t in trials if t.status == "RUNNING" and t.tasks_done]
                if running_status is None and busy:
                    running_status = status_text(env, out)
                if frontier_seen_while_running is None and (len(trials) < TRIALS or busy):
                    parent = _parent(uri)
                    if parent and "frontier/frontier.html" in listing(uri, parent, "frontier"):
                        frontier_seen_while_running = artifact(
                            uri, parent, "frontier/frontier.html"
                        ).decode()
                time.sleep(1)
            assert sweep.wait(timeout=60) == 0, (tmp_path / "sweep.log").read_text()[-5000:]
        log = (tmp_path / "sweep.log").read_text()
        finished_status = status_text(env, out)

        experiment = rest(uri, "experiments/get-by-name", experiment_name="quickstart")
        tags = {t["key"]: t["value"] for t in experiment["experiment"].get("tags", [])}
        assert tags["mlflow.experimentKind"] == "custom_model_development"

        parent = _parent(uri)
        steps = [s for s, _ in history(uri, parent, "sweep/trials_completed")]
        assert steps == sorted(set(steps)) and steps[-1] == TRIALS and len(steps) >= 2, steps
        assert history(uri, parent, "sweep/trials_completed")[-1][1] == TRIALS
        for key in ("sweep/trials_pruned", "sweep/trials_failed", "sweep/pareto_size",
                    "sweep/best_fid_final_val", "sweep/best_train_tflops",
                    "sweep/train_tflops_spent", "sweep/hypervolume"):
            points = history(uri, parent, key)
            assert [s for s, _ in points] == sorted(s for s, _ in points), (key, points)
            assert points and points[-1][0] == TRIALS, (key, points)
        spent = [v for _, v in history(uri, parent, "sweep/train_tflops_spent")]
        assert spent == sorted(spent) and spent[0] < spent[-1]

        assert {"frontier/frontier.png", "frontier/frontier.html"} <= listing(uri, parent,
                                                                              "frontier")
        final_html = artifact(uri, parent, "frontier/frontier.html").decode()
        assert all(name in final_html for name in STRATEGIES)
        assert frontier_seen_while_running is not None  # logged before the sweep ended ...
        assert frontier_seen_while_running != final_html  # ... and refreshed since

        runs = rest_post(uri, "runs/search", {
            "experiment_ids": [experiment["experiment"]["experiment_id"]],
            "filter": "tags.`cl_sweeps.role` = 'trial'", "max_results": 100,
        })["runs"]
        assert len(runs) == TRIALS
        assert {"sweep.yaml", "sweep_resolved.yaml", "search_space.json", "best_trials.json"} \
            <= listing(uri, parent)
        assert {_tags(run)["strategy"] for run in runs} == set(STRATEGIES)
        for run in runs:
            assert_trial_run(uri, run, parent, out)
    assert not (out / "mlflow.db").exists()  # everything went to the server

    assert running_status is not None, "the sweep ended before a trial was seen running"
    # a trial with tasks done, still running (5/5: its last task reported, its run not yet ended)
    assert re.search(r"RUNNING\s+[1-5]/5", running_status), running_status
    assert "ETA" in running_status
    assert f"{TRIALS}/{TRIALS} trials ended ({TRIALS} completed" in finished_status
    assert "on the Pareto frontier over" in finished_status
    assert "RUNNING" not in finished_status.split("\n\n")[1]

    assert len(re.findall(r"^\d\d:\d\d:\d\d started ", log, re.MULTILINE)) == TRIALS
    assert len(re.findall(r"^\d\d:\d\d:\d\d finished ", log, re.MULTILINE)) == TRIALS
    assert "started with configuration" not in log and "Trial status:" not in log
    print(f"console: {len(log.splitlines())} lines")
    assert len(log.splitlines()) < 250, log
    assert_secret_nowhere(log, [out, ray_tmp])


def assert_secret_nowhere(console: str, directories: list[Path]) -> None:
    """The password is not on the console nor in any file under the directories."""
    assert SECRET not in console
    leaks, seen = [], 0
    for directory in directories:
        for path in directory.rglob("*"):
            if path.is_file() and not path.is_symlink():
                seen += 1
                if SECRET.encode() in path.read_bytes():
                    leaks.append(str(path))
    assert not leaks, leaks
    assert seen > 20 and any(p.name.endswith((".out", ".err", ".log"))
                             for p in directories[-1].rglob("*")), "no Ray session logs read"


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def assert_trial_run(uri: str, run: dict[str, Any], parent: str, out: Path) -> None:
    """A trial's nested run: what the UI shows, and the same as the trial's records on disk."""
    run_id, tags = run["info"]["run_id"], _tags(run)
    params = {p["key"]: p["value"] for p in run["data"].get("params", [])}
    assert run["info"]["status"] == "FINISHED"
    assert tags["mlflow.parentRunId"] == parent and tags["status"] == "COMPLETED"
    assert tags["cl_sweeps.sweep"] == "quickstart"
    assert tags["strategy"] == params["strategy.name"] and tags["seed"] == params["seed"]
    for metric in ("fid", "fid_val", "train_tflops", "denoise_loss", "kld"):
        assert [s for s, _ in history(uri, run_id, metric)] == STEPS, metric
    assert [s for s, _ in history(uri, run_id, "fid_final")] == [STEPS[-1]]
    assert {"model", "samples", "trial_config.yaml"} <= listing(uri, run_id)
    samples = listing(uri, run_id, "samples")
    assert samples == {f"samples/task_{k}.png" for k in STEPS}
    grid = Image.open(io.BytesIO(artifact(uri, run_id, f"samples/task_{TASKS - 1}.png")))
    assert grid.width >= MIN_GRID_PIXELS
    assert {"model/model_index.json", "model/unet", "model/scheduler"} <= listing(
        uri, run_id, "model"
    )

    directory = out / "trials" / tags["trial_id"]
    record = json.loads((directory / "params.json").read_text())
    assert record["config_key"] == tags["config_key"]
    searched = {k: v for k, v in params.items() if not k.startswith("throughput.")}
    assert {k: str(v) for k, v in record["params"].items()} == searched
    assert params["throughput.precision"] == "fp32"  # resolved on the worker (CPU)
    assert json.loads((directory / "status.json").read_text())["status"] == "COMPLETED"
    assert pq.read_table(directory / "metrics.parquet").column("task").to_pylist() == STEPS


def _parent(uri: str) -> str | None:
    try:
        experiment = rest(uri, "experiments/get-by-name", experiment_name="quickstart")
    except urllib.error.HTTPError:  # not created yet
        return None
    found = rest_post(uri, "runs/search", {
        "experiment_ids": [experiment["experiment"]["experiment_id"]],
        "filter": "tags.`cl_sweeps.role` = 'sweep'",
    }).get("runs", [])
    return found[0]["info"]["run_id"] if found else None
