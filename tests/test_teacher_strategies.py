"""The teacher-based strategies and the EWC/SI regularisers: their math, their costs, their knobs.

The UNet calls are recorded by a thin wrapper (inputs, timesteps and outputs of every call) so the
tests compare the targets a strategy trains on with what the frozen teacher actually returned, and
the inputs with what the sampler generated — real models, real sampler, real schedule.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DModel

from cl_sweeps.config import ModelConfig, StrategyConfig, TrialConfig
from cl_sweeps.data.sources import ImageSet
from cl_sweeps.diffusion import DDIMSampler, build_scheduler, build_unet
from cl_sweeps.diffusion.sampling import ddim_update, partial_timesteps
from cl_sweeps.evaluation.compute import (
    STUDENT_TRAIN,
    TEACHER_GENERATION,
    TEACHER_TARGET,
    ForwardCounter,
    PhaseTimer,
)
from cl_sweeps.sequence import Engine
from cl_sweeps.strategies import TrainingContext, base
from cl_sweeps.strategies.base import strategy_class
from cl_sweeps.strategies.ewc import EWC
from cl_sweeps.strategies.naive import Naive
from cl_sweeps.strategies.teacher import TeacherStrategy
from cl_sweeps.throughput import frozen

GENERATING = ("generative_replay", "generative_distillation", "partial_generation_distillation")
TEACHER_STRATEGIES = (
    *GENERATING,
    "gaussian_distillation",
    "lwf_distillation",
    "intermediate_distillation",
)
REGULARISERS = ("ewc", "si")
ALL = (*TEACHER_STRATEGIES, *REGULARISERS)


# --------------------------------------------------------------------------- helpers


class Recorder(torch.nn.Module):
    """A UNet that remembers (input, timesteps, output) of every call."""

    def __init__(self, inner: UNet2DModel):
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    @property
    def config(self):
        return self.inner.config

    def forward(self, x: torch.Tensor, t: torch.Tensor):
        out = self.inner(x, t)
        self.calls.append((x.detach().clone(), t.detach().clone(), out.sample.detach().clone()))
        return out


class RecordingSampler(DDIMSampler):
    """The real DDIM sampler, remembering its arguments and results."""

    def __init__(self, scheduler):
        super().__init__(scheduler)
        self.runs: list[tuple[int, dict, object]] = []

    def sample(self, model, n, steps, **kwargs):
        result = super().sample(model, n, steps, **kwargs)
        self.runs.append((n, kwargs, result))
        return result


def tiny_unet(seed: int) -> UNet2DModel:
    torch.manual_seed(seed)
    return build_unet(ModelConfig(), 8, 1)


def make_setup(name: str, *, task_index: int = 1, seed: int = 0, **knobs):
    """A strategy on a recorded student and (for task > 0) a recorded frozen teacher."""
    scheduler = build_scheduler(ModelConfig())
    teacher = None
    if task_index > 0:
        teacher = Recorder(frozen(tiny_unet(seed + 100))).eval().requires_grad_(False)
    context = TrainingContext(
        scheduler=scheduler,
        sampler=RecordingSampler(scheduler),
        counter=ForwardCounter(),
        timer=PhaseTimer(),
        generator=torch.Generator().manual_seed(seed),
        device=torch.device("cpu"),
        task_index=task_index,
        teacher=teacher,
    )
    strategy = strategy_class(name)(StrategyConfig(name=name, **knobs), context)
    return strategy, Recorder(tiny_unet(seed)), context


def batch_of(n: int, seed: int = 1) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    return ImageSet(torch.rand((n, 1, 8, 8), generator=g) * 2 - 1, torch.zeros(n, dtype=torch.long))


def implied_noise(scheduler, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """ε such that x_t = add_noise(x0, ε, t)."""
    abar = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    return (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()


# --------------------------------------------------------------------------- task 0


@pytest.mark.parametrize("name", TEACHER_STRATEGIES)
def test_task_zero_trains_like_naive(name):
    strategy, student, context = make_setup(name, task_index=0)
    out = strategy.loss(student, batch_of(6))
    assert set(out.parts) == {"loss_real"}
    assert len(student.calls) == 1 and student.calls[0][0].shape[0] == 6
    assert context.counter.snapshot()[TEACHER_GENERATION] == 0
    assert context.counter.snapshot()[TEACHER_TARGET] == 0
    naive, naive_student, _ = make_setup("naive", task_index=0)
    expected = naive.loss(naive_student, batch_of(6)).loss
    assert torch.equal(out.loss, expected)


# --------------------------------------------------------------------------- replay math


def test_generative_replay_target_is_the_sampled_noise():
    k, b = 3, 4
    strategy, student, context = make_setup(
        "generative_replay", teacher_steps=k, replay_timesteps=[300, 700]
    )
    out = strategy.loss(student, batch_of(b))
    (n, kwargs, result), = context.sampler.runs
    assert n == b and kwargs["eta"] == 0.0 and not kwargs["return_trajectory"]
    x_t, t, prediction = student.calls[1]
    assert ((300 <= t) & (t < 700)).all()
    eps = implied_noise(context.scheduler, result.images, x_t, t)
    assert abs(eps.mean()) < 0.3 and 0.7 < eps.std() < 1.3  # a draw of N(0, I)
    expected = F.mse_loss(prediction, eps).item()
    assert out.parts["loss_replay"].item() == pytest.approx(expected, rel=1e-4)
    # the teacher only generated (k calls), it gave no targets
    assert len(context.teacher.calls) == k
    assert context.counter.snapshot()[TEACHER_TARGET] == 0


def test_generative_distillation_targets_are_the_teachers_outputs():
    k, b = 3, 4
    strategy, student, context = make_setup("generative_distillation", teacher_steps=k)
    out = strategy.loss(student, batch_of(b))
    (_, _, result), = context.sampler.runs
    assert len(context.teacher.calls) == k + 1  # k generation calls, then the target call
    x_teacher, t_teacher, target = context.teacher.calls[-1]
    x_t, t, prediction = student.calls[1]
    assert torch.equal(x_t, x_teacher) and torch.equal(t, t_teacher)
    assert out.parts["loss_replay"].item() == pytest.approx(F.mse_loss(prediction, target).item(), rel=1e-5)
    # the inputs are the generated images re-noised: the implied noise is a normal draw
    eps = implied_noise(context.scheduler, result.images, x_t, t)
    assert torch.isfinite(eps).all() and 0.6 < eps.std() < 1.4
    # with the weighting of task 1: L = ½ L_real + ½ λ L_replay
    expected = 0.5 * out.parts["loss_real"].item() + 0.5 * out.parts["loss_replay"].item()
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)


def test_generative_distillation_replays_the_generated_images():
    """With replay_timesteps=[0, 1) every τ is 0, so x̂_τ ≈ x̂0: the generated images."""
    strategy, student, context = make_setup(
        "generative_distillation", teacher_steps=2, replay_timesteps=[0, 1]
    )
    strategy.loss(student, batch_of(4))
    (_, _, result), = context.sampler.runs
    x_t, t, _ = student.calls[1]
    assert (t == 0).all()
    assert torch.allclose(x_t, result.images, atol=0.06)  # noise scale √(1 − ᾱ_0) = 0.01


@pytest.mark.parametrize("window", [(0, 1000), (500, 1000), (0, 10)])
def test_partial_generation_distils_on_the_states_reached_at_tau(window):
    k, b = 3, 12
    strategy, student, context = make_setup(
        "partial_generation_distillation", teacher_steps=k, replay_timesteps=list(window)
    )
    out = strategy.loss(student, batch_of(b))
    x_s, tau, prediction = student.calls[1]
    assert ((window[0] <= tau) & (tau < window[1])).all()
    # k batched teacher calls on the per-image grid of the reference's set_timesteps ...
    points, targets = partial_timesteps(tau, k, 1000)
    generation, (x_teacher, t_teacher, target) = context.teacher.calls[:k], context.teacher.calls[k]
    assert len(context.teacher.calls) == k + 1
    for (x, t, _), expected in zip(generation, points):
        assert x.shape[0] == b and torch.equal(t, expected)
    # ... each a DDIM update of the previous state, ending exactly at τ
    x = generation[0][0]
    for (state, t, eps), t_prev in zip(generation, targets):
        assert torch.equal(state, x)
        x = torch.where((t_prev < t).view(-1, 1, 1, 1),
                        ddim_update(context.scheduler, eps, state, t, t_prev), state)
    torch.testing.assert_close(x_s, x)
    # input = the reached state at τ, no re-noising; target = the teacher's output there
    assert torch.equal(x_teacher, x_s) and torch.equal(t_teacher, tau)
    assert out.parts["loss_replay"].item() == pytest.approx(F.mse_loss(prediction, target).item(), rel=1e-5)
    counts = context.counter.snapshot()
    assert counts[TEACHER_GENERATION] == k * b and counts[TEACHER_TARGET] == b


class PixelModel(torch.nn.Module):
    """A one-parameter stand-in for the UNet (same call signature), for large replay batches."""

    config = type("Config", (), {"in_channels": 1, "sample_size": 8})()

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x, t):
        return type("Out", (), {"sample": self.scale * x})()


def test_partial_generation_tau_covers_every_timestep():
    b, ratio = 16, 256  # R = 4,096 replay images in one iteration
    strategy, _, context = make_setup(
        "partial_generation_distillation", teacher_steps=2, replay_ratio=ratio
    )
    context.teacher = Recorder(PixelModel()).requires_grad_(False)
    student = Recorder(PixelModel())
    strategy.loss(student, batch_of(b))
    tau = student.calls[1][1]
    assert len(tau) == 4096 and tau.min() >= 0 and tau.max() <= 999
    assert len(tau.unique()) >= 500 and tau.min() < 10 and tau.max() > 989
    assert context.counter.snapshot()[TEACHER_GENERATION] == 2 * 4096


def test_gaussian_inputs_are_pure_noise():
    b, ratio = 4, 16  # 64 replay inputs of 8x8
    strategy, student, context = make_setup(
        "gaussian_distillation", replay_ratio=ratio, replay_timesteps=[0, 300]
    )
    out = strategy.loss(student, batch_of(b))
    assert context.sampler.runs == [] and context.counter.snapshot()[TEACHER_GENERATION] == 0
    z, t, prediction = student.calls[1]
    assert z.shape == (b * ratio, 1, 8, 8) and (t < 300).all()
    assert abs(z.mean()) < 0.1 and abs(z.std() - 1) < 0.05
    (x_teacher, t_teacher, target), = context.teacher.calls
    assert torch.equal(x_teacher, z) and torch.equal(t_teacher, t)
    assert out.parts["loss_replay"].item() == pytest.approx(F.mse_loss(prediction, target).item(), rel=1e-5)
    # the inputs do not depend on the data: another batch, same seed, same inputs
    other, other_student, _ = make_setup(
        "gaussian_distillation", replay_ratio=ratio, replay_timesteps=[0, 300]
    )
    other.loss(other_student, batch_of(b, seed=7))
    assert torch.equal(other_student.calls[1][0], z)


def test_lwf_distils_on_the_real_noisy_inputs_with_one_student_forward():
    b = 6
    strategy, student, context = make_setup("lwf_distillation", lambd=2.0, weight_replay_loss=False)
    batch = batch_of(b)
    out = strategy.loss(student, batch)
    (x_t, t, prediction), = student.calls
    (x_teacher, t_teacher, target), = context.teacher.calls
    assert torch.equal(x_teacher, x_t) and torch.equal(t_teacher, t)
    eps = implied_noise(context.scheduler, batch.images, x_t, t)
    assert out.parts["loss_real"].item() == pytest.approx(F.mse_loss(prediction, eps).item(), rel=1e-4)
    assert out.parts["loss_replay"].item() == pytest.approx(F.mse_loss(prediction, target).item(), rel=1e-5)
    assert out.loss.item() == pytest.approx(out.parts["loss_real"].item() + 2 * out.parts["loss_replay"].item())
    counts = context.counter.snapshot()
    assert counts == {**counts, STUDENT_TRAIN: b, TEACHER_TARGET: b, TEACHER_GENERATION: 0}


@pytest.mark.parametrize(
    ("ratio", "start", "images", "grid_used"),
    [(1.0, (0, 1000), 2, 4), (1.25, (0, 1000), 3, 4), (1.0, (0, 500), 4, 2)],
)
def test_intermediate_distillation_makes_k_pairs_per_generated_image(ratio, start, images, grid_used):
    k, b = 4, 8
    strategy, student, context = make_setup(
        "intermediate_distillation", teacher_steps=k, replay_ratio=ratio,
        replay_timesteps=list(start),
    )
    out = strategy.loss(student, batch_of(b))
    (n, kwargs, _), = context.sampler.runs
    assert n == images == math.ceil(round(ratio * b) / grid_used) and kwargs["return_trajectory"]
    # every generated image went through all k grid steps; no extra target forward
    assert [c[0].shape[0] for c in context.teacher.calls] == [images] * k
    counts = context.counter.snapshot()
    assert counts[TEACHER_GENERATION] == k * images and counts[TEACHER_TARGET] == 0
    # the pairs are the trajectory's own (state, timestep, teacher output), grid_used per image
    used = context.teacher.calls[k - grid_used :]
    x_s, t_s, prediction = student.calls[1]
    assert x_s.shape[0] == grid_used * images
    assert torch.equal(x_s, torch.cat([c[0] for c in used]))
    assert torch.equal(t_s, torch.cat([c[1] for c in used]))
    assert ((start[0] <= t_s) & (t_s < start[1])).all()
    target = torch.cat([c[2] for c in used])
    assert out.parts["loss_replay"].item() == pytest.approx(F.mse_loss(prediction, target).item(), rel=1e-5)


@pytest.mark.parametrize("name", [*GENERATING, "gaussian_distillation"])
@pytest.mark.parametrize("ratio", [0.0, 0.3, 1.0, 2.0])
def test_replay_batch_size_follows_replay_ratio(name, ratio):
    b = 8
    strategy, student, context = make_setup(name, teacher_steps=1, replay_ratio=ratio)
    out = strategy.loss(student, batch_of(b))
    expected = round(ratio * b)
    if expected == 0:
        assert len(student.calls) == 1 and context.teacher.calls == []
        assert set(out.parts) == {"loss_real"}
    else:
        assert [c[0].shape[0] for c in student.calls] == [b, expected]


# --------------------------------------------------------------------------- costs


def expected_forwards(name: str, b: int, r: int, k: int) -> dict[str, int]:
    """The cost model of METHOD.md, in image-forwards per iteration, by purpose."""
    pairs = k * math.ceil(r / k)
    return {
        "generative_replay": (b + r, k * r, 0),
        "generative_distillation": (b + r, k * r, r),
        "partial_generation_distillation": (b + r, k * r, r),
        "gaussian_distillation": (b + r, 0, r),
        "lwf_distillation": (b, 0, b),
        "intermediate_distillation": (b + pairs, pairs, 0),
        "ewc": (b, 0, 0),
        "si": (b, 0, 0),
    }[name]


@pytest.mark.parametrize("name", ALL)
def test_counted_forwards_match_the_cost_model(name):
    b, ratio, k = 8, 0.75, 3
    strategy, student, context = make_setup(name, teacher_steps=k, replay_ratio=ratio)
    strategy.loss(student, batch_of(b))
    counts = context.counter.snapshot()
    measured = (counts[STUDENT_TRAIN], counts[TEACHER_GENERATION], counts[TEACHER_TARGET])
    assert measured == expected_forwards(name, b, round(ratio * b), k)
    assert sum(c[0].shape[0] for c in student.calls) == counts[STUDENT_TRAIN]
    if context.teacher is not None and name in TEACHER_STRATEGIES:
        assert sum(c[0].shape[0] for c in context.teacher.calls) == measured[1] + measured[2]


@pytest.mark.parametrize("name", ["generative_distillation", "partial_generation_distillation"])
def test_distillation_cost_is_kR_plus_R_teacher_forwards_per_iteration(name, tmp_path):
    """Through the real engine: 3 iterations of task 1, k = 4, B = R = 8."""
    config = _trial(name, tmp_path, teacher_steps=4)
    engine = Engine(config)
    engine.train_task(0, progress=False)
    before = engine.counter.snapshot()
    engine.train_task(1, progress=False)
    after = engine.counter.snapshot()
    per_iteration = {p: (after[p] - before[p]) / 3 for p in after}
    assert per_iteration[TEACHER_GENERATION] == 4 * 8 and per_iteration[TEACHER_TARGET] == 8
    assert per_iteration[STUDENT_TRAIN] == 8 + 8
    assert engine.timer.seconds["replay_generation"] > 0


# --------------------------------------------------------------------------- knobs


class ConfigSpy:
    """Records which StrategyConfig fields a strategy reads."""

    def __init__(self, config: StrategyConfig):
        self._config = config
        self.read: set[str] = set()

    def __getattr__(self, name: str):
        self.read.add(name)
        return getattr(self._config, name)


@pytest.mark.parametrize("name", ALL)
def test_knobs_are_exactly_the_fields_read(name, monkeypatch):
    monkeypatch.setattr(EWC, "fisher_samples", 2)
    cls = strategy_class(name)
    assert set(cls.knobs) <= set(StrategyConfig.model_fields)
    strategy, student, context = make_setup(
        name, task_index=0, teacher_steps=2, replay_timesteps=[0, 600]
    )
    spy = ConfigSpy(strategy.config)
    strategy.config = spy
    batch = batch_of(4)
    for task in (0, 1):
        context.task_index = task
        if task == 1 and cls.needs_teacher:
            context.teacher = frozen(tiny_unet(5))
        strategy.loss(student, batch).loss.backward()
        strategy.after_optimizer_step(student)
        strategy.end_task(student, task, batch)
    assert spy.read == set(cls.knobs)


# --------------------------------------------------------------------------- the real engine


def _trial(name: str, output_dir, iterations: int = 3, batch: int = 8, **knobs) -> TrialConfig:
    return TrialConfig.model_validate(
        {
            "seed": 0,
            "device": "cpu",
            "output_dir": str(output_dir),
            "data": {"tasks": [[0, 1], [2, 3]]},
            "strategy": {"name": name, **knobs},
            "train": {"iterations_per_task": iterations, "batch_size": batch},
            "evaluation": {"denoise_eval_per_task": 16},
        }
    )


@pytest.mark.parametrize("name", TEACHER_STRATEGIES)
def test_teacher_is_frozen_end_of_previous_task_copy(name, tmp_path, monkeypatch):
    """Two tasks through the engine's own training loop, watching the teacher at every step."""
    seen: list[dict] = []

    class Watched(strategy_class(name)):  # type: ignore[misc, valid-type]
        def loss(self, model, batch):
            teacher = self.context.teacher
            if teacher is not None:
                seen.append(
                    {
                        "id": id(teacher),
                        "training": teacher.training,
                        "grad": any(p.requires_grad for p in teacher.parameters()),
                        "state": {k: v.clone() for k, v in teacher.state_dict().items()},
                    }
                )
            return super().loss(model, batch)

    monkeypatch.setitem(base._REGISTRY, name, Watched)  # the engine builds the watched class
    engine = Engine(_trial(name, tmp_path, teacher_steps=2))
    engine.train_task(0, progress=False)
    assert seen == []  # no teacher on task 0
    end_of_task_0 = {k: v.clone() for k, v in engine.model.state_dict().items()}
    engine.train_task(1, progress=False)
    assert len(seen) == 3  # one per iteration of task 1
    assert len({s["id"] for s in seen}) == 1  # one copy for the whole task
    assert not any(s["training"] or s["grad"] for s in seen)
    first, last = seen[0]["state"], seen[-1]["state"]
    assert all(torch.equal(first[k], last[k]) for k in first)  # bit-identical through the task
    assert all(torch.equal(first[k], end_of_task_0[k]) for k in first)  # the end-of-task-0 model
    final = engine.model.state_dict()  # ... while the student moved on
    assert any(not torch.equal(first[k], final[k]) for k in first)
    assert engine.context.teacher is None  # released after the task


def _fixed_loss(engine: Engine, teacher, batch: ImageSet, seeds=(11, 12, 13)) -> float:
    """The strategy's own task-1 loss on fixed inputs: same batch, same random draws."""
    context = engine.context
    context.task_index, context.teacher = 1, teacher
    state = context.generator.get_state()
    values = []
    with torch.no_grad():
        for seed in seeds:
            context.generator.manual_seed(seed)
            values.append(engine.strategy.loss(engine.model, batch).loss.item())
    context.generator.set_state(state)
    context.teacher = None
    return sum(values) / len(values)


@pytest.mark.parametrize("name", ALL)
def test_loss_decreases_on_a_task(name, tmp_path, monkeypatch):
    monkeypatch.setattr(EWC, "fisher_samples", 16)
    config = _trial(name, tmp_path, iterations=10, batch=8, teacher_steps=2)
    config.train.lr = 1e-3
    engine = Engine(config)
    engine.train_task(0, progress=False)  # also sets EWC's Fisher / SI's importance
    teacher = frozen(copy.deepcopy(engine.model)) if engine.strategy.needs_teacher else None
    batch = engine.stream.train[1].subset(torch.arange(16))
    before = _fixed_loss(engine, teacher, batch)
    config.train.iterations_per_task = 30
    engine.train_task(1, progress=False)
    after = _fixed_loss(engine, teacher, batch)
    print(f"{name}: fixed-input task-1 loss {before:.4f} -> {after:.4f}")
    assert after < 0.9 * before, (before, after)


# --------------------------------------------------------------------------- EWC and SI


def test_ewc_fisher_is_the_mean_squared_per_image_gradient(monkeypatch):
    monkeypatch.setattr(EWC, "fisher_samples", 3)
    strategy, student, context = make_setup("ewc", task_index=0)
    image = batch_of(1).images
    data = ImageSet(image.repeat(3, 1, 1, 1), torch.zeros(3, dtype=torch.long))
    strategy.end_task(student, 0, data)
    assert context.counter.snapshot()[STUDENT_TRAIN] == 3
    params = dict(student.named_parameters())
    expected = {n: torch.zeros_like(p) for n, p in params.items()}
    for x_t, t, _ in list(student.calls):
        eps = implied_noise(context.scheduler, image, x_t, t)
        loss = F.mse_loss(student(x_t, t).sample, eps)
        for (n, _), g in zip(params.items(), torch.autograd.grad(loss, list(params.values()))):
            expected[n] += g.pow(2) / 3
    total = sum(v.sum() for v in strategy.importance.values())
    assert total > 0
    for n in params:
        assert torch.allclose(strategy.importance[n], expected[n], rtol=1e-2, atol=1e-9 * total)
    # a second task adds its Fisher to the first
    first = copy.deepcopy(strategy.importance)
    strategy.end_task(student, 1, data)
    assert all((strategy.importance[n] >= first[n]).all() for n in params)
    assert sum(v.sum() for v in strategy.importance.values()) > total


def test_si_path_integral_and_importance():
    strategy, student, _ = make_setup("si", task_index=0)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.01)
    params = dict(student.named_parameters())
    start = {n: p.detach().clone() for n, p in params.items()}
    path = {n: torch.zeros_like(p) for n, p in params.items()}
    for step in range(2):
        optimizer.zero_grad()
        strategy.loss(student, batch_of(4, seed=step)).loss.backward()
        for n, p in params.items():  # plain SGD: Δθ = −lr·g, so −g·Δθ = lr·g²
            path[n] += 0.01 * p.grad.pow(2)
        optimizer.step()
        strategy.after_optimizer_step(student)
    for n in params:  # Δθ is a difference of float32 parameters: a few digits only
        assert torch.allclose(strategy.path[n], path[n], rtol=1e-2, atol=1e-9)
    strategy.end_task(student, 0, batch_of(4))
    for n, p in params.items():
        expected = path[n] / ((p.detach() - start[n]).pow(2) + strategy.damping)
        assert torch.allclose(strategy.importance[n], expected, rtol=1e-2, atol=1e-9)
        assert torch.equal(strategy.anchor[n], p.detach())
    assert strategy.start is None and strategy.path is None  # per-task state dropped


@pytest.mark.parametrize("name", REGULARISERS)
def test_penalty_is_strength_times_importance_weighted_distance(name, monkeypatch):
    monkeypatch.setattr(EWC, "fisher_samples", 2)
    strength = {"ewc": "ewc_lambda", "si": "si_c"}[name]
    strategy, student, _ = make_setup(name, task_index=0, **{strength: 3.0})
    strategy.loss(student, batch_of(4)).loss.backward()
    with torch.no_grad():  # one gradient step: SI's path integral needs one
        for p in student.parameters():
            p.sub_(0.01 * p.grad)
    strategy.after_optimizer_step(student)
    strategy.end_task(student, 0, batch_of(4))
    at_anchor = strategy.loss(student, batch_of(4))
    assert at_anchor.parts["loss_penalty"].item() == 0.0
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.01)
    out = strategy.loss(student, batch_of(4))
    expected = sum((w * 0.01**2).sum() for w in strategy.importance.values()).item()
    assert expected > 0
    assert out.parts["loss_penalty"].item() == pytest.approx(expected, rel=1e-3)
    assert out.loss.item() == pytest.approx(out.parts["loss_real"].item() + 3.0 * expected, rel=1e-4)
    # the state survives a checkpoint loaded with weights_only=True
    buffer = io.BytesIO()
    torch.save(strategy.state_dict(), buffer)
    buffer.seek(0)
    restored, _, _ = make_setup(name, task_index=1, **{strength: 3.0})
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.penalty(student).item() == pytest.approx(strategy.penalty(student).item())


def test_teacher_strategies_share_one_base():
    for name in TEACHER_STRATEGIES:
        cls = strategy_class(name)
        assert issubclass(cls, TeacherStrategy) and cls.needs_teacher
    for name in REGULARISERS:
        assert not strategy_class(name).needs_teacher
    assert not issubclass(Naive, TeacherStrategy)
