"""FID through torchmetrics: exactness on known Gaussians, per-task assignment, summaries."""

import math
import time
import urllib.error

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import Tensor, nn

from cl_sweeps.evaluation import fid as fid_module
from cl_sweeps.evaluation.classifier import SmallCNN
from cl_sweeps.evaluation.fid import (
    INCEPTION_WEIGHTS_OPTION,
    InceptionWeightsUnavailable,
    average_incremental_quality,
    build_feature_extractor,
    compute_fid,
    fid_avg,
    fid_per_task,
    forgetting,
    forgetting_rate,
)


class RawFeatures(nn.Module):
    """Features ARE the inputs: undoes compute_fid's [-1, 1] -> [0, 1] map, then flattens."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return (x * 2 - 1).flatten(1)


def _random_extractor(in_channels: int = 1) -> nn.Module:
    torch.manual_seed(0)
    return build_feature_extractor("classifier", classifier=SmallCNN(in_channels, 10).eval())


def _class_images(labels: Tensor, generator: torch.Generator) -> Tensor:
    """8x8 grayscale images whose brightness and texture depend on the class."""
    noise = torch.randn(len(labels), 1, 8, 8, generator=generator)
    return (0.3 * noise + (labels.view(-1, 1, 1, 1) - 4.5) / 6).clamp(-1, 1)


def test_identical_sets_give_zero() -> None:
    g = torch.Generator().manual_seed(0)
    images = _class_images(torch.arange(10).repeat(30), g)
    value = compute_fid(images, images.clone(), _random_extractor(), batch_size=64)
    # exact up to the eigenvalue solver: ~1e-12 relative to the feature variance
    assert abs(value) < 1e-6


def test_classifier_features_map_back_to_training_range() -> None:
    classifier = SmallCNN(1, 10).eval()
    extractor = build_feature_extractor("classifier", classifier=classifier)
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    feats = extractor((x + 1) / 2)
    assert feats.shape == (5, classifier.feature_dim) and feats.dtype == torch.float64
    torch.testing.assert_close(feats, classifier.features(x).double(), rtol=1e-5, atol=1e-6)
    extractor.train()
    assert not extractor.training and not classifier.training


def _frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_gaussian_features_match_closed_form() -> None:
    """Sample FID of two Gaussians vs the Frechet distance of their TRUE parameters.

    Tolerance from the sample size: to first order (delta method) the estimator's std is
      sigma^2 = 4 dmu'(S1 + S2) dmu / N + sum_i 2 Tr((I - T_i) S_i (I - T_i) S_i) / N,
    with T_1 the optimal-transport map S1 -> S2 (T_2 its inverse): the derivative of the
    distance w.r.t. S_i is I - T_i, and Var Tr(A S_hat) = 2 Tr(A S A S) / N for Gaussians.
    Here N = 20000 gives sigma ~ 0.04 on a distance of ~3.5 (a Monte Carlo over 300 repeats
    gave std 0.038 and a bias of 0.005); 6 sigma keeps flakiness negligible while a factor-2
    slip (e.g. the [0, 1] rescaling) or a dropped cross term would be off by > 1.
    """
    dim, n = 6, 20000
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(dim, dim)), rng.normal(size=(dim, dim))
    s1 = a @ a.T / dim + 0.5 * np.eye(dim)
    s2 = b @ b.T / dim + 0.5 * np.eye(dim)
    mu1, mu2 = np.zeros(dim), np.full(dim, 0.5)
    true = _frechet_distance(mu1, s1, mu2, s2)

    eye = np.eye(dim)
    s1_half = scipy.linalg.sqrtm(s1).real
    s1_half_inv = np.linalg.inv(s1_half)
    t1 = s1_half_inv @ scipy.linalg.sqrtm(s1_half @ s2 @ s1_half).real @ s1_half_inv
    t2 = np.linalg.inv(t1)
    dmu = mu1 - mu2
    var = (
        4 * dmu @ (s1 + s2) @ dmu
        + 2 * np.trace((eye - t1) @ s1 @ (eye - t1) @ s1)
        + 2 * np.trace((eye - t2) @ s2 @ (eye - t2) @ s2)
    ) / n
    tolerance = 6 * math.sqrt(var)

    sample_rng = np.random.default_rng(1)
    x1 = torch.from_numpy(sample_rng.multivariate_normal(mu1, s1, n)).view(n, dim, 1, 1)
    x2 = torch.from_numpy(sample_rng.multivariate_normal(mu2, s2, n)).view(n, dim, 1, 1)
    value = compute_fid(x1, x2, RawFeatures(dim), batch_size=4096)
    assert value == pytest.approx(true, abs=tolerance), (value, true, tolerance)
    assert tolerance < 0.1 * true


def test_compute_fid_probes_extractor_with_the_image_shape() -> None:
    """An extractor without num_features is probed by torchmetrics with the data's shape."""
    extractor = nn.Flatten()
    x = torch.rand(50, 3, 1, 1) * 2 - 1
    assert compute_fid(x, x, extractor) == pytest.approx(0.0, abs=1e-6)


def test_fid_per_task_assigns_by_label_and_prediction() -> None:
    g = torch.Generator().manual_seed(0)
    real_y = torch.arange(6).repeat(40)
    real_x = _class_images(real_y, g)
    tasks = [[0, 1], [2, 3], [4, 5]]
    extractor = _random_extractor()

    # generated = copies of the real images of tasks 0 and 1, labelled by their true class
    keep = real_y < 4
    fake_x, fake_pred = real_x[keep].clone(), real_y[keep].clone()
    result = fid_per_task(real_x, real_y, fake_x, fake_pred, tasks, extractor)
    assert set(result) == {0, 1, 2}
    assert abs(result[0]) < 1e-6 and abs(result[1]) < 1e-6
    assert result[2] == math.inf  # no generated image of task 2: forgotten

    # task 1's images assigned to task 0's classes: task 0 no longer matches, task 1 forgotten
    task1_x = real_x[(real_y == 2) | (real_y == 3)]
    swapped = fid_per_task(
        real_x, real_y, task1_x, torch.zeros(len(task1_x), dtype=torch.long), tasks[:2], extractor
    )
    assert swapped[1] == math.inf
    # far above the sampling noise between two fresh draws of task 0's own images
    task0_y = real_y[real_y < 2]
    noise_level = compute_fid(real_x[real_y < 2], _class_images(task0_y, g), extractor)
    assert swapped[0] > 10 * noise_level > 0

    # a single generated image (below min_samples) is not enough for a covariance
    one = fid_per_task(real_x, real_y, real_x[:1], real_y[:1], tasks[:1], extractor)
    assert one[0] == math.inf


def test_fid_avg_and_forgetting_on_a_hand_made_matrix() -> None:
    matrix = [{0: 10.0}, {0: 15.0, 1: 12.0}, {0: 20.0, 1: 14.0, 2: 11.0}]
    assert fid_avg(matrix[-1]) == pytest.approx(15.0)
    assert forgetting(matrix) == pytest.approx(((20 - 10) + (14 - 12)) / 2)
    assert math.isnan(forgetting(matrix[:1]))
    forgotten = [{0: 10.0}, {0: math.inf, 1: 12.0}]
    assert fid_avg(forgotten[-1]) == math.inf
    assert forgetting(forgotten) == math.inf
    with pytest.raises(ValueError, match="lacks task 1"):
        forgetting([{0: 1.0}, {0: 2.0}, {0: 3.0, 2: 4.0}])


def test_clog_summaries_on_a_hand_made_matrix() -> None:
    """AIQ, AFQ (= fid_avg) and FR as CLoG defines them, computed by hand."""
    # no task improves after it is learned: FR equals our forgetting
    steady = [{0: 10.0}, {0: 15.0, 1: 12.0}, {0: 20.0, 1: 14.0, 2: 11.0}]
    assert average_incremental_quality(steady) == pytest.approx((10 + 13.5 + 15) / 3)
    assert fid_avg(steady[-1]) == pytest.approx((20 + 14 + 11) / 3)  # afq: the last row's mean
    assert forgetting_rate(steady) == pytest.approx(((20 - 10) + (14 - 12)) / 2)
    assert forgetting_rate(steady) == pytest.approx(forgetting(steady))
    # task 0 improves while task 1 is learned (FID 8 < 10): FR measures from the best value
    improved = [{0: 10.0}, {0: 8.0, 1: 12.0}, {0: 20.0, 1: 14.0, 2: 11.0}]
    assert average_incremental_quality(improved) == pytest.approx((10 + 10 + 15) / 3)
    assert forgetting_rate(improved) == pytest.approx(((20 - 8) + (14 - 12)) / 2)
    assert forgetting(improved) == pytest.approx(((20 - 10) + (14 - 12)) / 2)
    # one task: FR is undefined, AIQ is that task's FID
    assert math.isnan(forgetting_rate(steady[:1]))
    assert average_incremental_quality(steady[:1]) == 10.0
    # a task forgotten along the way makes AIQ inf even if it comes back at the end
    assert average_incremental_quality([{0: 10.0}, {0: math.inf, 1: 12.0}]) == math.inf
    with pytest.raises(ValueError, match="row 1 lacks tasks"):
        average_incremental_quality([{0: 1.0}, {1: 2.0}])
    with pytest.raises(ValueError, match="lacks task 0"):
        forgetting_rate([{0: 1.0}, {1: 2.0}, {0: 3.0, 1: 4.0, 2: 5.0}])
    # reported under names declared once, and usable as sweep objectives
    from cl_sweeps import metrics
    from cl_sweeps.sweep.schema import Objective

    for name in (metrics.AIQ, metrics.AFQ, metrics.FORGETTING_RATE):
        assert Objective(metric=name).metric == name


def test_inception_without_network_or_path_fails_fast_and_names_the_option(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """No weights cached, no path, no network: a clear error at once, not a hang."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network disabled in this test")

    monkeypatch.setattr(torch.hub, "urlopen", no_network)
    start = time.perf_counter()
    with pytest.raises(InceptionWeightsUnavailable, match=INCEPTION_WEIGHTS_OPTION) as info:
        build_feature_extractor("inception")
    assert time.perf_counter() - start < 10
    assert INCEPTION_WEIGHTS_OPTION == "evaluation.inception_weights"
    assert "network disabled in this test" in str(info.value)


class _NotATensor:
    pass


def test_inception_bad_weights_file_names_the_option(tmp_path) -> None:
    with pytest.raises(InceptionWeightsUnavailable, match="evaluation.inception_weights"):
        build_feature_extractor("inception", inception_weights=tmp_path / "missing.pth")
    pickled_object = tmp_path / "object.pth"
    torch.save({"fc.weight": _NotATensor()}, pickled_object)  # would run code if unpickled
    with pytest.raises(InceptionWeightsUnavailable, match="not a plain state dict"):
        build_feature_extractor("inception", inception_weights=pickled_object)


def test_inception_from_a_local_weights_file_takes_grayscale(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """Offline clusters pass a weights path; grayscale is repeated to 3 channels."""
    from torch_fidelity import feature_extractor_inceptionv3 as tf_inception
    from torchmetrics.image.fid import NoTrainInceptionV3

    with monkeypatch.context() as patch:  # random weights stand in for the real file
        patch.setattr(tf_inception, "load_state_dict_from_url", lambda *a, **k: {})
        patch.setattr(nn.Module, "load_state_dict", lambda self, *a, **k: None)
        random_inception = NoTrainInceptionV3("inception-v3-compat", ["2048"])
    weights = tmp_path / "inception.pth"
    torch.save(random_inception.state_dict(), weights)

    extractor = build_feature_extractor("inception", inception_weights=weights)
    torch.testing.assert_close(
        extractor.inception.state_dict()["fc.weight"], random_inception.state_dict()["fc.weight"]
    )
    feats = extractor(torch.rand(2, 1, 8, 8))
    assert feats.shape == (2, 2048) and feats.dtype == torch.float64


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="allowed"):
        build_feature_extractor("clip")
    with pytest.raises(ValueError, match="needs a trained classifier"):
        build_feature_extractor("classifier")


def test_module_exports_the_option_name() -> None:
    assert fid_module.FEATURE_KINDS == ("classifier", "inception")
