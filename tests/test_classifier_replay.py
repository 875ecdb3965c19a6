"""Classifier replay (the paper's second experiment): the loss, where replay images and labels
come from, the per-task optimiser, the modes without a generator, the counted generator
forwards, exact resume, and the config's checks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import merge
from helpers import SMALL_TRIAL

import cl_sweeps.classifier_replay as CR
from cl_sweeps.checkpoint_files import latest_checkpoint
from cl_sweeps.config import ConfigError, TrialConfig, parse_trial_config
from cl_sweeps.sequence import Engine, run_sequence

ITERATIONS, BATCH, STEPS = 2, 8, 2


def trial(tmp: Path, mode: str = "generative", strategy: str = "generative_distillation",
          **override: Any) -> TrialConfig:
    data = merge(SMALL_TRIAL, {
        "output_dir": str(tmp / "run"),
        "strategy": {"name": strategy},
        "classifier_replay": {"mode": mode, "iterations_per_task": ITERATIONS,
                              "batch_size": BATCH, "generation_steps": STEPS},
    })
    return TrialConfig.model_validate(merge(data, override))


def test_the_replay_loss_is_the_formula_in_both_directions() -> None:
    student = torch.tensor([[2.0, 0.0, -1.0]])
    labeller = torch.tensor([[0.5, 1.5, 0.0]])
    t = 2.0

    def softmax(z):
        e = [math.exp(v / t) for v in z]
        return [v / sum(e) for v in e]

    p_s, p_c = softmax(student[0].tolist()), softmax(labeller[0].tolist())
    reference = t**2 * -sum(p_s[c] * math.log(p_c[c]) for c in range(3))
    standard = t**2 * -sum(p_c[c] * math.log(p_s[c]) for c in range(3))
    assert CR.replay_loss(student, labeller, t, "reference").item() == pytest.approx(reference)
    assert CR.replay_loss(student, labeller, t, "standard").item() == pytest.approx(standard)
    assert reference != pytest.approx(standard)
    two = CR.replay_loss(torch.cat([student, labeller]), torch.cat([labeller, student]), t,
                         "reference")  # a mean over replay images
    other = t**2 * -sum(p_c[c] * math.log(p_s[c]) for c in range(3))
    assert two.item() == pytest.approx((reference + other) / 2)


def test_the_reference_direction_sends_gradient_through_the_student_only() -> None:
    student = torch.randn(4, 3, requires_grad=True)
    labeller = torch.randn(4, 3)
    CR.replay_loss(student, labeller, 2.0, "reference").backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_real_and_replay_are_weighted_one_over_t_plus_one() -> None:
    real, replay = torch.tensor(2.0), torch.tensor(5.0)
    assert CR.weighted_loss(real, None, 3).item() == 2.0
    assert CR.weighted_loss(real, replay, 0).item() == pytest.approx(2.0)
    assert CR.weighted_loss(real, replay, 2).item() == pytest.approx(2 / 3 + 5 * 2 / 3)


def test_the_reference_cnn_keeps_a_map_on_8x8_and_matches_the_reference_on_28x28() -> None:
    assert CR.ReferenceCNN(1, 10, 8)(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    cnn = CR.ReferenceCNN(1, 10, 28)
    assert cnn(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert not any(getattr(m, "ceil_mode", False) for m in cnn.modules())  # as the reference
    assert sum(p.numel() for p in cnn.parameters()) == (
        (1 * 9 * 32 + 32) + (32 * 9 * 32 + 32) + (32 * 9 * 64 + 64) + (64 * 9 * 128 + 128)
        + (128 * 128 + 128) + (128 * 10 + 10)
    )


def test_replay_comes_from_the_frozen_previous_models_and_costs_b_times_k(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Engine(trial(tmp_path))
    engine.train_task(0, progress=False)
    unet_after_0 = {k: v.clone() for k, v in engine.model.state_dict().items()}
    classifier_after_0 = {k: v.clone() for k, v in engine.classifier.model.state_dict().items()}
    sampled, distilled = [], []
    sample = engine.context.sampler.sample

    def spy_sample(model, n, steps, **kw):
        result = sample(model, n, steps, **kw)
        sampled.append({"model": model, "steps": steps, "eta": kw["eta"],
                        "images": result.images.clone(), "weights": {
                            k: v.clone() for k, v in model.state_dict().items()}})
        return result

    replay_loss = CR.replay_loss

    def spy_loss(student, labeller, t, direction):
        distilled.append(labeller.clone())
        return replay_loss(student, labeller, t, direction)

    monkeypatch.setattr(engine.context.sampler, "sample", spy_sample)
    monkeypatch.setattr(CR, "replay_loss", spy_loss)
    before = engine.counter.snapshot()["classifier_replay_generation"]
    engine.train_task(1, progress=False)

    classifier_calls = [s for s in sampled if s["steps"] == STEPS and len(s["images"]) == BATCH]
    assert len(classifier_calls) == ITERATIONS == len(distilled)
    labeller = CR.ReferenceCNN(1, 10, engine.stream.image_size)
    labeller.load_state_dict(classifier_after_0)
    labeller.eval()
    for call, targets in zip(classifier_calls, distilled):
        assert call["model"] is engine.teacher.module  # the one frozen copy, also the teacher
        assert call["eta"] == 0.0
        for key, value in unet_after_0.items():
            assert torch.equal(call["weights"][key], value), key
        with torch.no_grad():
            assert torch.allclose(labeller(call["images"]), targets, atol=1e-6)
    spent = engine.counter.snapshot()["classifier_replay_generation"] - before
    assert spent == ITERATIONS * BATCH * STEPS


def test_a_fresh_adam_every_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[torch.optim.Optimizer, int]] = []

    class Spy(torch.optim.Adam):
        def step(self, closure=None):
            seen.append((self, len(self.state)))  # kept alive: no reused ids
            return super().step(closure)

    monkeypatch.setattr(CR.torch.optim, "Adam", Spy)
    engine = Engine(trial(tmp_path, mode="naive", strategy="naive"))
    for task in range(2):
        engine.classifier.train_task(task, engine.stream.train, None, _batches, _no_autocast)
    first, second = seen[:ITERATIONS], seen[ITERATIONS:]
    assert len(seen) == 2 * ITERATIONS and first[0][0] is not second[0][0]
    assert first[0][1] == 0 and second[0][1] == 0  # no moments carried into task 1
    assert first[1][1] > 0


@pytest.mark.parametrize("mode", ["naive", "cumulative"])
def test_naive_and_cumulative_use_no_generator(tmp_path: Path, mode: str) -> None:
    engine = Engine(trial(tmp_path, mode=mode, strategy="naive"))
    for task in range(2):
        engine.train_task(task, progress=False)
    assert engine.teacher.module is None  # no frozen UNet copy was ever built
    assert engine.counter.snapshot()["classifier_replay_generation"] == 0
    sizes = [len(engine.classifier.training_set(1, engine.stream.train))]
    expected = sum(len(t) for t in engine.stream.train[:2]) if mode == "cumulative" else len(
        engine.stream.train[1])
    assert sizes == [expected]


def test_resume_from_a_task_checkpoint_gives_identical_final_metrics(tmp_path: Path) -> None:
    full = run_sequence(trial(tmp_path / "full")).history

    def crash_after_task_1(task_index, metrics, checkpoint_dir):
        if task_index == 1:
            raise KeyboardInterrupt

    config = trial(tmp_path / "part")
    with pytest.raises(KeyboardInterrupt):
        run_sequence(config, crash_after_task_1)
    resumed = run_sequence(config, resume_from=latest_checkpoint(Path(config.output_dir))).history
    keep = [k for k in full[-1] if "seconds" not in k and "memory" not in k]
    assert {k: repr(full[-1][k]) for k in keep} == {k: repr(resumed[-1][k]) for k in keep}
    assert {"accuracy", "accuracy_final", "accuracy_forgetting", "accuracy_task_2",
            "classifier_train_tflops"} <= set(full[-1])
    assert full[-1]["accuracy_final"] == full[-1]["accuracy"]


def test_a_shared_task_zero_holds_the_classifier(tmp_path: Path) -> None:
    """Task 0 (the classifier's included) comes from a prefix another strategy computed, and
    the run ends as one that trained its own."""
    from cl_sweeps.prefix_store import PrefixStore

    two = {"data": {"tasks": [[0, 1], [2, 3]]}}
    store = PrefixStore(tmp_path / "prefixes")
    run_sequence(trial(tmp_path / "naive", strategy="naive", **two), prefixes=store)
    reused = run_sequence(trial(tmp_path / "gd", **two), prefixes=store).history
    alone = run_sequence(trial(tmp_path / "alone", **two)).history
    assert reused[0]["reused_train_tflops"] > 0
    keep = [k for k in alone[-1] if "seconds" not in k and "memory" not in k
            and k != "reused_train_tflops"]
    assert {k: repr(reused[-1][k]) for k in keep} == {k: repr(alone[-1][k]) for k in keep}
    assert reused[-1]["forwards_classifier_replay_generation"] == ITERATIONS * BATCH * STEPS


def test_the_diffusion_model_trains_as_with_the_classifier_off(tmp_path: Path) -> None:
    two = {"data": {"tasks": [[0, 1], [2, 3]]}}
    on = run_sequence(trial(tmp_path / "on", **two)).history[-1]
    off_config = trial(tmp_path / "off", **two).model_copy(update={"classifier_replay": None})
    off = run_sequence(off_config).history[-1]
    for name in ("denoise_loss", "fid", "kld", "forwards_student_train",
                 "forwards_teacher_generation"):
        assert repr(on[name]) == repr(off[name]), name
    assert on["train_tflops"] > off["train_tflops"]  # the classifier's compute is added


def test_final_accuracy_metrics_from_the_rows() -> None:
    rows = [
        {"accuracy": 0.9, "accuracy_task_0": 0.9},
        {"accuracy": 0.6, "accuracy_task_0": 0.5, "accuracy_task_1": 0.7},
        {"accuracy": 0.5, "accuracy_task_0": 0.6, "accuracy_task_1": 0.3, "accuracy_task_2": 0.6},
    ]
    final = CR.final_accuracy_metrics(rows)
    assert final["accuracy_final"] == 0.5
    assert final["accuracy_forgetting"] == pytest.approx(((0.9 - 0.6) + (0.7 - 0.3)) / 2)
    assert "accuracy_final_val" not in final  # no split, no validation accuracy
    rows[-1]["accuracy_val"] = 0.45
    assert CR.final_accuracy_metrics(rows)["accuracy_final_val"] == 0.45


def test_with_a_split_the_classifier_is_scored_on_the_validation_images_too(
    tmp_path: Path,
) -> None:
    """accuracy_val: the same classifier, after the same task, on the seen tasks' validation
    images (held out of its training data), next to accuracy on the test images."""
    engine = Engine(trial(tmp_path, mode="naive", strategy="naive",
                          data={"validation_per_class": 5}))
    engine.train_task(0, progress=False)
    metrics = engine.evaluate(0, 0.0)
    validation, test = engine.stream.seen_validation(0), engine.stream.test[0]
    model = engine.classifier.model.eval()
    with torch.no_grad():
        def share_right(images):
            return float((model(images.images).argmax(1) == images.labels).float().mean())

        assert metrics["accuracy_val"] == pytest.approx(share_right(validation))
        assert metrics["accuracy"] == pytest.approx(share_right(test))
    assert len(validation) == 2 * 5 and sorted(validation.labels.unique().tolist()) == [0, 1]
    assert "accuracy_val" not in engine.classifier.evaluate(0, engine.stream.test)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"mode": "replay"}, "classifier_replay.mode"),
        ({"epochs_per_task": 2, "iterations_per_task": 3}, "set at most one"),
        ({"temperature": 0}, "classifier_replay.temperature"),
        ({"distillation": "kl"}, "classifier_replay.distillation"),
        ({"batchsize": 3}, "classifier_replay.batchsize: unknown key"),
    ],
)
def test_bad_classifier_replay_settings_name_the_field(section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_trial_config(merge(SMALL_TRIAL, {"classifier_replay": section}))


def test_the_classifier_needs_8x8_images_and_is_off_by_default() -> None:
    with pytest.raises(ConfigError, match="data.image_size >= 8"):
        parse_trial_config(merge(SMALL_TRIAL, {"data": {"image_size": 6},
                                               "classifier_replay": {}}))
    assert parse_trial_config(SMALL_TRIAL).classifier_replay is None
    assert parse_trial_config(merge(SMALL_TRIAL, {"classifier_replay": {}})).classifier_replay \
        .epochs_per_task == 20  # the reference's budget


def _batches(data, size, generator):
    from cl_sweeps.sequence import minibatches

    return minibatches(data, size, generator)


def _no_autocast():
    import contextlib

    return contextlib.nullcontext()


def test_accuracy_final_max_resolves_to_accuracy_per_task_for_the_schedulers() -> None:
    from cl_sweeps.sweep.schema import SweepConfig

    sweep = {"name": "acc", "base": merge(SMALL_TRIAL, {"classifier_replay": {}}),
             "search": {"strategy.name": ["naive"], "classifier_replay.mode": ["naive"]},
             "objectives": {"accuracy_final": "max", "train_tflops": "min"}}
    mo = SweepConfig.model_validate({**sweep, "scheduler": {"type": "moasha"}})
    assert mo.scheduler_objectives() == [("accuracy", "max"), ("train_tflops", "min")]
    asha = SweepConfig.model_validate({**sweep, "scheduler": {"type": "asha"}})
    assert asha.scheduler_metric() == ("accuracy", "max")


def test_the_bench_times_a_classifier_replay_iteration_at_b_times_k_generator_forwards() -> None:
    from cl_sweeps.bench import format_bench, run_bench

    naive, replay = run_bench(["naive", "classifier_replay"], iterations=1, warmup=0,
                              batch_size=4)
    assert replay.strategy == "classifier_replay"
    assert replay.forwards_per_iteration["classifier_replay_generation"] == 4 * 10  # B·k
    assert replay.forwards_per_iteration["student_train"] == 0
    unet = 40 * naive.gflops_per_iteration / (4 * 3)  # 40 forwards ≈ a third of fwd+bwd each
    assert replay.gflops_per_iteration > unet * 0.9
    assert "clf_replay_gen" in format_bench([naive, replay])


@pytest.mark.e2e
def test_a_sweep_on_accuracy_final_reports_accuracy_everywhere(tmp_path: Path) -> None:
    """A real sweep with objectives {accuracy_final: max, train_tflops: min}: the records and
    MLflow hold accuracy per task, the frontier and the report show it."""
    import json
    import sys

    from helpers import child_env, run, tiny_sweep, write_yaml
    from mlflow.tracking import MlflowClient

    from cl_sweeps import records

    cli = str(Path(sys.executable).parent / "cl-sweeps")
    env = child_env(tmp_path / "cache")
    out = tmp_path / "out"
    sweep = tiny_sweep("acc", out, num_samples=None, search_algorithm="grid",
                       max_concurrent_trials=2,
                       objectives={"accuracy_final": "max", "train_tflops": "min"})
    sweep["base"]["data"]["tasks"] = [[0, 1], [2, 3]]
    sweep["base"]["classifier_replay"] = {"iterations_per_task": 2, "batch_size": 8,
                                          "generation_steps": 2}
    sweep["search"] = {
        "strategy.name": ["naive", "generative_distillation"],
        "classifier_replay.mode": {"depends_on": "strategy.name", "values": {"naive": "naive"}},
    }
    code, log = run([cli, "sweep", str(write_yaml(tmp_path / "acc.yaml", sweep))], env,
                    tmp_path / "sweep.log", timeout_s=900)
    assert code == 0, log[-5000:]

    trials = records.read_trials(records.SweepLayout(out).trials)
    assert len(trials) == 2 and all(t.status == records.COMPLETED for t in trials)
    modes = {}
    for directory in (out / "trials").iterdir():
        params = json.loads((directory / "params.json").read_text())["params"]
        rows = [json.loads(r) for r in (directory / "metrics.jsonl").read_text().splitlines()]
        assert [sorted(k for k in row if k.startswith("accuracy_task_")) for row in rows] == [
            ["accuracy_task_0"], ["accuracy_task_0", "accuracy_task_1"]]
        assert all(0 <= row["accuracy"] <= 1 for row in rows)
        assert rows[-1]["accuracy_final"] == rows[-1]["accuracy"]
        modes[params["strategy.name"]] = rows[-1]["forwards_classifier_replay_generation"]
    assert modes == {"naive": 0.0, "generative_distillation": 2 * 8 * 2}  # B·k per iteration

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("acc")
    for trial_run in client.search_runs([experiment.experiment_id],
                                        "tags.`cl_sweeps.role` = 'trial'"):
        history = client.get_metric_history(trial_run.info.run_id, "accuracy")
        assert sorted(m.step for m in history) == [0, 1]
        assert "accuracy_final" in trial_run.data.metrics

    best = json.loads(records.SweepLayout(out).best.read_text())  # the sweep's own frontier
    assert {"metric": "accuracy_final", "mode": "max"} in best["objectives"]
    top = max(t.final["accuracy_final"] for t in trials)
    assert any(c["mean"]["accuracy_final"] == top for c in best["configurations"])
    code, text = run([cli, "frontier", "--sweep-dir", str(out), "--out", str(tmp_path / "f"),
                      "--no-log"], env, tmp_path / "frontier.log", timeout_s=300)
    assert code == 0, text[-3000:]
    assert "accuracy_final" in text  # shown beside the objectives
    code, text = run([cli, "report", "--sweep-dir", str(out), "--out", str(tmp_path / "r"),
                      "--no-log"], env, tmp_path / "report.log", timeout_s=300)
    assert code == 0, text[-3000:]
    header = next(line for line in text.splitlines() if line.startswith("| strategy"))
    assert "accuracy_final" in header and "accuracy_forgetting" in header
