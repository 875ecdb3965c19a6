"""run_sequence: one model through all tasks of a continual sequence.

Per task: train (the strategy forms each minibatch's loss), evaluate, checkpoint, and call
`reporter(task_index, metrics, checkpoint_dir)`. Knows nothing of Ray or MLflow.
"""

from __future__ import annotations

import copy
import logging
import resource
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DModel
from tqdm.auto import tqdm

from cl_sweeps import metrics as M
from cl_sweeps.checkpoint import MODEL_WEIGHTS, load_checkpoint, save_checkpoint
from cl_sweeps.checkpoint_files import task_checkpoint_dir
from cl_sweeps.classifier_replay import ClassifierReplay, final_accuracy_metrics
from cl_sweeps.config import TrialConfig
from cl_sweeps.data import ImageSet, TaskStream, build_task_stream, load_source
from cl_sweeps.data.augment import augmented
from cl_sweeps.diffusion import DDIMSampler, build_scheduler, build_unet
from cl_sweeps.evaluation.compute import (
    EVAL_SAMPLING,
    TRAIN_PURPOSES,
    ForwardCounter,
    PhaseTimer,
    flops_by_purpose,
)
from cl_sweeps.evaluation.denoising import denoising_loss
from cl_sweeps.evaluation.fid import (
    average_incremental_quality,
    fid_avg,
    forgetting,
    forgetting_rate,
)
from cl_sweeps.evaluation.generation import GenerationEvaluator
from cl_sweeps.metrics import task_metric
from cl_sweeps.numerics import check_loss
from cl_sweeps.prefix import computed_once, prefix_key
from cl_sweeps.prefix_store import PrefixStore
from cl_sweeps.strategies import Strategy, TrainingContext, build_strategy, unused_knobs
from cl_sweeps.strategies.base import Conditioning, priced_flops
from cl_sweeps.throughput import (
    LossReader,
    OptimizerStep,
    PersistentTeacher,
    Throughput,
    load_generator_state,
    resolve_device,
)

log = logging.getLogger(__name__)

Reporter = Callable[[int, dict[str, float], Path], None]


@dataclass
class SequenceResult:
    """The metrics reported after every task, in order, and the final model."""

    history: list[dict[str, float]]
    model: UNet2DModel


def iterations_for(config: TrialConfig, train_size: int) -> int:
    """The task's iteration budget: fixed, or epochs over the strategy's training set."""
    return config.train.iterations(train_size)


def minibatches(data: ImageSet, batch_size: int, generator: torch.Generator) -> Iterator[ImageSet]:
    """Endless minibatches of exactly `batch_size` (or the whole set, if smaller): a fresh
    seeded permutation every epoch, its incomplete tail dropped so costs are exact."""
    size = min(batch_size, len(data))
    while True:
        order = torch.randperm(len(data), generator=generator).to(data.labels.device)
        for start in range(0, len(data) - size + 1, size):
            yield data.subset(order[start : start + size])


class Engine:
    """The state of one sequence: model, optimiser, strategy, RNGs and compute meters."""

    def __init__(self, config: TrialConfig, accelerators_held: float | None = None):
        self.config = config
        self.device = resolve_device(config.device)
        self.accelerators_held = (
            accelerators_held
            if accelerators_held is not None
            else float(self.device.type == "cuda")
        )
        self.throughput = Throughput.resolve(config.train, self.device)
        self.throughput.apply_backend_flags()
        log.info("throughput settings: %s", self.throughput.params())
        torch.manual_seed(config.seed)
        source = load_source(config.data)
        self.stream: TaskStream = build_task_stream(config.data, source)

        image_size, channels, device = self.stream.image_size, self.stream.channels, self.device
        num_classes = source.num_classes

        def unet() -> UNet2DModel:  # captures no `self`: a finished engine is freed at once
            return build_unet(config.model, image_size, channels, num_classes).to(device)

        self.model = unet()
        self.flops = priced_flops(self.model, config.strategy)  # before compiling (prepare)
        self.throughput.prepare(self.model)
        self.teacher = PersistentTeacher(unet, self.throughput)
        self.scheduler = build_scheduler(config.model)
        self.optimizer = self.throughput.optimizer(self.model, config.train.lr)
        self.optimizer_step = OptimizerStep(self.throughput, config.train.grad_clip)
        self.data_generator = torch.Generator().manual_seed(config.seed)
        self.counter = ForwardCounter()
        self.timer = PhaseTimer()
        self.context = TrainingContext(
            scheduler=self.scheduler,
            sampler=DDIMSampler(self.scheduler),
            counter=self.counter,
            timer=self.timer,
            generator=torch.Generator(device=self.device).manual_seed(config.seed + 1),
            device=self.device,
            conditioning=Conditioning(
                self.stream.task_classes, num_classes, config.model.label_dropout
            ) if config.model.conditional else None,
        )
        self.strategy: Strategy = build_strategy(config.strategy, self.context)
        ignored = unused_knobs(config.strategy)
        if ignored:
            log.warning(
                "strategy %r ignores %s (it reads: %s)", config.strategy.name,
                ", ".join(f"strategy.{k}" for k in ignored),
                ", ".join(self.strategy.knobs) or "no knobs",
            )
        self.evaluator = GenerationEvaluator(
            config, source, self.stream, self.context.sampler, self.counter, self.device,
            autocast=self.throughput.autocast,
        )
        self.classifier = None if config.classifier_replay is None else ClassifierReplay(
            config.classifier_replay, channels=self.stream.channels,
            image_size=self.stream.image_size, num_classes=source.num_classes,
            generation_steps=config.evaluation.eval_steps, sampler=self.context.sampler,
            counter=self.counter, device=self.device, seed=config.seed,
        )
        self.history: list[dict[str, float]] = []
        self.next_task = 0
        self.reused_train_tflops = 0.0  # task-0 training taken from a shared prefix

    # --- the trial's state -----------------------------------------------------------------
    def snapshot(self, *, strategy: bool = True) -> dict[str, Any]:
        """Everything needed to continue this sequence exactly, as copies: task checkpoints and
        shared task-0 prefixes both store this. `strategy=False` leaves out the strategy's own
        state (a task-0 prefix is shared by strategies whose task 0 trains alike)."""
        state: dict[str, Any] = {
            MODEL_WEIGHTS: {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "grad_scaler": self.optimizer_step.scaler.state_dict(),
            "data_generator": self.data_generator.get_state(),
            "train_generator": self.context.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "forward_counts": self.counter.snapshot(),
            "phase_seconds": dict(self.timer.seconds),
            M.REUSED_TRAIN_TFLOPS: self.reused_train_tflops,
        }
        if strategy:
            state["strategy"] = self.strategy.state_dict()
        if self.classifier is not None:
            state["classifier"] = self.classifier.state_dict()
        return state

    def load(self, snapshot: dict[str, Any]) -> None:
        """Continue from a `snapshot()` (the strategy's state only if it holds one)."""
        self.model.load_state_dict(snapshot[MODEL_WEIGHTS])
        self.optimizer.load_state_dict(snapshot["optimizer"])
        self.optimizer_step.scaler.load_state_dict(snapshot.get("grad_scaler", {}))
        self.data_generator.set_state(snapshot["data_generator"])
        load_generator_state(self.context.generator, snapshot["train_generator"])
        torch.set_rng_state(snapshot["torch_rng"])
        if "strategy" in snapshot:
            self.strategy.load_state_dict(snapshot["strategy"])
        if self.classifier is not None:
            self.classifier.load_state_dict(snapshot["classifier"])
        self.counter.load(snapshot["forward_counts"])
        self.timer.seconds.update(snapshot["phase_seconds"])
        self.reused_train_tflops = float(snapshot.get(M.REUSED_TRAIN_TFLOPS, 0.0))

    def restore(self, directory: Path) -> None:
        """Continue from a task checkpoint (its snapshot and metric history)."""
        checkpoint = load_checkpoint(directory, self.model)
        self.load(checkpoint.state)
        self.history = checkpoint.history
        self.next_task = checkpoint.task_index + 1
        log.info("resumed from %s: continuing at task %d", directory, self.next_task)

    # --- task 0 shared between runs (cl_sweeps/prefix.py) ----------------------------------
    def shared_task_zero(self, store: PrefixStore, progress: bool) -> dict[str, float]:
        """Task 0 computed and published as a prefix, or loaded from one; its metrics."""
        return computed_once(
            store, self.config, lambda: self.compute_task_zero(progress), self.reuse_task_zero
        )

    def compute_task_zero(self, progress: bool) -> tuple[dict[str, float], dict[str, Any], float]:
        """Train and evaluate task 0 as an unshared run does; (metrics, what a prefix holds,
        its training TFLOPs). A prefix holds the snapshot right after the optimisation steps
        (before this strategy's end_task) and task 0's evaluation: its metrics, the forwards
        and seconds it spent, torch's RNG after it and the samples of its grid."""
        self.fit_task(0, progress)
        trained = self.snapshot(strategy=False)
        self.end_task(0)
        counts, seconds = self.counter.snapshot(), dict(self.timer.seconds)
        metrics = self.evaluate(0, 0.0)
        compute = set(self.compute_metrics(0.0))  # recomputed by every run that reuses it
        evaluated = {
            "metrics": {k: v for k, v in metrics.items() if k not in compute},
            "forward_counts": _minus(self.counter.snapshot(), counts),
            "phase_seconds": _minus(self.timer.seconds, seconds),
            "torch_rng": torch.get_rng_state(),
            "grid_samples": self.evaluator.grid_samples.detach().cpu(),
        }
        payload = {"trained": trained, "evaluation": evaluated}
        return metrics, payload, self.training_tflops(trained["forward_counts"])

    def reuse_task_zero(self, stored: dict[str, Any]) -> dict[str, float]:
        """Continue from a stored prefix: its snapshot, this run's end_task, its evaluation."""
        trained, evaluated = stored["trained"], stored["evaluation"]
        self.load(trained)
        self.reused_train_tflops = self.training_tflops()
        self.end_task(0)
        for purpose, images in evaluated["forward_counts"].items():
            self.counter.add(purpose, images)
        for phase, spent in evaluated["phase_seconds"].items():
            self.timer.seconds[phase] = self.timer.seconds.get(phase, 0.0) + spent
        torch.set_rng_state(evaluated["torch_rng"])
        metrics = dict(evaluated["metrics"])
        samples = evaluated["grid_samples"].to(self.device)
        self.evaluator.write_grid(samples, 0, metrics[M.FID], self.sample_dir)
        metrics.update(self.compute_metrics(0.0))
        log.info("%.4g train TFLOPs of task 0 not recomputed", self.reused_train_tflops)
        return metrics

    # --- one task -----------------------------------------------------------------------------
    def train_task(self, task_index: int, progress: bool) -> None:
        """Train on the task, then the strategy's end-of-task hook (e.g. ER fills its memory)."""
        self.fit_task(task_index, progress)
        self.end_task(task_index)

    def end_task(self, task_index: int) -> None:
        self.context.task_index = task_index
        self.strategy.end_task(self.model, task_index, self.stream.train[task_index])
        if self.strategy.fresh_optimizer:  # the parameters that train changed (see Strategy)
            self.optimizer = self.throughput.optimizer(self.model, self.config.train.lr)
        self.context.teacher = None

    def fit_task(self, task_index: int, progress: bool) -> None:
        """The task's optimisation steps alone (what a shared task-0 prefix holds)."""
        cfg = self.config
        self.context.task_index = task_index
        classifier = self.classifier
        generative = classifier is not None and classifier.uses_generator
        wanted = self.strategy.needs_teacher or generative
        # one frozen copy of the previous model: the strategy's teacher and the classifier's
        # generator alike
        frozen = self.teacher.copy_of(self.model) if wanted and task_index > 0 else None
        self.context.teacher = frozen if self.strategy.needs_teacher else None
        if classifier is not None:  # the reference's order: the classifier first
            with self.timer.phase("train"):
                classifier.train_task(
                    task_index, self.stream.train, frozen, minibatches, self.throughput.autocast
                )
        self.strategy.begin_task(self.model, task_index)
        if self.strategy.fresh_optimizer:
            self.optimizer = self.throughput.optimizer(self.model, cfg.train.lr)
        data = self.strategy.training_set(
            task_index, self.stream.train[task_index], self.stream.train[:task_index]
        )
        data = ImageSet(data.images.to(self.device), data.labels.to(self.device))
        iterations = iterations_for(cfg, len(data))
        batches = minibatches(data, cfg.train.batch_size, self.data_generator)
        if cfg.data.resolved_augment():
            batches = augmented(batches, self.data_generator)
        if cfg.train.reset_optimizer:  # a fresh Adam state per task, as Avalanche's per experience
            self.optimizer.state.clear()
        self.model.train()
        bar = tqdm(
            range(iterations),
            desc=f"task {task_index + 1}/{len(self.stream)} [{cfg.strategy.name}]",
            disable=not progress,
            leave=False,
        )
        losses = self.loss_reader = LossReader(cfg.train.loss_read_every)
        with self.timer.phase("train"), self.throughput.tf32_scope():
            for _ in bar:
                with self.throughput.autocast():
                    output = self.strategy.loss(self.model, next(batches))
                self.optimizer_step(
                    output.loss, self.model, self.optimizer, self.strategy.adjust_gradients
                )
                self.strategy.after_optimizer_step(self.model)
                self.loss_read(task_index, losses.add(output.loss, output.parts), bar)
            self.loss_read(task_index, losses.read(), bar)

    def loss_read(self, task_index: int, losses: dict[str, float] | None, bar: tqdm) -> None:
        """Every `train.loss_read_every` iterations and at the end of a task: the mean loss and
        its parts since the last read, read from the device in one transfer, the loop's only
        host sync. Checks on the loss values belong here."""
        if losses is None:
            return
        reader = self.loss_reader
        check_loss(losses["loss"], task_index, reader.iterations - 1, reader.every)
        bar.set_postfix(loss=f"{losses['loss']:.4f}", refresh=False)
        log.debug("task %d: %s", task_index, losses)

    def evaluate(self, task_index: int, tflops_before: float) -> dict[str, float]:
        """Denoising loss per seen task, generation metrics, and compute so far."""
        cfg = self.config
        metrics: dict[str, float] = {M.TASK: task_index}
        with self.timer.phase("evaluation"):
            losses = []
            for k in range(task_index + 1):
                count, test = cfg.evaluation.denoise_eval_per_task, self.stream.test[k]
                with self.throughput.autocast():
                    value = denoising_loss(
                        self.model, self.scheduler, test.images[:count], seed=cfg.seed * 1000 + k,
                        batch_size=cfg.evaluation.eval_batch_size,
                        labels=test.labels[:count] if cfg.model.conditional else None,
                    )
                metrics[task_metric(M.DENOISE_LOSS_TASK, k)] = value
                losses.append(value)
            metrics[M.DENOISE_LOSS] = sum(losses) / len(losses)
            generator = self.strategy.generation_model(self.model)  # ensemble: task members
            metrics.update(self.evaluator(generator, task_index, self.sample_dir))
            if self.classifier is not None:
                metrics.update(self.classifier.evaluate(
                    task_index, self.stream.test, self.stream.seen_validation(task_index)))
        if task_index == len(self.stream) - 1:
            metrics.update(self.final_metrics(metrics))
        metrics.update(self.compute_metrics(tflops_before))
        return metrics

    @property
    def sample_dir(self) -> Path:
        return Path(self.config.output_dir) / "samples"

    def final_metrics(self, last: dict[str, float]) -> dict[str, float]:
        """fid_final, fid_avg, forgetting and CLoG's aiq/afq/fr from the sequence's FID matrix."""
        rows = [*self.history, last]
        matrix = [
            {k: row[task_metric(M.FID_TASK, k)] for k in range(int(row[M.TASK]) + 1)}
            for row in rows
        ]
        final = {
            M.FID_FINAL: last[M.FID],
            M.FID_AVG: fid_avg(matrix[-1]),
            M.FORGETTING: forgetting(matrix),
            M.AIQ: average_incremental_quality(matrix),
            M.AFQ: fid_avg(matrix[-1]),
            M.FORGETTING_RATE: forgetting_rate(matrix),
        }
        if M.FID_VAL in last:
            final[M.FID_FINAL_VAL] = last[M.FID_VAL]
        if self.classifier is not None:
            final.update(final_accuracy_metrics(rows))
        return final

    def training_tflops(self, counts: dict[str, int] | None = None) -> float:
        """Training TFLOPs of the forwards counted so far (or of `counts`)."""
        spent = flops_by_purpose(self.counter.snapshot() if counts is None else counts, self.flops)
        unet = sum(spent[p] for p in TRAIN_PURPOSES) / 1e12
        return unet + (self.classifier.tflops() if self.classifier is not None else 0.0)

    def compute_metrics(self, tflops_before: float) -> dict[str, float]:
        counts = self.counter.snapshot()
        spent = flops_by_purpose(counts, self.flops)
        seconds = self.timer.seconds
        wall = seconds["train"] + seconds["evaluation"]
        train_tflops = self.training_tflops()
        return {
            M.TRAIN_TFLOPS: train_tflops,
            M.TASK_TRAIN_TFLOPS: train_tflops - tflops_before,
            M.REUSED_TRAIN_TFLOPS: self.reused_train_tflops,
            **({M.CLASSIFIER_TRAIN_TFLOPS: self.classifier.tflops()} if self.classifier else {}),
            M.EVAL_TFLOPS: spent[EVAL_SAMPLING] / 1e12,
            **{f"{M.FORWARDS}{p}": float(n) for p, n in counts.items()},
            M.TRAIN_SECONDS: seconds["train"],
            M.REPLAY_GENERATION_SECONDS: seconds["replay_generation"],
            M.EVAL_SECONDS: seconds["evaluation"],
            M.ACCELERATOR_SECONDS: wall * self.accelerators_held,
            M.PEAK_MEMORY_MB: peak_memory_mb(self.device),
        }


def _minus(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


PROC_STATUS, PROC_CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def reset_peak_memory(device: torch.device) -> None:
    """Start the run's peak-memory count afresh: a Ray worker that ran another trial before
    (reuse_actors) must not report that trial's peak. On CPU, Linux resets the process's
    resident high-water mark (VmHWM) when 5 is written to clear_refs."""
    if device.type == "cuda":
        torch.cuda.init()  # the statistics exist only once CUDA is initialised
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        PROC_CLEAR_REFS.write_text("5")
    except OSError:
        pass  # not Linux, or not allowed: the peak is then the process's since it started


def peak_memory_mb(device: torch.device) -> float:
    """Peak since reset_peak_memory: CUDA memory allocated, or the resident set on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_sequence(
    config: TrialConfig,
    reporter: Reporter | None = None,
    *,
    resume_from: Path | None = None,
    progress: bool = False,
    accelerators_held: float | None = None,
    prefixes: PrefixStore | None = None,
) -> SequenceResult:
    """Train one model through every task; after each, evaluate, checkpoint and report.

    accelerators_held: GPUs reserved for this run (fractional under Ray), for
    accelerator_seconds; default 1 on CUDA, 0 on CPU. prefixes: where task-0 results are
    shared with other runs whose task 0 is the same (cl_sweeps/prefix.py); None: no sharing.
    """
    reset_peak_memory(resolve_device(config.device))
    engine = Engine(config, accelerators_held)
    if resume_from is not None:
        engine.restore(Path(resume_from))
    output_dir = Path(config.output_dir)
    for task_index in range(engine.next_task, len(engine.stream)):
        tflops_before = engine.training_tflops()
        if task_index == 0 and prefixes is not None and prefix_key(config) is not None:
            metrics = engine.shared_task_zero(prefixes, progress)
        else:
            engine.train_task(task_index, progress)
            metrics = engine.evaluate(task_index, tflops_before)
        engine.history.append(metrics)
        directory = save_checkpoint(
            task_checkpoint_dir(output_dir, task_index),
            engine.model,
            task_index,
            engine.snapshot(),
            engine.history,
            engine.scheduler,
        )
        if reporter is not None:
            reporter(task_index, metrics, directory)
    return SequenceResult(engine.history, engine.model)
