"""A diverging trial fails at once with the reason: a non-finite loss on the loss-read cadence,
non-finite samples before any metric, non-finite FID features before the matrix square root.
Divergence comes from a real knob (an absurd learning rate), not a test-only code path: with
lr = 1e30 the first Adam step moves every weight by about 1e30, so the second iteration's loss
overflows; with a single iteration per task, the loss is finite but the samples are not."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from helpers import child_env, run, tiny_sweep, write_yaml
from mlflow.tracking import MlflowClient
from torch import nn

from cl_sweeps.evaluation.fid import compute_fid
from cl_sweeps.numerics import NonFiniteError
from cl_sweeps.sequence import run_sequence

CLI = str(Path(sys.executable).parent / "cl-sweeps")
ABSURD_LR = 1e30


def test_absurd_learning_rate_fails_at_the_iteration_whose_loss_is_not_finite(small_trial):
    config = small_trial(train={"lr": ABSURD_LR, "iterations_per_task": 3, "loss_read_every": 1})
    with pytest.raises(NonFiniteError, match=r"^non-finite loss at task 0, iteration 1$"):
        run_sequence(config)
    config = small_trial(train={"lr": ABSURD_LR, "iterations_per_task": 3, "loss_read_every": 8})
    with pytest.raises(NonFiniteError, match=r"^non-finite loss at task 0, iteration 2 \(loss "
                       r"read every 8 iterations\)$"):  # read at the end of the task
        run_sequence(config)
    assert not (Path(config.output_dir) / "checkpoints").exists()  # nothing after divergence


def test_non_finite_samples_fail_before_any_metric(small_trial):
    config = small_trial(train={"lr": ABSURD_LR, "iterations_per_task": 1})
    with pytest.raises(NonFiniteError, match=r"^non-finite samples at task 0: \d+ of 40 "):
        run_sequence(config)
    assert not (Path(config.output_dir) / "samples" / "task_0.png").exists()


class _Flat(nn.Module):
    num_features = 64

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).double()


def test_fid_refuses_non_finite_features_before_the_square_root():
    real = torch.rand(8, 1, 8, 8) * 2 - 1
    fake = real.clone()
    fake[3, 0, 2, 2] = float("nan")
    with pytest.raises(NonFiniteError, match="non-finite features in FID statistics: fake"):
        compute_fid(real, fake, _Flat())
    fake[3, 0, 2, 2] = float("inf")
    with pytest.raises(NonFiniteError, match="fake_features_sum"):
        compute_fid(real, fake, _Flat())
    assert compute_fid(real, real.flip(0), _Flat()) < 1e-6


@pytest.mark.e2e
def test_diverging_trials_fail_cleanly_and_the_sweep_goes_on(tmp_path: Path) -> None:
    """A grid of learning rate x iterations: lr 1e30 diverges in the loss (3 iterations) or in
    the samples (1 iteration); the two healthy trials complete. max_failures 1 does not train a
    diverged trial again."""
    out = tmp_path / "out"
    sweep = tiny_sweep("diverge", out, num_samples=None, search_algorithm="grid",
                       objectives=["fid_final"], max_failures=1, max_concurrent_trials=2)
    sweep["base"]["data"]["tasks"] = [[0, 1], [2, 3]]
    sweep["search"] = {
        "strategy.name": ["naive"],
        "train.lr": [1e-3, ABSURD_LR],
        "train.iterations_per_task": [1, 3],
    }
    path = write_yaml(tmp_path / "diverge.yaml", sweep)
    env = child_env(tmp_path / "cache")
    code, log = run([CLI, "sweep", str(path)], env, tmp_path / "sweep.log", timeout_s=900)
    assert code == 0, log[-5000:]

    expected = {
        (1e-3, 1): ("COMPLETED", None),
        (1e-3, 3): ("COMPLETED", None),
        (ABSURD_LR, 3): ("FAILED", "non-finite loss at task 0, iteration "),
        (ABSURD_LR, 1): ("FAILED", "non-finite samples at task 0: "),
    }
    errors = {}
    for trial in sorted((out / "trials").iterdir()):
        params = json.loads((trial / "params.json").read_text())["params"]
        key = (params["train.lr"], params["train.iterations_per_task"])
        status = json.loads((trial / "status.json").read_text())
        want_status, want_error = expected.pop(key)
        assert status["status"] == want_status, (key, status)
        if want_error is None:
            continue
        assert status["error"].startswith(want_error), status  # the reason, not a traceback
        assert "\n" not in status["error"] and "Traceback" not in status["error"]
        events = [json.loads(line) for line in (trial / "events.jsonl").read_text().splitlines()]
        assert [e["event"] for e in events].count("attempt") == 1  # never trained again
        errors[params["train.iterations_per_task"]] = status["error"]
    assert not expected

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("diverge").experiment_id])
    failed = [r for r in runs if r.data.tags.get("status") == "FAILED"]
    assert len(failed) == 2
    for run_ in failed:
        assert run_.info.status == "FAILED"
        assert run_.data.tags["error"] == errors[int(run_.data.params["train.iterations_per_task"])]

    code, text = run([CLI, "frontier", "--sweep-dir", str(out), "--no-log"], env,
                     tmp_path / "frontier.log", timeout_s=300)
    assert code == 0, text[-3000:]
    assert "excluded: 1 non-finite loss, 1 non-finite samples" in text
