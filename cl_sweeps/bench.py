"""`cl-sweeps bench`: seconds per training iteration of every strategy, measured in one run,
next to what the FLOP model predicts (counted image-forwards × measured FLOPs per forward).

This is where performance claims are checked; it asserts nothing about speed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from cl_sweeps.config import ModelConfig, StrategyConfig
from cl_sweeps.data.sources import ImageSet
from cl_sweeps.diffusion import DDIMSampler, build_scheduler, build_unet
from cl_sweeps.evaluation.compute import (
    TRAIN_PURPOSES,
    ForwardCounter,
    PhaseTimer,
    flops_by_purpose,
    measure_flops_per_image,
)
from cl_sweeps.sequence import frozen_copy
from cl_sweeps.strategies import TrainingContext, available_strategies, build_strategy


@dataclass
class BenchRow:
    strategy: str
    seconds_per_iteration: float
    gflops_per_iteration: float
    forwards_per_iteration: dict[str, float]


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
    seed: int = 0,
) -> BenchRow:
    """Time `iterations` optimiser steps of one strategy at task index 1 (teacher and replay on)."""
    torch.manual_seed(seed)
    model_config = ModelConfig(preset=preset)
    model = build_unet(model_config, image_size, channels).to(device)
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
    )
    strategy = build_strategy(
        StrategyConfig(name=name, teacher_steps=teacher_steps, replay_ratio=replay_ratio,
                       memory_size=4 * batch_size),
        context,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    shape = (batch_size, channels, image_size, image_size)
    batch = ImageSet(torch.rand(shape, device=device) * 2 - 1,
                     torch.zeros(batch_size, dtype=torch.long, device=device))
    # Pretend a first task is done, so replay memories and teachers exist.
    strategy.end_task(model, 0, ImageSet(batch.images.cpu(), batch.labels.cpu()))
    context.task_index = 1
    context.teacher = frozen_copy(model) if strategy.needs_teacher else None

    def step() -> None:
        output = strategy.loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        strategy.after_optimizer_step(model)

    for _ in range(warmup):
        step()
    before = counter.snapshot()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - start) / iterations
    after = counter.snapshot()
    per_iteration = {p: (after[p] - before[p]) / iterations for p in TRAIN_PURPOSES}
    flops = flops_by_purpose(per_iteration, measure_flops_per_image(model))
    return BenchRow(name, seconds, sum(flops[p] for p in TRAIN_PURPOSES) / 1e9, per_iteration)


def format_bench(rows: list[BenchRow]) -> str:
    """Measured seconds and the FLOP model's prediction, each as a ratio to naive and to GR."""
    by_name = {r.strategy: r for r in rows}
    references = [n for n in ("naive", "generative_replay") if n in by_name]
    header = ["strategy", "s/iter", "GFLOP/iter", "GFLOP/s"]
    for ref in references:
        header += [f"x{ref} meas", f"x{ref} pred"]
    header += ["student", "teacher_gen", "teacher_tgt"]
    lines = [header]
    for r in rows:
        line = [r.strategy, f"{r.seconds_per_iteration:.4f}", f"{r.gflops_per_iteration:.2f}",
                f"{r.gflops_per_iteration / r.seconds_per_iteration:.1f}"]
        for ref in references:
            base = by_name[ref]
            line += [f"{r.seconds_per_iteration / base.seconds_per_iteration:.2f}",
                     f"{r.gflops_per_iteration / base.gflops_per_iteration:.2f}"]
        line += [f"{r.forwards_per_iteration[p]:.0f}" for p in TRAIN_PURPOSES]
        lines.append(line)
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
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
) -> list[BenchRow]:
    names = strategies or available_strategies()
    unknown = sorted(set(names) - set(available_strategies()))
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; allowed: {available_strategies()}")
    settings = {
        "preset": preset, "image_size": image_size, "channels": channels,
        "batch_size": batch_size, "teacher_steps": teacher_steps, "replay_ratio": replay_ratio,
        "device": torch.device(device),
    }
    # One untimed pass first: the first UNet calls of a process pay for allocator and kernel
    # set-up, which would otherwise be charged to whichever strategy comes first.
    bench_strategy(names[0], iterations=1, warmup=warmup, **settings)
    return [bench_strategy(name, iterations=iterations, warmup=warmup, **settings) for name in names]
