"""`cl-sweeps doctor`: check a node before a sweep runs on it.

Each check prints one line, PASS, FAIL or SKIP, with the numbers it measured; the exit code is
the number of FAILs. The checks run at tiny sizes through the engine's own code (run_sequence,
Throughput, the bench), so they exercise what a trial runs:

- every strategy for a few iterations in each precision the device supports: finite metrics
  and an fp32 checkpoint;
- the fp16 gradient scaler with a forced overflow: the step is skipped, the scale backs off,
  SI's path integral stays finite;
- memory after a trial: the engine freed, and on CUDA the memory still allocated;
- a checkpoint resumed: the same final metrics as an uninterrupted run (and on CUDA, the GPU
  checkpoint continued on the CPU);
- on CUDA only: host syncs per training iteration (`torch.cuda.set_sync_debug_mode`), inductor
  compilation with no recompile after task 1 and the compiled teacher equal to the student,
  FID features with and without TF32, and `bench --compare fp32 bf16 bf16+compile` on the
  paper's presets with MFU, peak memory and how many trials fit on one GPU.

Checks that need a GPU are reported as SKIP with the reason on a node without one.
"""

from __future__ import annotations

import copy
import gc
import math
import tempfile
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cl_sweeps import metrics as M
from cl_sweeps.config import TrialConfig
from cl_sweeps.throughput import resolve_device

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
NO_GPU = "needs a CUDA device; none is visible"

# The doctor's trial: two tiny tasks of the embedded digits (task 1 brings teachers, memories
# and penalties into play), a few iterations, a small evaluation.
TINY_TRIAL: dict[str, Any] = {
    "seed": 0,
    "data": {"dataset": "digits", "tasks": [[0, 1], [2, 3]], "max_train_per_class": 16,
             "max_test_per_class": 8},
    "train": {"iterations_per_task": 2, "batch_size": 8, "loss_read_every": 2},
    "evaluation": {"n_eval_samples": 24, "eval_steps": 1, "eval_batch_size": 24,
                   "denoise_eval_per_task": 8, "classifier_epochs": 1, "sample_grid_size": 4},
    "strategy": {"teacher_steps": 1, "replay_ratio": 0.5, "memory_size": 8},
}


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    status: str
    detail: str

    def line(self) -> str:
        return f"{self.status}  {self.name}: {self.detail}"


class Doctor:
    """Runs the checks on one device, writing scratch runs under `workdir`."""

    def __init__(self, device: str, workdir: Path, strategies: list[str] | None = None,
                 bench: bool = True):
        from cl_sweeps.strategies import available_strategies

        self.device = resolve_device(device)
        self.device_name = device
        self.workdir = workdir
        self.strategies = strategies or available_strategies()
        self.bench = bench
        self.cuda = self.device.type == "cuda"

    def trial(self, name: str, label: str, **override: Any) -> TrialConfig:
        from cl_sweeps.strategies.catalog import strategy_info

        data = copy.deepcopy(TINY_TRIAL)
        data["strategy"]["name"] = name
        if not strategy_info(name).works_for(data.get("model", {}).get("conditional", False)):
            data.setdefault("model", {})["conditional"] = True  # a conditional-only strategy
        data["device"] = self.device_name
        data["output_dir"] = str(self.workdir / label)
        for section, values in override.items():
            if isinstance(values, dict):
                data.setdefault(section, {}).update(values)
            else:
                data[section] = values
        return TrialConfig.model_validate(data)

    def precisions(self) -> list[str]:
        if not self.cuda:
            return ["fp32"]
        bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        return ["fp32", *(["bf16"] if bf16 else []), "fp16"]

    # --- the checks ---------------------------------------------------------------------------
    def checks(self) -> Iterator[Callable[[], list[Check]]]:
        yield self.check_strategies
        yield self.check_fp16_overflow
        yield self.check_memory_after_trial
        yield self.check_resume
        yield self.check_sync_debug
        yield self.check_compile
        yield self.check_tf32_features
        yield self.check_bench

    def check_strategies(self) -> list[Check]:
        from cl_sweeps.sequence import run_sequence

        results = []
        for precision in self.precisions():
            failed, seconds = [], 0.0
            for name in self.strategies:
                config = self.trial(name, f"strategies/{precision}/{name}",
                                    train={"precision": precision})
                start = time.perf_counter()
                try:
                    history = run_sequence(config).history
                except Exception as error:  # noqa: BLE001 (a check reports; the doctor goes on)
                    failed.append(f"{name} ({type(error).__name__}: {error})")
                    continue
                seconds += time.perf_counter() - start
                problem = _finite_and_fp32(history, Path(config.output_dir))
                if problem:
                    failed.append(f"{name} ({problem})")
            name = f"strategies [{precision}]"
            if failed:
                results.append(Check(name, FAIL, "; ".join(failed)))
            else:
                results.append(Check(name, PASS, (
                    f"{len(self.strategies)} strategies x 2 tasks in {seconds:.1f} s: finite "
                    "metrics, fp32 checkpoints")))
        return results

    def check_fp16_overflow(self) -> list[Check]:
        """An inf in the loss: the scaler skips the step and halves its scale, the weights do not
        move, and SI's path integral stays finite across the skipped step."""
        from cl_sweeps.data.sources import ImageSet
        from cl_sweeps.sequence import Engine
        from cl_sweeps.throughput import OptimizerStep, Throughput

        engine = Engine(self.trial("si", "fp16_overflow", train={"precision": "fp32"}))
        settings = Throughput(engine.device, "fp16", channels_last=False, fused_adam=False,
                              tf32=False, compile=False)
        step = OptimizerStep(settings, grad_clip=1.0)
        images = engine.stream.train[0].images[:8].to(engine.device)
        batch = ImageSet(images, torch.zeros(len(images), dtype=torch.long, device=engine.device))
        scales, moved = [], []
        for iteration in range(3):
            with settings.autocast() if self.cuda else nullcontext():  # fp16 kernels: CUDA
                loss = engine.strategy.loss(engine.model, batch).loss
            if iteration == 1:
                loss = loss * float("inf")
            before = [p.detach().clone() for p in engine.model.parameters()]
            step(loss, engine.model, engine.optimizer)
            engine.strategy.after_optimizer_step(engine.model)
            scales.append(step.scaler.get_scale())
            moved.append(any(not torch.equal(a, b)
                             for a, b in zip(before, engine.model.parameters())))
        path_finite = all(bool(torch.isfinite(w).all()) for w in engine.strategy.path.values())
        where = "" if self.cuda else " (the scaler's logic on CPU; fp16 kernels need CUDA)"
        detail = (f"scale {scales[0]:g} -> {scales[1]:g} at the overflow, weights moved "
                  f"{moved}, SI path integral finite: {path_finite}{where}")
        ok = scales[1] < scales[0] and moved == [True, False, True] and path_finite
        return [Check("fp16 forced overflow", PASS if ok else FAIL, detail)]

    def check_memory_after_trial(self) -> list[Check]:
        from cl_sweeps.sequence import Engine
        from cl_sweeps.throughput import release_memory

        before = torch.cuda.memory_allocated(self.device) if self.cuda else 0
        engine = Engine(self.trial("generative_distillation", "memory"))
        engine.train_task(0, progress=False)
        engine.fit_task(1, progress=False)
        refs = [weakref.ref(engine), weakref.ref(engine.model)]
        compiled = engine.throughput.compile
        gc.disable()
        try:
            del engine
            freed = sum(r() is None for r in refs)
        finally:
            gc.enable()
        release_memory()
        left = (torch.cuda.memory_allocated(self.device) - before) / 2**20 if self.cuda else 0.0
        memory = f", {left:.1f} MiB still allocated on the GPU" if self.cuda else ""
        detail = f"engine and model freed without a collector pass: {freed}/2{memory}"
        ok = (freed == 2 or compiled) and left < 1.0
        return [Check("memory after a trial", PASS if ok else FAIL, detail)]

    def check_resume(self) -> list[Check]:
        """Stopped after task 0 and resumed from its checkpoint: the same final metrics."""
        from cl_sweeps.checkpoint_files import latest_checkpoint
        from cl_sweeps.sequence import run_sequence

        name = "generative_distillation"
        whole = run_sequence(self.trial(name, "resume/whole")).history[-1]
        part = self.trial(name, "resume/part")
        with _stopped_after_task(0):
            run_sequence(part, _stop_after(0))
        checkpoint = latest_checkpoint(Path(part.output_dir))
        resumed = run_sequence(part, resume_from=checkpoint).history[-1]
        same = _comparable(whole) == _comparable(resumed)
        results = [Check(
            f"checkpoint resume [{self.device.type}]", PASS if same else FAIL,
            f"final metrics {'identical' if same else 'differ'} after resuming task 1 from "
            f"{checkpoint.name if checkpoint else None}"
            + ("" if self.cuda else " (bit-identical is expected on CPU)"),
        )]
        if not self.cuda:
            results.append(Check("GPU checkpoint resumed on CPU", SKIP, NO_GPU))
            return results
        cpu = self.trial(name, "resume/part", device="cpu")
        try:
            ended = run_sequence(cpu, resume_from=checkpoint).history[-1]
            finite = all(math.isfinite(v) for v in ended.values())
            results.append(Check("GPU checkpoint resumed on CPU", PASS if finite else FAIL,
                                 f"task 1 trained on CPU from the GPU's task 0, finite: {finite}"))
        except Exception as error:  # noqa: BLE001 (reported as the check's FAIL)
            results.append(Check("GPU checkpoint resumed on CPU", FAIL,
                                 f"{type(error).__name__}: {error}"))
        return results

    def check_sync_debug(self) -> list[Check]:
        name = "host syncs per training iteration"
        if not self.cuda:
            return [Check(name, SKIP, NO_GPU)]
        from cl_sweeps.sequence import Engine

        iterations = 40
        engine = Engine(self.trial("generative_distillation", "syncs", train={
            "iterations_per_task": iterations, "loss_read_every": iterations}))
        engine.train_task(0, progress=False)
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                engine.fit_task(1, progress=False)
            finally:
                torch.cuda.set_sync_debug_mode(0)
        syncs = sum("synchroniz" in str(w.message) for w in caught)
        per_iteration = syncs / iterations
        detail = (f"{syncs} synchronising calls in {iterations} iterations of generative "
                  f"distillation ({per_iteration:.2f} per iteration; the loss read is 1)")
        return [Check(name, PASS if per_iteration <= 0.25 else FAIL, detail)]

    def check_compile(self) -> list[Check]:
        name = "inductor compile"
        if not self.cuda:
            return [Check(name, SKIP, NO_GPU + " (CPU: aot_eager in the test suite)")]
        from torch._dynamo.utils import counters

        from cl_sweeps.sequence import Engine

        config = self.trial("generative_distillation", "compile", train={"compile": True},
                            data={"tasks": [[0, 1], [2, 3], [4, 5]]})
        engine = Engine(config)
        graphs = []
        for task in range(3):
            engine.train_task(task, progress=False)
            graphs.append(counters["stats"]["unique_graphs"])
        from cl_sweeps.diffusion.model import predict_noise  # a conditional model: null class

        teacher = engine.teacher.copy_of(engine.model)
        x = torch.randn(4, engine.stream.channels, engine.stream.image_size,
                        engine.stream.image_size, device=self.device)
        t = torch.full((4,), 500, device=self.device, dtype=torch.long)
        with torch.no_grad(), engine.throughput.autocast():
            engine.model.eval()
            student = predict_noise(engine.model, x, t).float()
            gap = (predict_noise(teacher, x, t).float() - student).abs().max()
        ok = graphs[2] == graphs[1] and float(gap) < 1e-3
        detail = (f"graphs after tasks 1..3: {graphs} (no recompile after task 2: "
                  f"{graphs[2] == graphs[1]}), compiled teacher vs student max |diff| "
                  f"{float(gap):.2e}")
        return [Check(name, PASS if ok else FAIL, detail)]

    def check_tf32_features(self) -> list[Check]:
        name = "FID features without TF32"
        if not self.cuda:
            return [Check(name, SKIP, NO_GPU)]
        from cl_sweeps.sequence import Engine

        engine = Engine(self.trial("naive", "tf32"))  # applies the trial's backend flags
        flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        extractor = engine.evaluator.extractor
        images = (engine.stream.test[0].images[:64].to(self.device) + 1) / 2
        with torch.no_grad():
            exact = extractor(images)
            with engine.throughput.tf32_scope():
                tf32 = extractor(images)
        gap = float((exact - tf32).abs().max())
        detail = (f"TF32 flags outside the UNet scope: {flags}; {engine.evaluator.feature_kind} "
                  f"features with TF32 differ from exact fp32 by up to {gap:.2e}")
        return [Check(name, PASS if flags == (False, False) else FAIL, detail)]

    def check_bench(self) -> list[Check]:
        name = "bench --compare fp32 bf16 bf16+compile (paper presets)"
        if not self.cuda:
            return [Check(name, SKIP, NO_GPU), Check("trials per GPU", SKIP, NO_GPU)]
        if not self.bench:
            return [Check(name, SKIP, "--no-bench")]
        from cl_sweeps.bench import Variant, bench_strategy

        results = []
        total = torch.cuda.get_device_properties(self.device).total_memory
        for preset, size, channels, batch in (("paper", 32, 1, 128), ("paper_cifar", 32, 3, 64)):
            for label in ("fp32", "bf16", "bf16+compile"):
                torch.cuda.reset_peak_memory_stats(self.device)
                row = bench_strategy(
                    "generative_distillation", preset=preset, image_size=size,
                    channels=channels, batch_size=batch, teacher_steps=2, replay_ratio=1.0,
                    iterations=10, warmup=3, device=self.device, variant=Variant.parse(label),
                )
                peak = torch.cuda.max_memory_allocated(self.device)
                mfu = "-" if row.mfu is None else f"{100 * row.mfu:.1f}%"
                results.append(Check(f"bench {preset} [{label}]", PASS, (
                    f"{row.seconds_per_iteration * 1000:.1f} ms/iter, MFU {mfu}, peak "
                    f"{peak / 2**20:.0f} MiB, trials per GPU by memory: {int(total // peak)}")))
        return results

    def run(self, report: Callable[[Check], None]) -> list[Check]:
        results = []
        for check in self.checks():
            try:
                found = check()
            except Exception as error:  # noqa: BLE001 (reported as the check's FAIL)
                found = [Check(check.__name__.removeprefix("check_"), FAIL,
                               f"{type(error).__name__}: {error}")]
            for result in found:
                report(result)
                results.append(result)
        return results


def _finite_and_fp32(history: list[dict[str, float]], output_dir: Path) -> str | None:
    """None if every denoising loss is finite, no other metric is NaN and the last
    checkpoint's weights are fp32. An infinite FID is allowed: it marks a task the model
    generates fewer than two images of (evaluation/fid.py), which two tiny iterations may well
    do; the differences of two such FIDs (forgetting, fr) are then NaN too."""
    from safetensors.torch import load_file

    from cl_sweeps.checkpoint_files import UNET_DIR, latest_checkpoint

    from_infinite_fids = (M.FORGETTING, M.FORGETTING_RATE)
    bad = sorted({k for row in history for k, v in row.items()
                  if (math.isnan(v) and k not in from_infinite_fids)
                  or (k.startswith(M.DENOISE_LOSS) and math.isinf(v))})
    if bad:
        return f"non-finite {', '.join(bad)}"
    checkpoint = latest_checkpoint(output_dir)
    if checkpoint is None:
        return "no checkpoint written"
    files = list((checkpoint / UNET_DIR).glob("*.safetensors"))
    dtypes = {str(t.dtype) for f in files for t in load_file(f).values()}
    if dtypes != {"torch.float32"}:
        return f"checkpoint weights {sorted(dtypes) or 'missing'}"
    return None


class _Stop(Exception):
    """Ends a run right after a task's checkpoint (the resume check)."""


def _stop_after(task: int) -> Callable[[int, dict[str, float], Path], None]:
    def reporter(index: int, metrics: dict[str, float], directory: Path) -> None:
        if index == task:
            raise _Stop

    return reporter


@contextmanager
def _stopped_after_task(task: int) -> Iterator[None]:
    try:
        yield
    except _Stop:
        pass


def _comparable(row: dict[str, float]) -> dict[str, str]:
    """Every metric but wall time and memory, as text (so inf and nan compare equal)."""
    return {k: repr(v) for k, v in row.items() if "seconds" not in k and "memory" not in k}


def run_doctor(device: str = "auto", strategies: list[str] | None = None,
               workdir: Path | None = None, bench: bool = True,
               report: Callable[[Check], None] = lambda check: print(check.line(), flush=True),
               ) -> list[Check]:
    """All checks on `device`; each reported as it ends. Scratch runs go to a temporary
    directory unless `workdir` is given."""
    with tempfile.TemporaryDirectory(prefix="cl-sweeps-doctor-") as scratch:
        doctor = Doctor(device, Path(workdir or scratch), strategies, bench)
        header = torch.cuda.get_device_name(doctor.device) if doctor.cuda else "CPU"
        print(f"cl-sweeps doctor on {header} (torch {torch.__version__})", flush=True)
        return doctor.run(report)
