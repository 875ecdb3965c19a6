"""Evaluation of what the model generates after a task: stream and per-task FID, the class
distribution of its samples (KLD, ARD) and a sample grid, as in the paper's protocol.

A class-conditional model (`model.conditional`) is asked for the seen classes in equal shares
(`requested_labels`), with classifier-free guidance `evaluation.guidance_scale`: task k's FID then
compares the images generated for task k's classes with its test images (CLoG's protocol; no
longer the evaluation classifier's assignment), and `label_agreement` is how often the
evaluation classifier names the class an image was generated for."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import UNet2DModel
from torch import nn

from cl_sweeps import metrics as M
from cl_sweeps.config import EvaluationConfig, TrialConfig
from cl_sweeps.data import TaskStream
from cl_sweeps.data.sources import SourceData
from cl_sweeps.diffusion import DDIMSampler
from cl_sweeps.evaluation.classifier import TrainedClassifier, load_or_train_classifier, predict
from cl_sweeps.evaluation.compute import EVAL_SAMPLING, ForwardCounter
from cl_sweeps.evaluation.distribution import ard, class_histogram, kld
from cl_sweeps.evaluation.fid import build_feature_extractor, compute_fid, fid_per_task
from cl_sweeps.evaluation.grids import grid_caption, grid_image
from cl_sweeps.metrics import task_metric
from cl_sweeps.numerics import check_samples
from cl_sweeps.results import atomic_write, write_class_histograms

log = logging.getLogger(__name__)

EVAL_SEED_OFFSET = 7_777  # evaluation noise never shares a stream with training noise


def default_cache_dir() -> Path:
    return Path(os.environ.get("CL_SWEEPS_CACHE", "~/.cache/cl-sweeps")).expanduser()


def resolved_feature_kind(config: TrialConfig) -> str:
    """`auto`: the dataset's declared feature space (classifier features on 8x8 digits, where
    Inception is meaningless; Inception else)."""
    kind = config.evaluation.fid_features
    if kind == "auto":
        kind = config.data.info.fid_features
    return kind


def resolved_classifier_arch(config: TrialConfig) -> str:
    arch = config.evaluation.classifier_arch
    if arch == "auto":
        arch = config.data.info.classifier_arch
    return arch


def classifier_cache_key(source: SourceData) -> str:
    """Names the data the classifier is trained on, with a fingerprint of the images and labels
    so a cached classifier is never reused for different data."""
    digest = hashlib.sha1()
    for split in (source.train, source.test):
        digest.update(split.images.contiguous().numpy().tobytes())
        digest.update(split.labels.contiguous().numpy().tobytes())
    return f"{source.name}-{source.image_size}px-{len(source.train)}-{digest.hexdigest()[:12]}"


class GenerationEvaluator:
    """Samples from the model after each task and scores the samples against seen test data."""

    def __init__(
        self,
        config: TrialConfig,
        source: SourceData,
        stream: TaskStream,
        sampler: DDIMSampler,
        counter: ForwardCounter,
        device: torch.device,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ):
        """autocast: the trial's precision, for sampling only; features and the classifier
        stay fp32 so metrics compare across precisions."""
        self.config = config
        self.autocast = autocast
        self.settings: EvaluationConfig = config.evaluation
        self.stream = stream
        self.sampler = sampler
        self.counter = counter
        self.device = device
        self.classifier: TrainedClassifier = self._load_classifier(source)
        kind = resolved_feature_kind(config)
        log.info("FID feature space: %s (evaluation.fid_features)", kind)
        self.feature_kind = kind
        self.extractor: nn.Module = build_feature_extractor(
            kind,
            classifier=self.classifier.model,
            inception_weights=(
                Path(self.settings.inception_weights).expanduser()
                if self.settings.inception_weights
                else None
            ),
        ).to(device)

    def _load_classifier(self, source: SourceData) -> TrainedClassifier:
        """The classifier trained on the dataset's full training set (all classes), cached."""
        train, test = source.train, source.test
        cache_dir = (
            Path(self.settings.cache_dir).expanduser()
            if self.settings.cache_dir
            else default_cache_dir()
        )
        return load_or_train_classifier(
            cache_dir.resolve(),
            classifier_cache_key(source),
            train.images,
            train.labels,
            test.images,
            test.labels,
            arch=resolved_classifier_arch(self.config),
            num_classes=source.num_classes,
            seed=self.settings.classifier_seed,
            epochs=self.settings.classifier_epochs,
            val_fraction=self.config.data.info.classifier_val_fraction,
            device=self.device,
            weights=(
                Path(self.settings.classifier_weights).expanduser()
                if self.settings.classifier_weights
                else None
            ),
        )

    def requested_labels(self, task_index: int, n: int | None = None) -> torch.Tensor | None:
        """The classes of the n (default n_eval_samples) images a conditional model generates
        after task `task_index`: the seen classes in turn (equal shares, ±1); None for an
        unconditional model."""
        if not self.config.model.conditional:
            return None
        classes = torch.tensor(self.stream.seen_classes(task_index), device=self.device)
        n = self.settings.n_eval_samples if n is None else n
        return classes[torch.arange(n, device=self.device) % len(classes)]

    def generate(self, model: UNet2DModel, task_index: int) -> torch.Tensor:
        """n_eval_samples images with eval_steps DDIM steps (eta 0), seeded per task (a
        conditional model: of `requested_labels`, with evaluation.guidance_scale)."""
        generator = torch.Generator(device=self.device).manual_seed(
            self.config.seed * 1000 + EVAL_SEED_OFFSET + task_index
        )
        was_training = model.training
        model.eval()
        with self.autocast():
            result = self.sampler.sample(
                model,
                self.settings.n_eval_samples,
                self.settings.eval_steps,
                eta=0.0,
                generator=generator,
                batch_size=self.settings.eval_batch_size,
                on_forward=self.counter.hook(EVAL_SAMPLING),
                labels=self.requested_labels(task_index),
                guidance_scale=self.settings.guidance_scale,
            )
        model.train(was_training)
        check_samples(result.images, task_index)  # before clamping, which would hide inf
        return result.images.clamp(-1, 1)

    def __call__(self, model: UNet2DModel, task_index: int, sample_dir: Path) -> dict[str, float]:
        samples = self.generate(model, task_index)
        seen = self.stream.seen_test(task_index)
        batch = self.settings.eval_batch_size
        predicted = predict(self.classifier.model, samples, batch_size=batch)
        true_hist = class_histogram(seen.labels, self.stream.num_classes)
        gen_hist = class_histogram(predicted, self.stream.num_classes)
        metrics: dict[str, float] = {
            M.FID: compute_fid(seen.images, samples, self.extractor, batch),
            M.KLD: kld(true_hist, gen_hist),
            M.ARD: ard(true_hist, gen_hist),
            M.CLASSIFIER_ACCURACY: self.classifier.test_accuracy,
        }
        requested = self.requested_labels(task_index)
        if requested is not None:
            requested = requested.cpu()
            metrics[M.LABEL_AGREEMENT] = float((predicted.cpu() == requested).float().mean())
        per_task = fid_per_task(  # a conditional model's images count for the class asked for
            seen.images, seen.labels, samples, predicted if requested is None else requested,
            self.stream.task_classes[: task_index + 1], self.extractor, batch_size=batch,
        )
        for k, value in per_task.items():
            metrics[task_metric(M.FID_TASK, k)] = value
        validation = self.stream.seen_validation(task_index)
        if validation is not None:  # the same samples, scored against held-out training images
            val_hist = class_histogram(validation.labels, self.stream.num_classes)
            metrics[M.FID_VAL] = compute_fid(validation.images, samples, self.extractor, batch)
            metrics[M.KLD_VAL] = kld(val_hist, gen_hist)
        self.grid_samples = samples[: self.settings.sample_grid_size]
        self.write_grid(self.grid_samples, task_index, metrics[M.FID], sample_dir)
        write_class_histograms(sample_dir, task_index, true_hist.tolist(), gen_hist.tolist())
        return metrics

    def write_grid(
        self, samples: torch.Tensor, task_index: int, fid: float, sample_dir: Path
    ) -> None:
        caption = grid_caption(task_index, len(self.stream), self.config.strategy.name, fid)
        self.save_grid(samples, sample_dir / f"task_{task_index}.png", caption)

    def save_grid(self, samples: torch.Tensor, path: Path, caption: str) -> None:
        """The first sample_grid_size samples, enlarged and captioned (evaluation/grids.py)."""
        n = self.settings.sample_grid_size
        if n == 0:
            return
        image = grid_image(samples[:n], caption)
        atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
