"""The engine: strategies learn, ER's memory stays balanced, runs are deterministic and resumable."""

from __future__ import annotations

import json

import pytest
import torch

from cl_sweeps.checkpoint import load_checkpoint
from cl_sweeps.checkpoint_files import latest_checkpoint
from cl_sweeps.evaluation.denoising import denoising_loss
from cl_sweeps.sequence import Engine, run_sequence
from cl_sweeps.strategies import available_strategies

CORE_STRATEGIES = ["naive", "cumulative", "er"]


def _comparable(row: dict[str, float]) -> dict[str, str]:
    """Metrics that must repeat exactly (wall time and memory need not), as reprs so NaN == NaN."""
    return {k: repr(v) for k, v in row.items() if "seconds" not in k and "memory" not in k}


def _train_loss(engine: Engine, task_index: int) -> float:
    images = engine.stream.train[task_index].images
    return denoising_loss(engine.model, engine.scheduler, images, seed=11, batch_size=256)


@pytest.mark.parametrize("name", CORE_STRATEGIES)
def test_strategy_loss_decreases_on_a_task(small_trial, name):
    config = small_trial(
        strategy={"name": name, "memory_size": 20},
        train={"iterations_per_task": 30, "batch_size": 16},
    )
    engine = Engine(config)
    engine.train_task(0, progress=False)
    before = _train_loss(engine, 1)
    engine.train_task(1, progress=False)
    after = _train_loss(engine, 1)
    assert after < 0.8 * before, (name, before, after)


def test_er_memory_is_class_balanced_and_bounded(small_trial):
    config = small_trial(strategy={"name": "er", "memory_size": 25})
    engine = Engine(config)
    for task in range(3):
        engine.train_task(task, progress=False)
        memory = engine.strategy.memory
        counts = torch.bincount(memory.labels, minlength=10)
        seen = engine.stream.seen_classes(task)
        assert len(memory) <= 25
        assert set(memory.labels.unique().tolist()) == set(seen)
        assert counts[seen].max() - counts[seen].min() <= 1
        assert counts[seen].min() == 25 // len(seen)


def test_er_replay_batch_follows_replay_ratio(small_trial):
    config = small_trial(strategy={"name": "er", "replay_ratio": 0.5, "memory_size": 20})
    engine = Engine(config)
    engine.train_task(0, progress=False)
    start = engine.counter.snapshot()["student_train"]
    engine.train_task(1, progress=False)
    spent = engine.counter.snapshot()["student_train"] - start
    iterations, batch = config.train.iterations_per_task, config.train.batch_size
    assert spent == iterations * (batch + round(0.5 * batch))


def test_same_seed_gives_identical_metrics(small_trial, tmp_path):
    first = run_sequence(small_trial(output_dir=str(tmp_path / "a"))).history
    second = run_sequence(small_trial(output_dir=str(tmp_path / "b"))).history
    assert [_comparable(r) for r in first] == [_comparable(r) for r in second]
    third = run_sequence(small_trial(output_dir=str(tmp_path / "c"), seed=4)).history
    assert [_comparable(r) for r in third] != [_comparable(r) for r in first]


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("naive", {}),
        ("er", {}),
        ("naive", {"train": {"reset_optimizer": False}, "data": {"augment": True}}),
        ("naive", {"data": {"validation_per_class": 5}}),  # the same split after a resume
    ],
)
def test_resume_from_a_task_checkpoint_gives_identical_final_metrics(
    small_trial, tmp_path, name, extra
):
    full = run_sequence(
        small_trial(output_dir=str(tmp_path / "full"), strategy={"name": name}, **extra)
    )

    def crash_after_task_1(task_index, metrics, checkpoint_dir):
        if task_index == 1:
            raise KeyboardInterrupt  # the process dies right after task 1's checkpoint

    partial_config = small_trial(
        output_dir=str(tmp_path / "part"), strategy={"name": name}, **extra
    )
    with pytest.raises(KeyboardInterrupt):
        run_sequence(partial_config, crash_after_task_1)
    checkpoint = latest_checkpoint(tmp_path / "part")
    assert checkpoint is not None and checkpoint.name == "task_1"
    resumed_tasks = []
    resumed = run_sequence(
        partial_config, lambda t, m, d: resumed_tasks.append(t), resume_from=checkpoint
    )
    assert resumed_tasks == [2]  # tasks 0 and 1 are not retrained
    assert _comparable(resumed.history[-1]) == _comparable(full.history[-1])
    if "validation_per_class" in extra.get("data", {}):  # scored on it with the same samples
        last = resumed.history[-1]
        assert {"fid_val", "kld_val", "fid_final_val"} <= set(last)
        assert last["fid_final_val"] == last["fid_val"] != last["fid_final"]
    for a, b in zip(resumed.model.parameters(), full.model.parameters()):
        assert torch.equal(a, b)


def test_checkpoint_holds_weights_optimizer_rng_strategy_and_history(small_trial):
    config = small_trial(strategy={"name": "er", "memory_size": 12})
    run_sequence(config)
    directory = latest_checkpoint(config.output_dir)
    assert (directory / "unet" / "config.json").is_file()  # diffusers save_pretrained format
    engine = Engine(config)
    checkpoint = load_checkpoint(directory, engine.model)
    assert checkpoint.task_index == 2 and len(checkpoint.history) == 3
    state = checkpoint.state
    assert state["optimizer"]["state"], "Adam moments are saved"
    assert {"data_generator", "train_generator", "torch_rng"} <= set(state)
    assert len(state["strategy"]["memory_labels"]) <= 12
    meta = json.loads((directory / "state.json").read_text())
    assert meta["task_index"] == 2


def test_every_registered_strategy_is_known_to_the_config():
    assert set(CORE_STRATEGIES) <= set(available_strategies())


def test_generation_metrics_show_forgetting(small_trial):
    """After 3 tasks, naive generates mostly the last task's classes: higher kld than cumulative."""
    budget = {"iterations_per_task": 60, "batch_size": 32}
    evaluation = {"n_eval_samples": 120, "eval_steps": 5}
    data = {"max_train_per_class": None, "max_test_per_class": None}
    naive = run_sequence(small_trial(strategy={"name": "naive"}, train=budget,
                                     evaluation=evaluation, data=data)).history[-1]
    cumulative = run_sequence(small_trial(strategy={"name": "cumulative"}, train=budget,
                                          evaluation=evaluation, data=data)).history[-1]
    assert naive["kld"] > cumulative["kld"], (naive["kld"], cumulative["kld"])
    for row in (naive, cumulative):
        assert {"fid_final", "fid_avg", "forgetting", "fid_task_0", "fid_task_2"} <= set(row)
        assert {"aiq", "afq", "fr"} <= set(row) and row["afq"] == row["fid_avg"]  # CLoG's


def test_knobs_a_strategy_does_not_read_are_reported(small_trial, caplog):
    from cl_sweeps.config import StrategyConfig
    from cl_sweeps.strategies import unused_knobs

    assert unused_knobs(StrategyConfig(name="naive", teacher_steps=10, lambd=0.5)) == [
        "lambd", "teacher_steps"]
    assert unused_knobs(StrategyConfig(name="generative_distillation", teacher_steps=10)) == []
    assert unused_knobs(StrategyConfig(name="er", memory_size=50, teacher_steps=3)) == [
        "teacher_steps"]
    with caplog.at_level("WARNING"):
        Engine(small_trial(strategy={"name": "naive", "teacher_steps": 7}))
    assert "ignores strategy.teacher_steps" in caplog.text


def test_classifier_cache_key_follows_the_data():
    from cl_sweeps.config import DataConfig
    from cl_sweeps.data import load_source
    from cl_sweeps.evaluation.generation import classifier_cache_key

    full = classifier_cache_key(load_source(DataConfig()))
    assert full == classifier_cache_key(load_source(DataConfig()))
    assert full != classifier_cache_key(load_source(DataConfig(max_train_per_class=50)))
    assert full != classifier_cache_key(load_source(DataConfig(image_size=16)))


def _watch_task_starts(engine: Engine) -> list[dict]:
    """At the first iteration of every task: the optimizer's state and the real minibatch."""
    seen: list[dict] = []
    loss = engine.strategy.loss

    def watched(model, batch):
        if not seen or seen[-1]["task"] != engine.context.task_index:
            steps = [int(s["step"]) for s in engine.optimizer.state.values()]
            seen.append({"task": engine.context.task_index, "steps": steps, "batch": batch})
        return loss(model, batch)

    engine.strategy.loss = watched
    return seen


@pytest.mark.parametrize("reset", [True, False])
def test_optimizer_state_is_fresh_at_every_task_start(small_trial, reset):
    engine = Engine(small_trial(train={"iterations_per_task": 4, "reset_optimizer": reset}))
    assert small_trial().train.reset_optimizer is True  # the reference's protocol is the default
    seen = _watch_task_starts(engine)
    for task in range(3):
        engine.train_task(task, progress=False)
    assert [s["task"] for s in seen] == [0, 1, 2]
    assert seen[0]["steps"] == []
    if reset:
        assert seen[1]["steps"] == [] and seen[2]["steps"] == []
    else:  # Adam's moments and step count carry over from the previous task
        assert set(seen[1]["steps"]) == {4} and set(seen[2]["steps"]) == {8}


def test_augment_flips_real_minibatches_and_only_when_on(small_trial):
    plain = Engine(small_trial(data={"augment": False}))
    flipped = Engine(small_trial(data={"augment": True}))
    default = Engine(small_trial())  # digits: off by default
    seen = {name: _watch_task_starts(e) for name, e in
            (("plain", plain), ("flipped", flipped), ("default", default))}
    for engine in (plain, flipped, default):
        engine.train_task(0, progress=False)
    a, b = seen["plain"][0]["batch"].images, seen["flipped"][0]["batch"].images
    assert torch.equal(seen["default"][0]["batch"].images, a)
    same = (a == b).flatten(1).all(1)
    mirrored = (a.flip(-1) == b).flatten(1).all(1)
    assert (same | mirrored).all() and (mirrored & ~same).any() and same.any()
