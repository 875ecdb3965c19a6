"""FID and generation time against the number of DDIM steps, from one task checkpoint: the
paper's cost figure (utils/generate_fid_vs_time.py in its code).

The checkpoint's own UNet and noise schedule generate `n` images at each step count (eta 0, the
same seeded noise for every count), scored by the trial's FID features against the test images
of the tasks the checkpoint has seen. Only generation is timed; on CUDA the device is
synchronised before the clock starts and before it stops, so queued kernels are counted.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from diffusers import DDIMScheduler, UNet2DModel
from matplotlib.figure import Figure

from cl_sweeps.checkpoint_files import UNET_DIR, checkpoint_task
from cl_sweeps.config import TrialConfig
from cl_sweeps.data import build_task_stream, load_source
from cl_sweeps.diffusion import DDIMSampler
from cl_sweeps.evaluation.compute import EVAL_SAMPLING, ForwardCounter
from cl_sweeps.evaluation.fid import compute_fid
from cl_sweeps.evaluation.generation import EVAL_SEED_OFFSET, GenerationEvaluator
from cl_sweeps.formatting import fmt_number, markdown_table
from cl_sweeps.results import atomic_write
from cl_sweeps.throughput import resolve_device

PAPER_STEPS = (1, 2, 5, 10, 20, 50, 100)
SCHEDULER_DIR = "scheduler"  # the DDIMPipeline folder's noise schedule, beside UNET_DIR


@dataclass
class StepResult:
    """One point of the figure."""

    steps: int
    fid: float
    seconds: float  # wall time of generating all images (device synchronised)
    images: int
    unet_forwards: int  # image-forwards spent, as the evaluation counts them


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fid_vs_steps(
    config: TrialConfig,
    checkpoint: Path,
    steps: tuple[int, ...] = PAPER_STEPS,
    n_samples: int | None = None,
) -> list[StepResult]:
    """FID and generation time at each DDIM step count for the checkpoint's model; n_samples
    defaults to the trial's evaluation.n_eval_samples."""
    checkpoint = Path(checkpoint)
    task = checkpoint_task(checkpoint)
    device = resolve_device(config.device)
    source = load_source(config.data)
    stream = build_task_stream(config.data, source)
    if task >= len(stream):
        raise ValueError(f"{checkpoint} finished task {task}, but the trial config has "
                         f"{len(stream)} tasks; give the config the checkpoint was trained with")
    model = UNet2DModel.from_pretrained(checkpoint / UNET_DIR).to(device).eval()
    sampler = DDIMSampler(DDIMScheduler.from_pretrained(checkpoint / SCHEDULER_DIR))
    counter = ForwardCounter()
    evaluator = GenerationEvaluator(config, source, stream, sampler, counter, device)
    seen = stream.seen_test(task)
    n = n_samples or config.evaluation.n_eval_samples
    batch = config.evaluation.eval_batch_size
    results = []
    for k in steps:
        generator = torch.Generator(device=device).manual_seed(
            config.seed * 1000 + EVAL_SEED_OFFSET + task)
        before = counter.counts[EVAL_SAMPLING]
        _synchronize(device)
        start = time.perf_counter()
        images = sampler.sample(model, n, k, eta=0.0, generator=generator, batch_size=batch,
                                on_forward=counter.hook(EVAL_SAMPLING),
                                labels=evaluator.requested_labels(task, n),
                                guidance_scale=config.evaluation.guidance_scale).images
        _synchronize(device)
        seconds = time.perf_counter() - start
        fid = compute_fid(seen.images, images.clamp(-1, 1), evaluator.extractor, batch)
        results.append(StepResult(k, fid, seconds, n, counter.counts[EVAL_SAMPLING] - before))
    return results


def results_markdown(results: list[StepResult], device: str) -> str:
    rows = [[str(r.steps), fmt_number(r.fid), f"{r.seconds:.3f}",
             f"{1000 * r.seconds / r.images:.3f}", str(r.unet_forwards)] for r in results]
    headers = ["DDIM steps", "FID", "generation s", "ms per image", "UNet image-forwards"]
    return (f"{markdown_table(headers, rows)}\n\nOne run per step count on {device}, "
            f"{results[0].images if results else 0} images each (no spread: a single model).\n")


def results_figure(results: list[StepResult]) -> Figure:
    """FID against generation time, each point labelled with its DDIM steps (the paper's
    figure)."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([r.seconds for r in results], [r.fid for r in results], marker="o")
    for r in results:
        ax.annotate(str(r.steps), (r.seconds, r.fid), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"generation time [s] for {results[0].images if results else 0} images")
    ax.set_ylabel("FID on the seen test data")
    ax.set_title("FID vs generation time (labels: DDIM steps); one model, no spread",
                 fontsize=9)
    return fig


def write_results(results: list[StepResult], out_dir: Path, device: str) -> dict[str, Path]:
    """fid_vs_steps.md, .json and .png in out_dir."""
    out = Path(out_dir)
    text = results_markdown(results, device)
    payload = json.dumps({"device": device, "results": [asdict(r) for r in results]}, indent=2)
    figure = results_figure(results)
    return {
        "markdown": atomic_write(out / "fid_vs_steps.md", lambda p: p.write_text(text)),
        "json": atomic_write(out / "fid_vs_steps.json", lambda p: p.write_text(payload)),
        "plot": atomic_write(out / "fid_vs_steps.png",
                             lambda p: figure.savefig(p, format="png", dpi=120)),
    }
