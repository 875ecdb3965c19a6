"""Class-conditional models: classifier-free guidance, label dropout, labelled replay and a
conditional UNet that generates the classes it is asked for (real tiny UNets, real sampler)."""

from __future__ import annotations

import pytest
import torch
from sklearn.linear_model import LogisticRegression

from cl_sweeps.config import DataConfig, ModelConfig, StrategyConfig
from cl_sweeps.data.sources import ImageSet, load_source
from cl_sweeps.diffusion import DDIMSampler, build_scheduler, build_unet
from cl_sweeps.diffusion.model import null_class, predict_noise
from cl_sweeps.diffusion.sampling import guided_noise
from cl_sweeps.evaluation.compute import (
    STUDENT_TRAIN,
    TEACHER_GENERATION,
    TEACHER_TARGET,
    ForwardCounter,
    PhaseTimer,
)
from cl_sweeps.strategies.base import Conditioning, TrainingContext, strategy_class
from cl_sweeps.throughput import frozen

CONDITIONAL = ModelConfig(conditional=True)
TASKS = [[0, 1], [2, 3], [4, 5]]


def conditional_unet(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_unet(CONDITIONAL, 8, 1, num_classes=10)


class LabelRecorder(torch.nn.Module):
    """A UNet that remembers (input, timesteps, labels) of every call."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []

    @property
    def config(self):
        return self.inner.config

    def forward(self, x, t, class_labels=None):
        self.calls.append((x.detach().clone(), t.detach().clone(), class_labels))
        return self.inner(x, t, class_labels=class_labels)


def conditional_setup(name: str, *, task_index: int = 2, label_dropout: float = 0.0, **knobs):
    scheduler = build_scheduler(CONDITIONAL)
    teacher = None
    if task_index > 0:
        teacher = LabelRecorder(frozen(conditional_unet(100))).eval().requires_grad_(False)
    context = TrainingContext(
        scheduler=scheduler,
        sampler=DDIMSampler(scheduler),
        counter=ForwardCounter(),
        timer=PhaseTimer(),
        generator=torch.Generator().manual_seed(0),
        device=torch.device("cpu"),
        task_index=task_index,
        teacher=teacher,
        conditioning=Conditioning(TASKS, null_class=10, label_dropout=label_dropout),
    )
    strategy = strategy_class(name)(StrategyConfig(name=name, **knobs), context)
    return strategy, LabelRecorder(conditional_unet(0)), context


def current_batch(n: int, task_index: int = 2) -> ImageSet:
    g = torch.Generator().manual_seed(1)
    labels = torch.tensor(TASKS[task_index]).repeat(n)[:n]
    return ImageSet(torch.rand((n, 1, 8, 8), generator=g) * 2 - 1, labels)


# --------------------------------------------------------------------------- guidance


def test_guidance_scale_one_is_the_conditional_and_zero_the_null_prediction_with_their_counts():
    model = conditional_unet(0).eval()
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([999, 500, 10])
    labels = torch.tensor([1, 4, 7])
    null = torch.full_like(labels, null_class(model))
    with torch.no_grad():
        conditional = predict_noise(model, x, t, labels)
        unconditional = predict_noise(model, x, t, null)
        assert not torch.allclose(conditional, unconditional)  # the labels do change the output
        counts: list[int] = []
        for w, expected in ((1.0, conditional), (0.0, unconditional)):
            eps, pair_labels, pair_eps = guided_noise(model, x, t, labels, w, counts.append)
            assert torch.allclose(eps, expected, atol=1e-5)
            assert torch.equal(pair_eps, eps)  # the pair is that one call
            assert torch.equal(pair_labels, labels if w == 1.0 else null)
        assert counts == [3, 3]  # one forward per image
        eps, pair_labels, pair_eps = guided_noise(model, x, t, labels, 3.0, counts.append)
    assert counts == [3, 3, 6]  # guidance: both predictions, counted
    assert torch.allclose(eps, unconditional + 3.0 * (conditional - unconditional), atol=1e-4)
    assert torch.equal(pair_labels, labels) and torch.allclose(pair_eps, conditional, atol=1e-5)


@pytest.mark.parametrize("w, per_step", [(1.0, 1), (0.0, 1), (2.5, 2)])
def test_guided_sampling_counts_every_forward(w, per_step):
    model, steps, n = conditional_unet(0).eval(), 3, 5
    sampler = DDIMSampler(build_scheduler(CONDITIONAL))
    counter = ForwardCounter()
    labels = torch.arange(n)
    result = sampler.sample(
        model, n, steps, labels=labels, guidance_scale=w, batch_size=2,
        generator=torch.Generator().manual_seed(0), on_forward=counter.hook(TEACHER_GENERATION),
    )
    assert counter.snapshot()[TEACHER_GENERATION] == per_step * steps * n
    assert torch.equal(result.labels, labels)
    if w == 0.0:  # the null class alone: what a conditional model samples without labels
        plain = sampler.sample(
            model, n, steps, batch_size=2, generator=torch.Generator().manual_seed(0)
        )
        assert torch.allclose(result.images, plain.images, atol=1e-5)


def test_labels_are_refused_by_an_unconditional_model():
    model = build_unet(ModelConfig(), 8, 1)
    with pytest.raises(ValueError, match="unconditional"):
        predict_noise(model, torch.randn(1, 1, 8, 8), torch.tensor([3]), torch.tensor([0]))


# --------------------------------------------------------------------------- label dropout


@pytest.mark.parametrize("rate", [0.0, 0.3])
def test_label_dropout_replaces_labels_by_the_null_class_at_its_rate(rate):
    strategy, _, _ = conditional_setup("naive", task_index=0, label_dropout=rate)
    labels = torch.arange(10).repeat(400)
    dropped = strategy.training_labels(labels)
    null = dropped == 10
    assert abs(float(null.float().mean()) - rate) < 0.03  # 4000 draws: SE 0.007
    assert torch.equal(dropped[~null], labels[~null])  # the others keep their own label


def test_a_conditional_strategy_refuses_a_model_call_without_labels():
    strategy, student, _ = conditional_setup("naive", task_index=0)
    with pytest.raises(RuntimeError, match="without labels"):
        strategy.student(student, torch.randn(2, 1, 8, 8), torch.tensor([1, 2]))


# --------------------------------------------------------------------------- labelled replay


def test_real_images_are_learnt_with_their_labels():
    strategy, student, _ = conditional_setup("naive", task_index=0)
    batch = current_batch(6, task_index=0)
    strategy.loss(student, batch)
    assert torch.equal(student.calls[0][2], batch.labels)


@pytest.mark.parametrize("w, per_step", [(1.0, 1), (2.0, 2)])
def test_distillation_generates_past_classes_and_student_and_teacher_share_the_labels(w, per_step):
    strategy, student, context = conditional_setup(
        "generative_distillation", label_dropout=0.5, replay_ratio=1.0, teacher_steps=2,
        guidance_scale=w,
    )
    n = 40
    strategy.loss(student, current_batch(n))
    generation = context.teacher.calls[:-1]  # the last teacher call is the target
    requested = generation[0][2][: len(generation[0][0]) // per_step]
    assert set(requested.tolist()) <= {0, 1, 2, 3}  # classes of the tasks before task 2
    assert set(requested.tolist()) == {0, 1, 2, 3}  # drawn over all of them (40 draws)
    counts = context.counter.snapshot()
    assert counts[TEACHER_GENERATION] == per_step * 2 * n and counts[TEACHER_TARGET] == n
    assert counts[STUDENT_TRAIN] == 2 * n
    _, _, target_labels = context.teacher.calls[-1]
    _, _, student_labels = student.calls[-1]
    assert torch.equal(target_labels, student_labels)  # the same labels, dropout included
    kept = student_labels != 10
    assert torch.equal(student_labels[kept], requested[kept])  # each image its own class
    assert 0 < int(kept.sum()) < n  # label dropout hit some, not all


@pytest.mark.parametrize(
    "name",
    ["generative_replay", "gaussian_distillation", "partial_generation_distillation",
     "intermediate_distillation", "lwf_distillation", "er", "agem", "ewc", "mas", "si", "l2",
     "ensemble", "lora", "class_guided_distillation"],
)
def test_every_strategy_calls_a_conditional_model_with_labels(name):
    """Real labels for the current task's images, past classes (or the null class) for replay."""
    strategy, student, context = conditional_setup(name, task_index=0)
    strategy.loss(student, current_batch(4, task_index=0))
    strategy.end_task(student, 0, current_batch(4, task_index=0))  # memories, anchors
    context.task_index = 1
    strategy.begin_task(student, 1)
    if context.teacher is None and strategy.needs_teacher:
        context.teacher = LabelRecorder(frozen(conditional_unet(100))).eval().requires_grad_(False)
    batch = current_batch(4, task_index=1)
    out = strategy.loss(student, batch)
    out.loss.backward()
    strategy.adjust_gradients(student)
    labels = [call[2] for call in student.calls]
    assert all(y is not None for y in labels)
    seen = set(torch.cat(labels).tolist())
    assert seen <= {0, 1, 2, 3, 10} and set(batch.labels.tolist()) <= seen


# --------------------------------------------------------------------------- the whole loop


def test_a_conditional_model_generates_the_requested_classes():
    """150 iterations of the naive strategy (label dropout on) on 4 digit classes, then 25
    images per class with guidance 2: a classifier trained here on the real digits names the
    requested class far above chance (0.25); 0.92 when this was written."""
    classes = [0, 1, 2, 3]
    source = load_source(DataConfig(dataset="digits"))
    train = source.train.of_classes(classes)
    strategy, _, context = conditional_setup("naive", task_index=0, label_dropout=0.1)
    context.conditioning = Conditioning([classes], null_class=10, label_dropout=0.1)
    model = conditional_unet(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    picks = torch.Generator().manual_seed(2)
    for _ in range(150):
        batch = train.subset(torch.randint(0, len(train), (32,), generator=picks))
        loss = strategy.loss(model, batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    requested = torch.tensor(classes).repeat_interleave(25)
    images = context.sampler.sample(
        model, len(requested), 10, labels=requested, guidance_scale=2.0,
        generator=torch.Generator().manual_seed(3),
    ).images.clamp(-1, 1)
    classifier = LogisticRegression(max_iter=500).fit(
        source.train.images.flatten(1).numpy(), source.train.labels.numpy()
    )
    assert classifier.score(source.test.images.flatten(1).numpy(), source.test.labels.numpy()) > 0.9
    named = torch.as_tensor(classifier.predict(images.flatten(1).numpy()))
    agreement = float((named == requested).float().mean())
    assert agreement > 0.6, f"the classifier names the requested class for {agreement:.0%}"


def test_a_conditional_run_evaluates_the_requested_classes_and_counts_guidance(small_trial):
    """The engine end to end: guided teacher generation and evaluation sampling count two
    forwards per image and step, and every task reports label_agreement."""
    from cl_sweeps import metrics as M
    from cl_sweeps.sequence import run_sequence

    n, steps, k, iterations, batch = 20, 2, 2, 2, 8
    config = small_trial(
        model={"conditional": True},
        data={"dataset": "digits", "tasks": [[0, 1], [2, 3]], "max_train_per_class": 20,
              "max_test_per_class": 12},
        strategy={"name": "generative_distillation", "teacher_steps": k, "replay_ratio": 0.5,
                  "guidance_scale": 2.0},
        train={"iterations_per_task": iterations, "batch_size": batch},
        evaluation={"n_eval_samples": n, "eval_steps": steps, "guidance_scale": 1.5,
                    "denoise_eval_per_task": 8, "classifier_epochs": 2, "sample_grid_size": 0},
    )
    history = run_sequence(config).history
    last = history[-1]
    assert last[f"{M.FORWARDS}eval_sampling"] == 2 * (2 * n * steps)  # 2 tasks, guided
    replay = round(0.5 * batch)
    assert last[f"{M.FORWARDS}teacher_generation"] == iterations * 2 * k * replay  # task 1 only
    assert last[f"{M.FORWARDS}teacher_target"] == iterations * replay
    for row in history:
        assert 0.0 <= row[M.LABEL_AGREEMENT] <= 1.0
        assert all(row[f"{M.FID_TASK}{t}"] < float("inf") for t in range(int(row[M.TASK]) + 1))


@pytest.mark.parametrize("override, named", [
    ({"evaluation": {"guidance_scale": 2.0}}, "evaluation.guidance_scale=2.0"),
    ({"strategy": {"guidance_scale": 0.0}}, "strategy.guidance_scale=0.0"),
])
def test_guidance_is_refused_without_a_conditional_model(override, named):
    from cl_sweeps.config import ConfigError, parse_trial_config

    with pytest.raises(ConfigError, match="model.conditional is false") as error:
        parse_trial_config(override)
    assert named in str(error.value) and "allowed: model.conditional: true" in str(error.value)
    conditional = {**override, "model": {**override.get("model", {}), "conditional": True}}
    assert parse_trial_config(conditional).model.conditional
