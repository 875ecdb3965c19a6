"""CLoG's baselines l2, mas and agem: each one's defining quantity on a hand-made case, their
knobs and counted forwards (the shared helpers of test_teacher_strategies: real tiny UNets)."""

from __future__ import annotations

import io

import pytest
import torch
from test_teacher_strategies import ConfigSpy, batch_of, make_setup

from cl_sweeps.data.sources import ImageSet
from cl_sweeps.evaluation.compute import STUDENT_TRAIN
from cl_sweeps.strategies.agem import project_onto_halfspace
from cl_sweeps.strategies.base import strategy_class
from cl_sweeps.strategies.mas import MAS

NEW = ("l2", "mas", "agem")


def labelled(n: int, labels: list[int], seed: int = 1) -> ImageSet:
    data = batch_of(n, seed)
    return ImageSet(data.images, torch.tensor(labels, dtype=torch.long))


def test_l2_penalty_and_its_gradient():
    strategy, student, context = make_setup("l2", task_index=0, l2_lambda=3.0)
    first = strategy.loss(student, batch_of(4))
    assert set(first.parts) == {"loss_real"}  # task 0: no anchor, no penalty
    strategy.end_task(student, 0, batch_of(4))
    assert strategy.importance is None  # no importance: every parameter weighs 1
    params = dict(student.named_parameters())
    with torch.no_grad():
        for i, p in enumerate(params.values()):
            p.add_(0.01 * (i % 3 - 1))  # -0.01, 0, +0.01 by tensor
    deltas = {n: 0.01 * (i % 3 - 1) for i, n in enumerate(params)}
    out = strategy.loss(student, batch_of(4))
    expected = sum(d**2 * params[n].numel() for n, d in deltas.items())
    assert expected > 0
    assert out.parts["loss_penalty"].item() == pytest.approx(expected, rel=1e-3)
    assert out.loss.item() == pytest.approx(out.parts["loss_real"].item() + 3.0 * expected, rel=1e-4)
    grads = torch.autograd.grad(3.0 * strategy.penalty(student), list(params.values()))
    for (n, p), g in zip(params.items(), grads):  # d/dθ λ·Σ(θ−θ*)² = 2λ(θ−θ*)
        assert torch.allclose(g, torch.full_like(p, 2 * 3.0 * deltas[n]), atol=1e-6)
    # the anchor alone survives a checkpoint loaded with weights_only=True
    buffer = io.BytesIO()
    torch.save(strategy.state_dict(), buffer)
    buffer.seek(0)
    restored, _, _ = make_setup("l2", task_index=1, l2_lambda=3.0)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.penalty(student).item() == pytest.approx(strategy.penalty(student).item())
    assert context.counter.snapshot()[STUDENT_TRAIN] == 8  # two iterations of B = 4, no extra


def test_mas_importance_is_the_mean_absolute_output_norm_gradient(monkeypatch):
    monkeypatch.setattr(MAS, "importance_samples", 3)
    strategy, student, context = make_setup("mas", task_index=0, mas_lambda=2.0)
    data = batch_of(3)
    strategy.end_task(student, 0, data)
    assert context.counter.snapshot()[STUDENT_TRAIN] == 3  # one image per backward
    params = dict(student.named_parameters())
    expected = {n: torch.zeros_like(p) for n, p in params.items()}
    for x_t, t, _ in list(student.calls):
        norm = student(x_t, t).sample.pow(2).sum()
        for (n, _), g in zip(params.items(), torch.autograd.grad(norm, list(params.values()))):
            expected[n] += g.abs() / 3
    total = sum(v.sum() for v in strategy.importance.values())
    assert total > 0
    for n in params:
        assert torch.allclose(strategy.importance[n], expected[n], rtol=1e-3, atol=1e-9 * total)
    # a second task adds its importance; the penalty is λ·ΣΩ(θ−θ*)²
    first = {n: v.clone() for n, v in strategy.importance.items()}
    strategy.end_task(student, 1, data)
    assert all((strategy.importance[n] >= first[n]).all() for n in params)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.01)
    out = strategy.loss(student, batch_of(4))
    weighted = sum((w * 0.01**2).sum() for w in strategy.importance.values()).item()
    assert out.parts["loss_penalty"].item() == pytest.approx(weighted, rel=1e-3)


def test_agem_projection_on_hand_made_vectors():
    g, r = [torch.tensor([1.0, 0.0])], [torch.tensor([-1.0, 1.0])]
    project_onto_halfspace(g, r)  # g·r = −1 < 0: g − (−1/2)·r
    assert torch.allclose(g[0], torch.tensor([0.5, 0.5]))
    assert torch.dot(g[0], r[0]).item() == pytest.approx(0.0)
    kept = [torch.tensor([1.0, 2.0]), torch.tensor([3.0])]
    project_onto_halfspace(kept, [torch.tensor([1.0, 0.0]), torch.tensor([1.0])])  # g·r = 4 ≥ 0
    assert torch.equal(kept[0], torch.tensor([1.0, 2.0])) and torch.equal(kept[1], torch.tensor([3.0]))
    # across several tensors the dot product is taken over all of them as one vector
    g2 = [torch.tensor([1.0]), torch.tensor([0.0])]
    project_onto_halfspace(g2, [torch.tensor([-1.0]), torch.tensor([1.0])])
    assert torch.allclose(torch.cat(g2), torch.tensor([0.5, 0.5]))


@pytest.mark.parametrize("seed", range(4))
def test_agem_gradient_has_a_non_negative_dot_product_with_the_memory_gradient(seed):
    strategy, student, context = make_setup("agem", task_index=0, seed=seed, memory_size=4,
                                            replay_ratio=0.5)
    strategy.end_task(student, 0, labelled(8, [0, 0, 0, 0, 1, 1, 1, 1]))
    assert len(strategy.memory) == 4
    context.task_index = 1
    out = strategy.loss(student, labelled(6, [2] * 6, seed=seed + 10))
    assert context.counter.snapshot()[STUDENT_TRAIN] == 6 + 3  # B real + R memory images
    reference = [r.clone() for r in strategy.reference]
    out.loss.backward()
    params = list(student.parameters())
    before = torch.cat([p.grad.flatten() for p in params])
    ref = torch.cat([r.flatten() for r in reference])
    strategy.adjust_gradients(student)
    after = torch.cat([p.grad.flatten() for p in params])
    dot_before = torch.dot(before, ref).item()
    expected = before - min(0.0, dot_before) / torch.dot(ref, ref).item() * ref
    assert torch.allclose(after, expected, rtol=1e-5, atol=1e-9)
    assert torch.dot(after, ref).item() >= -1e-6 * before.norm().item() * ref.norm().item()
    assert strategy.reference is None  # used once


@pytest.mark.parametrize("name", NEW)
def test_knobs_are_exactly_the_fields_read(name, monkeypatch):
    monkeypatch.setattr(MAS, "importance_samples", 2)
    cls = strategy_class(name)
    assert not cls.needs_teacher and cls.shares_task0
    strategy, student, context = make_setup(name, task_index=0, memory_size=2)
    spy = ConfigSpy(strategy.config)
    strategy.config = spy
    for task in (0, 1):
        context.task_index = task
        batch = labelled(4, [2 * task, 2 * task, 2 * task + 1, 2 * task + 1])
        strategy.loss(student, batch).loss.backward()
        strategy.adjust_gradients(student)
        strategy.after_optimizer_step(student)
        strategy.end_task(student, task, batch)
    assert spy.read == set(cls.knobs)
