"""UNet presets and the DDIM noise schedule (1000 steps, linear betas 1e-4 -> 0.02, rescaled to
zero terminal SNR by default as in the paper's code)."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import DDIMScheduler, UNet2DModel
from torch import nn

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


def unet_kwargs(
    config: ModelConfig, image_size: int, channels: int, num_classes: int | None = None
) -> dict[str, Any]:
    """The UNet2DModel constructor arguments for a preset at a given image shape.

    A conditional model (`config.conditional`) gets diffusers' class embedding with
    num_classes + 1 rows: one per dataset class and the null class (index num_classes) that
    classifier-free guidance's unconditional prediction uses."""
    kwargs: dict[str, Any] = dict(
        sample_size=image_size, in_channels=channels, out_channels=channels, **PRESETS[config.preset]
    )
    if config.conditional:
        if num_classes is None or num_classes < 1:
            raise ValueError(
                f"model.conditional needs the dataset's class count, got num_classes={num_classes}"
            )
        kwargs["num_class_embeds"] = num_classes + 1
    return kwargs


def build_unet(
    config: ModelConfig, image_size: int, channels: int, num_classes: int | None = None
) -> UNet2DModel:
    return UNet2DModel(**unet_kwargs(config, image_size, channels, num_classes))


def is_conditional(model: nn.Module) -> bool:
    """Whether the UNet has a class embedding (and so needs labels)."""
    return getattr(model.config, "num_class_embeds", None) is not None


def null_class(model: nn.Module) -> int:
    """The label index of the null class: the class embedding's last row."""
    return int(model.config.num_class_embeds) - 1


def predict_noise(
    model: nn.Module, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """ε_θ(x, t[, y]): the UNet's noise prediction. An unconditional model takes no labels
    (refused if given); a conditional one given none predicts for the null class (its
    unconditional prediction), so code that knows nothing of classes still samples from it."""
    if not is_conditional(model):
        if labels is not None:
            raise ValueError("labels given to an unconditional UNet (model.conditional: false)")
        return model(x, t).sample
    if labels is None:
        labels = torch.full((x.shape[0],), null_class(model), device=x.device, dtype=torch.long)
    return model(x, t, class_labels=labels).sample


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
