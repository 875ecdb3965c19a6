"""UNet presets and the DDIM noise schedule (1000 steps, linear betas 1e-4 -> 0.02, rescaled to
zero terminal SNR by default as in the paper's code)."""

from __future__ import annotations

from typing import Any

from diffusers import DDIMScheduler, UNet2DModel

from cl_sweeps.config import NUM_TRAIN_TIMESTEPS, ModelConfig

PRESETS: dict[str, dict[str, Any]] = {
    # Fast on 2 CPU cores: tests and the quickstart.
    "tiny": {
        "block_out_channels": (32, 64),
        "layers_per_block": 1,
        "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
        "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
        "norm_num_groups": 8,
    },
    # The paper's Split Fashion-MNIST UNet.
    "paper": {
        "block_out_channels": (64, 128, 256, 512),
        "layers_per_block": 1,
        "down_block_types": ("DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        "up_block_types": ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
    },
    # The paper's Split CIFAR-10 UNet.
    "paper_cifar": {
        "block_out_channels": (128, 256, 256, 256),
        "layers_per_block": 2,
        "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    },
}


def unet_kwargs(config: ModelConfig, image_size: int, channels: int) -> dict[str, Any]:
    """The UNet2DModel constructor arguments for a preset at a given image shape."""
    return dict(
        sample_size=image_size, in_channels=channels, out_channels=channels, **PRESETS[config.preset]
    )


def build_unet(config: ModelConfig, image_size: int, channels: int) -> UNet2DModel:
    return UNet2DModel(**unet_kwargs(config, image_size, channels))


def build_scheduler(config: ModelConfig) -> DDIMScheduler:
    """The training/sampling noise schedule shared by student, teacher and evaluation.

    With `zero_terminal_snr` (the paper's protocol) diffusers rescales the linear betas so that
    ᾱ_999 = 0 exactly: x_999 is pure noise in training, and generation starts from what the
    model was trained on. The x0 estimate at ᾱ = 0 is guarded in `sampling.ddim_update`.
    """
    return DDIMScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_schedule="linear",
        beta_start=1e-4,
        beta_end=0.02,
        clip_sample=config.clip_sample,
        timestep_spacing=config.timestep_spacing,
        set_alpha_to_one=True,
        rescale_betas_zero_snr=config.zero_terminal_snr,
    )
