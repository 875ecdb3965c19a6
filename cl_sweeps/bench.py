"""`cl-sweeps bench`: seconds per training iteration of every strategy, measured in one run,
next to what the FLOP model predicts (counted image-forwards × measured FLOPs per forward), with
image-forwards/s, achieved TFLOP/s and MFU (model FLOP utilisation against the device's peak).

Each variant (precision, optionally + torch.compile) is timed with the engine's own machinery
(`cl_sweeps.throughput`), and one run can compare variants side by side as speed-up ratios.
Warm-up iterations, which include any compilation, are timed separately and never enter
seconds/iteration. The `classifier_replay` row is one iteration of the classifier of the paper's
second experiment at task 1: B replay images from the frozen UNet (k DDIM steps, B·k
image-forwards), labelled by the previous classifier, and the classifier's forward + backward. This is where performance claims are checked; it asserts nothing about speed.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import torch

from cl_sweeps.classifier_replay import ClassifierReplay
from cl_sweeps.config import (
    ClassifierReplayConfig,
    ConfigError,
    EvaluationConfig,
    ModelConfig,
    StrategyConfig,
    TrainConfig,
)
from cl_sweeps.data.sources import ImageSet
from cl_sweeps.diffusion import DDIMSampler, build_scheduler, build_unet
from cl_sweeps.evaluation.compute import (
    EMA_UPDATE,
    TRAIN_PURPOSES,
    ForwardCounter,
    PhaseTimer,
    flops_by_purpose,
    measure_flops_per_image,
)
from cl_sweeps.strategies import TrainingContext, available_strategies, build_strategy
from cl_sweeps.strategies.base import Conditioning, priced_flops
from cl_sweeps.strategies.catalog import strategy_info
from cl_sweeps.throughput import OptimizerStep, PersistentTeacher, Throughput, frozen

# Dense (no sparsity) peak TFLOP/s from NVIDIA's datasheets, by the math an autocast precision
# runs on: bf16/fp16 tensor cores, and for fp32 the TF32 tensor cores when TF32 is allowed
# (train.tf32, the default) or the plain fp32 units when not. GPUs without TF32 (before Ampere:
# V100, T4) run fp32 on the fp32 units whatever train.tf32 says. First matching name wins, so
# the NVL and PCIe variants come before the SXM row; `\b` keeps "A100" from matching "RTX A1000".
KNOWN_PEAKS: list[tuple[str, dict[str, float]]] = [
    (r"\bH100\b.*PCIe", {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0}),
    (r"\bH[12]00 NVL\b", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}),
    (r"\b(H100|H200|GH200)\b", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    (r"\bA100\b", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
    (r"\bL40S\b", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.1, "fp16": 362.1}),
    (r"\bL4\b", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0}),
    (r"\bV100\b", {"fp32": 15.7, "fp16": 125.0}),
    (r"\bT4\b", {"fp32": 8.1, "fp16": 65.0}),
]


def peak_math(settings: Throughput) -> str:
    """The peak-table key of what the UNet's matmuls and convolutions run on."""
    if settings.precision == "fp32":
        return "tf32" if settings.tf32 else "fp32"
    return settings.precision


def known_peak_tflops(device_name: str, math: str) -> float | None:
    """The datasheet peak of the first row matching `device_name` (None: unknown GPU, or a
    precision it has no tensor cores for, such as bf16 on a V100)."""
    for pattern, peaks in KNOWN_PEAKS:
        if re.search(pattern, device_name):
            if math == "tf32" and "tf32" not in peaks:
                math = "fp32"  # no TF32 units: fp32 runs on the fp32 units
            return peaks.get(math)
    return None


@dataclass(frozen=True)
class Variant:
    """A precision (auto, fp32, bf16, fp16), optionally compiled: written `bf16+compile`."""

    precision: str
    compile: bool = False

    @classmethod
    def parse(cls, text: str) -> Variant:
        precision, _, rest = text.partition("+")
        if rest not in ("", "compile"):
            raise ConfigError(f"--compare {text!r}: expected PRECISION or PRECISION+compile")
        try:
            TrainConfig(precision=precision)
        except ValueError:
            raise ConfigError(
                f"--compare {text!r}: unknown precision {precision!r}; "
                "allowed: auto, fp32, bf16, fp16 (optionally +compile)"
            ) from None
        return cls(precision, rest == "compile")

    @property
    def label(self) -> str:
        return self.precision + ("+compile" if self.compile else "")


@dataclass
class BenchRow:
    strategy: str
    seconds_per_iteration: float
    gflops_per_iteration: float
    forwards_per_iteration: dict[str, float]
    variant: str = "fp32"  # as requested, e.g. bf16+compile
    precision: str = "fp32"  # as resolved on the device
    warmup_seconds: float = 0.0  # all warm-up iterations, compilation included
    peak_tflops: float | None = None  # for MFU; None if unknown

    @property
    def image_forwards_per_second(self) -> float:
        """UNet image-forwards per second (EMA teacher updates are counted, but are not any)."""
        forwards = sum(n for p, n in self.forwards_per_iteration.items() if p != EMA_UPDATE)
        return forwards / self.seconds_per_iteration

    @property
    def tflops_per_second(self) -> float:
        return self.gflops_per_iteration / self.seconds_per_iteration / 1e3

    @property
    def mfu(self) -> float | None:
        return None if self.peak_tflops is None else self.tflops_per_second / self.peak_tflops


def variant_settings(variant: Variant, compile_backend: str, device: torch.device) -> Throughput:
    """The engine's own throughput settings for a benchmarked variant."""
    return Throughput.resolve(
        TrainConfig(precision=variant.precision, compile=variant.compile,
                    compile_backend=compile_backend),
        device,
    )


def bench_strategy(
    name: str,
    *,
    preset: str,
    image_size: int,
    channels: int,
    batch_size: int,
    teacher_steps: int,
    replay_ratio: float,
    iterations: int,
    warmup: int,
    device: torch.device,
    variant: Variant = Variant("fp32"),
    peak_tflops: float | None = None,
    compile_backend: str = "inductor",
    seed: int = 0,
) -> BenchRow:
    """Time `iterations` optimiser steps of one strategy at task index 1 (teacher and replay on)."""
    torch.manual_seed(seed)
    settings = variant_settings(variant, compile_backend, device)
    settings.apply_backend_flags()
    # A conditional-only strategy is timed on a class-conditional UNet: two classes, one per
    # task (the null class is a third embedding row).
    conditional = not strategy_info(name).works_for(False)
    model_config = ModelConfig(preset=preset, conditional=conditional)
    conditioning = Conditioning([[0], [1]], null_class=2) if conditional else None

    def unet() -> torch.nn.Module:
        return build_unet(model_config, image_size, channels,
                          num_classes=2 if conditional else None).to(device)

    model = unet()
    flops_per_image = priced_flops(model, StrategyConfig(name=name))  # the engine's prices
    settings.prepare(model)
    scheduler = build_scheduler(model_config)
    counter = ForwardCounter()
    context = TrainingContext(
        scheduler=scheduler,
        sampler=DDIMSampler(scheduler),
        counter=counter,
        timer=PhaseTimer(),
        generator=torch.Generator(device=device).manual_seed(seed),
        device=device,
        task_index=0,
        conditioning=conditioning,
    )
    strategy = build_strategy(
        StrategyConfig(name=name, teacher_steps=teacher_steps, replay_ratio=replay_ratio,
                       memory_size=4 * batch_size),
        context,
    )
    optimizer = settings.optimizer(model, lr=2e-4)
    optimizer_step = OptimizerStep(settings, grad_clip=1.0)
    shape = (batch_size, channels, image_size, image_size)
    batch = ImageSet(torch.rand(shape, device=device) * 2 - 1,
                     torch.zeros(batch_size, dtype=torch.long, device=device))
    # Pretend a first task is done, so replay memories and teachers exist.
    strategy.end_task(model, 0, ImageSet(batch.images.cpu(), batch.labels.cpu()))
    context.task_index = 1
    teacher = PersistentTeacher(unet, settings)
    context.teacher = teacher.copy_of(model) if strategy.needs_teacher else None
    strategy.begin_task(model, 1)  # as the engine: lora's adapter goes in, the ensemble re-inits
    if strategy.fresh_optimizer:
        optimizer = settings.optimizer(model, lr=2e-4)

    def step() -> None:
        with settings.autocast():
            output = strategy.loss(model, batch)
        optimizer_step(output.loss, model, optimizer)
        strategy.after_optimizer_step(model)

    def timed(n: int) -> float:
        _synchronize(device)
        start = time.perf_counter()
        with settings.tf32_scope():  # as the engine's training loop
            for _ in range(n):
                step()
        _synchronize(device)
        return time.perf_counter() - start

    warmup_seconds = timed(warmup)
    before = counter.snapshot()
    seconds = timed(iterations) / iterations
    after = counter.snapshot()
    per_iteration = {p: (after[p] - before[p]) / iterations for p in TRAIN_PURPOSES}
    flops = flops_by_purpose(per_iteration, flops_per_image)
    if peak_tflops is None and device.type == "cuda":
        peak_tflops = known_peak_tflops(torch.cuda.get_device_name(device), peak_math(settings))
    return BenchRow(
        name, seconds, sum(flops[p] for p in TRAIN_PURPOSES) / 1e9, per_iteration,
        variant=variant.label, precision=settings.precision, warmup_seconds=warmup_seconds,
        peak_tflops=peak_tflops,
    )


CLASSIFIER_REPLAY = "classifier_replay"  # the bench's row of the classifier's iteration
PURPOSE_HEADERS = {
    "student_train": "student", "teacher_generation": "teacher_gen",
    "teacher_target": "teacher_tgt", "classifier_replay_generation": "clf_replay_gen",
    "adapter_train": "adapter", "ema_update": "ema_upd",
}


def bench_classifier_replay(
    name: str = CLASSIFIER_REPLAY,
    *,
    preset: str,
    image_size: int,
    channels: int,
    batch_size: int,
    iterations: int,
    warmup: int,
    device: torch.device,
    generation_steps: int = EvaluationConfig().eval_steps,
    variant: Variant = Variant("fp32"),
    peak_tflops: float | None = None,
    compile_backend: str = "inductor",
    seed: int = 0,
    **_: object,
) -> BenchRow:
    """Time classifier-replay iterations at task 1 (the generator on), as the engine runs them."""
    torch.manual_seed(seed)
    settings = variant_settings(variant, compile_backend, device)
    model_config = ModelConfig(preset=preset)
    model = build_unet(model_config, image_size, channels).to(device)
    unet_flops = measure_flops_per_image(model)
    generator = settings.prepare(frozen(model))
    counter = ForwardCounter()
    classifier = ClassifierReplay(
        ClassifierReplayConfig(batch_size=batch_size, iterations_per_task=1),
        channels=channels, image_size=image_size, num_classes=10,
        generation_steps=generation_steps, sampler=DDIMSampler(build_scheduler(model_config)),
        counter=counter, device=device, seed=seed,
    )
    shape = (batch_size, channels, image_size, image_size)
    tasks = [ImageSet(torch.rand(shape, device=device) * 2 - 1,
                      torch.zeros(batch_size, dtype=torch.long, device=device))] * 2

    def timed(n: int) -> float:
        classifier.config = classifier.config.model_copy(update={"iterations_per_task": n})
        _synchronize(device)
        start = time.perf_counter()
        if n:
            classifier.train_task(1, tasks, generator, _minibatches, settings.autocast)
        _synchronize(device)
        return time.perf_counter() - start

    warmup_seconds = timed(warmup)
    before, tflops_before = counter.snapshot(), classifier.tflops()
    seconds = timed(iterations) / iterations
    after = counter.snapshot()
    per_iteration = {p: (after[p] - before[p]) / iterations for p in TRAIN_PURPOSES}
    flops = flops_by_purpose(per_iteration, unet_flops)
    own = (classifier.tflops() - tflops_before) * 1e3 / iterations  # GFLOPs per iteration
    if peak_tflops is None and device.type == "cuda":
        peak_tflops = known_peak_tflops(torch.cuda.get_device_name(device), peak_math(settings))
    return BenchRow(
        CLASSIFIER_REPLAY, seconds, sum(flops[p] for p in TRAIN_PURPOSES) / 1e9 + own,
        per_iteration, variant=variant.label, precision=settings.precision,
        warmup_seconds=warmup_seconds, peak_tflops=peak_tflops,
    )


def _minibatches(data: ImageSet, size: int, generator: torch.Generator):
    """The engine's minibatches (imported late: the bench is a sibling of the engine)."""
    from cl_sweeps.sequence import minibatches

    return minibatches(data, size, generator)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def format_bench(rows: list[BenchRow]) -> str:
    """One table per variant: measured seconds and throughput, and the FLOP model's prediction,
    each as a ratio to naive and to GR. MFU only where a peak is known or given."""
    variants = list(dict.fromkeys(r.variant for r in rows))
    return "\n\n".join(_variant_table([r for r in rows if r.variant == v]) for v in variants)


def _variant_table(rows: list[BenchRow]) -> str:
    by_name = {r.strategy: r for r in rows}
    references = [n for n in ("naive", "generative_replay") if n in by_name]
    with_mfu = any(r.mfu is not None for r in rows)
    header = ["strategy", "s/iter", "img-fwd/s", "GFLOP/iter", "TFLOP/s"]
    header += ["MFU"] if with_mfu else []
    for ref in references:
        header += [f"x{ref} meas", f"x{ref} pred"]
    header += [PURPOSE_HEADERS.get(p, p) for p in TRAIN_PURPOSES] + ["warm-up s"]
    lines = [header]
    for r in rows:
        line = [r.strategy, f"{r.seconds_per_iteration:.4f}", f"{r.image_forwards_per_second:.0f}",
                f"{r.gflops_per_iteration:.2f}", f"{r.tflops_per_second:.3g}"]
        if with_mfu:
            line.append("-" if r.mfu is None else f"{100 * r.mfu:.1f}%")
        for ref in references:
            base = by_name[ref]
            line += [f"{r.seconds_per_iteration / base.seconds_per_iteration:.2f}",
                     f"{r.gflops_per_iteration / base.gflops_per_iteration:.2f}"]
        line += [f"{r.forwards_per_iteration[p]:.0f}" for p in TRAIN_PURPOSES]
        line.append(f"{r.warmup_seconds:.1f}")
        lines.append(line)
    first = rows[0]
    peak = "MFU: no peak known (--peak-tflops)" if not with_mfu else (
        f"MFU against {first.peak_tflops:g} TFLOP/s")
    title = f"[{first.variant}] precision={first.precision}; {peak}"
    return title + "\n" + _align(lines)


def format_comparison(rows: list[BenchRow]) -> str:
    """Speed-up of every variant over the first (its s/iter ÷ the variant's), per strategy."""
    variants = list(dict.fromkeys(r.variant for r in rows))
    seconds = {(r.strategy, r.variant): r.seconds_per_iteration for r in rows}
    strategies = list(dict.fromkeys(r.strategy for r in rows))
    lines = [["strategy", *(f"{v} vs {variants[0]}" for v in variants[1:])]]
    for name in strategies:
        base = seconds[(name, variants[0])]
        lines.append([name, *(f"{base / seconds[(name, v)]:.2f}x" for v in variants[1:])])
    return "speed-up (seconds per iteration of the first variant ÷ each variant's)\n" + _align(
        lines
    )


def _align(lines: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in lines)


def run_bench(
    strategies: list[str] | None = None,
    *,
    preset: str = "tiny",
    image_size: int = 8,
    channels: int = 1,
    batch_size: int = 64,
    teacher_steps: int = 2,
    replay_ratio: float = 1.0,
    iterations: int = 10,
    warmup: int = 2,
    device: str = "cpu",
    variants: list[Variant] | None = None,
    peak_tflops: float | None = None,
    compile_backend: str = "inductor",
) -> list[BenchRow]:
    """Every strategy under every variant (default: fp32), in that order; `classifier_replay`
    (in the default list, last) is the classifier's iteration of the paper's second experiment."""
    allowed = [*available_strategies(), CLASSIFIER_REPLAY]
    names = strategies or allowed
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; allowed: {allowed}")
    variants = variants or [Variant("fp32")]
    settings = {
        "preset": preset, "image_size": image_size, "channels": channels,
        "batch_size": batch_size, "teacher_steps": teacher_steps, "replay_ratio": replay_ratio,
        "device": torch.device(device), "peak_tflops": peak_tflops,
        "compile_backend": compile_backend,
    }
    for variant in variants:  # impossible precisions fail before anything is timed
        Throughput.resolve(TrainConfig(precision=variant.precision), torch.device(device))
    # One untimed pass first: the first UNet calls of a process pay for allocator and kernel
    # set-up, which would otherwise be charged to whichever strategy comes first.
    first = names[0] if names[0] != CLASSIFIER_REPLAY else "naive"
    bench_strategy(first, iterations=1, warmup=warmup, variant=variants[0], **settings)
    return [
        (bench_classifier_replay if name == CLASSIFIER_REPLAY else bench_strategy)(
            name, iterations=iterations, warmup=warmup, variant=variant, **settings
        )
        for variant in variants
        for name in names
    ]
