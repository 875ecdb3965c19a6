"""The noise schedule and the DDIM update: zero terminal SNR, the guarded x̂0, the arbitrary-pair
update against diffusers' own `DDIMScheduler.step`, and the per-image partial-generation grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from cl_sweeps.config import ModelConfig
from cl_sweeps.diffusion import DDIMSampler, build_scheduler, build_unet
from cl_sweeps.diffusion.sampling import ddim_update, partial_timesteps, predicted_x0


def test_zero_terminal_snr_is_the_default_and_makes_the_last_alpha_bar_zero():
    assert ModelConfig().zero_terminal_snr is True
    abar = build_scheduler(ModelConfig()).alphas_cumprod
    assert abar[999].item() == 0.0
    assert (abar[:999] > 0).all() and (abar[1:] <= abar[:-1]).all()
    # the rescaling keeps ᾱ_0 and only moves the tail (√ᾱ_999 was ≈ 0.0064 before)
    plain = build_scheduler(ModelConfig(zero_terminal_snr=False)).alphas_cumprod
    assert abar[0].item() == pytest.approx(plain[0].item(), rel=1e-6)
    assert plain[999].sqrt().item() == pytest.approx(0.0064, abs=2e-4)


def test_first_step_x0_is_the_reference_formula():
    """At t = 999 (ᾱ = 0) the reference computes (x − √(1−ᾱ)·ε)/√(ᾱ + 1e-8), then clips."""
    scheduler = build_scheduler(ModelConfig(clip_sample=False))
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g)
    x[0] = eps[0] + 1e-6  # nearly the 0/0 case: x − ε ≈ 0
    t = torch.full((4,), 999)
    got = predicted_x0(scheduler, eps, x, t)
    a = float(scheduler.alphas_cumprod[999])
    expected = (x.double().numpy() - np.sqrt(1 - a) * eps.double().numpy()) / np.sqrt(a + 1e-8)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)
    clipped = predicted_x0(build_scheduler(ModelConfig()), eps, x, t)
    np.testing.assert_allclose(clipped.numpy(), np.clip(expected, -1, 1), rtol=1e-5, atol=1e-6)


class EchoModel(torch.nn.Module):
    """ε(x, t) = x: at ᾱ = 0 the unguarded x̂0 is exactly 0/0."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.config = type("C", (), {"in_channels": 1, "sample_size": 8})()

    def forward(self, x, t):
        return type("O", (), {"sample": x + self.weight})()


@pytest.mark.parametrize("clip_sample", [True, False])
@pytest.mark.parametrize("steps", [1, 2])
def test_one_and_two_step_generation_is_always_finite(steps, clip_sample):
    scheduler = build_scheduler(ModelConfig(clip_sample=clip_sample))
    sampler = DDIMSampler(scheduler)
    torch.manual_seed(0)
    unet = build_unet(ModelConfig(), 8, 1).eval()
    for model in (unet, EchoModel()):
        for seed in range(20):
            g = torch.Generator().manual_seed(seed)
            images = sampler.sample(model, 8, steps, generator=g).images
            assert torch.isfinite(images).all(), (type(model).__name__, seed)
            tau = torch.randint(0, 1000, (8,), generator=g)
            assert torch.isfinite(sampler.partial(model, tau, steps, generator=g)).all()
    # without the guard diffusers' own step is not finite there
    diffusers_step = DDIMScheduler.from_config(scheduler.config)
    diffusers_step.set_timesteps(steps)
    x = torch.randn(2, 1, 8, 8)
    assert not torch.isfinite(diffusers_step.step(x, 999, x).prev_sample).all()


@pytest.mark.parametrize("zero_terminal_snr", [True, False])
@pytest.mark.parametrize("steps", [1, 2, 3, 10, 50])
@pytest.mark.parametrize("eta", [0.0, 0.6])
def test_ddim_update_equals_diffusers_step_on_the_grid(steps, zero_terminal_snr, eta):
    config = ModelConfig(zero_terminal_snr=zero_terminal_snr)
    ours = build_scheduler(config)
    reference = DDIMScheduler.from_config(ours.config)
    reference.set_timesteps(steps)
    g = torch.Generator().manual_seed(steps)
    checked = 0
    for t in reference.timesteps.tolist():
        if reference.alphas_cumprod[t] == 0:  # diffusers divides by zero there
            continue
        x, eps, z = (torch.randn(3, 1, 8, 8, generator=g) for _ in range(3))
        expected = reference.step(eps, t, x, eta=eta, variance_noise=z if eta else None)
        t_batch = torch.full((3,), t)
        got = ddim_update(ours, eps, x, t_batch, t_batch - 1000 // steps, eta=eta, noise=z)
        # the 1e-8 guard moves x̂0 by a relative 1e-8/ᾱ_t (1e-4 at t = 999 without rescaling)
        tol = 1e-5 + 2e-8 / float(reference.alphas_cumprod[t])
        torch.testing.assert_close(got, expected.prev_sample, rtol=tol, atol=tol)
        torch.testing.assert_close(
            predicted_x0(ours, eps, x, t_batch), expected.pred_original_sample, rtol=tol, atol=tol
        )
        checked += 1
    assert checked >= steps - 1


def test_sampler_equals_a_diffusers_loop_without_zero_terminal_snr():
    scheduler = build_scheduler(ModelConfig(zero_terminal_snr=False))
    torch.manual_seed(3)
    model = build_unet(ModelConfig(), 8, 1).eval()
    ours = DDIMSampler(scheduler).sample(model, 4, 5, generator=torch.Generator().manual_seed(1))
    reference = DDIMScheduler.from_config(scheduler.config)
    reference.set_timesteps(5)
    x = torch.randn((4, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for t in reference.timesteps:
            x = reference.step(model(x, t).sample, t, x).prev_sample
    torch.testing.assert_close(ours.images, x, rtol=1e-4, atol=1e-5)


def reference_points(tau: int, steps: int) -> list[int]:
    """The reference's set_timesteps for one target τ, written out with numpy."""
    ratio = (1000 - tau) / steps
    return [int(v) for v in np.round(np.arange(steps, 0, -1) * ratio).astype(np.int64) - 1 + tau]


@pytest.mark.parametrize("steps", [1, 2, 3, 10, 100])
def test_partial_grid_follows_the_reference_set_timesteps(steps):
    tau = torch.cat([torch.arange(0, 1000, 7), torch.tensor([999, 998, 990, 901, 0])])
    points, targets = partial_timesteps(tau, steps, 1000)
    assert points.shape == targets.shape == (steps, len(tau))
    assert (points[0] == 999).all()  # every image starts from pure noise at T − 1
    assert torch.equal(targets[-1], tau)  # and lands exactly on its τ
    assert (points >= tau).all() and (targets <= points).all()
    assert torch.equal(targets[:-1], points[1:])
    for i, value in enumerate(tau.tolist()):
        expected = [max(p, value) for p in reference_points(value, steps)]
        assert points[:, i].tolist() == expected, value
    # τ = 0 is the ordinary trailing grid of a full k-step run
    full = partial_timesteps(torch.zeros(1, dtype=torch.long), steps, 1000)[0][:, 0]
    assert torch.equal(full, DDIMSampler(build_scheduler(ModelConfig())).timesteps(steps))


def test_partial_generation_with_tau_zero_matches_full_generation_up_to_the_last_step():
    scheduler = build_scheduler(ModelConfig())
    sampler = DDIMSampler(scheduler)
    torch.manual_seed(4)
    model = build_unet(ModelConfig(), 8, 1).eval()
    tau = torch.zeros(3, dtype=torch.long)
    partial = sampler.partial(model, tau, 2, generator=torch.Generator().manual_seed(2))
    full = sampler.sample(
        model, 3, 2, generator=torch.Generator().manual_seed(2), return_trajectory=True
    )
    # the same x_499, then the last step lands on t = 0 instead of the clean end (ᾱ = 1)
    x, eps = full.trajectory[-1].states, full.trajectory[-1].predictions
    t = torch.full((3,), 499)
    expected = ddim_update(scheduler, eps, x, t, torch.zeros(3, dtype=torch.long))
    torch.testing.assert_close(partial, expected, rtol=1e-5, atol=1e-5)
    assert (partial - full.images).abs().max() < 0.05  # √(1 − ᾱ_0) = 0.01 of noise apart


def test_partial_generation_at_tau_999_is_the_initial_noise():
    sampler = DDIMSampler(build_scheduler(ModelConfig()))
    torch.manual_seed(4)
    model = build_unet(ModelConfig(), 8, 1).eval()
    calls = []
    got = sampler.partial(
        model, torch.full((2,), 999), 3, generator=torch.Generator().manual_seed(5),
        on_forward=calls.append,
    )
    noise = torch.randn((2, 1, 8, 8), generator=torch.Generator().manual_seed(5))
    assert torch.equal(got, noise) and calls == [2, 2, 2]


def test_unet_presets_are_the_papers():
    from cl_sweeps.diffusion.model import PRESETS

    fmnist, cifar = PRESETS["paper"], PRESETS["paper_cifar"]
    assert fmnist["block_out_channels"] == (64, 128, 256, 512)
    assert fmnist["layers_per_block"] == 1
    assert [("Attn" in b) for b in fmnist["down_block_types"]] == [False, False, False, True]
    assert [("Attn" in b) for b in fmnist["up_block_types"]] == [True, False, False, False]
    assert cifar["block_out_channels"] == (128, 256, 256, 256)
    assert cifar["layers_per_block"] == 2
    assert [("Attn" in b) for b in cifar["down_block_types"]] == [False, True, False, False]
    assert [("Attn" in b) for b in cifar["up_block_types"]] == [False, False, True, False]
