"""Throughput machinery of a trial: mixed precision, CUDA memory format and kernels,
torch.compile, the persistent teacher, the optimiser step, and loss reads without a host sync
per iteration. The engine (sequence.py) and `cl-sweeps bench` use the same pieces, so the bench
times what a trial runs.

Autocast (bf16/fp16) covers every UNet call: student forward (and so its backward), teacher
generation, teacher targets, evaluation sampling and the evaluation denoising loss. Precision
stays fp32 where it matters:
- weights, gradients and Adam state are fp32 (autocast casts per op), so checkpoints store fp32;
- the DDIM update (`DDIMSampler`): the noise prediction is cast to fp32 before the scheduler step
  and the state x_t stays fp32 across steps, so one step's rounding is not fed into the next;
- loss reductions (`Strategy.student`/`teacher_prediction`, `denoising_loss`): predictions are cast
  to fp32 before the squared error is averaged; bf16 has an 8-bit mantissa, too coarse for a mean
  over ~10^5 terms of a loss that shrinks to a few 1e-2;
- FID features and the evaluation classifier run outside autocast, in fp32, so metrics of trials
  trained at different precisions are comparable.

TF32 (`train.tf32`) is scoped, not process-wide: it is on inside `tf32_scope()` (the training
loop) and `autocast()` (every UNet call), and off everywhere else on a CUDA device, so the FID
features and the evaluation classifier compute in exact fp32 on every node.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from cl_sweeps.config import ConfigError, TrainConfig
from cl_sweeps.errors import UsageError

log = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# cuBLAS's deterministic workspace (PyTorch's "Reproducibility" notes); read by cuBLAS when the
# process first uses it, so a trial sets it before its first CUDA matmul.
CUBLAS_WORKSPACE = ":4096:8"


def resolve_device(name: str) -> torch.device:
    """`auto` → CUDA if available, else CPU. A `cuda:N` outside Ray also becomes the current
    device: timers, kernels launched without a device and the bf16 check use the current one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device={name!r} but CUDA is not available; use 'cpu' or 'auto'")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None:
        if device.index >= torch.cuda.device_count():
            raise UsageError(
                f"device={name!r} but this node has {torch.cuda.device_count()} visible GPU(s); "
                f"allowed: cuda:0..cuda:{torch.cuda.device_count() - 1}, cuda or auto"
            )
        torch.cuda.set_device(device)
    return device


def device_name(device: torch.device) -> str:
    """What runs the trial: the GPU's model name on CUDA, else the device type."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def resolve_precision(requested: str, device: torch.device) -> str:
    """`auto` → bf16 on a CUDA device that supports it, fp32 otherwise; an impossible request is
    a ConfigError (fp16 needs CUDA's gradient scaler; bf16 needs an Ampere-or-newer GPU)."""
    cuda = device.type == "cuda"
    bf16_ok = not cuda or torch.cuda.is_bf16_supported(including_emulation=False)
    if requested == "auto":
        return "bf16" if cuda and bf16_ok else "fp32"
    if requested == "fp16" and not cuda:
        raise ConfigError(
            f"train.precision: 'fp16' needs a CUDA device, but the trial runs on {device.type!r} "
            "(fp16 training needs a CUDA gradient scaler); allowed on CPU: auto, fp32, bf16"
        )
    if requested == "bf16" and not bf16_ok:
        raise ConfigError(
            f"train.precision: 'bf16' is not supported by {torch.cuda.get_device_name(device)}; "
            "allowed on this GPU: auto, fp32, fp16"
        )
    return requested


@dataclass(frozen=True)
class Throughput:
    """The resolved settings of one trial (what actually runs, recorded in its params)."""

    device: torch.device
    precision: str  # fp32 | bf16 | fp16
    channels_last: bool
    fused_adam: bool
    tf32: bool
    compile: bool
    compile_backend: str = "inductor"
    deterministic: bool = False

    @classmethod
    def resolve(cls, train: TrainConfig, device: torch.device) -> Throughput:
        """The CUDA switches (channels_last, fused Adam, TF32) are off on other devices."""
        cuda = device.type == "cuda"
        return cls(
            device=device,
            precision=resolve_precision(train.precision, device),
            channels_last=train.channels_last and cuda,
            fused_adam=train.fused_adam and cuda,
            tf32=train.tf32 and cuda,
            compile=train.compile,
            compile_backend=train.compile_backend,
            deterministic=train.deterministic,
        )

    def params(self) -> dict[str, str]:
        """For the trial's MLflow params (prefixed so they never clash with searched keys)."""
        values = {
            "precision": self.precision, "channels_last": self.channels_last,
            "fused_adam": self.fused_adam, "tf32": self.tf32,
            "compile": self.compile_backend if self.compile else False,
            "deterministic": self.deterministic,
        }
        return {f"throughput.{k}": str(v) for k, v in values.items()}

    def identity(self) -> dict[str, str]:
        """What a run's numbers depend on beyond its config: the resolved settings and the
        device that runs them (a CPU and a GPU, or a bf16 A100 and an fp32 V100, differ)."""
        return {"device": device_name(self.device), **self.params()}

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Every UNet call: the autocast precision, and TF32 if on."""
        with self.tf32_scope():
            if self.precision == "fp32":
                yield
            else:
                with torch.autocast(self.device.type, dtype=DTYPES[self.precision]):
                    yield

    @contextlib.contextmanager
    def tf32_scope(self) -> Iterator[None]:
        """TF32 for fp32 matmuls and convolutions inside the block only (CUDA, `train.tf32`);
        the flags are restored after it, so evaluation features outside stay exact fp32."""
        if not self.tf32:
            yield
            return
        matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
        saved = matmul.allow_tf32, cudnn.allow_tf32
        matmul.allow_tf32 = cudnn.allow_tf32 = True
        try:
            yield
        finally:
            matmul.allow_tf32, cudnn.allow_tf32 = saved

    def apply_backend_flags(self) -> None:
        """The process-wide settings of a trial, applied once when it starts.

        - On CUDA, TF32 off outside `tf32_scope()` (PyTorch's default leaves it on for cuDNN
          convolutions, which would put the FID features and the classifier in TF32).
        - `deterministic`: deterministic cuDNN and cuBLAS algorithms (an op with no
          deterministic kernel warns), no cuDNN autotuning, cuBLAS's deterministic workspace.
        - With torch.compile, a fresh Dynamo cache: a Ray worker reused for the next trial would
          otherwise add that trial's graphs to the last one's until the recompile limit, after
          which Dynamo silently runs the model eagerly.
        """
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            if self.deterministic:
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.use_deterministic_algorithms(self.deterministic, warn_only=True)
        torch.backends.cudnn.deterministic = self.deterministic
        torch.backends.cudnn.benchmark = False
        if self.compile:
            torch._dynamo.reset()

    def prepare(self, model: nn.Module) -> nn.Module:
        """channels_last and compilation, in place (`Module.compile` keeps the module's class and
        state_dict keys, so checkpoints and diffusers calls are unchanged). Measure FLOPs first:
        the FLOP counter would otherwise trigger a compilation of its own."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.compile:
            model.compile(backend=self.compile_backend)
        return model

    def optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True if self.fused_adam else None)


class OptimizerStep:
    """zero_grad, backward, clipping and step, with a gradient scaler in fp16. With fused Adam
    the scaler's inf check stays on the device; with plain Adam it costs one host sync per step
    (fp16 only)."""

    def __init__(self, settings: Throughput, grad_clip: float | None):
        self.grad_clip = grad_clip
        self.scaler = torch.amp.GradScaler(
            settings.device.type, enabled=settings.precision == "fp16"
        )

    def __call__(
        self,
        loss: torch.Tensor,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        adjust: Callable[[nn.Module], None] | None = None,
    ):
        """`adjust(model)` may change the (still scaled) gradients before clipping and step."""
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if adjust is not None:
            adjust(model)
        if self.grad_clip is not None:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()


def frozen(model: nn.Module) -> nn.Module:
    """Eval mode without gradients: how a teacher is used."""
    model.eval().requires_grad_(False)
    return model


class PersistentTeacher:
    """One frozen teacher module for the whole sequence: built (and compiled) on first use, and at
    the start of every later task the student's weights are copied into it in place. Unlike a
    deepcopy per task this allocates the teacher once and keeps its compiled graphs valid, so
    nothing is recompiled per task."""

    def __init__(self, build: Callable[[], nn.Module], settings: Throughput):
        self.build = build
        self.settings = settings
        self.module: nn.Module | None = None

    @torch.no_grad()
    def copy_of(self, model: nn.Module) -> nn.Module:
        if self.module is None:
            with torch.random.fork_rng(devices=[]):  # the global RNG stream is not disturbed
                self.module = self.settings.prepare(frozen(self.build()))
        self.module.load_state_dict(model.state_dict())
        return self.module


class LossReader:
    """The loss and its parts summed on the device; read on the host every `every` iterations and
    at the end of a task, in one transfer. That read is the training loop's only host sync. A
    non-finite loss in any iteration makes the window's mean non-finite, so a check on the read
    values sees it within `every` iterations."""

    def __init__(self, every: int):
        self.every = every
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.iterations = 0

    def add(self, loss: torch.Tensor, parts: dict[str, torch.Tensor]) -> dict[str, float] | None:
        """Accumulate one iteration; every `every`-th returns the means since the last read."""
        for name, value in {"loss": loss, **parts}.items():
            value = value.detach().float()
            self.sums[name] = self.sums[name] + value if name in self.sums else value
            self.counts[name] = self.counts.get(name, 0) + 1
        self.iterations += 1
        return self.read() if self.iterations % self.every == 0 else None

    def read(self) -> dict[str, float] | None:
        """Means since the last read (None if nothing was added since)."""
        if not self.sums:
            return None
        names = list(self.sums)
        values = torch.stack([self.sums[n] / self.counts[n] for n in names]).tolist()
        self.sums, self.counts = {}, {}
        return dict(zip(names, values))


def load_generator_state(generator: torch.Generator, state: torch.Tensor) -> None:
    """Restore a generator, also from a checkpoint written on another device type (a GPU
    trial resumed on a CPU node): a CUDA generator's state is its seed and offset (16 bytes), a
    CPU one's is a Mersenne twister (5056 bytes), and neither loads into the other. The stream is
    then reseeded from the saved state's bytes, deterministically, with a warning: the run
    continues, but not bit-identically to one that stayed on its device."""
    if state.numel() == generator.get_state().numel():
        generator.set_state(state)
        return
    seed = int.from_bytes(hashlib.sha256(state.numpy().tobytes()).digest()[:8], "little")
    generator.manual_seed(seed)
    log.warning(
        "a %d-byte generator state cannot be loaded into a %s generator (a checkpoint from "
        "another device type): reseeded from it, so this run no longer matches one that "
        "stayed on its device bit for bit", state.numel(), generator.device.type,
    )


def release_memory() -> None:
    """After a trial, before a reused worker starts the next: the engine is freed by reference
    counting when its run returns, but a compiled module refers to itself (its compiled call
    holds its own bound method), so one collection pass frees that too; then the CUDA
    allocator's cached blocks go back to the device for the trials that share it."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
