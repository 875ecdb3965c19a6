"""MAGD's EMA teacher and SNR-gated generation, on real tiny UNets and the real sampler."""

from __future__ import annotations

import copy

import pytest
import torch
from test_teacher_strategies import batch_of, make_setup

from cl_sweeps.evaluation.compute import STUDENT_TRAIN, TEACHER_GENERATION, TEACHER_TARGET
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


@pytest.mark.parametrize("gate_at, gated", [(1000, 0), (750, 2), (500, 4), (1, 8)])
def test_snr_gating_skips_generation_exactly_where_its_rule_says(gate_at, gated):
    b, k = 8, 2  # R = B = 8 replay pairs
    scheduler_probe, _, _ = make_setup("generative_distillation")
    threshold = 0.0 if gate_at == 1000 else snr_between(scheduler_probe.context.scheduler, gate_at)
    strategy, student, context = make_setup(
        "generative_distillation", teacher_steps=k, snr_threshold=threshold
    )
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
