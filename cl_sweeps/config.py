"""Typed trial configuration: the one validation path for the CLI, sweep files and trainables.

Every error names the field, the bad value and what is allowed, and is raised before any data is
loaded or any model is built. Plain data: this module imports neither torch, ray, optuna, mlflow
nor a strategy implementation (strategy names come from `strategies/catalog.py`), so validating a
file is fast. The sweep file's schema lives in the sweep layer (`cl_sweeps/sweep/schema.py`).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from cl_sweeps.credentials import redact_uri, uri_has_secret
from cl_sweeps.data.catalog import DatasetInfo, dataset_info, validation_split_problem
from cl_sweeps.documents import DocumentError, load_document, parse_value, shorten

# Seeds feed torch, numpy (< 2**32) and Optuna's samplers; seed*1000 + offsets stays in range.
SEED_MAX = 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
NUM_TRAIN_TIMESTEPS = 1000


# Trial-config keys that were replaced, and what replaced them (named in the errors for them).
REPLACED_KEYS = {
    "strategy.replay_start_timestep": "strategy.replay_timesteps: [low, high) "
    "(the reference's replay_start_timestep=s is [s, 1000])",
}


class ConfigError(ValueError):
    """A configuration is invalid; the message names the field, the value and what is allowed."""


def _no_nul(text: str) -> str:
    """The operating system cuts a path at a NUL byte (or refuses it deep inside a trial)."""
    if "\x00" in text:
        raise ValueError("contains a NUL byte (\\x00); allowed: a path or URI without one")
    return text


# A string that names a file, a directory or a URI.
PathText = Annotated[str, AfterValidator(_no_nul)]


class _Strict(BaseModel):
    """Unknown keys refused; no coercion between types (a bool is not a number, 0/1 are not
    flags, "3" is not 3; an int is accepted where a float is); no inf or NaN."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False
    )


class DataConfig(_Strict):
    """Which dataset, how it is split into class-incremental tasks, and where it lives."""

    dataset: str = Field(default="digits", description="A name from data/catalog.py.")
    data_root: PathText | None = Field(
        default=None, description="Directory of torchvision datasets, or a flat directory of an "
        "MNIST-like dataset's four IDX files, gzipped or not (required for them)."
    )
    download: bool = Field(default=False, description="Let torchvision download the files into data_root.")
    image_size: int | None = Field(
        default=None, gt=0, description="Side of the square images; null: the dataset's default "
        "(data/catalog.py: 8 for digits, 32 for torchvision's)."
    )
    num_tasks: int = Field(
        default=5, gt=0, description="Classes cut into equal tasks in class order: {0,1},{2,3},..."
    )
    class_order: list[int] | None = Field(
        default=None, description="The order classes are learned in, e.g. [9, 8, ..., 0]."
    )
    class_order_seed: Seed | None = Field(
        default=None, description="If set, the class order is a permutation seeded by this."
    )
    tasks: list[list[int]] | None = Field(
        default=None, description="Explicit tasks as lists of classes; overrides num_tasks."
    )
    max_train_per_class: int | None = Field(
        default=None, gt=0, description="Cap on training images per class (quick experiments)."
    )
    max_test_per_class: int | None = Field(
        default=None, gt=0, description="Cap on test images per class."
    )
    validation_per_class: int | None = Field(
        default=None, gt=0, description="Training images per class held out as a validation "
        "split (never trained on; fid_val, kld_val are measured on it, and a sweep selects on "
        "them); null: no split. Drawn by validation_seed, the same for every trial."
    )
    validation_seed: Seed = Field(
        default=0, description="Seed of the validation split: fixed, so every trial and seed of "
        "a sweep (and a resumed trial) is validated on the same images."
    )
    augment: bool | None = Field(
        default=None,
        description="Random horizontal flip of the real training images (seeded); "
        "null: the dataset's default (on for cifar10 only, as the paper's code).",
    )

    @field_validator("tasks")
    @classmethod
    def _tasks_disjoint(cls, tasks: list[list[int]] | None) -> list[list[int]] | None:
        if tasks is None:
            return tasks
        if not tasks:
            raise ValueError("tasks is an empty list, so nothing would be trained; list at least "
                             "one task (a list of classes), or drop `tasks` to use num_tasks")
        seen: dict[int, int] = {}
        for index, classes in enumerate(tasks):
            if not classes:
                raise ValueError(f"task {index} is empty; every task needs at least one class")
            for c in classes:
                if c in seen:
                    raise ValueError(
                        f"class {c} is in task {seen[c]} and task {index}; "
                        "each class may belong to one task only"
                    )
                seen[c] = index
        return tasks

    @field_validator("class_order")
    @classmethod
    def _order_unique(cls, order: list[int] | None) -> list[int] | None:
        if order is not None and len(set(order)) != len(order):
            raise ValueError(f"class_order {order} repeats a class; list each class once")
        return order

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        dataset_info(name)  # ValueError naming the allowed datasets
        return name

    @property
    def info(self) -> DatasetInfo:
        """The dataset's declaration (classes, image size, loader, evaluation defaults)."""
        return dataset_info(self.dataset)

    @model_validator(mode="after")
    def _validation_split_fits(self) -> DataConfig:
        """validation_per_class leaves every class a training image (the catalog's counts),
        so a run or sweep fails here rather than after Ray started and data loaded."""
        problem = validation_split_problem(
            self.info, self.validation_per_class, self.max_train_per_class
        )
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _classes_fit_the_dataset(self) -> DataConfig:
        """Class ids and task counts against the dataset's classes, before Ray or any data."""
        count = self.info.num_classes
        allowed = f"allowed: 0..{count - 1} ({self.dataset} has {count} classes)"
        problems = []
        for index, classes in enumerate(self.tasks or []):
            outside = [c for c in classes if not 0 <= c < count]
            if outside:
                problems.append(f"tasks[{index}] has class ids {outside[:5]}; {allowed}")
        if self.class_order is not None and sorted(self.class_order) != list(range(count)):
            problems.append(
                f"class_order {self.class_order[:12]} is not a permutation of 0..{count - 1}"
            )
        if self.tasks is None and count % self.num_tasks:
            divisors = [n for n in range(1, count + 1) if count % n == 0]
            problems.append(
                f"num_tasks={self.num_tasks} does not divide the {count} classes of "
                f"{self.dataset}; allowed: {divisors}, or explicit `tasks`"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def resolved_image_size(self) -> int:
        if self.image_size is not None:
            return self.image_size
        return self.info.image_size

    def resolved_augment(self) -> bool:
        return self.info.augment if self.augment is None else self.augment


class ModelConfig(_Strict):
    """The UNet (a diffusers UNet2DModel preset) and the noise schedule."""

    preset: Literal["tiny", "paper", "paper_cifar"] = Field(
        default="tiny", description="UNet2DModel preset: tiny (CPU), paper (the paper's "
        "Fashion-MNIST UNet), paper_cifar (its CIFAR-10 UNet)."
    )
    timestep_spacing: Literal["trailing", "leading", "linspace"] = Field(
        default="trailing",
        description="DDIM timestep grid; 'trailing' starts few-step sampling at t=999.",
    )
    clip_sample: bool = Field(
        default=True, description="Clip the x0 estimate to [-1, 1] in every DDIM step."
    )
    zero_terminal_snr: bool = Field(
        default=True,
        description="Rescale the betas so that ᾱ at t=999 is 0 (the paper's code does).",
    )
    conditional: bool = Field(
        default=False,
        description="Class-conditional UNet (CLoG's setting): a class embedding with one index "
        "per dataset class plus a null class for classifier-free guidance. Training passes each "
        "image's label, teacher strategies generate labelled replay of past tasks' classes, "
        "evaluation generates the seen classes (guidance scales: evaluation.guidance_scale, "
        "strategy.guidance_scale). false: unconditional, the paper's.",
    )
    label_dropout: float = Field(
        default=0.1, ge=0.0, lt=1.0,
        description="conditional: the probability that a training label is replaced by the null "
        "class (classifier-free guidance learns its unconditional prediction from these).",
    )


class StrategyConfig(_Strict):
    """A continual-learning strategy and its knobs; which knobs a strategy reads is documented
    per strategy (see cl_sweeps.strategies); the others are ignored and recorded as unused."""

    name: str = Field(default="naive", description="A strategy of the strategy catalog.")
    replay_ratio: float = Field(default=1.0, ge=0.0, description="Replay images per real image.")
    memory_size: int = Field(default=200, gt=0, description="ER memory capacity (images).")
    teacher_steps: int = Field(default=2, ge=1, description="DDIM steps of teacher generation.")
    teacher_eta: float = Field(
        default=0.0, ge=0.0, le=1.0, description="DDIM eta of the teacher's replay generation."
    )
    lambd: float = Field(default=1.0, ge=0.0, description="Replay/distillation loss weight.")
    weight_replay_loss: bool = Field(
        default=True, description="Weight real 1/(t+1) and replay 1-1/(t+1) as in the paper."
    )
    replay_timesteps: tuple[StrictInt, StrictInt] = Field(
        default=(0, NUM_TRAIN_TIMESTEPS),
        strict=False,  # a YAML list is the tuple; its items stay strict
        description="Replay/distillation timesteps τ are drawn from [low, high) (default: all); "
        "the reference's replay_start_timestep=s is [s, 1000).",
    )
    ewc_lambda: float = Field(default=100.0, ge=0.0, description="EWC penalty weight.")
    si_c: float = Field(default=0.1, ge=0.0, description="SI penalty weight c.")
    l2_lambda: float = Field(
        default=1.0, ge=0.0, description="L2 penalty weight on the distance to the previous "
        "task's parameters."
    )
    mas_lambda: float = Field(default=1.0, ge=0.0, description="MAS penalty weight.")
    lora_rank: int = Field(default=8, gt=0, description="lora: rank r of each task's adapters.")
    lora_alpha: float = Field(
        default=8.0, gt=0.0, description="lora: adapter scale α (the update is (α/r)·BA)."
    )
    lora_self_reg: float = Field(
        default=0.0, ge=0.0,
        description="lora: C-LoRA's self-regularisation weight λ, λ·Σ‖(Σ_past ΔW) ⊙ ΔW_t‖² "
        "over the adapted layers, penalising the new adapter where past adapters changed the "
        "weights; 0: off (CLoG's code has no such term).",
    )
    teacher: Literal["frozen", "ema"] = Field(
        default="frozen",
        description="Teacher strategies: the copy of the model at the end of the previous task "
        "(frozen, the paper's) or that copy tracking the student as an EMA every iteration (ema).",
    )
    ema_decay: float = Field(
        default=0.999, ge=0.0, le=1.0,
        description="teacher: ema: φ ← d·φ + (1 − d)·θ after every optimiser step (1: frozen).",
    )
    guidance_scale: float = Field(
        default=1.0, ge=0.0,
        description="model.conditional: classifier-free guidance w of the teacher's replay "
        "generation, ε = ε(∅) + w·(ε(y) − ε(∅)); 1: the conditional prediction alone, 0: the "
        "null class alone (one forward per image each), else two forwards per image.",
    )
    snr_threshold: float = Field(
        default=0.0, ge=0.0,
        description="generative_distillation, class_guided_distillation and "
        "partial_generation_distillation: replay pairs whose τ has SNR ᾱ/(1 − ᾱ) below this "
        "take pure noise as input instead of a generated image (no generation); 0: off.",
    )
    distillation_guidance: float = Field(
        default=2.0, ge=0.0,
        description="class_guided_distillation: the teacher's distillation targets are its "
        "classifier-free guided prediction ε(∅) + w·(ε(y) − ε(∅)) at this w (MAGD's "
        "class-guided distillation); 1: the conditional prediction, 0: the null class (one "
        "forward per pair each), else two forwards per pair.",
    )

    @field_validator("name")
    @classmethod
    def _known_strategy(cls, name: str) -> str:
        from cl_sweeps.strategies.catalog import strategy_names

        allowed = strategy_names()
        if name not in allowed:
            raise ValueError(f"unknown strategy {name!r}; allowed: {', '.join(allowed)}")
        return name

    @model_validator(mode="after")
    def _steps_within_schedule(self) -> StrategyConfig:
        if self.teacher_steps > NUM_TRAIN_TIMESTEPS:
            raise ValueError(
                f"teacher_steps={self.teacher_steps} exceeds the {NUM_TRAIN_TIMESTEPS} training "
                f"timesteps of the noise schedule; allowed: 1..{NUM_TRAIN_TIMESTEPS}"
            )
        low, high = self.replay_timesteps
        if not 0 <= low < high <= NUM_TRAIN_TIMESTEPS:
            raise ValueError(
                f"replay_timesteps=[{low}, {high}] is not a range [low, high) of timesteps; "
                f"allowed: 0 <= low < high <= {NUM_TRAIN_TIMESTEPS}"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _replaced_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "replay_start_timestep" in data:
            start = data["replay_start_timestep"]
            example = f"[{start}, {NUM_TRAIN_TIMESTEPS}]" if isinstance(start, int) else "[low, high]"
            raise ValueError(
                f"replay_start_timestep={start!r} is no longer accepted: it was replaced by "
                f"replay_timesteps: [low, high) (τ drawn from low to high − 1); the reference's "
                f"replay_start_timestep=s is replay_timesteps: [s, {NUM_TRAIN_TIMESTEPS}], "
                f"here {example}"
            )
        return data


class TrainConfig(_Strict):
    """Training budget and optimiser, per task."""

    iterations_per_task: int | None = Field(
        default=None, gt=0, description="Training iterations per task (or epochs_per_task)."
    )
    epochs_per_task: float | None = Field(
        default=None, gt=0, description="Epochs over the task's training set (or iterations_per_task)."
    )
    last_partial_batch: bool = Field(
        default=False,
        description="epochs_per_task counts each epoch's last partial batch as an iteration, as "
        "the paper's loader (PyTorch's DataLoader keeps it): ceil(N/B) iterations per epoch, "
        "9,400 per Fashion-MNIST task at 100 epochs of 12,000 images and batch 128 (false: "
        "N/B per epoch, 9,375).",
    )
    batch_size: int = Field(default=128, gt=0, description="Real images per minibatch (B).")
    lr: float = Field(default=2e-4, gt=0, description="Adam learning rate.")
    grad_clip: float | None = Field(
        default=1.0, gt=0, description="Gradient-norm clipping; null: off."
    )
    reset_optimizer: bool = Field(
        default=True,
        description="A fresh Adam state at the start of every task (Avalanche rebuilds it per "
        "experience, as in the paper's code); false carries it over.",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        default="auto",
        description="Autocast of every UNet call; auto: bf16 on CUDA GPUs that support it, else "
        "fp32; fp16 (with a gradient scaler) needs CUDA. Weights stay fp32.",
    )
    compile: bool = Field(default=False, description="torch.compile the UNet (student, teacher).")
    compile_backend: Literal["inductor", "aot_eager", "eager"] = Field(
        default="inductor", description="torch.compile backend (aot_eager: no code generation)."
    )
    channels_last: bool = Field(default=True, description="channels_last memory format (CUDA).")
    fused_adam: bool = Field(default=True, description="Fused Adam kernel (CUDA).")
    tf32: bool = Field(
        default=True,
        description="TF32 for the UNet's fp32 matmuls and convolutions (CUDA; training and "
        "sampling only, never the FID features or the evaluation classifier).",
    )
    deterministic: bool = Field(
        default=False,
        description="Deterministic cuDNN/cuBLAS kernels (CUBLAS_WORKSPACE_CONFIG, no cuDNN "
        "autotuning): GPU runs repeat bit for bit, slower. CPU runs are deterministic anyway.",
    )
    loss_read_every: int = Field(
        default=50, gt=0,
        description="Iterations between host reads of the loss (progress bar, logs, checks).",
    )

    def iterations(self, train_size: int) -> int:
        """A task's iteration budget: fixed, or epochs over its `train_size` training images."""
        if self.iterations_per_task is not None:
            return self.iterations_per_task
        if self.last_partial_batch:
            per_epoch = math.ceil(train_size / self.batch_size)
            return max(1, math.ceil(self.epochs_per_task * per_epoch))
        return max(1, math.ceil(self.epochs_per_task * train_size / self.batch_size))

    @model_validator(mode="after")
    def _one_budget(self) -> TrainConfig:
        if self.iterations_per_task is None and self.epochs_per_task is None:
            self.iterations_per_task = 500
        if self.iterations_per_task is not None and self.epochs_per_task is not None:
            raise ValueError(
                f"iterations_per_task={self.iterations_per_task} and "
                f"epochs_per_task={self.epochs_per_task} are both set; set exactly one"
            )
        return self


class EvaluationConfig(_Strict):
    """What is measured after every task (see the README's metric table)."""

    n_eval_samples: int = Field(
        default=1000, ge=2, description="Generated images per evaluation (paper: 10,000)."
    )
    eval_steps: int = Field(
        default=10, ge=1, le=NUM_TRAIN_TIMESTEPS,
        description="DDIM steps (eta 0) of evaluation sampling (paper: 10 FMNIST, 20 CIFAR-10).",
    )
    eval_batch_size: int = Field(
        default=500, gt=0, description="Images per batch when sampling for evaluation."
    )
    fid_features: Literal["auto", "classifier", "inception"] = Field(
        default="auto", description="auto: the dataset's (classifier on digits, else Inception)."
    )
    inception_weights: PathText | None = Field(
        default=None, description="Local file of the FID Inception weights (offline clusters)."
    )
    classifier_arch: Literal["auto", "small_cnn", "resnet18"] = Field(
        default="auto", description="auto: the dataset's (small_cnn on digits, else resnet18)."
    )
    classifier_epochs: int | None = Field(
        default=None, gt=0,
        description="null: the arch's recipe (resnet18 100 as the paper's code, small_cnn 10).",
    )
    classifier_weights: PathText | None = Field(
        default=None,
        description="Local torchvision ResNet-18 state dict for resnet18: a whole one whose "
        "head has the dataset's classes (the paper's trained resnet.pth) is used as is, without "
        "training; a backbone (no head, or ImageNet's) starts the training; null: from scratch.",
    )
    classifier_seed: Seed = Field(default=0, description="Seed of the evaluation classifier's training.")
    cache_dir: PathText | None = Field(
        default=None,
        description="Where trained classifiers are cached; default $CL_SWEEPS_CACHE or "
        "~/.cache/cl-sweeps.",
    )
    guidance_scale: float = Field(
        default=1.0, ge=0.0,
        description="model.conditional: classifier-free guidance w of evaluation sampling, "
        "ε = ε(∅) + w·(ε(y) − ε(∅)); 1: conditional alone, 0: unconditional alone (one forward "
        "per image each), else two forwards per image (counted).",
    )
    sample_grid_size: int = Field(default=64, ge=0, description="Images in each task's PNG grid.")
    denoise_eval_per_task: int = Field(
        default=256, gt=0, description="Test images per task for the denoising loss."
    )


class ClassifierReplayConfig(_Strict):
    """The paper's second experiment: a classifier (the reference's small CNN) learns the same
    tasks in the same run, before the diffusion model on each task, with replay generated by
    the diffusion model of the previous task (cl_sweeps/classifier_replay.py)."""

    mode: Literal["generative", "naive", "cumulative"] = Field(
        default="generative",
        description="generative: replay from the frozen previous diffusion model, labelled by "
        "the frozen previous classifier; naive: the current task only; cumulative: all tasks "
        "so far (no generator in either).",
    )
    epochs_per_task: float | None = Field(
        default=None, gt=0,
        description="Epochs over the task's real images (the reference's 20 when neither this "
        "nor iterations_per_task is set).",
    )
    iterations_per_task: int | None = Field(
        default=None, gt=0, description="A fixed number of iterations per task instead of epochs."
    )
    batch_size: int = Field(
        default=128, gt=0,
        description="Real images per iteration; generative mode adds as many replay images.",
    )
    lr: float = Field(default=1e-3, gt=0, description="Adam learning rate (fresh Adam per task).")
    temperature: float = Field(default=2.0, gt=0, description="Distillation temperature T.")
    generation_steps: int | None = Field(
        default=None, ge=1, le=NUM_TRAIN_TIMESTEPS,
        description="DDIM steps (eta 0) of replay generation; null: evaluation.eval_steps.",
    )
    distillation: Literal["reference", "standard"] = Field(
        default="reference",
        description="reference: -sum softmax(z_student/T) log_softmax(z_labeller/T), as the "
        "paper's code; standard: -sum softmax(z_labeller/T) log_softmax(z_student/T).",
    )

    @model_validator(mode="after")
    def _one_budget(self) -> ClassifierReplayConfig:
        if self.iterations_per_task is not None and self.epochs_per_task is not None:
            raise ValueError(
                f"iterations_per_task={self.iterations_per_task} and "
                f"epochs_per_task={self.epochs_per_task} are both set; set at most one"
            )
        if self.iterations_per_task is None and self.epochs_per_task is None:
            self.epochs_per_task = 20.0
        return self

    def iterations(self, train_size: int) -> int:
        """A task's iterations: fixed, or epochs over its `train_size` real images."""
        if self.iterations_per_task is not None:
            return self.iterations_per_task
        assert self.epochs_per_task is not None
        return max(1, math.ceil(self.epochs_per_task * train_size / self.batch_size))


CLASSIFIER_MIN_IMAGE_SIZE = 8  # the small CNN's two 3x3 valid convolutions and two poolings


class TrialConfig(_Strict):
    """One full continual sequence: data, model, strategy, budget, evaluation and where to write."""

    seed: Seed = Field(default=0, description="Seeds the model, data order and noise.")
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'.")
    output_dir: PathText = Field(
        default="runs/trial", description="Where metrics, samples and checkpoints are written."
    )
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    classifier_replay: ClassifierReplayConfig | None = Field(
        default=None,
        description="The classifier trained alongside with replay from the diffusion model "
        "(accuracy metrics); null: off.",
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if device in ("auto", "cpu", "cuda") or (
            device.startswith("cuda:") and device[5:].isascii() and device[5:].isdigit()
        ):
            return device
        raise ValueError(f"device {device!r} is not allowed; use 'auto', 'cpu', 'cuda' or 'cuda:N'")

    @model_validator(mode="after")
    def _guidance_needs_classes(self) -> TrialConfig:
        """Guidance acts on class labels: set on an unconditional model it would be ignored, and
        a run that looks guided would not be. (model.label_dropout is not checked: configs pass
        through model_dump, which sets every field, so its being set says nothing.)"""
        if self.model.conditional:
            return self
        problems = [
            f"{name}={value}" for name, value in (
                ("evaluation.guidance_scale", self.evaluation.guidance_scale),
                ("strategy.guidance_scale", self.strategy.guidance_scale),
            ) if value != 1.0
        ]
        if problems:
            raise ValueError(
                f"{', '.join(problems)} needs a class-conditional model, but model.conditional "
                "is false; allowed: model.conditional: true, or guidance scale 1.0"
            )
        return self

    @model_validator(mode="after")
    def _strategy_fits_the_model(self) -> TrialConfig:
        """A strategy declared for one kind of model (its module's SETTING) would fail or
        silently misbehave on the other: refused before any compute."""
        from cl_sweeps.strategies.catalog import setting_problem

        problem = setting_problem(self.strategy.name, self.model.conditional)
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _precision_on_device(self) -> TrialConfig:
        if self.train.precision == "fp16" and self.device == "cpu":
            raise ValueError(
                "train.precision 'fp16' needs a CUDA device, but device is 'cpu' (fp16 training "
                "needs a CUDA gradient scaler); allowed on CPU: auto, fp32, bf16"
            )
        return self

    @model_validator(mode="after")
    def _classifier_fits_the_images(self) -> TrialConfig:
        size = self.data.resolved_image_size()
        if self.classifier_replay is not None and size < CLASSIFIER_MIN_IMAGE_SIZE:
            raise ValueError(
                f"classifier_replay needs images of at least {CLASSIFIER_MIN_IMAGE_SIZE}x"
                f"{CLASSIFIER_MIN_IMAGE_SIZE} (its CNN's convolutions and poolings), but "
                f"data.image_size is {size}; allowed: data.image_size >= "
                f"{CLASSIFIER_MIN_IMAGE_SIZE}, or classifier_replay: null"
            )
        return self

    @model_validator(mode="after")
    def _data_needs_root(self) -> TrialConfig:
        if self.data.info.needs_data_root and not self.data.data_root:
            raise ValueError(
                f"data.data_root is required for dataset {self.data.dataset!r} "
                "(a directory for torchvision's files; set data.download=true to fetch them)"
            )
        return self


def format_validation_error(error: ValidationError, prefix: str = "") -> str:
    """One line per problem: dotted field, the offending value, and pydantic's reason."""
    lines = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"])
        if prefix:
            field = f"{prefix}.{field}" if field else prefix
        value = item.get("input")
        reason = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            reason = "unknown key; check the spelling against the documented fields"
        lines.append(f"{field or '<root>'}: {reason} (got {shown_value(value)})")
    return "\n".join(lines)


def shown_value(value: Any) -> str:
    """A value as an error message quotes it: short, a mapping elided, URIs redacted."""
    if isinstance(value, dict):
        return "{...}"
    if isinstance(value, str) and uri_has_secret(value):
        return repr(redact_uri(value))
    return shorten(value)


def parse_trial_config(data: dict[str, Any], prefix: str = "") -> TrialConfig:
    """Validate a plain dict into a TrialConfig, raising ConfigError with field-named messages."""
    try:
        return TrialConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, prefix)) from None


def parse_override_value(text: str, key: str = "") -> Any:
    """`--set key=value` values are YAML scalars/lists: 3, 0.5, true, null, [1, 2], names."""
    try:
        return parse_value(text, f"--set {key}" if key else "--set value")
    except DocumentError as error:
        raise ConfigError(str(error)) from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `data` with dotted `key=value` overrides applied."""
    result = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. strategy.name=er")
        key, value = item.split("=", 1)
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
            node = child
        node[parts[-1]] = parse_override_value(value, key.strip())
    return result


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read one YAML mapping safely (documents.py: what is refused and why); ConfigError."""
    try:
        return load_document(path)
    except DocumentError as error:
        raise ConfigError(str(error)) from None


def load_trial_config(path: str | Path, overrides: list[str] | None = None) -> TrialConfig:
    """Load the `base:` section of a run/sweep file (or a bare trial mapping) as a TrialConfig."""
    data = load_yaml(path)
    prefix = "base" if "base" in data else ""
    base = data["base"] if prefix else data
    if not isinstance(base, dict):
        raise ConfigError(f"base: expected a mapping, got {type(base).__name__}")
    return parse_trial_config(apply_overrides(base, overrides or []), prefix=prefix)


def get_dotted(data: dict[str, Any] | None, key: str) -> Any:
    """data['a']['b'] for key 'a.b'; None if a section or the key is absent (or not a
    mapping)."""
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set data['a']['b'] = value for key 'a.b', creating sections as needed."""
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def num_tasks_of(config: TrialConfig) -> int:
    """How many tasks the trial's sequence has (explicit data.tasks, else data.num_tasks)."""
    return len(config.data.tasks) if config.data.tasks is not None else config.data.num_tasks


def resolve_task_classes(config: DataConfig, num_classes: int) -> list[list[int]]:
    """The classes of every task: explicit `tasks`, or `class_order` (or a seeded permutation,
    or 0..C-1) cut into `num_tasks` equal parts."""
    if config.tasks is not None:
        for index, classes in enumerate(config.tasks):
            for c in classes:
                if not 0 <= c < num_classes:
                    raise ConfigError(
                        f"data.tasks[{index}]: class {c} does not exist in {config.dataset!r}; "
                        f"allowed: 0..{num_classes - 1}"
                    )
        return [list(classes) for classes in config.tasks]
    if config.class_order is not None:
        order = list(config.class_order)
        if sorted(order) != list(range(num_classes)):
            raise ConfigError(
                f"data.class_order={order} must be a permutation of 0..{num_classes - 1}"
            )
    elif config.class_order_seed is not None:
        import torch  # only here: the rest of this module is torch-free

        generator = torch.Generator().manual_seed(config.class_order_seed)
        order = torch.randperm(num_classes, generator=generator).tolist()
    else:
        order = list(range(num_classes))
    if len(order) % config.num_tasks:
        raise ConfigError(
            f"data.num_tasks={config.num_tasks} does not divide the {len(order)} classes; "
            "allowed: a divisor of the class count, or explicit data.tasks"
        )
    per_task = len(order) // config.num_tasks
    return [order[i : i + per_task] for i in range(0, len(order), per_task)]
