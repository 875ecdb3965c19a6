"""The evaluation classifier: labels generated samples (KLD/ARD, per-task FID) and gives features.

The paper's code (`train_kld_classifier.py`) trains torchvision's ResNet-18 with the standard
ImageNet stem (ImageNet-pretrained there) on a dataset's training set: 3-channel input in
[-1, 1] (grayscale repeated), random flip / rotation (10°) / translation (10%) / Gaussian noise
(σ 0.1), Adam 5e-4, batch 64, 100 epochs, keeping the best-validation epoch. `resnet18` here is
that recipe (`RECIPES`); pretrained weights cannot be downloaded, so a local torchvision
ResNet-18 state dict may be given (`weights`), else it trains from scratch. A whole state dict
for the dataset's classes (the reference's own trained `resnet.pth`, head included) is used as
is, without training (`weights_kind`). `small_cnn` is a
few conv layers for 8x8/16x16 digits, trained in seconds. The penultimate layer doubles as an FID
feature space for small images, where 299x299 Inception features are costly.

Training is done once per (data, arch, seed and every training setting, weights file, training
environment: torch version, device, threads, determinism switches) and cached on disk, guarded
by a file lock, so concurrent trials on one machine share a single training run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from pickle import UnpicklingError
from typing import Any

import torch
from filelock import FileLock, Timeout
from torch import Tensor, nn
from torch.nn import functional as F

from cl_sweeps.errors import UsageError
from cl_sweeps.hashing import content_hash
from cl_sweeps.results import atomic_write
from cl_sweeps.throughput import device_name

logger = logging.getLogger(__name__)

ARCHS = ("small_cnn", "resnet18")
IMAGENET_CLASSES = 1000


class ClassifierWeightsError(UsageError, ValueError):
    """evaluation.classifier_weights cannot be used: unreadable, or not a ResNet-18 that fits."""


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


class ImageNetResNet18(nn.Module):
    """torchvision's ResNet-18 with its standard ImageNet stem (7x7 stride 2 + max-pool), 3-channel
    input; 1-channel images are repeated to 3 channels, as the paper's classifier."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        from torchvision.models import resnet18  # torchvision only when this arch is used

        self.in_channels = in_channels
        self.net = resnet18(weights=None, num_classes=num_classes)
        self.feature_dim = self.net.fc.in_features

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations (after global average pooling), (N, 512)."""
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        return torch.flatten(n.avgpool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.net.fc(self.features(x))

    def load_backbone(self, path: Path) -> None:
        """Load a local torchvision ResNet-18 state dict (e.g. ImageNet weights); its `fc` is
        dropped (the head is trained for this dataset's classes)."""
        state = read_state_dict(path)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = self.net.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"fc.weight", "fc.bias"}:
            raise ValueError(
                f"evaluation.classifier_weights={str(path)!r} does not match torchvision's "
                f"ResNet-18 (missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
            )


    def load_whole(self, path: Path) -> None:
        """Load a whole torchvision ResNet-18 state dict, head included (the reference's
        train_kld_classifier.py saves this as resnet.pth); every key must match."""
        state = read_state_dict(path)
        try:
            self.net.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ClassifierWeightsError(
                f"evaluation.classifier_weights={str(path)!r} does not match torchvision's "
                f"ResNet-18 for {self.net.fc.out_features} classes ({str(error)[:300]})"
            ) from None


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """A state dict file, loaded with weights_only=True; a clear error naming the key else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, UnpicklingError) as error:
        raise ClassifierWeightsError(
            f"evaluation.classifier_weights={str(path)!r} is not a readable torchvision "
            f"ResNet-18 state dict ({error})"
        ) from None
    if not isinstance(state, dict):
        raise ClassifierWeightsError(
            f"evaluation.classifier_weights={str(path)!r} holds a {type(state).__name__}, not a "
            "state dict (save it with torch.save(model.state_dict(), path))"
        )
    return state


def weights_kind(state: dict[str, Tensor], num_classes: int, path: Path) -> str:
    """'whole' for a ResNet-18 whose head already maps to the dataset's classes (used as is);
    'backbone' for one without a head or with ImageNet's 1000 classes (the head is trained)."""
    head = state.get("fc.weight")
    if head is None:
        return "backbone"
    if head.ndim == 2 and head.shape[0] == num_classes:
        return "whole"
    if head.ndim == 2 and head.shape[0] == IMAGENET_CLASSES:
        return "backbone"
    raise ClassifierWeightsError(
        f"evaluation.classifier_weights={str(path)!r} has a head (fc.weight) for "
        f"{head.shape[0] if head.ndim else '?'} classes, but the dataset has {num_classes}; "
        f"allowed: a whole ResNet-18 for {num_classes} classes (e.g. the paper's resnet.pth), "
        f"or backbone weights (no fc, or ImageNet's {IMAGENET_CLASSES} classes)"
    )


def build_classifier(arch: str, in_channels: int, num_classes: int) -> nn.Module:
    """An untrained classifier by architecture name (one of ``ARCHS``)."""
    if arch == "small_cnn":
        return SmallCNN(in_channels, num_classes)
    if arch == "resnet18":
        return ImageNetResNet18(in_channels, num_classes)
    raise ValueError(f"unknown classifier arch {arch!r}; allowed: {ARCHS}")


@dataclass(frozen=True)
class TrainingRecipe:
    """Every setting of a classifier's training (all of them enter the cache key)."""

    optimizer: str  # "adam" (constant lr) or "adamw_onecycle"
    lr: float
    batch_size: int
    epochs: int
    augment: bool  # flip, ±10° rotation, ±10% translation, N(0, 0.1²) noise
    val_fraction: float  # held out of training to pick the best epoch; 0: keep the last one


RECIPES = {
    "small_cnn": TrainingRecipe("adamw_onecycle", 2e-3, 128, 10, False, 0.0),
    # the paper's code: Adam 5e-4, batch 64, 100 epochs, best of a held-out split
    # (there 10k of FMNIST's 60k and 5k of CIFAR-10's 50k; here 10% of the training set)
    "resnet18": TrainingRecipe("adam", 5e-4, 64, 100, True, 0.1),
}


def recipe_for(
    arch: str, epochs: int | None = None, batch_size: int | None = None,
    val_fraction: float | None = None,
) -> TrainingRecipe:
    """The arch's recipe, with the epoch budget / batch size overridden where given, and the
    held-out fraction of a recipe that validates (the dataset's, see data/catalog.py)."""
    if arch not in RECIPES:
        raise ValueError(f"unknown classifier arch {arch!r}; allowed: {ARCHS}")
    recipe = RECIPES[arch]
    if val_fraction is not None and recipe.val_fraction > 0:
        recipe = replace(recipe, val_fraction=val_fraction)
    if epochs is not None:
        recipe = replace(recipe, epochs=epochs)
    if batch_size is not None:
        recipe = replace(recipe, batch_size=batch_size)
    return recipe


# Names what augment_batch does; it enters the cache key, so a classifier trained with an
# earlier augmentation is not reused: change it whenever augment_batch changes.
AUGMENTATION = "reference: flip, rotation 10 deg and translation 10% nearest with -1 fill, noise 0.1"


def augment_batch(x: Tensor, generator: torch.Generator) -> Tensor:
    """The reference classifier's augmentation on a batch in [-1, 1], per image, in its order
    (train_kld_classifier.py: torchvision's RandomHorizontalFlip, RandomRotation(10),
    RandomAffine(translate=(0.1, 0.1)), then N(0, 0.1²) noise): flip with p = 1/2, rotation
    U(±10°) and a translation of a whole number of pixels up to 10% of the side, both with
    nearest-neighbour sampling and black (−1) fill, as torchvision's defaults."""
    n, height, width = len(x), x.shape[-2], x.shape[-1]

    def uniform(scale: float) -> Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * scale

    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device).view(-1, 1, 1, 1)
    x = torch.where(flip, x.flip(-1), x)
    x = rotate_nearest(x, uniform(math.radians(10)))
    # torchvision: round(U(-0.1 W, 0.1 W)) pixels
    dx, dy = uniform(0.1 * width).round(), uniform(0.1 * height).round()
    x = translate_pixels(x, dx.long(), dy.long())
    noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    return x + 0.1 * noise


def _resample_nearest(x: Tensor, theta: Tensor) -> Tensor:
    """x (in [-1, 1]) through per-image affine maps, nearest neighbour, outside filled with −1."""
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, mode="nearest", padding_mode="zeros",
                         align_corners=False) - 1


def rotate_nearest(x: Tensor, angle: Tensor) -> Tensor:
    """Each image rotated about its centre by `angle` radians; no value is interpolated."""
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return _resample_nearest(x, theta)


def translate_pixels(x: Tensor, dx: Tensor, dy: Tensor) -> Tensor:
    """Each image shifted right by dx and down by dy whole pixels (integers), −1 filled in."""
    out = torch.full_like(x, -1.0)
    height, width = x.shape[-2], x.shape[-1]
    for i, (sx, sy) in enumerate(zip(dx.tolist(), dy.tolist())):
        if abs(sx) >= width or abs(sy) >= height:
            continue
        out[i, :, max(sy, 0):height + min(sy, 0), max(sx, 0):width + min(sx, 0)] = \
            x[i, :, max(-sy, 0):height + min(-sy, 0), max(-sx, 0):width + min(-sx, 0)]
    return out


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
    epochs: int | None = None,
    batch_size: int | None = None,
    device: str | torch.device = "cpu",
    weights: Path | None = None,
    val_fraction: float | None = None,
) -> tuple[nn.Module, float]:
    """Train a classifier on (train_x, train_y) with its arch's recipe (epochs / batch size /
    held-out fraction overridable); return it in eval mode (the best-validation epoch if the recipe holds out a
    validation split) and its test accuracy.

    Deterministic given the seed on the CPU. The global RNG state is restored afterwards, so
    calling this inside a trial does not shift the trial's own random stream.
    """
    recipe = recipe_for(arch, epochs, batch_size, val_fraction)
    if train_x.ndim != 4 or len(train_x) != len(train_y):
        raise ValueError(
            f"train_x must be (N, C, H, W) with N == len(train_y); got {tuple(train_x.shape)} "
            f"and {len(train_y)} labels"
        )
    if recipe.epochs <= 0 or recipe.batch_size <= 0:
        raise ValueError(
            f"epochs and batch_size must be > 0; got {recipe.epochs} and {recipe.batch_size}"
        )
    if weights is not None and arch != "resnet18":
        raise ValueError(f"pretrained weights are for resnet18 only; arch is {arch!r}")
    device = torch.device(device)
    cuda_devices = []
    if device.type == "cuda":
        cuda_devices = [torch.cuda.current_device() if device.index is None else device.index]
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        model = build_classifier(arch, train_x.shape[1], num_classes)
        if weights is not None:
            model.load_backbone(Path(weights))
        model.to(device)
        fit_x, fit_y, val_x, val_y = _validation_split(train_x, train_y, recipe, seed)
        steps_per_epoch = -(-len(fit_x) // recipe.batch_size)
        optimizer, scheduler = _optimizer(model, recipe, recipe.epochs * steps_per_epoch)
        order_rng = torch.Generator().manual_seed(seed)
        augment_rng = torch.Generator().manual_seed(seed + 1)
        best: tuple[float, dict[str, Tensor] | None] = (-1.0, None)
        for _ in range(recipe.epochs):
            model.train()
            order = torch.randperm(len(fit_x), generator=order_rng)
            for i in range(0, len(order), recipe.batch_size):
                index = order[i : i + recipe.batch_size]
                if len(index) < 2 and i > 0:  # batch norm needs two images
                    continue
                x, y = fit_x[index].to(device), fit_y[index].to(device)
                if recipe.augment:
                    x = augment_batch(x, augment_rng)
                loss = nn.functional.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
            if len(val_y):
                score = accuracy(model, val_x, val_y)
                if score > best[0]:
                    best = (score, {k: v.detach().clone() for k, v in model.state_dict().items()})
        if best[1] is not None:
            model.load_state_dict(best[1])
    model.eval()
    return model, accuracy(model, test_x, test_y)


def _validation_split(
    x: Tensor, y: Tensor, recipe: TrainingRecipe, seed: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(fit_x, fit_y, val_x, val_y): a seeded `val_fraction` of the training set held out."""
    n_val = int(len(x) * recipe.val_fraction)
    if n_val == 0:
        return x, y, x[:0], y[:0]
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed + 2))
    fit, val = order[n_val:], order[:n_val]
    return x[fit], y[fit], x[val], y[val]


def _optimizer(
    model: nn.Module, recipe: TrainingRecipe, total_steps: int
) -> tuple[torch.optim.Optimizer, Any]:
    if recipe.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=recipe.lr), None
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.lr, total_steps=total_steps
    )
    return optimizer, scheduler


@dataclass
class TrainedClassifier:
    """A trained evaluation classifier and where it is cached."""

    model: nn.Module
    test_accuracy: float
    arch: str
    path: Path
    loaded_from_cache: bool
    weights_kind: str | None = None  # classifier_weights: 'whole' (used as is) or 'backbone'


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (names pretrained weights in the cache key)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def training_environment(device: torch.device) -> dict[str, Any]:
    """What beyond the recipe changes the trained weights: torch's version, the device (a CPU
    and a GPU, or two GPU models, add up in different orders), on CPU the thread count and
    vector instructions (how reductions are split), and the determinism, matmul-precision and
    TF32 switches in force. It enters the cache key: two settings never share a file, so a FID
    never depends on which process trained the classifier first."""
    environment: dict[str, Any] = {
        "torch": torch.__version__,
        "device": device_name(device),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "matmul_precision": torch.get_float32_matmul_precision(),
    }
    if device.type == "cuda":
        cudnn = torch.backends.cudnn
        environment.update(
            cuda=torch.version.cuda, cudnn=cudnn.version(), cudnn_deterministic=cudnn.deterministic,
            cudnn_benchmark=cudnn.benchmark,
            tf32=[torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32],
        )
    else:
        environment.update(threads=torch.get_num_threads(),
                           cpu_capability=torch.backends.cpu.get_cpu_capability())
    return environment


def settings_digest(
    recipe: TrainingRecipe, weights_digest: str | None,
    environment: dict[str, Any] | None = None,
) -> str:
    """A short digest of every training setting, the pretrained weights (if any) and the
    training environment (training_environment)."""
    augmentation = AUGMENTATION if recipe.augment else None
    return content_hash(
        {**asdict(recipe), "augmentation": augmentation, "weights": weights_digest,
         "environment": environment}, 10
    )


def cache_paths(
    cache_dir: Path,
    cache_key: str,
    *,
    arch: str,
    seed: int,
    recipe: TrainingRecipe,
    weights_digest: str | None = None,
    environment: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """The weights file and its JSON sidecar for one classifier."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", cache_key)
    if safe != cache_key:  # keep distinct keys distinct after sanitising
        safe += "-" + hashlib.sha1(cache_key.encode()).hexdigest()[:8]
    stem = (
        f"{safe}__{arch}__seed{seed}__ep{recipe.epochs}__bs{recipe.batch_size}"
        f"__{settings_digest(recipe, weights_digest, environment)}"
    )
    return Path(cache_dir) / f"{stem}.pt", Path(cache_dir) / f"{stem}.json"


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
    epochs: int | None = None,
    batch_size: int | None = None,
    device: str | torch.device = "cpu",
    weights: Path | None = None,
    val_fraction: float | None = None,
) -> TrainedClassifier:
    """The classifier for (cache_key, arch, seed, every training setting, pretrained weights):
    from disk, or trained once.

    ``cache_key`` names the data (e.g. dataset and image size); the caller makes it unique. A
    file lock serialises train-and-write, so concurrent trials train it once and never read a
    half-written file; the sidecar JSON is written last and marks a complete entry.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    recipe = recipe_for(arch, epochs, batch_size, val_fraction)
    weights_digest = None
    if weights is not None:
        if not Path(weights).is_file():
            raise ValueError(
                f"evaluation.classifier_weights={str(weights)!r} does not exist; give a local "
                "torchvision ResNet-18 state dict file, or null to train from scratch"
            )
        weights_digest = file_digest(Path(weights))
        if arch == "resnet18":
            kind = weights_kind(read_state_dict(Path(weights)), num_classes, Path(weights))
            logger.info("evaluation.classifier_weights %s: %s ResNet-18", weights, kind)
            if kind == "whole":
                return _use_whole(Path(weights), test_x, test_y, train_x.shape[1], num_classes,
                                  device)
    environment = training_environment(device)
    path, sidecar = cache_paths(
        cache_dir, cache_key, arch=arch, seed=seed, recipe=recipe, weights_digest=weights_digest,
        environment=environment,
    )
    lock = FileLock(str(path) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.info("Waiting for another process to finish the classifier %s", path.name)
        lock.acquire()
    try:
        if path.exists() and sidecar.exists():
            try:
                model, meta = _load_cached(path, sidecar, device)
            except (OSError, EOFError, ValueError, KeyError, RuntimeError, UnpicklingError) as err:
                logger.warning("Classifier cache %s unreadable (%s); retraining", path, err)
            else:
                logger.info(
                    "Loaded classifier %s (test accuracy %.4f)", path.name, meta["test_accuracy"]
                )
                return TrainedClassifier(model, meta["test_accuracy"], arch, path, True,
                                         "backbone" if weights_digest else None)

        logger.info("Training classifier %s on %d images", path.name, len(train_x))
        model, test_accuracy = train_classifier(
            train_x,
            train_y,
            test_x,
            test_y,
            arch=arch,
            num_classes=num_classes,
            seed=seed,
            epochs=recipe.epochs,
            batch_size=recipe.batch_size,
            device=device,
            weights=weights,
            val_fraction=recipe.val_fraction,
        )
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        atomic_write(path, lambda tmp: torch.save(state, tmp), durable=True)
        meta = {
            "cache_key": cache_key,
            "arch": arch,
            "in_channels": int(train_x.shape[1]),
            "num_classes": num_classes,
            "seed": seed,
            "recipe": asdict(recipe),
            "weights_sha256": weights_digest,
            "environment": environment,
            "test_accuracy": test_accuracy,
        }
        atomic_write(sidecar, lambda tmp: tmp.write_text(json.dumps(meta, indent=2)), durable=True)
        logger.info("Trained classifier %s: test accuracy %.4f", path.name, test_accuracy)
        return TrainedClassifier(model, test_accuracy, arch, path, False,
                                 "backbone" if weights_digest else None)
    finally:
        lock.release()


def _use_whole(
    weights: Path, test_x: Tensor, test_y: Tensor, in_channels: int, num_classes: int,
    device: torch.device,
) -> TrainedClassifier:
    """A whole ResNet-18 used as is: no training, no cache; its test accuracy is measured."""
    model = ImageNetResNet18(in_channels, num_classes)
    model.load_whole(weights)
    model.to(device).eval()
    test_accuracy = accuracy(model, test_x, test_y)
    logger.info("Using classifier %s as is (whole ResNet-18, not trained): test accuracy %.4f",
                weights, test_accuracy)
    return TrainedClassifier(model, test_accuracy, "resnet18", weights, False, "whole")
