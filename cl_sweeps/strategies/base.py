"""The common base of all strategies: one job, forming the minibatch, targets and loss.

The engine owns the loop, the optimiser, evaluation and checkpoints. A strategy gets the current
minibatch of real images and a `TrainingContext` (noise schedule, sampler, frozen teacher, task
index, random generator, forward counter) and returns the loss, counting every UNet
image-forward it spends by purpose.

With a class-conditional model (`model.conditional`) every model call carries labels: real
images their own (with label dropout to the null class for classifier-free guidance), replay
the classes of past tasks (`past_labels`); the student and the teacher always see the same
labels for the same pair. `student` refuses a call without labels on such a model, so a
strategy that forgets them fails loudly instead of training the null class.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, UNet2DModel
from torch import nn

from cl_sweeps.config import NUM_TRAIN_TIMESTEPS, StrategyConfig
from cl_sweeps.data.sources import ImageSet
from cl_sweeps.diffusion.model import predict_noise
from cl_sweeps.diffusion.sampling import DDIMSampler
from cl_sweeps.evaluation.compute import (
    STUDENT_TRAIN,
    TEACHER_TARGET,
    FlopsPerImage,
    ForwardCounter,
    PhaseTimer,
    ema_update_flops,
    measure_flops_per_image,
)
from cl_sweeps.strategies.catalog import strategy_info


@dataclass
class Conditioning:
    """A class-conditional run's classes: those of every task (replay draws from past tasks'),
    the null class index and the training label dropout."""

    task_classes: list[list[int]]
    null_class: int
    label_dropout: float = 0.0

    def past_classes(self, task_index: int) -> list[int]:
        """The classes of the tasks before `task_index` (what a teacher of that task knows)."""
        return [c for classes in self.task_classes[:task_index] for c in classes]


@dataclass
class TrainingContext:
    """Everything a strategy may use besides the minibatch; filled in by the engine."""

    scheduler: DDIMScheduler
    sampler: DDIMSampler
    counter: ForwardCounter
    timer: PhaseTimer
    generator: torch.Generator
    device: torch.device
    task_index: int = 0
    teacher: UNet2DModel | None = None
    conditioning: Conditioning | None = None  # None: an unconditional model


@dataclass
class LossOutput:
    """The loss to back-propagate and its named parts (for logging): detached device tensors,
    read on the host only every `train.loss_read_every` iterations (no sync per iteration)."""

    loss: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)


class Strategy:
    """Base strategy: plain noise-prediction training on the real minibatch."""

    name: ClassVar[str] = ""  # set by @register from the module's NAME
    needs_teacher: ClassVar[bool] = False
    # True if task 0 trains exactly like naive (same loss, same random draws, same counts) and
    # all strategy state comes from end_task: then trials may share one task-0 result
    # (cl_sweeps/prefix.py) and each runs only its own end_task on it. tests/test_prefix.py
    # checks every strategy that says so.
    shares_task0: ClassVar[bool] = False
    knobs: ClassVar[tuple[str, ...]] = ()  # StrategyConfig fields it reads: the module's KNOBS
    setting: ClassVar[str] = "both"  # the models it works for: the module's SETTING
    # True if begin_task/end_task change which parameters train (adapters added or removed, the
    # model re-initialised): the engine then builds a fresh optimiser after each of them, so an
    # optimiser never holds the state of parameters that are gone and a checkpoint's optimiser
    # state matches a freshly built model's.
    fresh_optimizer: ClassVar[bool] = False

    def __init__(self, config: StrategyConfig, context: TrainingContext):
        self.config = config
        self.context = context

    @classmethod
    def adapter_flops_per_image(cls, model: UNet2DModel, config: StrategyConfig) -> float:
        """FLOPs of one image's forward+backward through the modules the strategy adds to the
        UNet while it trains (LoRA adapters), beyond the UNet's own; 0: it adds none. Called
        once by the engine on the plain model, before any compilation; the forwards that pay
        it are counted as ADAPTER_TRAIN."""
        del model, config
        return 0.0

    # --- hooks the engine calls -------------------------------------------------------------
    def training_set(self, task_index: int, current: ImageSet, previous: list[ImageSet]) -> ImageSet:
        """The real images to iterate over in this task (default: the current task only)."""
        return current

    def begin_task(self, model: UNet2DModel, task_index: int) -> None:
        """Called before a task's first iteration (the ensemble re-initialises the model here,
        C-LoRA adds the task's adapter)."""

    def loss(self, model: UNet2DModel, batch: ImageSet) -> LossOutput:
        raise NotImplementedError

    def adjust_gradients(self, model: UNet2DModel) -> None:
        """Called between the backward and the clipping and optimiser step (gradient projection
        methods such as A-GEM change the gradient here). Gradients may carry the fp16 scale."""

    def after_optimizer_step(self, model: UNet2DModel) -> None:
        """Called after every optimiser step (path-integral regularisers need it)."""

    def end_task(self, model: UNet2DModel, task_index: int, current: ImageSet) -> None:
        """Called once a task's training is done, before evaluation and the checkpoint."""

    def generation_model(self, model: UNet2DModel) -> nn.Module:
        """The module evaluation samples from: the trained model, or, for strategies that keep
        one model per task (ensemble, C-LoRA), a module that generates each sample with its
        task's model (cl_sweeps/strategies/members.py)."""
        return model

    def state_dict(self) -> dict[str, Any]:
        """Strategy state that must survive a checkpoint (e.g. a replay memory)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state

    # --- building blocks shared by the strategies -------------------------------------------
    def random_timesteps(
        self, n: int, low: int = 0, high: int = NUM_TRAIN_TIMESTEPS
    ) -> torch.Tensor:
        """n timesteps drawn uniformly from [low, high)."""
        ctx = self.context
        return torch.randint(low, high, (n,), generator=ctx.generator, device=ctx.device)

    def replay_timesteps(self, n: int) -> torch.Tensor:
        """Timesteps for replay/distillation pairs, uniform over `replay_timesteps` = [low, high)
        (default all 1000, as the reference's replay_start_timestep = 0)."""
        return self.random_timesteps(n, *self.config.replay_timesteps)

    def random_noise(self, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=self.context.generator, device=like.device)

    def student(
        self,
        model: UNet2DModel,
        x: torch.Tensor,
        t: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Student noise prediction (with gradient), counted as student image-forwards."""
        self._check_labels(labels)
        self.context.counter.add(STUDENT_TRAIN, x.shape[0])
        return predict_noise(model, x, t, labels).float()  # losses reduced in fp32 under autocast

    @torch.no_grad()
    def teacher_prediction(
        self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The frozen teacher's noise prediction, counted as teacher target image-forwards."""
        teacher = self.context.teacher
        if teacher is None:
            raise RuntimeError(f"strategy {self.name!r} needs a teacher but none is set")
        self._check_labels(labels)
        self.context.counter.add(TEACHER_TARGET, x.shape[0])
        return predict_noise(teacher, x, t, labels).float()

    def _check_labels(self, labels: torch.Tensor | None) -> None:
        if (labels is None) != (self.context.conditioning is None):
            raise RuntimeError(
                f"strategy {self.name!r} called the model "
                + ("without labels, but model.conditional is true" if labels is None
                   else "with labels, but the model is unconditional")
            )

    def training_labels(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """The labels a training pair is learnt with: None for an unconditional model; else
        each replaced by the null class with probability `model.label_dropout` (classifier-free
        guidance's unconditional training), drawn from the run's generator."""
        cond = self.context.conditioning
        if cond is None:
            return None
        if labels is None:
            raise RuntimeError(f"strategy {self.name!r} has no labels for a conditional model")
        labels = labels.to(self.context.device)
        if cond.label_dropout == 0.0:
            return labels
        drop = torch.rand(
            labels.shape, generator=self.context.generator, device=self.context.device
        ) < cond.label_dropout
        return torch.where(drop, torch.full_like(labels, cond.null_class), labels)

    def past_labels(self, n: int) -> torch.Tensor | None:
        """n labels drawn uniformly over the classes of the tasks before the current one (the
        classes the teacher learnt; uniform over classes is uniform over tasks when the tasks
        have equal class counts); None for an unconditional model."""
        cond, ctx = self.context.conditioning, self.context
        if cond is None:
            return None
        classes = torch.tensor(cond.past_classes(ctx.task_index), device=ctx.device)
        if not len(classes):
            raise RuntimeError("labelled replay in task 0: there are no past classes")
        pick = torch.randint(0, len(classes), (n,), generator=ctx.generator, device=ctx.device)
        return classes[pick]

    def denoising_loss(
        self, model: UNet2DModel, x0: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """‖ε − ε_θ(x_τ, τ[, y])‖² with τ ~ U{0..999}: the ordinary diffusion loss (on a
        conditional model with the images' labels, after label dropout)."""
        noise = self.random_noise(x0)
        t = self.random_timesteps(x0.shape[0])
        noisy = self.context.scheduler.add_noise(x0, noise, t)
        return F.mse_loss(self.student(model, noisy, t, self.training_labels(labels)), noise)

    def replay_batch_size(self, real_batch: int) -> int:
        """round(replay_ratio · B) replay images per minibatch of B real images."""
        return round(self.config.replay_ratio * real_batch)

    def combine(self, real: torch.Tensor, replay: torch.Tensor | None) -> LossOutput:
        """L = w_real·L_real + w_replay·λ·L_replay, with the paper's 1/(t+1) weighting if on."""
        if replay is None:
            return LossOutput(real, {"loss_real": real.detach()})
        t = self.context.task_index
        if self.config.weight_replay_loss:
            w_real, w_replay = 1.0 / (t + 1), 1.0 - 1.0 / (t + 1)
        else:
            w_real, w_replay = 1.0, 1.0
        loss = w_real * real + w_replay * self.config.lambd * replay
        return LossOutput(loss, {"loss_real": real.detach(), "loss_replay": replay.detach()})


_REGISTRY: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: the implementation of the strategy its module declares. The module's
    `NAME`, `KNOBS` and `SETTING` (what the catalog reads without torch) are the class's:
    declared once, in the module."""
    module = sys.modules[cls.__module__]
    cls.name = getattr(module, "NAME", "")
    cls.knobs = tuple(getattr(module, "KNOBS", ()))
    cls.setting = getattr(module, "SETTING", "both")
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"strategy name {cls.name!r} is empty or registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def strategy_class(name: str) -> type[Strategy]:
    """The implementation of strategy `name`, imported on first use (see catalog.py)."""
    if name not in _REGISTRY:
        importlib.import_module(strategy_info(name).module)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"{strategy_info(name).module} declares NAME = {name!r} but registers no class "
            "with that name"
        ) from None


def priced_flops(model: UNet2DModel, config: StrategyConfig) -> FlopsPerImage:
    """The FLOP prices a trial of `config` counts its work at, the same in the engine and in
    `cl-sweeps bench`: the UNet's measured image-forward and forward+backward, the strategy's
    adapters (LoRA) and one EMA teacher update. Called on the plain model, before compiling."""
    return replace(
        measure_flops_per_image(model),
        adapter_forward_backward=strategy_class(config.name).adapter_flops_per_image(model, config),
        ema_update=ema_update_flops(model),
    )
