"""The evaluation classifier: labels generated samples (KLD/ARD, per-task FID) and gives features.

The paper trains a ResNet-18 on a dataset's full training set and uses it to label the samples
of the diffusion model. Its penultimate layer doubles as an FID feature space for small images,
where 299x299 Inception features are costly and mostly measure upsampling artefacts.

Training is done once per (dataset, arch, seed, epochs, batch size) and cached on disk, guarded
by a file lock, so concurrent trials on one machine share a single training run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from pickle import UnpicklingError
from typing import Any

import torch
from filelock import FileLock, Timeout
from torch import Tensor, nn

logger = logging.getLogger(__name__)

ARCHS = ("small_cnn", "resnet18")


class SmallCNN(nn.Module):
    """A few conv layers: enough for 8x8/16x16 grayscale digits, trains in seconds on a CPU."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.feature_dim = 4 * width
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(4 * width),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations, (N, feature_dim)."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class SmallImageResNet18(nn.Module):
    """torchvision's ResNet-18 for small images: 3x3 stride-1 stem, no max-pool, C input channels.

    The ImageNet stem (7x7 stride 2 + max-pool) would shrink a 32x32 image to 8x8 before the
    first block; the CIFAR-style stem keeps the resolution, as in the paper's classifier.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        from torchvision.models import resnet18  # torchvision only when this arch is used

        net = resnet18(weights=None, num_classes=num_classes)
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        self.net = net
        self.feature_dim = net.fc.in_features

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations (after global average pooling), (N, 512)."""
        n = self.net
        x = n.relu(n.bn1(n.conv1(x)))
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        return torch.flatten(n.avgpool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.net.fc(self.features(x))


def build_classifier(arch: str, in_channels: int, num_classes: int) -> nn.Module:
    """An untrained classifier by architecture name (one of ``ARCHS``)."""
    if arch == "small_cnn":
        return SmallCNN(in_channels, num_classes)
    if arch == "resnet18":
        return SmallImageResNet18(in_channels, num_classes)
    raise ValueError(f"unknown classifier arch {arch!r}; allowed: {ARCHS}")


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 512) -> Tensor:
    """Predicted class of each image (images in [-1, 1]), as int64 on the CPU."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    preds = [
        model(images[i : i + batch_size].to(device)).argmax(dim=1).cpu()
        for i in range(0, len(images), batch_size)
    ]
    model.train(was_training)
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 512) -> float:
    """Fraction of images whose predicted class equals the label."""
    if len(labels) == 0:
        raise ValueError("accuracy needs at least one test image")
    return (predict(model, images, batch_size) == labels.cpu()).double().mean().item()


def train_classifier(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    *,
    arch: str,
    num_classes: int,
    seed: int,
    epochs: int = 10,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, float]:
    """Train a classifier on (train_x, train_y); return it in eval mode and its test accuracy.

    Deterministic given the seed on the CPU. The global RNG state is restored afterwards, so
    calling this inside a trial does not shift the trial's own random stream.
    """
    if train_x.ndim != 4 or len(train_x) != len(train_y):
        raise ValueError(
            f"train_x must be (N, C, H, W) with N == len(train_y); got {tuple(train_x.shape)} "
            f"and {len(train_y)} labels"
        )
    if epochs <= 0 or batch_size <= 0:
        raise ValueError(f"epochs and batch_size must be > 0; got {epochs} and {batch_size}")
    device = torch.device(device)
    cuda_devices = []
    if device.type == "cuda":
        cuda_devices = [torch.cuda.current_device() if device.index is None else device.index]
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        model = build_classifier(arch, train_x.shape[1], num_classes).to(device)
        steps_per_epoch = -(-len(train_x) // batch_size)
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=2e-3, total_steps=epochs * steps_per_epoch
        )
        order_rng = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(train_x), generator=order_rng)
            for i in range(0, len(order), batch_size):
                index = order[i : i + batch_size]
                x, y = train_x[index].to(device), train_y[index].to(device)
                loss = nn.functional.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
    model.eval()
    return model, accuracy(model, test_x, test_y)


@dataclass
class TrainedClassifier:
    """A trained evaluation classifier and where it is cached."""

    model: nn.Module
    test_accuracy: float
    arch: str
    path: Path
    loaded_from_cache: bool


def cache_paths(
    cache_dir: Path, cache_key: str, *, arch: str, seed: int, epochs: int, batch_size: int
) -> tuple[Path, Path]:
    """The weights file and its JSON sidecar for one classifier."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", cache_key)
    if safe != cache_key:  # keep distinct keys distinct after sanitising
        safe += "-" + hashlib.sha1(cache_key.encode()).hexdigest()[:8]
    stem = f"{safe}__{arch}__seed{seed}__ep{epochs}__bs{batch_size}"
    return Path(cache_dir) / f"{stem}.pt", Path(cache_dir) / f"{stem}.json"


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str) -> None:
    """Write through ``write(file)`` to a temp file in the same folder, then rename over path."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_cached(
    weights: Path, sidecar: Path, device: torch.device
) -> tuple[nn.Module, dict[str, Any]]:
    meta = json.loads(sidecar.read_text())
    model = build_classifier(meta["arch"], meta["in_channels"], meta["num_classes"])
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.to(device).eval(), meta


def load_or_train_classifier(
    cache_dir: Path,
    cache_key: str,
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    *,
    arch: str,
    num_classes: int,
    seed: int,
    epochs: int = 10,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
) -> TrainedClassifier:
    """The classifier for (cache_key, arch, seed, epochs, batch size): from disk, or trained once.

    ``cache_key`` names the data (e.g. dataset and image size); the caller makes it unique. A
    file lock serialises train-and-write, so concurrent trials train it once and never read a
    half-written file; the sidecar JSON is written last and marks a complete entry.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    weights, sidecar = cache_paths(
        cache_dir, cache_key, arch=arch, seed=seed, epochs=epochs, batch_size=batch_size
    )
    lock = FileLock(str(weights) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.info("Waiting for another process to finish the classifier %s", weights.name)
        lock.acquire()
    try:
        if weights.exists() and sidecar.exists():
            try:
                model, meta = _load_cached(weights, sidecar, device)
            except (OSError, EOFError, ValueError, KeyError, RuntimeError, UnpicklingError) as err:
                logger.warning("Classifier cache %s unreadable (%s); retraining", weights, err)
            else:
                logger.info(
                    "Loaded classifier %s (test accuracy %.4f)", weights.name, meta["test_accuracy"]
                )
                return TrainedClassifier(model, meta["test_accuracy"], arch, weights, True)

        logger.info("Training classifier %s on %d images", weights.name, len(train_x))
        model, test_accuracy = train_classifier(
            train_x,
            train_y,
            test_x,
            test_y,
            arch=arch,
            num_classes=num_classes,
            seed=seed,
            epochs=epochs,
            batch_size=batch_size,
            device=device,
        )
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        _atomic_write(weights, lambda f: torch.save(state, f), "wb")
        meta = {
            "cache_key": cache_key,
            "arch": arch,
            "in_channels": int(train_x.shape[1]),
            "num_classes": num_classes,
            "seed": seed,
            "epochs": epochs,
            "batch_size": batch_size,
            "test_accuracy": test_accuracy,
        }
        _atomic_write(sidecar, lambda f: json.dump(meta, f, indent=2), "w")
        logger.info("Trained classifier %s: test accuracy %.4f", weights.name, test_accuracy)
        return TrainedClassifier(model, test_accuracy, arch, weights, False)
    finally:
        lock.release()
