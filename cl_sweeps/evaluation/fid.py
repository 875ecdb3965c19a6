"""FID with torchmetrics, in one of two feature spaces, overall and per task.

Feature spaces ("kinds"):
- ``"inception"``: the paper's 2048-d InceptionV3 pool features (torchmetrics / torch-fidelity
  weights). Comparable with published numbers; costly on a CPU (every image is resized to 299).
- ``"classifier"``: the penultimate features of the evaluation classifier trained on the same
  dataset (see ``classifier.py``). Cheap and meaningful on 8x8/16x16 images; not comparable
  across datasets or classifiers.

Every extractor here takes images in [0, 1] (what torchmetrics hands a custom feature extractor
with ``normalize=True``) and returns float64 features, so the statistics and the final distance
are computed in float64 end to end.
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn

from cl_sweeps.numerics import check_features

logger = logging.getLogger(__name__)

FEATURE_KINDS = ("classifier", "inception")
# torchmetrics' accumulated statistics, checked before its matrix square root sees them
FID_STATES = (
    "real_features_sum", "real_features_cov_sum", "fake_features_sum", "fake_features_cov_sum"
)
INCEPTION_WEIGHTS_OPTION = "evaluation.inception_weights"
# Bound on a stalled connection while torch.hub downloads the Inception weights (seconds). It is
# the process-wide socket default, set only for the duration of that download.
DOWNLOAD_SOCKET_TIMEOUT_S = 30.0


class InceptionWeightsUnavailable(RuntimeError):
    """The InceptionV3 weights for FID could be neither downloaded nor read from a local file."""


class ClassifierFeatures(nn.Module):
    """Penultimate features of a trained evaluation classifier, as an FID feature extractor.

    Input is in [0, 1] (torchmetrics' convention) and is mapped back to the [-1, 1] range the
    classifier was trained on. ``num_features`` is set so torchmetrics need not probe the
    module with a 3x299x299 dummy image that a 1-channel 8x8 classifier could not take.
    """

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        if not callable(getattr(classifier, "features", None)):
            raise TypeError("the classifier must have a features(x) -> (N, D) method")
        self.classifier = classifier.eval()
        feature_dim = getattr(classifier, "feature_dim", None)
        if feature_dim is not None:  # else compute_fid lets torchmetrics probe with the data shape
            self.num_features = int(feature_dim)

    def train(self, mode: bool = True) -> ClassifierFeatures:
        """Stay in eval mode: batch-norm statistics must not follow the evaluated images."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        param = next(self.classifier.parameters())
        x = x.to(device=param.device, dtype=param.dtype) * 2 - 1
        return self.classifier.features(x).flatten(1).double()


class InceptionFeatures(nn.Module):
    """torchmetrics' 2048-d InceptionV3 (torch-fidelity weights) on images in [0, 1].

    Grayscale is repeated to 3 channels; images are quantised to uint8 as torchmetrics does for
    its own Inception with ``normalize=True``, and torch-fidelity resizes them to 299x299.
    """

    num_features = 2048

    def __init__(self, weights_path: Path | None = None) -> None:
        super().__init__()
        self.inception = _load_inception(weights_path)

    def train(self, mode: bool = True) -> InceptionFeatures:
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[1] != 3:
            raise ValueError(f"Inception needs 1 or 3 channels; got {x.shape[1]}")
        device = next(self.inception.parameters()).device
        x = (x.clamp(0, 1) * 255).byte().to(device)
        return self.inception(x).double()


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Bound each socket operation of a download that would otherwise wait forever."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _load_inception(weights_path: Path | None) -> nn.Module:
    from torchmetrics.image.fid import NoTrainInceptionV3

    if weights_path is not None:
        weights_path = Path(weights_path).expanduser()
        if not weights_path.is_file():
            raise InceptionWeightsUnavailable(
                f"{INCEPTION_WEIGHTS_OPTION}={str(weights_path)!r}: no such file. Point it at the "
                "torch-fidelity InceptionV3 weights (weights-inception-2015-12-05-6726825d.pth)."
            )
        # torch-fidelity unpickles the file with weights_only=False; refuse anything that is not
        # plain tensors first, as every other checkpoint of this project is loaded.
        try:
            torch.load(weights_path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise InceptionWeightsUnavailable(
                f"{INCEPTION_WEIGHTS_OPTION}={str(weights_path)!r} is not a plain state dict of "
                f"tensors ({type(err).__name__}: {err})"
            ) from err
        return NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=["2048"],
            feature_extractor_weights_path=str(weights_path),
        )
    # No path: torch.hub loads the weights from its cache or downloads them.
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    try:
        with _socket_timeout(DOWNLOAD_SOCKET_TIMEOUT_S):
            return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"])
    except OSError as err:  # URLError, socket timeouts and DNS failures are all OSErrors
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise InceptionWeightsUnavailable(
            f"Cannot get the InceptionV3 weights for FID: downloading {URL_INCEPTION_V3} failed "
            f"({err}). On a machine without internet, download that file elsewhere and either set "
            f"the config option {INCEPTION_WEIGHTS_OPTION} to its local path, or copy it into "
            f"the torch hub cache {cache}. Or use the classifier feature space for FID."
        ) from err


def build_feature_extractor(
    kind: str, *, classifier: nn.Module | None = None, inception_weights: Path | None = None
) -> nn.Module:
    """An FID feature extractor of the given kind (one of ``FEATURE_KINDS``)."""
    if kind == "classifier":
        if classifier is None:
            raise ValueError("FID feature kind 'classifier' needs a trained classifier")
        return ClassifierFeatures(classifier)
    if kind == "inception":
        return InceptionFeatures(inception_weights)
    raise ValueError(f"unknown FID feature kind {kind!r}; allowed: {FEATURE_KINDS}")


def _device_of(module: nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def compute_fid(real: Tensor, fake: Tensor, extractor: nn.Module, batch_size: int = 256) -> float:
    """FID between two image sets in [-1, 1], (N, C, H, W), in the extractor's feature space.

    Images are mapped affinely to [0, 1] for torchmetrics (``normalize=True``), not clamped:
    extractors that need a strict range (Inception's uint8) clamp themselves. Statistics are
    accumulated in float64 by torchmetrics; the extractors of this module return float64
    features, so the result is not rounded to float32 either.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    if len(real) < 2 or len(fake) < 2:
        raise ValueError(
            f"FID needs at least 2 real and 2 fake images; got {len(real)}, {len(fake)}"
        )
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} differ in shape")
    device = _device_of(extractor)
    # input_img_size: if the extractor has no num_features, torchmetrics probes it with this shape
    metric = FrechetInceptionDistance(
        feature=extractor, normalize=True, input_img_size=tuple(real.shape[1:])
    ).to(device)
    for images, is_real in ((real, True), (fake, False)):
        for i in range(0, len(images), batch_size):
            batch = images[i : i + batch_size].to(device)
            metric.update((batch + 1) / 2, real=is_real)
    check_features(
        {name: getattr(metric, name) for name in FID_STATES}, "FID statistics"
    )
    return float(metric.compute())


def fid_per_task(
    real_x: Tensor,
    real_y: Tensor,
    fake_x: Tensor,
    fake_pred: Tensor,
    task_classes: Sequence[Sequence[int]],
    extractor: nn.Module,
    min_samples: int = 2,
    batch_size: int = 256,
) -> dict[int, float]:
    """FID of each task k in ``task_classes`` (pass the tasks seen so far), keyed by k.

    Real images of task k are those whose label is in its classes; generated images are those
    the evaluation classifier assigns (``fake_pred``) to one of its classes.

    A task with fewer than ``min_samples`` generated images (at least 2, the minimum for a
    covariance) gets ``float("inf")``: the model has forgotten how to generate it, the worst
    possible outcome. We chose inf over NaN because NaN is dropped silently by pandas means,
    nan-aware reductions and plots, so a forgotten task would *improve* an average; inf
    propagates (the mean is inf), orders correctly (never the best trial) and is what a
    distance with no support on one side tends to. Report how many samples each task got
    alongside when a finite summary is needed.
    """
    if min_samples < 2:
        raise ValueError(
            f"min_samples must be >= 2 (a covariance needs 2 samples); got {min_samples}"
        )
    real_y, fake_pred = real_y.cpu(), fake_pred.cpu()
    result: dict[int, float] = {}
    for task, classes in enumerate(task_classes):
        classes_t = torch.as_tensor(list(classes), dtype=real_y.dtype)
        real_mask = torch.isin(real_y, classes_t).to(real_x.device)
        fake_mask = torch.isin(fake_pred, classes_t.to(fake_pred.dtype)).to(fake_x.device)
        if int(real_mask.sum()) < 2:
            raise ValueError(
                f"task {task} (classes {list(classes)}) has {int(real_mask.sum())} real images; "
                "FID needs at least 2"
            )
        n_fake = int(fake_mask.sum())
        if n_fake < min_samples:
            logger.info("Task %d: %d generated images (< %d); FID = inf", task, n_fake, min_samples)
            result[task] = math.inf
            continue
        result[task] = compute_fid(real_x[real_mask], fake_x[fake_mask], extractor, batch_size)
    return result


def fid_avg(last_row: Mapping[int, float]) -> float:
    """Mean FID over all seen tasks after the last task (inf if any task was forgotten)."""
    if not last_row:
        raise ValueError("fid_avg needs the FID of at least one task")
    return sum(last_row.values()) / len(last_row)


def forgetting(fid_matrix: Sequence[Mapping[int, float]]) -> float:
    """Mean rise of each earlier task's FID from right after it was learned to the end.

    ``fid_matrix[t][k]`` is the FID of task k after training task t (k <= t). With T tasks this
    is the mean over k < T-1 of ``fid_matrix[T-1][k] - fid_matrix[k][k]``; NaN when T == 1.
    Infinite entries follow IEEE arithmetic: forgotten at the end only gives inf; forgotten at
    both ends gives NaN (the rise is undefined).
    """
    num_tasks = len(fid_matrix)
    if num_tasks == 0:
        raise ValueError("forgetting needs at least one row of FIDs")
    if num_tasks == 1:
        return math.nan
    last = fid_matrix[-1]
    rises = []
    for k in range(num_tasks - 1):
        if k not in fid_matrix[k] or k not in last:
            raise ValueError(
                f"fid_matrix lacks task {k}: needed in row {k} and in the last row {num_tasks - 1}"
            )
        rises.append(last[k] - fid_matrix[k][k])
    return sum(rises) / len(rises)


# CLoG (Zhang et al. 2024) summarises the same per-task FID matrix a[t][k] (FID of task k after
# training task t, k <= t) with three numbers. Their public code evaluates that matrix but leaves
# the summaries to the paper; they are computed here from our matrix, so they inherit its
# per-task FID (generated images assigned to a task by the evaluation classifier; CLoG generates
# each task's classes with a label-conditioned model).


def average_incremental_quality(fid_matrix: Sequence[Mapping[int, float]]) -> float:
    """CLoG's AIQ: the mean over t of the mean FID of the tasks seen after task t,
    (1/T) Σ_t (1/(t+1)) Σ_{k<=t} a[t][k]. Unlike fid_avg it rewards a model that was good
    along the way, not only at the end (inf if any task was forgotten at any step)."""
    if not fid_matrix:
        raise ValueError("average_incremental_quality needs at least one row of FIDs")
    row_means = []
    for t, row in enumerate(fid_matrix):
        missing = [k for k in range(t + 1) if k not in row]
        if missing:
            raise ValueError(f"fid_matrix row {t} lacks tasks {missing}")
        row_means.append(sum(row[k] for k in range(t + 1)) / (t + 1))
    return sum(row_means) / len(row_means)


def forgetting_rate(fid_matrix: Sequence[Mapping[int, float]]) -> float:
    """CLoG's FR: the mean over k < T-1 of a[T-1][k] − min_{k <= t < T-1} a[t][k], the rise of
    each earlier task's final FID above the best FID it had before the last task (the forgetting
    measure of Chaudhry et al. 2018, FID lower-is-better). `forgetting` compares with
    a[k][k] instead, right after learning k: FR >= forgetting, equal when no task improved after
    it was learned. NaN for a single task; inf entries follow IEEE arithmetic as in
    `forgetting` (a task forgotten at every step gives NaN)."""
    num_tasks = len(fid_matrix)
    if num_tasks == 0:
        raise ValueError("forgetting_rate needs at least one row of FIDs")
    if num_tasks == 1:
        return math.nan
    last = fid_matrix[-1]
    rises = []
    for k in range(num_tasks - 1):
        earlier = [fid_matrix[t].get(k) for t in range(k, num_tasks - 1)]
        if None in earlier or k not in last:
            raise ValueError(
                f"fid_matrix lacks task {k}: needed in rows {k}..{num_tasks - 1}"
            )
        rises.append(last[k] - min(earlier))
    return sum(rises) / len(rises)
