"""MAGD's EMA teacher and SNR-gated generation, on real tiny UNets and the real sampler."""

from __future__ import annotations

import copy

import pytest
import torch
from test_conditional import conditional_setup, current_batch
from test_teacher_strategies import batch_of, make_setup

from cl_sweeps.diffusion.model import predict_noise
from cl_sweeps.evaluation.compute import (
    EMA_UPDATE,
    STUDENT_TRAIN,
    TEACHER_GENERATION,
    TEACHER_TARGET,
)
from cl_sweeps.strategies.catalog import TEACHER_KNOBS, strategy_knobs
from cl_sweeps.strategies.teacher import TeacherStrategy


def parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize("teacher, decay", [("ema", 0.9), ("ema", 1.0), ("frozen", 0.9)])
def test_ema_teacher_is_the_running_average_of_the_student(teacher, decay):
    strategy, student, context = make_setup(
        "generative_distillation", teacher=teacher, ema_decay=decay, teacher_steps=1
    )
    average = parameters(context.teacher)  # φ0: the copy the engine made at the task start
    frozen = copy.deepcopy(average)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
    for step in range(3):
        optimizer.zero_grad()
        strategy.loss(student, batch_of(4, seed=step)).loss.backward()
        optimizer.step()
        strategy.after_optimizer_step(student)
        for n, p in student.named_parameters():
            average[n] = decay * average[n] + (1 - decay) * p.detach()
    now = parameters(context.teacher)
    expected = average if teacher == "ema" else frozen
    for n in now:
        assert torch.allclose(now[n], expected[n], atol=1e-6), n
    moved = any(not torch.equal(now[n], frozen[n]) for n in now)
    assert moved == (teacher == "ema" and decay < 1)
    assert not any(p.requires_grad for p in context.teacher.parameters())  # still frozen to autograd


def test_ema_teacher_updates_are_counted_in_train_tflops(small_trial):
    """The real engine, two tasks: an EMA-teacher trial's train_tflops exceed the same
    frozen-teacher trial's by exactly its updates (one per step of task 1) × 3 FLOPs per
    parameter; every image-forward count is the same."""
    from cl_sweeps.sequence import Engine

    iterations = 3

    def trained(teacher: str) -> Engine:
        engine = Engine(small_trial(
            data={"tasks": [[0, 1], [2, 3]]},
            strategy={"name": "generative_distillation", "teacher": teacher, "ema_decay": 0.9,
                      "teacher_steps": 1},
            train={"iterations_per_task": iterations, "batch_size": 4},
        ))
        for task in range(2):
            engine.train_task(task, progress=False)
        return engine

    ema, frozen = trained("ema"), trained("frozen")
    counts, frozen_counts = ema.counter.snapshot(), frozen.counter.snapshot()
    assert counts.pop(EMA_UPDATE) == iterations and frozen_counts.pop(EMA_UPDATE) == 0
    assert counts == frozen_counts and counts[TEACHER_GENERATION] > 0
    per_update = 3 * sum(p.numel() for p in ema.model.parameters())
    assert ema.training_tflops() - frozen.training_tflops() == pytest.approx(
        iterations * per_update / 1e12, rel=1e-9)
    assert ema.compute_metrics(0.0)["forwards_ema_update"] == iterations


def test_every_teacher_strategy_reads_the_teacher_knobs():
    from cl_sweeps.strategies import available_strategies
    from cl_sweeps.strategies.base import strategy_class

    for name in available_strategies():
        reads = set(TEACHER_KNOBS) <= set(strategy_knobs(name))
        assert reads == issubclass(strategy_class(name), TeacherStrategy), name


def snr_between(scheduler, t: int) -> float:
    """A threshold between SNR(t − 1) and SNR(t): the gate then starts exactly at t."""
    abar = scheduler.alphas_cumprod.double()
    snr = abar / (1 - abar)
    return float((snr[t - 1] + snr[t]) / 2)


def gated_setup(name: str, gate_at: int, teacher_steps: int):
    """`name` with the SNR threshold that puts τ_s at `gate_at` (1000: no gating)."""
    scheduler = make_setup(name)[2].scheduler
    threshold = 0.0 if gate_at == 1000 else snr_between(scheduler, gate_at)
    return make_setup(name, teacher_steps=teacher_steps, snr_threshold=threshold)


@pytest.mark.parametrize("gate_at, gated", [(1000, 0), (750, 2), (500, 4), (1, 8)])
def test_snr_gating_skips_generation_exactly_where_its_rule_says(gate_at, gated):
    b, k = 8, 2  # R = B = 8 replay pairs
    strategy, student, context = gated_setup("generative_distillation", gate_at, k)
    assert strategy.gate_start() == gate_at
    strategy.loss(student, batch_of(b))
    counts = context.counter.snapshot()
    # generation only for the R − G pairs above the threshold; every pair still gets its target
    assert counts[TEACHER_GENERATION] == k * (b - gated)
    assert counts[TEACHER_TARGET] == b and counts[STUDENT_TRAIN] == 2 * b
    generated = [n for n, _, _ in context.sampler.runs]
    assert generated == ([b - gated] if gated < b else [])
    x, t, _ = student.calls[1]  # the replay batch: generated pairs first, then the gated ones
    assert (t[: b - gated] < gate_at).all() and (t[b - gated:] >= gate_at).all()
    # the teacher's targets were computed on exactly the student's replay inputs
    target_x, target_t, _ = context.teacher.calls[-1]
    assert torch.equal(target_x, x) and torch.equal(target_t, t)


@pytest.mark.parametrize("gate_at, gated", [(1000, 0), (750, 2), (500, 4), (1, 8)])
def test_snr_gating_of_partial_generation_skips_exactly_the_gated_pairs(gate_at, gated):
    """The same gate as generative_distillation's: the G pairs at τ ≥ τ_s take pure noise and
    no generation steps; the R − G others are generated k steps down to their τ < τ_s."""
    b, k = 8, 2
    strategy, student, context = gated_setup("partial_generation_distillation", gate_at, k)
    assert strategy.gate_start() == gate_at
    strategy.loss(student, batch_of(b))
    counts = context.counter.snapshot()
    assert counts[TEACHER_GENERATION] == k * (b - gated)
    assert counts[TEACHER_TARGET] == b and counts[STUDENT_TRAIN] == 2 * b
    *generation, (target_x, target_t, _) = context.teacher.calls
    assert [len(x) for x, _, _ in generation] == ([b - gated] * k if gated < b else [])
    x, t, _ = student.calls[1]  # the replay batch: generated pairs first, then the gated ones
    assert (t[: b - gated] < gate_at).all() and (t[b - gated:] >= gate_at).all()
    assert torch.equal(target_x, x) and torch.equal(target_t, t)
    if gated:  # pure noise N(0, I), not a state the teacher reached
        noise = x[b - gated:]
        assert abs(float(noise.mean())) < 0.2 and 0.8 < float(noise.std()) < 1.2


# --------------------------------------------------------------------------- class-guided


@pytest.mark.parametrize("w, per_pair", [(3.0, 2), (0.0, 1), (1.0, 1)])
def test_class_guided_distillation_targets_the_teachers_guided_prediction(w, per_pair):
    """L_replay = ‖ε_φ(∅) + w·(ε_φ(y) − ε_φ(∅)) − ε_θ(y)‖² on the replay pairs, computed here
    from two plain teacher calls; the guided target's forwards are counted as teacher targets."""
    n, k, null = 12, 2, 10
    strategy, student, context = conditional_setup(
        "class_guided_distillation", label_dropout=0.5, teacher_steps=k,
        distillation_guidance=w,
    )
    out = strategy.loss(student, current_batch(n))
    x, t, y = student.calls[-1]  # the replay pairs, with their labels after dropout
    assert 0 < int((y == null).sum()) < n  # some pairs dropped to the null class
    teacher, model = context.teacher.inner, student.inner
    with torch.no_grad():
        conditional = predict_noise(teacher, x, t, y)
        unconditional = predict_noise(teacher, x, t, torch.full_like(y, null))
        target = unconditional + w * (conditional - unconditional)
        replay = torch.nn.functional.mse_loss(predict_noise(model, x, t, y), target)
    assert torch.allclose(out.parts["loss_replay"], replay, rtol=1e-5, atol=1e-7)
    dropped = y == null  # the formula at y = ∅ is the null-class prediction
    assert torch.allclose(target[dropped], unconditional[dropped], atol=1e-6)
    counts = context.counter.snapshot()
    assert counts[TEACHER_TARGET] == per_pair * n
    assert counts[TEACHER_GENERATION] == k * n and counts[STUDENT_TRAIN] == 2 * n


def test_class_guided_distillation_at_w_one_is_generative_distillation():
    losses = []
    for name in ("generative_distillation", "class_guided_distillation"):
        strategy, student, context = conditional_setup(
            name, label_dropout=0.2, teacher_steps=2, distillation_guidance=1.0)
        losses.append((strategy.loss(student, current_batch(8)).loss,
                       context.counter.snapshot()))
    assert torch.equal(losses[0][0], losses[1][0]) and losses[0][1] == losses[1][1]


def test_class_guided_distillation_is_declared_for_conditional_models_only():
    from cl_sweeps.config import ConfigError, parse_trial_config
    from cl_sweeps.strategies.base import strategy_class

    assert strategy_class("class_guided_distillation").setting == "conditional"
    with pytest.raises(ConfigError, match="strategy.name 'class_guided_distillation' works only "
                       "for class-conditional models, but model.conditional is false"):
        parse_trial_config({"strategy": {"name": "class_guided_distillation"}})
    config = parse_trial_config({"strategy": {"name": "class_guided_distillation"},
                                 "model": {"conditional": True}})
    assert config.strategy.distillation_guidance == 2.0
