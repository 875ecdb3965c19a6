"""Class-distribution metrics (KLD, ARD) on hand-made histograms."""

import math

import pytest
import torch

from cl_sweeps.evaluation.distribution import ard, class_histogram, kld


def test_class_histogram_is_a_distribution() -> None:
    hist = class_histogram(torch.tensor([0, 1, 1, 3]), num_classes=5)
    assert hist.dtype == torch.float64
    assert hist.tolist() == [0.25, 0.5, 0.0, 0.25, 0.0]


def test_class_histogram_rejects_out_of_range_labels() -> None:
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        class_histogram(torch.tensor([0, 3]), num_classes=3)


def test_identical_histograms_give_zero() -> None:
    hist = torch.tensor([0.1, 0.2, 0.3, 0.4])
    assert kld(hist, hist) == pytest.approx(0.0, abs=1e-12)
    assert ard(hist, hist) == pytest.approx(0.0, abs=1e-12)


def test_two_class_known_values() -> None:
    true = torch.tensor([0.5, 0.5], dtype=torch.float64)
    gen = torch.tensor([0.9, 0.1], dtype=torch.float64)
    expected_kld = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)  # 0.5108 nats
    assert kld(true, gen) == pytest.approx(expected_kld, rel=1e-6)
    assert ard(true, gen) == pytest.approx(0.4, abs=1e-12)
    # counts are accepted as well as probabilities
    assert kld(torch.tensor([5, 5]), torch.tensor([9, 1])) == pytest.approx(expected_kld, rel=1e-6)


def test_never_generated_class_is_finite_thanks_to_smoothing() -> None:
    true, gen = torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0])
    value = kld(true, gen)
    assert math.isfinite(value)
    # about 0.5 * log(0.5 / 1e-8) + 0.5 * log(0.5 / 1)
    assert value == pytest.approx(0.5 * math.log(0.5 / 1e-8) + 0.5 * math.log(0.5), rel=1e-4)
    assert ard(true, gen) == pytest.approx(0.5)


def test_naive_forgetting_scores_worse_than_uniform() -> None:
    """After 5 tasks of 2 classes, naive fine-tuning generates only the last task's classes."""
    true = class_histogram(torch.arange(10).repeat(100), num_classes=10)
    uniform = class_histogram(torch.arange(10).repeat(7), num_classes=10)
    slightly_off = torch.tensor([0.12, 0.08] * 5, dtype=torch.float64)
    naive = class_histogram(torch.tensor([8, 9] * 50), num_classes=10)
    assert kld(true, uniform) == pytest.approx(0.0, abs=1e-12)
    assert 0 < kld(true, slightly_off) < kld(true, naive)
    assert kld(true, naive) > 10  # 0.8 * log(0.1 / 1e-8) + 0.2 * log(0.1 / 0.5) ~ 12.6
    assert ard(true, naive) == pytest.approx(0.8)
    assert ard(true, slightly_off) == pytest.approx(0.1)


def test_mismatched_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        kld(torch.tensor([0.5, 0.5]), torch.tensor([0.2, 0.3, 0.5]))
